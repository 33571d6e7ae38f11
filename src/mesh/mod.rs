//! Cross-core messaging. [`CoreMsg`] lists every message one core sends
//! another; [`Mesh`] carries them over glommio's lock-free SPSC channel mesh.
//!
//! Sending never blocks the caller: when a peer's ring is full, messages wait
//! in a per-peer FIFO drained by a forwarder task, so per-pair order is kept
//! and two cores can never deadlock sending to each other. That FIFO is
//! bounded by admission: publishes are refused (error 111) while any FIFO is
//! over `mesh.pending_limit` ([`Mesh::congested`]); the messages a publish
//! produces are then always accepted.
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

use crate::engine::memory::ShardRequest;
use crate::metrics::CoreMetrics;
use crate::runtime::notify::Notify;

/// Every cross-core message.
#[derive(Debug)]
pub enum CoreMsg {
    /// Core `from` gained (`on`) or lost its first/last local subscriber of `channel`.
    /// The owner answers `ack` once the node is subscribed in the engine.
    Interest {
        channel: Arc<str>,
        from: usize,
        on: bool,
        ack: Option<oneshot::Sender<()>>,
    },
    /// A publication frame, encoded once by the owner, for this core's local subscribers.
    Deliver {
        channel: Arc<str>,
        frame: Bytes,
        published_at: Instant,
    },
    /// Engine work for the channel's owner (memory engine shards).
    Engine(ShardRequest),
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

/// A peer's waiting FIFO is over `mesh.pending_limit`.
#[derive(Debug, thiserror::Error)]
#[error("cross-core queue full")]
pub struct MeshFull;

/// This core's end of the mesh.
pub struct Mesh {
    me: usize,
    ncores: usize,
    senders: Option<Senders<CoreMsg>>,
    pending: RefCell<Vec<VecDeque<CoreMsg>>>,
    wake: Vec<Notify>,
    limit: usize,
    metrics: Arc<CoreMetrics>,
}

/// Per-peer receive ends, for the runtime's dispatch loops.
pub type Inbox = Receivers<CoreMsg>;

impl Mesh {
    /// Joins the mesh (waits for every core) and starts one forwarder task per peer.
    /// Returns this core's index, its sending end and its receiving ends.
    pub async fn join(
        builder: Option<Builder>,
        limit: usize,
        metrics_for: impl FnOnce(usize) -> Arc<CoreMetrics>,
    ) -> (Rc<Mesh>, Option<Inbox>) {
        let (me, ncores, senders, receivers) = match builder {
            None => (0, 1, None, None),
            Some(b) => {
                let n = b.nr_peers();
                let join = crate::runtime::poll_at_least_every(Duration::from_millis(10), b.join());
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
            limit,
            metrics: metrics_for(me),
        });
        for peer in (0..ncores).filter(|&p| p != me) {
            glommio::spawn_local(forward(mesh.clone(), peer)).detach();
        }
        (mesh, receivers)
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
        let senders = self
            .senders
            .as_ref()
            .expect("single-core mesh has no peers");
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

    /// Like [`Mesh::send`], but refuses (dropping `msg`) when `to`'s waiting FIFO is over the limit.
    pub fn try_send(&self, to: usize, msg: CoreMsg) -> Result<(), MeshFull> {
        if self.pending.borrow()[to].len() >= self.limit {
            return Err(MeshFull);
        }
        self.send(to, msg);
        Ok(())
    }

    /// Whether any peer FIFO is over the limit (publishes are then refused with 111).
    pub fn congested(&self) -> bool {
        self.pending.borrow().iter().any(|q| q.len() >= self.limit)
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
}
