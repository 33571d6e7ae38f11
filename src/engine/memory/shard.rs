//! One core's shard of the memory engine: the streams (epoch, offset, bounded
//! history), presence and idempotency results of the channels this core owns
//! ([`crate::mesh::owner_of`]). Every method is synchronous and runs on the
//! owner core, so offsets are assigned and handed to the [`PublicationSink`] in
//! one step, in order.
//!
//! Bounded: at most `history_size` publications per channel, each kept
//! `history_ttl`; streams are created only by publishing into a history channel
//! or subscribing to one (never by reading history), at most `engine.max_channels`
//! node-wide (error 106 beyond, counted); a stream that no subscriber on this node
//! holds and nobody used for its TTL is dropped (its next use starts a new epoch).
//! A stream the node is subscribed to keeps its epoch and offset, so live
//! subscribers never see it reset. Idempotency results are kept
//! `engine.idempotency_ttl_s`, at most `engine.max_idempotency_keys` node-wide.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::recovery::missed_after;
use super::super::*;
use crate::mesh::Mesh;
use crate::metrics::CoreMetrics;

/// Node-wide limits and counters shared by every shard (atomics, never a lock).
#[derive(Debug)]
pub struct Limits {
    pub max_channels: usize,
    pub channels: AtomicUsize,
    pub max_idempotency_keys: usize,
    pub idempotency_keys: AtomicUsize,
    pub idempotency_ttl: Duration,
}

impl Limits {
    pub fn new(cfg: &crate::config::EngineConfig) -> Arc<Limits> {
        Arc::new(Limits {
            max_channels: cfg.max_channels,
            channels: AtomicUsize::new(0),
            max_idempotency_keys: cfg.max_idempotency_keys,
            idempotency_keys: AtomicUsize::new(0),
            idempotency_ttl: Duration::from_secs(cfg.idempotency_ttl_s.max(1)),
        })
    }

    fn take(counter: &AtomicUsize, max: usize) -> bool {
        counter
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }
}

struct Stream {
    epoch: Arc<str>,
    top: u64,
    history: VecDeque<(Publication, Instant)>,
    opts: HistoryOptions,
    last_used: Instant,
}

impl Stream {
    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }

    fn oldest_kept(&self) -> u64 {
        self.history
            .front()
            .map_or(self.top.saturating_add(1), |(p, _)| p.offset)
    }

    fn prune(&mut self, now: Instant) {
        while self.history.len() > self.opts.size {
            self.history.pop_front();
        }
        while self
            .history
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > self.opts.ttl)
        {
            self.history.pop_front();
        }
    }
}

#[derive(Default)]
struct Presence {
    clients: HashMap<String, ClientInfo>,
    users: HashMap<String, u32>,
}

pub struct Shard {
    streams: RefCell<HashMap<Arc<str>, Stream>>,
    /// Channels the node holds subscribers for (their streams never expire).
    subscribed: RefCell<HashSet<Arc<str>>>,
    presence: RefCell<HashMap<Arc<str>, Presence>>,
    idempotency: RefCell<HashMap<IdemKey, (StreamPosition, Instant)>>,
    idempotency_order: RefCell<VecDeque<(IdemKey, Instant)>>,
    sink: Rc<dyn PublicationSink>,
    mesh: Rc<Mesh>,
    limits: Arc<Limits>,
    metrics: Arc<CoreMetrics>,
    epoch_seq: Cell<u32>,
}

/// (channel, idempotency key).
type IdemKey = (Arc<str>, String);

/// The epoch of a stream that does not exist (history reads of unknown channels).
pub const NO_EPOCH: &str = "";

impl Shard {
    pub fn new(
        sink: Rc<dyn PublicationSink>,
        mesh: Rc<Mesh>,
        limits: Arc<Limits>,
        metrics: Arc<CoreMetrics>,
    ) -> Self {
        Shard {
            streams: RefCell::default(),
            subscribed: RefCell::default(),
            presence: RefCell::default(),
            idempotency: RefCell::default(),
            idempotency_order: RefCell::default(),
            sink,
            mesh,
            limits,
            metrics,
            epoch_seq: Cell::new(fastrand::u32(..)),
        }
    }

