//! The node's Redis I/O thread: one OS thread running a tokio current-thread
//! runtime with the `redis` crate, owning the node's two Redis connections (a
//! reconnecting multiplexed command connection and the PUB/SUB connection).
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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_lite::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Client, RedisResult};

use super::payload;
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

type Job = Box<dyn FnOnce(ConnectionManager) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

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
}

impl RedisNode {
    /// Starts the I/O thread and connects both connections; fails (with the URL, password
    /// hidden) when Redis cannot be reached within `engine.redis.timeout_ms`.
    pub fn start(cfg: &RedisConfig) -> Result<Arc<RedisNode>, RedisError> {
        let shown = super::redacted(&cfg.url);
        let client =
            Client::open(cfg.url.as_str()).map_err(|e| RedisError::Url(shown.clone(), e))?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let (tx, rx) = tokio::sync::mpsc::channel(cfg.pending_limit);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let prefix = format!("{}:ch:{{", cfg.prefix);
        std::thread::Builder::new()
            .name("redis-io".into())
            .spawn(move || io_thread(client, timeout, prefix, rx, ready_tx))
            .map_err(|e| RedisError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Arc::new(RedisNode {
                ops: tx,
                cfg: cfg.clone(),
                deadline: timeout * 2 + Duration::from_millis(500),
            })),
            Ok(Err(e)) => Err(RedisError::Connect(shown, e)),
            Err(_) => Err(RedisError::Thread("the Redis I/O thread ended".into())),
        }
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

    /// Runs `f` with the command connection on the I/O thread and waits for its result.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let _ = tx.send(f(conn).await);
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

/// Where a core's events go, and its counters.
type CoreRoute = (mpsc::Sender<Inbound>, Arc<CoreMetrics>);

/// State of the I/O thread (single-threaded: `Rc`/`RefCell`).
struct Io {
    /// PUB/SUB channel prefix `p:ch:{`.
    prefix: String,
    /// channel -> core receiving its events.
    subs: RefCell<HashMap<Arc<str>, usize>>,
    /// channel -> (epoch, offset) of the last stream publication seen, for gap detection.
    last: RefCell<HashMap<Arc<str>, (String, u64)>>,
    cores: RefCell<Vec<Option<CoreRoute>>>,
    /// Resets that did not fit their core's queue yet.
    pending_resets: RefCell<HashSet<(usize, Arc<str>)>>,
    /// The PUB/SUB command side, `None` while disconnected.
    sink: RefCell<Option<PubSubSink>>,
}

fn io_thread(
    client: Client,
    timeout: Duration,
    prefix: String,
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
        let conn_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = match connect(timeout, client.get_connection_manager_with_config(conn_cfg)).await
        {
            Ok(c) => c,
            Err(e) => return drop(ready.send(Err(e))),
        };
        let (sink, stream) = match connect(timeout, client.get_async_pubsub()).await {
            Ok(ps) => ps.split(),
            Err(e) => return drop(ready.send(Err(e))),
        };
        let io = Rc::new(Io {
            prefix,
            subs: RefCell::default(),
            cores: RefCell::default(),
            pending_resets: RefCell::default(),
            last: RefCell::default(),
            sink: RefCell::new(Some(sink)),
        });
        let _ = ready.send(Ok(()));
        tokio::task::spawn_local(pubsub_loop(io.clone(), client, timeout, stream));
        tokio::task::spawn_local(flush_resets_loop(io.clone()));
        while let Some(op) = rx.recv().await {
            io.handle(op, &conn);
        }
    });
}

async fn connect<T>(
    timeout: Duration,
    fut: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

impl Io {
    fn handle(self: &Rc<Self>, op: Op, conn: &ConnectionManager) {
        match op {
            Op::Run(job) => drop(tokio::task::spawn_local(job(conn.clone()))),
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
                    let sink = io.sink.borrow().clone();
                    let r = match sink {
                        Some(mut s) => s.unsubscribe(io.name(&channel)).await,
                        None => Ok(()), // not connected: nothing to undo
                    };
                    let _ = reply.send(r);
                });
            }
        }
    }

    fn name(&self, channel: &str) -> String {
        format!("{}{channel}}}", self.prefix)
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
    fn dispatch(&self, name: &str, bytes: &[u8]) {
        let Some(channel) = name
            .strip_prefix(self.prefix.as_str())
            .and_then(|c| c.strip_suffix('}'))
        else {
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
    fn count(&self, core: usize, counter: impl Fn(&CoreMetrics) -> &std::sync::atomic::AtomicU64) {
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

    fn reset(&self, core: usize, channel: Arc<str>) {
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

/// Reads the PUB/SUB connection; reconnects, resubscribes and resets when it drops.
async fn pubsub_loop(io: Rc<Io>, client: Client, timeout: Duration, mut stream: PubSubStream) {
    loop {
        while let Some(msg) = stream.next().await {
            io.dispatch(msg.get_channel_name(), msg.get_payload_bytes());
        }
        io.sink.borrow_mut().take();
        tracing::warn!("Redis PUB/SUB connection lost; reconnecting");
        let mut backoff = Duration::from_millis(50);
        stream = loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            match resubscribe(&io, &client, timeout).await {
                Ok(stream) => break stream,
                Err(e) => tracing::debug!(error = %e, "Redis PUB/SUB reconnect failed"),
            }
        };
    }
}

/// A new PUB/SUB connection subscribed to every channel in `subs`, each then reset.
async fn resubscribe(io: &Io, client: &Client, timeout: Duration) -> RedisResult<PubSubStream> {
    let (mut sink, stream) = connect(timeout, client.get_async_pubsub()).await?.split();
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
    *io.sink.borrow_mut() = Some(sink);
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
