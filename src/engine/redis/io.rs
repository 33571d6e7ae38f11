//! The node's Redis I/O thread: one OS thread running a tokio current-thread
//! runtime with the `redis` crate, owning the node's two Redis connections (a
//! multiplexed command connection and the PUB/SUB connection), each kept by its
//! own loop: `PING` every `health_check_ms`, a broken connection is dropped
//! (connection-up gauge to 0, `/health` 503) and opened again with backoff
//! through [`Target`] (for Sentinel: the current master). Jobs sent while the
//! command connection is down fail at once with a temporary error; a job whose
//! command failed because the connection broke (or the server turned read-only
//! replica) drops that connection (a generation number keeps a late failure from
//! dropping its successor).
//!
//! Cores talk to it through [`super::RedisNode`] ([`super::node`]); events of the
//! channels a core subscribed go to that core's bounded queue ([`Inbound`]). The
//! PUB/SUB connection is kept by [`super::pubsub::keep`].
//!
//! Invariants: one Redis SUBSCRIBE per channel per node (the owner core asks for
//! it; the map `subs` says which core gets the channel's events), never a pattern.
//! After the PUB/SUB connection drops and comes back, every subscribed channel is
//! subscribed again and then reset on its core ([`Inbound::Reset`]: subscribers
//! resubscribe and recover), because messages may have been lost in between. An
//! event that does not fit its core's queue is dropped and its channel reset. A
//! stream publication whose epoch differs from, or whose offset is not one more
//! than, the last one seen on the channel (a lost message, or a stream that
//! restarted with a new epoch) resets the channel too: never a silent gap.
//!
//! On a Redis Cluster (`engine.redis.cluster`) the command connection is a cluster
//! connection and PUB/SUB is sharded (`SSUBSCRIBE` per channel on the slot's
//! node): [`super::shard`] reads it and resubscribes-then-resets channels whose
//! subscription was interrupted (a node connection lost, a slot moved away).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::mpsc;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::RedisResult;
use tokio::sync::Notify;

use super::connect::{self, Conn, Pushes, Target};
use super::node::{Inbound, Op};
use super::payload;
use super::pubsub;
use super::stats::{Link, RedisStats};
use crate::engine::ChannelEvent;
use crate::metrics::CoreMetrics;

/// The PUB/SUB command side: the standalone PUB/SUB connection's sink, or a cluster's
/// sharded PUB/SUB connection (clones share it).
#[derive(Clone)]
pub(super) enum Sub {
    Plain(PubSubSink),
    Shard(ClusterConnection),
}

impl Sub {
    async fn subscribe(&mut self, name: String) -> RedisResult<()> {
        match self {
            Sub::Plain(s) => s.subscribe(name).await,
            Sub::Shard(c) => super::shard::ssubscribe(c, name).await,
        }
    }

    async fn unsubscribe(&mut self, name: String) -> RedisResult<()> {
        match self {
            Sub::Plain(s) => s.unsubscribe(name).await,
            Sub::Shard(c) => c.sunsubscribe(name).await,
        }
    }
}

/// Timings of the connection loops, from the config.
#[derive(Clone, Copy)]
pub(super) struct Timing {
    /// Connect and command deadline.
    pub(super) timeout: Duration,
    /// Period of the `PING` that checks each connection.
    pub(super) health_every: Duration,
    /// Longest wait between reconnect attempts (the backoff doubles from 50 ms up to it).
    pub(super) max_backoff: Duration,
}

impl Timing {
    pub(super) fn backoff(&self, previous: Duration) -> Duration {
        (previous * 2)
            .max(Duration::from_millis(50))
            .min(self.max_backoff)
    }
}

/// The reading side of the first PUB/SUB connection.
enum Incoming {
    Plain(PubSubStream),
    Shard(super::connect::Pushes),
}

/// Where a core's events go, and its counters.
type CoreRoute = (mpsc::Sender<Inbound>, Arc<CoreMetrics>);

