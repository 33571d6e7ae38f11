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
//! Cores talk to it through [`RedisNode`] (`Send + Sync`, shared by `Arc`):
//! requests go over one bounded tokio mpsc (a full queue is error 111 for the
//! caller), answers come back on `futures_channel::oneshot`s that a glommio task
//! awaits (glommio accepts wake-ups from foreign threads). Events of channels a
//! core subscribed go to that core's bounded queue ([`Inbound`]), read by a task
//! on that core that hands them to its sink.
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
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_lite::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::RedisResult;
use tokio::sync::Notify;

use super::connect::{self, Target};
use super::payload;
use super::stats::{Link, RedisStats};
use super::RedisError;
use crate::config::RedisConfig;
use crate::engine::{ChannelEvent, EngineError};
use crate::metrics::CoreMetrics;

/// What a core receives from the I/O thread.
#[derive(Debug)]
pub enum Inbound {
    Event(Arc<str>, ChannelEvent),
    Reset(Arc<str>),
}

pub use super::connect::Conn;

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

/// A job runs with the command connection, or `None` while it is down; it tells
/// whether its command failed because the connection broke.
type Job = Box<dyn FnOnce(Option<Conn>) -> Pin<Box<dyn Future<Output = bool>>> + Send>;

enum Op {
    Run(Job),
    Register {
        core: usize,
        tx: mpsc::Sender<Inbound>,
        metrics: Arc<CoreMetrics>,
    },
    Subscribe {
        channel: Arc<str>,
        core: usize,
        reply: oneshot::Sender<RedisResult<()>>,
    },
    Unsubscribe {
        channel: Arc<str>,
        reply: oneshot::Sender<RedisResult<()>>,
    },
}

/// The node's handle on its Redis I/O thread.
pub struct RedisNode {
    ops: tokio::sync::mpsc::Sender<Op>,
    pub(super) cfg: RedisConfig,
    /// Wait for an answer: the command deadline plus a margin for the queue.
    deadline: Duration,
    stats: Arc<RedisStats>,
}

/// Timings of the connection loops, from the config.
#[derive(Clone, Copy)]
pub(super) struct Timing {
    /// Connect and command deadline.
    pub(super) timeout: Duration,
    /// Period of the `PING` that checks each connection.
    pub(super) health_every: Duration,
    /// Longest wait between reconnect attempts (the backoff doubles from 50 ms up to it).
    max_backoff: Duration,
}

impl Timing {
    pub(super) fn backoff(&self, previous: Duration) -> Duration {
        (previous * 2)
            .max(Duration::from_millis(50))
            .min(self.max_backoff)
    }
}

impl RedisNode {
    /// Starts the I/O thread and connects both connections. Fails (with the target,
    /// passwords hidden) when Redis cannot be reached within `engine.redis.timeout_ms`,
    /// unless `engine.redis.connect_retry` is set: then it starts anyway and the I/O
    /// thread keeps trying in the background (engine calls fail with a temporary
    /// error meanwhile, `/health` answers 503).
    pub fn start(cfg: &RedisConfig) -> Result<Arc<RedisNode>, RedisError> {
        let shown = connect::shown(cfg);
        let target = Target::new(cfg)?;
        let timing = Timing {
            timeout: Duration::from_millis(cfg.timeout_ms),
            health_every: Duration::from_millis(cfg.health_check_ms),
            max_backoff: Duration::from_millis(cfg.reconnect_max_delay_ms),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(cfg.pending_limit);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let prefix = format!("{}:ch:{{", cfg.prefix);
        let stats = Arc::new(RedisStats::default());
        let retry = cfg.connect_retry;
        let thread_stats = stats.clone();
        let thread_shown = shown.clone();
        std::thread::Builder::new()
            .name("redis-io".into())
            .spawn(move || {
                io_thread(
                    target,
                    timing,
                    retry,
                    (prefix, thread_shown),
                    thread_stats,
                    rx,
                    ready_tx,
                )
            })
            .map_err(|e| RedisError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Arc::new(RedisNode {
                ops: tx,
                cfg: cfg.clone(),
                deadline: timing.timeout * 2 + Duration::from_millis(500),
                stats,
            })),
            Ok(Err(e)) => Err(RedisError::Connect(shown, e)),
            Err(_) => Err(RedisError::Thread("the Redis I/O thread ended".into())),
        }
    }