    fn new_epoch(&self) -> Arc<str> {
        // random per stream, plus a per-shard sequence so two incarnations never share one
        let seq = self.epoch_seq.get().wrapping_add(1);
        self.epoch_seq.set(seq);
        format!("{:04x}{:04x}", fastrand::u16(..), seq as u16).into()
    }

    /// Runs `f` on the stream of `channel`, creating it (within `max_channels`) if missing.
    fn with_stream<R>(
        &self,
        channel: &str,
        opts: HistoryOptions,
        now: Instant,
        f: impl FnOnce(&mut Stream) -> R,
    ) -> Result<R, EngineError> {
        let mut streams = self.streams.borrow_mut();
        if let Some(s) = streams.get_mut(channel) {
            s.opts = opts;
            s.last_used = now;
            return Ok(f(s));
        }
        if !Limits::take(&self.limits.channels, self.limits.max_channels) {
            CoreMetrics::inc(&self.metrics.engine_channel_refusals);
            return Err(EngineError::LimitExceeded);
        }
        CoreMetrics::gauge(&self.metrics.engine_streams, 1);
        let s = streams.entry(Arc::from(channel)).or_insert(Stream {
            epoch: self.new_epoch(),
            top: 0,
            history: VecDeque::new(),
            opts,
            last_used: now,
        });
        Ok(f(s))
    }

    pub fn publish(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOptions,
        published_at: Instant,
    ) -> Result<StreamPosition, EngineError> {
        if self.mesh.congested() {
            // deliveries to a slow core would queue without bound
            CoreMetrics::inc(&self.metrics.publish_rejected);
            return Err(EngineError::Overloaded);
        }
        let now = Instant::now();
        let idem_key = opts
            .idempotency_key
            .as_ref()
            .map(|k| (Arc::<str>::from(channel), k.clone()));
        if let Some(key) = &idem_key {
            if let Some((pos, _)) = self.idempotency.borrow().get(key) {
                return Ok(pos.clone());
            }
        }
        let mut publication = Publication {
            offset: 0,
            data,
            info: opts.info,
            tags: opts.tags,
        };
        let position = if opts.history.enabled() && !opts.skip_history {
            self.with_stream(channel, opts.history, now, |s| {
                s.top += 1;
                publication.offset = s.top;
                s.history.push_back((publication.clone(), now));
                s.prune(now);
                s.position()
            })?
        } else {
            StreamPosition {
                offset: 0,
                epoch: NO_EPOCH.into(),
            }
        };
        if let Some(key) = idem_key {
            self.remember(key, position.clone(), now);
        }
        CoreMetrics::inc(&self.metrics.publishes);
        self.sink.deliver(
            channel,
            &ChannelEvent::Publication(publication),
            published_at,
        );
        Ok(position)
    }

    fn remember(&self, key: IdemKey, pos: StreamPosition, now: Instant) {
        let mut map = self.idempotency.borrow_mut();
        if map.contains_key(&key) {
            return;
        }
        if !Limits::take(
            &self.limits.idempotency_keys,
            self.limits.max_idempotency_keys,
        ) {
            return; // full: this publish just is not deduplicated (counted)
        }
        map.insert(key.clone(), (pos, now));
        self.idempotency_order.borrow_mut().push_back((key, now));
    }

    pub fn join_leave(&self, channel: &str, event: ChannelEvent) {
        self.sink.deliver(channel, &event, Instant::now());
    }

    pub fn subscribe_node(&self, channel: &str) {
        self.subscribed.borrow_mut().insert(Arc::from(channel));
    }

    pub fn unsubscribe_node(&self, channel: &str) {
        self.subscribed.borrow_mut().remove(channel);
        if let Some(s) = self.streams.borrow_mut().get_mut(channel) {
            s.last_used = Instant::now();
        }
    }