/// State of the I/O thread (single-threaded: `Rc`/`RefCell`).
pub(super) struct Io {
    /// PUB/SUB channel prefix `p:ch:{`.
    prefix: String,
    /// channel -> core receiving its events.
    pub(super) subs: RefCell<HashMap<Arc<str>, usize>>,
    /// channel -> (epoch, offset) of the last stream publication seen, for gap detection.
    pub(super) last: RefCell<HashMap<Arc<str>, (String, u64)>>,
    cores: RefCell<Vec<Option<CoreRoute>>>,
    /// Resets that did not fit their core's queue yet.
    pending_resets: RefCell<HashSet<(usize, Arc<str>)>>,
    /// The PUB/SUB command side, `None` while disconnected.
    pub(super) sink: RefCell<Option<Sub>>,
    /// Cluster: channels whose sharded subscription was interrupted, to subscribe again
    /// and then reset ([`super::shard`]).
    pub(super) dirty: RefCell<HashSet<Arc<str>>>,
    /// Wakes the repair of `dirty`.
    pub(super) dirty_added: Notify,
    /// Cluster: `SUNSUBSCRIBE`s this node sent and not yet seen confirmed, per channel (a
    /// confirmation beyond them is the server dropping the subscription: a slot moved).
    pub(super) unsubscribing: RefCell<HashMap<Arc<str>, u32>>,
    /// The command connection with its generation, `None` while disconnected.
    conn: RefCell<Option<(u64, Conn)>>,
    /// Generation of the last command connection opened.
    generation: Cell<u64>,
    /// Wakes the command loop when a job found its connection broken.
    broken: Notify,
    pub(super) stats: Arc<RedisStats>,
    pub(super) target: Target,
    pub(super) timing: Timing,
    /// The target as shown in logs.
    pub(super) shown: String,
}

pub(super) fn io_thread(
    target: Target,
    timing: Timing,
    retry: bool,
    (prefix, shown): (String, String),
    stats: Arc<RedisStats>,
    mut rx: tokio::sync::mpsc::Receiver<Op>,
    ready: std::sync::mpsc::Sender<Result<(), redis::RedisError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(redis::RedisError::from(e)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let first = async {
            let conn = target.command(timing.timeout).await?;
            let pubsub = if target.is_cluster() {
                let (conn, pushes) = target.shard_pubsub(timing.timeout).await?;
                (Sub::Shard(conn), Incoming::Shard(pushes))
            } else {
                let (sink, stream) = target.pubsub(timing.timeout).await?.split();
                (Sub::Plain(sink), Incoming::Plain(stream))
            };
            Ok::<_, redis::RedisError>((conn, pubsub))
        }
        .await;
        let (conn, stream) = match first {
            Ok((conn, (sink, stream))) => (Some((conn, sink)), Some(stream)),
            Err(e) if retry => {
                tracing::warn!(redis = %shown, error = %e, "Redis is unreachable at start-up; starting anyway (engine.redis.connect_retry) and retrying in the background");
                (None, None)
            }
            Err(e) => return drop(ready.send(Err(e))),
        };
        let io = Rc::new(Io {
            prefix,
            subs: RefCell::default(),
            cores: RefCell::default(),
            pending_resets: RefCell::default(),
            last: RefCell::default(),
            sink: RefCell::default(),
            dirty: RefCell::default(),
            dirty_added: Notify::new(),
            unsubscribing: RefCell::default(),
            conn: RefCell::default(),
            generation: Cell::new(0),
            broken: Notify::new(),
            stats,
            target,
            timing,
            shown,
        });
        if let Some((conn, sink)) = conn {
            io.set_conn(conn);
            *io.sink.borrow_mut() = Some(sink);
            io.stats.set_up(Link::PubSub, true);
        }
        let _ = ready.send(Ok(()));
        tokio::task::spawn_local(command_loop(io.clone()));
        match stream {
            Some(Incoming::Plain(stream)) => {
                tokio::task::spawn_local(pubsub::keep(io.clone(), Some(stream)))
            }
            Some(Incoming::Shard(pushes)) => {
                tokio::task::spawn_local(pubsub::keep(io.clone(), Some(pushes)))
            }
            None if io.target.is_cluster() => {
                tokio::task::spawn_local(pubsub::keep::<Pushes>(io.clone(), None))
            }
            None => tokio::task::spawn_local(pubsub::keep::<PubSubStream>(io.clone(), None)),
        };
        tokio::task::spawn_local(super::shard::repair_loop(io.clone()));
        tokio::task::spawn_local(flush_resets_loop(io.clone()));
        while let Some(op) = rx.recv().await {
            io.handle(op);
        }
    });
}

