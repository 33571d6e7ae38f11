//! Cross-core messaging. [`CoreMsg`] lists every message one core sends
//! another; [`Mesh`] carries them over glommio's lock-free SPSC channel mesh.
//!
//! The mesh is generic: it knows channels (interest, frames to deliver, stream
//! resets) and "run this `Send` closure on core N" ([`Mesh::call`]), never an
//! engine. An engine that shards its state across cores (the memory engine)
//! ships closures that find the target core's shard there.
//!
//! Sending never blocks the caller: when a peer's ring is full, messages wait
//! in a per-peer FIFO drained by a forwarder task, so per-pair order is kept
//! and two cores can never deadlock sending to each other. That FIFO is
//! bounded by admission: calls and publishes are refused (error 111) while the
//! FIFO towards their target is over `mesh.pending_limit` ([`Mesh::congested`]).
//! Every wait for another core ([`Mesh::call`]) has a deadline
//! (`mesh.call_timeout_ms`) and a metric.
//!
//! Core indexes are mesh peer ids; [`owner_of`] maps a channel to the core
//! that owns its stream and its node-level interest.

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{GlommioError, ResourceType};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exec::Notify;
use crate::metrics::CoreMetrics;

/// Answer to an interest announcement: `Err` carries why the node could not subscribe.
pub type InterestAck = oneshot::Sender<Result<(), String>>;

/// Work for another core.
pub type Task = Box<dyn FnOnce() + Send>;

/// Every cross-core message.
pub enum CoreMsg {
    /// Core `from` gained (`on`) or lost its first/last local subscriber of `channel`.
    /// The owner answers `ack` once the node is subscribed in the engine (or failed to).
    Interest {
        channel: Arc<str>,
        from: usize,
        on: bool,
        ack: Option<InterestAck>,
    },
    /// A frame encoded once by the owner for this core's local subscribers. `offset` is the
    /// publication's stream offset (0 for frames outside the stream: join/leave).
    Deliver {
        channel: Arc<str>,
        frame: Bytes,
        offset: u64,
        published_at: Instant,
    },
    /// The channel's stream lost its continuity: local subscribers must resubscribe.
    Reset { channel: Arc<str> },
    /// Run on the receiving core.
    Run(Task),
}

impl std::fmt::Debug for CoreMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreMsg::Interest { channel, on, .. } => write!(f, "Interest({channel}, {on})"),
            CoreMsg::Deliver {
                channel, offset, ..
            } => write!(f, "Deliver({channel}, {offset})"),
            CoreMsg::Reset { channel } => write!(f, "Reset({channel})"),
            CoreMsg::Run(_) => f.write_str("Run"),
        }
    }
}

/// The mesh builder every executor joins (cloned into each).
pub type Builder = MeshBuilder<CoreMsg, Full>;

pub fn builder(ncores: usize, capacity: usize) -> Builder {
    MeshBuilder::full(ncores, capacity)
}

/// The core that owns `channel` (its stream and its node-level interest).
pub fn owner_of(channel: &str, ncores: usize) -> usize {
    if ncores == 1 {
        return 0;
    }
    let h = ahash::RandomState::with_seeds(0x5157, 0x7e1e, 0xc0de, 0xfeed).hash_one(channel);
    (h % ncores as u64) as usize
}

/// Why a cross-core call did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("cross-core queue full")]
    Full,
    #[error("core {0} did not answer in time")]
    Timeout(usize),
    #[error("core {0} is gone")]
    Gone(usize),
}

/// This core's end of the mesh.
pub struct Mesh {
    me: usize,
    ncores: usize,
    senders: Option<Senders<CoreMsg>>,
    pending: RefCell<Vec<VecDeque<CoreMsg>>>,
    wake: Vec<Notify>,
    limit: usize,
    call_timeout: Duration,
    metrics: Arc<CoreMetrics>,
}

/// Per-peer receive ends, for the runtime's dispatch loops.
pub type Inbox = Receivers<CoreMsg>;

/// Mesh settings (from `[mesh]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub pending: usize,
    pub call_timeout: Duration,
}

impl Mesh {
    /// Joins the mesh (waits for every core) and starts one forwarder task per peer.
    /// Returns this core's index, its sending end and its receiving ends.
    pub async fn join(
        builder: Option<Builder>,
        limits: Limits,
        metrics_for: impl FnOnce(usize) -> Arc<CoreMetrics>,
    ) -> (Rc<Mesh>, Option<Inbox>) {
        let (me, ncores, senders, receivers) = match builder {
            None => (0, 1, None, None),
            Some(b) => {
                let n = b.nr_peers();
                let join = crate::exec::poll_at_least_every(Duration::from_millis(10), b.join());
                let (s, r) = join.await.expect("joining the core mesh");
                (s.peer_id(), n, Some(s), Some(r))
            }
        };
        let mesh = Rc::new(Mesh {
            me,
            ncores,
            senders,
            pending: RefCell::new((0..ncores).map(|_| VecDeque::new()).collect()),
            wake: (0..ncores).map(|_| Notify::default()).collect(),
            limit: limits.pending,
            call_timeout: limits.call_timeout,
            metrics: metrics_for(me),
        });
        for peer in (0..ncores).filter(|&p| p != me) {
            crate::exec::spawn_critical("mesh-forward", forward(mesh.clone(), peer));
        }
        (mesh, receivers)
    }

    /// A single-core mesh (no peers), for tests of the rooms above it.
    pub fn single(metrics: Arc<CoreMetrics>) -> Rc<Mesh> {
        Rc::new(Mesh {
            me: 0,
            ncores: 1,
            senders: None,
            pending: RefCell::new(vec![VecDeque::new()]),
            wake: vec![Notify::default()],
            limit: usize::MAX,
            call_timeout: Duration::from_secs(5),
            metrics,
        })
    }