    pub fn position(
        &self,
        channel: &str,
        opts: HistoryOptions,
    ) -> Result<StreamPosition, EngineError> {
        if !opts.enabled() {
            return Ok(StreamPosition {
                offset: 0,
                epoch: NO_EPOCH.into(),
            });
        }
        self.with_stream(channel, opts, Instant::now(), |s| s.position())
    }

    pub fn history(
        &self,
        channel: &str,
        q: HistoryQuery,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, EngineError> {
        if !opts.enabled() {
            return Err(EngineError::NotAvailable);
        }
        let now = Instant::now();
        let mut streams = self.streams.borrow_mut();
        let Some(stream) = streams.get_mut(channel) else {
            // reading never creates a stream
            if let Some(since) = &q.since {
                missed_after(since, NO_EPOCH, 0, 1)?;
            }
            return Ok(HistoryResult {
                publications: Vec::new(),
                position: StreamPosition {
                    offset: 0,
                    epoch: NO_EPOCH.into(),
                },
            });
        };
        stream.prune(now);
        let after = match &q.since {
            Some(since) => missed_after(since, &stream.epoch, stream.top, stream.oldest_kept())?,
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
            position: stream.position(),
        })
    }

    pub fn remove_history(&self, channel: &str) {
        if let Some(s) = self.streams.borrow_mut().get_mut(channel) {
            s.history.clear(); // epoch and offset stay: recovery into the gap is refused
        }
    }

    /// Adds a presence entry; returns whether the client was new in the channel.
    pub fn presence_add(&self, channel: &str, info: ClientInfo) -> bool {
        let mut all = self.presence.borrow_mut();
        let p = all.entry(Arc::from(channel)).or_default();
        let user = info.user.clone();
        let new = p.clients.insert(info.client.clone(), info).is_none();
        if new {
            *p.users.entry(user).or_default() += 1;
        }
        new
    }

    /// Removes a presence entry; returns it when it existed.
    pub fn presence_remove(&self, channel: &str, client: &str) -> Option<ClientInfo> {
        let mut all = self.presence.borrow_mut();
        let p = all.get_mut(channel)?;
        let info = p.clients.remove(client)?;
        if let Some(n) = p.users.get_mut(&info.user) {
            *n -= 1;
            if *n == 0 {
                p.users.remove(&info.user);
            }
        }
        if p.clients.is_empty() {
            all.remove(channel);
        }
        Some(info)
    }

    pub fn presence(&self, channel: &str) -> Vec<ClientInfo> {
        self.presence
            .borrow()
            .get(channel)
            .map(|p| p.clients.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn presence_stats(&self, channel: &str) -> PresenceStats {
        self.presence.borrow().get(channel).map_or(
            PresenceStats {
                num_clients: 0,
                num_users: 0,
            },
            |p| PresenceStats {
                num_clients: p.clients.len() as u64,
                num_users: p.users.len() as u64,
            },
        )
    }

    pub fn housekeeping(&self, now: Instant) {
        let subscribed = self.subscribed.borrow();
        let mut dropped = 0;
        self.streams.borrow_mut().retain(|channel, s| {
            s.prune(now);
            let keep = subscribed.contains(channel)
                || !s.history.is_empty()
                || now.duration_since(s.last_used) <= s.opts.ttl;
            dropped += usize::from(!keep);
            keep
        });
        if dropped > 0 {
            self.limits.channels.fetch_sub(dropped, Relaxed);
            CoreMetrics::gauge(&self.metrics.engine_streams, -(dropped as i64));
        }
        let ttl = self.limits.idempotency_ttl;
        let mut order = self.idempotency_order.borrow_mut();
        let mut map = self.idempotency.borrow_mut();
        while order
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > ttl)
        {
            let (key, _) = order.pop_front().expect("checked");
            map.remove(&key);
            self.limits.idempotency_keys.fetch_sub(1, Relaxed);
        }
    }
}