/// Keeps the command connection: checks it every `health_check_ms` with `PING`,
/// drops it when that fails or a job found it broken, and reconnects with backoff
/// (for Sentinel: to the master the sentinels name now).
async fn command_loop(io: Rc<Io>) {
    let mut was_up = io.conn.borrow().is_some();
    let mut backoff = Duration::ZERO;
    loop {
        let current = io.conn.borrow().clone();
        let Some((generation, mut conn)) = current else {
            tokio::time::sleep(backoff).await;
            backoff = io.timing.backoff(backoff);
            match io.target.command(io.timing.timeout).await {
                Ok(conn) => {
                    io.set_conn(conn);
                    backoff = Duration::ZERO;
                    if was_up {
                        io.stats.reconnected(Link::Command);
                    }
                    was_up = true;
                    tracing::info!(redis = %io.shown, "Redis command connection up");
                }
                Err(e) => {
                    io.stats.connect_failed(Link::Command);
                    tracing::debug!(redis = %io.shown, error = %e, "Redis command connection: connect failed");
                }
            }
            continue;
        };
        tokio::select! {
            () = io.broken.notified() => {} // the loop looks at the connection again
            () = tokio::time::sleep(io.timing.health_every) => {
                let ping = connect::within(
                    io.timing.timeout,
                    redis::cmd("PING").query_async::<()>(&mut conn),
                )
                .await;
                if let Err(e) = ping {
                    tracing::debug!(error = %e, "Redis health check failed");
                    io.drop_conn(generation);
                }
            }
        }
    }
}

impl Io {
    fn set_conn(&self, conn: Conn) {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        *self.conn.borrow_mut() = Some((generation, conn));
        self.stats.set_up(Link::Command, true);
    }