    pub fn me(&self) -> usize {
        self.me
    }

    pub fn ncores(&self) -> usize {
        self.ncores
    }

    /// Queues `msg` for core `to` (never this core). Never blocks, never refuses.
    pub fn send(&self, to: usize, msg: CoreMsg) {
        debug_assert_ne!(to, self.me);
        let Some(senders) = self.senders.as_ref() else {
            return; // single core: there is nobody to send to
        };
        let mut pending = self.pending.borrow_mut();
        let queue = &mut pending[to];
        let msg = if queue.is_empty() {
            match senders.try_send_to(to, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => msg,
                Err(_) => return, // the peer is gone: the node is stopping
            }
        } else {
            msg
        };
        queue.push_back(msg);
        CoreMetrics::gauge(&self.metrics.mesh_pending, 1);
        self.wake[to].notify();
    }

    /// Whether the FIFO towards `to` is over the limit.
    pub fn congested_towards(&self, to: usize) -> bool {
        to != self.me && self.pending.borrow()[to].len() >= self.limit
    }

    /// Whether any peer FIFO is over the limit (an owner refuses publishes then: its
    /// deliveries to a slow core would otherwise queue without bound).
    pub fn congested(&self) -> bool {
        self.pending.borrow().iter().any(|q| q.len() >= self.limit)
    }

    /// Runs `f` on core `to` and returns its result, within `mesh.call_timeout_ms`.
    /// Refused at once while the FIFO towards `to` is over the limit.
    pub async fn call<T: Send + 'static>(
        &self,
        to: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CallError> {
        if to == self.me {
            return Ok(f());
        }
        if self.congested_towards(to) {
            CoreMetrics::inc(&self.metrics.mesh_refused);
            return Err(CallError::Full);
        }
        let (tx, rx) = oneshot::channel();
        self.send(
            to,
            CoreMsg::Run(Box::new(move || {
                let _ = tx.send(f());
            })),
        );
        match crate::exec::timeout(self.call_timeout, rx).await {
            Some(Ok(v)) => Ok(v),
            Some(Err(_)) => Err(CallError::Gone(to)),
            None => {
                CoreMetrics::inc(&self.metrics.mesh_call_timeouts);
                Err(CallError::Timeout(to))
            }
        }
    }

    /// The deadline of every wait for another core.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }
}

async fn forward(mesh: Rc<Mesh>, peer: usize) {
    let senders = mesh
        .senders
        .as_ref()
        .expect("forwarders exist only with peers");
    loop {
        mesh.wake[peer].wait().await;
        loop {
            let Some(msg) = mesh.pending.borrow_mut()[peer].pop_front() else {
                break;
            };
            CoreMetrics::gauge(&mesh.metrics.mesh_pending, -1);
            if senders.send_to(peer, msg).await.is_err() {
                return; // peer gone: the node is shutting down
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_spread() {
        assert_eq!(owner_of("news", 1), 0);
        assert_eq!(owner_of("news", 4), owner_of("news", 4));
        let owners: std::collections::HashSet<usize> =
            (0..100).map(|i| owner_of(&format!("ch{i}"), 4)).collect();
        assert_eq!(owners.len(), 4);
    }

    /// A core that stops draining its inbox: the FIFO towards it fills to the limit, then
    /// calls to it are refused at once and an owner refuses publishes (their deliveries
    /// would queue without bound), answered as "overloaded" (error 111).
    #[test]
    fn a_peer_that_does_not_drain_congests_the_mesh_and_publishes_are_refused() {
        use crate::engine::{Engine, EngineError, HistoryOptions, PublishOptions};
        let limits = Limits {
            pending: 4,
            call_timeout: Duration::from_millis(300),
        };
        let b = builder(2, 1);
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let b1 = b.clone();
        let idle = glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .spawn(move || async move {
                // joins, then holds its inbox without reading it
                let (_mesh, _inbox) =
                    Mesh::join(Some(b1), limits, |i| Arc::new(CoreMetrics::new(i))).await;
                while stop_rx.try_recv().is_err() {
                    crate::exec::sleep(Duration::from_millis(10)).await;
                }
            })
            .expect("executor");
        glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .make()
            .expect("executor")
            .run(async move {
                let metrics = Arc::new(CoreMetrics::new(0));
                let m = metrics.clone();
                let (mesh, _inbox) = Mesh::join(Some(b), limits, move |_| m).await;
                let peer = 1 - mesh.me();
                assert!(!mesh.congested());
                for _ in 0..16 {
                    mesh.send(
                        peer,
                        CoreMsg::Reset {
                            channel: "c".into(),
                        },
                    );
                }
                crate::exec::sleep(Duration::from_millis(20)).await;
                assert!(mesh.congested());
                assert_eq!(mesh.call(peer, || 1).await, Err(CallError::Full));
                let sink = Rc::new(crate::engine::conformance::Recorder::default());
                let engine = crate::engine::memory::MemoryEngine::new(
                    mesh.clone(),
                    sink.clone(),
                    crate::engine::memory::Limits::new(&Default::default()),
                    metrics.clone(),
                );
                let opts = PublishOptions {
                    history: HistoryOptions {
                        size: 10,
                        ttl: Duration::from_secs(60),
                    },
                    ..Default::default()
                };
                // whichever core owns these channels, nothing is accepted or delivered
                for ch in ["a", "b", "c", "d"] {
                    let r = engine.publish(ch, bytes::Bytes::from_static(b"1"), opts.clone());
                    assert_eq!(r.await, Err(EngineError::Overloaded), "{ch}");
                }
                assert!(sink.events.borrow().is_empty());
                stop_tx.send(()).unwrap();
            });
        idle.join().unwrap();
    }
}
