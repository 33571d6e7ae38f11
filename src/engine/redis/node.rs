//! [`RedisNode`], the handle cores hold on the node's Redis I/O thread ([`super::io`]):
//! `Send + Sync`, shared by `Arc`. Requests go over one bounded tokio mpsc (a full
//! queue is error 111 for the caller); answers come back on `futures_channel::oneshot`s
//! that a glommio task awaits (glommio accepts wake-ups from foreign threads). Events
//! of the channels a core subscribed arrive on that core's bounded queue
//! ([`Inbound`]), read by a task on the core that hands them to its sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use redis::RedisResult;

use super::connect::{self, Target};
use super::io::{io_thread, Timing};
use super::stats::RedisStats;
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

/// A job runs with the command connection, or `None` while it is down; it tells
/// whether its command failed because the connection broke.
pub(super) type Job = Box<dyn FnOnce(Option<Conn>) -> Pin<Box<dyn Future<Output = bool>>> + Send>;

pub(super) enum Op {
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
