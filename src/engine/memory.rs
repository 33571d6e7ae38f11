//! The embedded single-node engine: channel streams (epoch, offset, bounded
//! history) kept in memory, sharded by channel owner core.
//!
//! Each core's instance owns the streams of the channels it owns
//! ([`crate::mesh::owner_of`]); a publish or query on another core travels to
//! the owner as a [`ShardRequest`] over the mesh and the answer comes back on a
//! oneshot channel. The owner assigns the offset, appends to history and hands
//! the publication to its [`PublicationSink`] in one synchronous step, so
//! offsets reach subscribers in order.
//!
//! Bounded: at most `history_size` publications per channel, and a stream idle
//! for `history_ttl_s` is dropped (its next publish starts a new epoch).

use bytes::Bytes;
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::mesh::{owner_of, CoreMsg, Mesh};

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// Engine work for the owner core, sent from another core. Everything in it is `Send`.
#[derive(Debug)]
pub enum ShardRequest {
    Publish {
        channel: String,
        data: Bytes,
        opts: PublishOptions,
        published_at: Instant,
        reply: Reply<StreamPosition>,
    },
    Position {
        channel: String,
        reply: Reply<StreamPosition>,
    },
    History {
        channel: String,
        query: HistoryQuery,
        reply: Reply<HistoryResult>,
    },
    RemoveHistory {
        channel: String,
        reply: Reply<()>,
    },
}

struct Stream {
    epoch: Arc<str>,
    top: u64,
    history: VecDeque<(Publication, Instant)>,
    last_used: Instant,
}

impl Stream {
    fn new(now: Instant) -> Self {
        Stream {
            epoch: new_epoch().into(),
            top: 0,
            history: VecDeque::new(),
            last_used: now,
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

fn new_epoch() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// One core's view of the memory engine.
pub struct MemoryEngine {
    me: usize,
    ncores: usize,
    mesh: Rc<Mesh>,
    sink: Rc<dyn PublicationSink>,
    streams: RefCell<HashMap<String, Stream>>,
    history_size: usize,
    ttl: Duration,
}

impl MemoryEngine {
    pub fn new(
        me: usize,
        ncores: usize,
        mesh: Rc<Mesh>,
        sink: Rc<dyn PublicationSink>,
        cfg: &crate::config::EngineConfig,
    ) -> Self {
        MemoryEngine {
            me,
            ncores,
            mesh,
            sink,
            streams: RefCell::new(HashMap::new()),
            history_size: cfg.history_size,
            ttl: Duration::from_secs(cfg.history_ttl_s.max(1)),
        }
    }

    fn owner(&self, channel: &str) -> usize {
        owner_of(channel, self.ncores)
    }

    /// Owner-side publish: assign offset, store, deliver — synchronously.
    fn publish_local(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOptions,
        published_at: Instant,
    ) -> StreamPosition {
        let now = Instant::now();
        let (publication, position) = {
            let mut streams = self.streams.borrow_mut();
            let stream = streams
                .entry(channel.to_owned())
                .or_insert_with(|| Stream::new(now));
            stream.top += 1;
            stream.last_used = now;
            let publication = Publication {
                offset: stream.top,
                data,
                info: opts.info,
            };
            if self.history_size > 0 {
                stream.history.push_back((publication.clone(), now));
                while stream.history.len() > self.history_size {
                    stream.history.pop_front();
                }
            }
            (publication, stream.position())
        };
        self.sink.deliver(channel, &publication, published_at);
        position
    }

    fn position_local(&self, channel: &str) -> StreamPosition {
        let now = Instant::now();
        let mut streams = self.streams.borrow_mut();
        let stream = streams
            .entry(channel.to_owned())
            .or_insert_with(|| Stream::new(now));
        stream.last_used = now;
        stream.position()
    }

    fn history_local(&self, channel: &str, q: HistoryQuery) -> Result<HistoryResult, EngineError> {
        let position = self.position_local(channel);
        let streams = self.streams.borrow();
        let stream = &streams[channel];
        let oldest_kept = stream
            .history
            .front()
            .map_or(stream.top + 1, |(p, _)| p.offset);
        let after = match &q.since {
            Some(since) if since.epoch != stream.epoch => return Err(EngineError::Unrecoverable),
            Some(since) if since.offset + 1 < oldest_kept && since.offset < stream.top => {
                return Err(EngineError::Unrecoverable)
            }
            Some(since) => since.offset,
            None => 0,
        };
        let iter = stream
            .history
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.offset > after);
        let publications: Vec<Publication> = if q.reverse {
            iter.rev().take(q.limit).cloned().collect()
        } else {
            iter.take(q.limit).cloned().collect()
        };
        Ok(HistoryResult {
            publications,
            position,
        })
    }

    async fn ask<T>(
        &self,
        owner: usize,
        make: impl FnOnce(Reply<T>) -> ShardRequest,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.mesh
            .try_send(owner, CoreMsg::Engine(make(tx)))
            .map_err(|_| EngineError::Overloaded)?;
        rx.await
            .map_err(|_| EngineError::Internal("owner core dropped the request".into()))?
    }
}

#[async_trait::async_trait(?Send)]
impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let published_at = Instant::now();
        let owner = self.owner(channel);
        if self.mesh.congested() {
            return Err(EngineError::Overloaded);
        }
        if owner == self.me {
            return Ok(self.publish_local(channel, data, opts, published_at));
        }
        let channel = channel.to_owned();
        self.ask(owner, |reply| ShardRequest::Publish {
            channel,
            data,
            opts,
            published_at,
            reply,
        })
        .await
    }