    /// Drops the command connection of `generation` (a newer one stays).
    fn drop_conn(&self, generation: u64) {
        let mut conn = self.conn.borrow_mut();
        if conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            *conn = None;
            self.stats.set_up(Link::Command, false);
            tracing::warn!(redis = %self.shown, "Redis command connection lost; reconnecting");
            self.broken.notify_one();
        }
    }

    fn handle(self: &Rc<Self>, op: Op) {
        match op {
            Op::Run(job) => {
                let current = self.conn.borrow().clone();
                let Some((generation, conn)) = current else {
                    return drop(tokio::task::spawn_local(job(None)));
                };
                let io = self.clone();
                tokio::task::spawn_local(async move {
                    let started = Instant::now();
                    let broken = job(Some(conn)).await;
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    io.stats.command_latency.record_us(us);
                    if broken {
                        io.drop_conn(generation);
                    }
                });
            }
            Op::Register { core, tx, metrics } => {
                let mut cores = self.cores.borrow_mut();
                if cores.len() <= core {
                    cores.resize_with(core + 1, || None);
                }
                cores[core] = Some((tx, metrics));
            }
            Op::Subscribe {
                channel,
                core,
                reply,
            } => {
                let io = self.clone();
                tokio::task::spawn_local(async move {
                    let _ = reply.send(io.subscribe(channel, core).await);
                });
            }
            Op::Unsubscribe { channel, reply } => {
                let io = self.clone();
                tokio::task::spawn_local(async move {
                    io.subs.borrow_mut().remove(&channel);
                    io.last.borrow_mut().remove(&channel);
                    io.dirty.borrow_mut().remove(&channel);
                    let sink = io.sink.borrow().clone();
                    let r = match sink {
                        Some(mut s) => {
                            let shard = matches!(s, Sub::Shard(_));
                            if shard {
                                *io.unsubscribing
                                    .borrow_mut()
                                    .entry(channel.clone())
                                    .or_default() += 1;
                            }
                            let r = s.unsubscribe(io.name(&channel)).await;
                            if shard && r.is_err() {
                                io.unsubscribe_seen(&channel);
                            }
                            r
                        }
                        None => Ok(()), // not connected: nothing to undo
                    };
                    let _ = reply.send(r);
                });
            }
        }
    }

    /// The subscribed channels and the core each belongs to.
    pub(super) fn subscribed(&self) -> Vec<(Arc<str>, usize)> {
        self.subs
            .borrow()
            .iter()
            .map(|(c, core)| (c.clone(), *core))
            .collect()
    }

    pub(super) fn name(&self, channel: &str) -> String {
        format!("{}{channel}}}", self.prefix)
    }

    /// The engine channel of a PUB/SUB channel name (`None`: not one of ours).
    pub(super) fn channel_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.prefix.as_str())
            .and_then(|c| c.strip_suffix('}'))
    }

    /// Counts one confirmation of a `SUNSUBSCRIBE` this node sent; false when none was
    /// pending (the server dropped the subscription by itself).
    pub(super) fn unsubscribe_seen(&self, channel: &str) -> bool {
        let mut pending = self.unsubscribing.borrow_mut();
        match pending.get_mut(channel) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                pending.remove(channel);
                true
            }
            None => false,
        }
    }

    async fn subscribe(&self, channel: Arc<str>, core: usize) -> RedisResult<()> {
        // routed before the confirmation, so nothing published after it is missed
        self.subs.borrow_mut().insert(channel.clone(), core);
        let sink = self.sink.borrow().clone();
        let r = match sink {
            Some(mut s) => s.subscribe(self.name(&channel)).await,
            None => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "PUB/SUB connection is down",
            ))),
        };
        if r.is_err() {
            self.subs.borrow_mut().remove(&channel);
        }
        r
    }

    /// Hands one PUB/SUB message to the core that subscribed its channel.
    pub(super) fn dispatch(&self, name: &str, bytes: &[u8]) {
        let Some(channel) = self.channel_of(name) else {
            return;
        };
        let Some((channel, core)) = self
            .subs
            .borrow()
            .get_key_value(channel)
            .map(|(k, v)| (k.clone(), *v))
        else {
            return; // unsubscribed meanwhile
        };
        if self
            .pending_resets
            .borrow()
            .contains(&(core, channel.clone()))
        {
            return; // its subscribers will resubscribe and recover anyway
        }
        let event = match payload::decode_message(&Bytes::copy_from_slice(bytes)) {
            Ok(m) if self.continues(&channel, &m) => m.event,
            Ok(_) => {
                tracing::debug!(%channel, "stream gap or new epoch in the live stream; resetting the channel");
                return self.reset(core, channel);
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "undecodable Redis message; resetting the channel");
                return self.reset(core, channel);
            }
        };
        if !self.push(core, Inbound::Event(channel.clone(), event)) {
            self.count(core, |m| &m.engine_redis_dropped);
            self.reset(core, channel);
        }
    }

    /// Counts on `core`'s metrics (atomics: the I/O thread adds to the core's counters).
    pub(super) fn count(
        &self,
        core: usize,
        counter: impl Fn(&CoreMetrics) -> &std::sync::atomic::AtomicU64,
    ) {
        if let Some(Some((_, m))) = self.cores.borrow().get(core) {
            CoreMetrics::inc(counter(m));
        }
    }

    /// Whether a stream publication follows the last one seen (same epoch, offset + 1);
    /// records it. Publications outside the stream (offset 0) and the first one seen
    /// always continue.
    fn continues(&self, channel: &Arc<str>, m: &payload::Message) -> bool {
        let ChannelEvent::Publication(p) = &m.event else {
            return true;
        };
        if p.offset == 0 {
            return true;
        }
        let mut last = self.last.borrow_mut();
        let ok = match last.get(channel) {
            Some((epoch, offset)) => *epoch == m.epoch && p.offset == offset.saturating_add(1),
            None => true,
        };
        last.insert(channel.clone(), (m.epoch.clone(), p.offset));
        ok
    }

    /// Tries to queue `msg` for `core`; false when its queue is full.
    fn push(&self, core: usize, msg: Inbound) -> bool {
        let mut cores = self.cores.borrow_mut();
        match cores.get_mut(core).and_then(Option::as_mut) {
            Some((tx, _)) => match tx.try_send(msg) {
                Ok(()) => true,
                Err(e) => e.is_disconnected(), // a core that is gone wants nothing
            },
            None => true,
        }
    }

    pub(super) fn reset(&self, core: usize, channel: Arc<str>) {
        if !self.push(core, Inbound::Reset(channel.clone())) {
            self.pending_resets.borrow_mut().insert((core, channel));
        }
    }
}

/// Retries resets that did not fit their core's queue.
async fn flush_resets_loop(io: Rc<Io>) {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pending: Vec<_> = io.pending_resets.borrow_mut().drain().collect();
        for (core, channel) in pending {
            io.reset(core, channel);
        }
    }
}