    /// `SPUBLISH` on a Redis Cluster (sharded PUB/SUB), else `PUBLISH`.
    pub fn publish_command(&self) -> &'static str {
        if self.cfg.cluster.is_empty() {
            "PUBLISH"
        } else {
            "SPUBLISH"
        }
    }

    /// The node's Redis connection metrics.
    pub fn stats(&self) -> &RedisStats {
        &self.stats
    }

    /// Whether both connections are up (what `/health` reports).
    pub fn is_up(&self) -> bool {
        self.stats.all_up()
    }

    fn send(&self, op: Op) -> Result<(), EngineError> {
        self.ops.try_send(op).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => {
                EngineError::Internal("redis: the I/O thread stopped".into())
            }
        })
    }

    async fn answer<T>(&self, rx: oneshot::Receiver<RedisResult<T>>) -> Result<T, EngineError> {
        match crate::exec::timeout(self.deadline, rx).await {
            Some(Ok(Ok(v))) => Ok(v),
            Some(Ok(Err(e))) => Err(EngineError::Internal(format!("redis: {e}"))),
            Some(Err(_)) => Err(EngineError::Internal(
                "redis: the I/O thread stopped".into(),
            )),
            None => Err(EngineError::Internal("redis: no answer in time".into())),
        }
    }

    /// Runs `f` with the command connection on the I/O thread and waits for its
    /// result; fails at once (temporary error) while the connection is down.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                // a cluster connection repairs its node connections itself
                let repairs_itself = conn.as_ref().is_some_and(Conn::is_cluster);
                let r = match conn {
                    Some(conn) => f(conn).await,
                    None => Err(down("the command connection")),
                };
                let broken = !repairs_itself && matches!(&r, Err(e) if connect::is_broken(e));
                let _ = tx.send(r);
                broken
            })
        });
        self.send(Op::Run(job))?;
        self.answer(rx).await
    }

    /// Routes this core's channel events to `tx` (called once per core, before subscribing).
    pub fn register(
        &self,
        core: usize,
        tx: mpsc::Sender<Inbound>,
        metrics: Arc<CoreMetrics>,
    ) -> Result<(), EngineError> {
        self.send(Op::Register { core, tx, metrics })
    }

    /// SUBSCRIBEs the node to `channel`; its events go to `core`.
    pub async fn subscribe(&self, channel: &str, core: usize) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Subscribe {
            channel: channel.into(),
            core,
            reply,
        })?;
        self.answer(rx).await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Unsubscribe {
            channel: channel.into(),
            reply,
        })?;
        self.answer(rx).await
    }
}

/// The error of a call made while `what` is down.
fn down(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("Redis is unreachable ({what} is down, reconnecting)"),
    ))
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

fn io_thread(
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
                tokio::task::spawn_local(pubsub_loop(io.clone(), Some(stream)))
            }
            Some(Incoming::Shard(pushes)) => {
                tokio::task::spawn_local(super::shard::pubsub_loop(io.clone(), Some(pushes)))
            }
            None if io.target.is_cluster() => {
                tokio::task::spawn_local(super::shard::pubsub_loop(io.clone(), None))
            }
            None => tokio::task::spawn_local(pubsub_loop(io.clone(), None)),
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

/// Reads the PUB/SUB connection (checked with `PING` every `health_check_ms`);
/// when it drops, reconnects with backoff (for Sentinel: to the current master),
/// resubscribes and resets. Starts without a connection under `connect_retry`.
async fn pubsub_loop(io: Rc<Io>, mut stream: Option<PubSubStream>) {
    let mut was_up = stream.is_some();
    loop {
        if let Some(mut s) = stream.take() {
            read_until_lost(&io, &mut s).await;
            io.sink.borrow_mut().take();
            io.stats.set_up(Link::PubSub, false);
            tracing::warn!(redis = %io.shown, "Redis PUB/SUB connection lost; reconnecting");
        }
        let mut backoff = Duration::ZERO;
        stream = Some(loop {
            tokio::time::sleep(backoff).await;
            backoff = io.timing.backoff(backoff);
            match connect::within(io.timing.timeout * 2, resubscribe(&io)).await {
                Ok(s) => break s,
                Err(e) => {
                    io.stats.connect_failed(Link::PubSub);
                    tracing::debug!(redis = %io.shown, error = %e, "Redis PUB/SUB reconnect failed");
                }
            }
        });
        if was_up {
            io.stats.reconnected(Link::PubSub);
        }
        was_up = true;
        io.stats.set_up(Link::PubSub, true);
    }
}

/// Dispatches the stream's messages until it ends or a health `PING` fails.
async fn read_until_lost(io: &Io, stream: &mut PubSubStream) {
    let mut next_check = tokio::time::Instant::now() + io.timing.health_every;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => io.dispatch(msg.get_channel_name(), msg.get_payload_bytes()),
                None => return,
            },
            () = tokio::time::sleep_until(next_check) => {
                let sink = io.sink.borrow().clone();
                let Some(Sub::Plain(mut sink)) = sink else { return };
                let ping = connect::within(io.timing.timeout, sink.ping::<redis::Value>()).await;
                if let Err(e) = ping {
                    tracing::debug!(error = %e, "Redis PUB/SUB health check failed");
                    return;
                }
                next_check = tokio::time::Instant::now() + io.timing.health_every;
            }
        }
    }
}

/// A new PUB/SUB connection subscribed to every channel in `subs`, each then reset.
async fn resubscribe(io: &Io) -> RedisResult<PubSubStream> {
    let (mut sink, stream) = io.target.pubsub(io.timing.timeout).await?.split();
    let channels: Vec<(Arc<str>, usize)> = io
        .subs
        .borrow()
        .iter()
        .map(|(c, core)| (c.clone(), *core))
        .collect();
    for chunk in channels.chunks(512) {
        let names: Vec<String> = chunk.iter().map(|(c, _)| io.name(c)).collect();
        sink.subscribe(&names).await?;
    }
    *io.sink.borrow_mut() = Some(Sub::Plain(sink));
    io.last.borrow_mut().clear();
    tracing::info!(
        channels = channels.len(),
        "Redis PUB/SUB reconnected; channels resubscribed and reset"
    );
    for (channel, core) in channels {
        io.count(core, |m| &m.engine_redis_resubscribes);
        io.reset(core, channel);
    }
    Ok(stream)
}