    async fn subscribe_node(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(()) // one node: every publication already reaches the owner core's sink
    }

    async fn unsubscribe_node(&self, _channel: &str) -> Result<(), EngineError> {
        Ok(())
    }

    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError> {
        let owner = self.owner(channel);
        if owner == self.me {
            return Ok(self.position_local(channel));
        }
        let channel = channel.to_owned();
        self.ask(owner, |reply| ShardRequest::Position { channel, reply })
            .await
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError> {
        if self.history_size == 0 {
            return Err(EngineError::NotAvailable);
        }
        let owner = self.owner(channel);
        if owner == self.me {
            return self.history_local(channel, query);
        }
        let channel = channel.to_owned();
        self.ask(owner, |reply| ShardRequest::History {
            channel,
            query,
            reply,
        })
        .await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        let owner = self.owner(channel);
        if owner == self.me {
            if let Some(s) = self.streams.borrow_mut().get_mut(channel) {
                s.history.clear();
            }
            return Ok(());
        }
        let channel = channel.to_owned();
        self.ask(owner, |reply| ShardRequest::RemoveHistory {
            channel,
            reply,
        })
        .await
    }

    fn housekeeping(&self, now: Instant) {
        let ttl = self.ttl;
        self.streams.borrow_mut().retain(|_, s| {
            while s
                .history
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) > ttl)
            {
                s.history.pop_front();
            }
            now.duration_since(s.last_used) <= ttl
        });
    }

    fn on_peer_request(&self, req: ShardRequest) {
        match req {
            ShardRequest::Publish {
                channel,
                data,
                opts,
                published_at,
                reply,
            } => {
                let _ = reply.send(Ok(self.publish_local(&channel, data, opts, published_at)));
            }
            ShardRequest::Position { channel, reply } => {
                let _ = reply.send(Ok(self.position_local(&channel)));
            }
            ShardRequest::History {
                channel,
                query,
                reply,
            } => {
                let _ = reply.send(self.history_local(&channel, query));
            }
            ShardRequest::RemoveHistory { channel, reply } => {
                if let Some(s) = self.streams.borrow_mut().get_mut(&channel) {
                    s.history.clear();
                }
                let _ = reply.send(Ok(()));
            }
        }
    }
}
