//! Node-wide state shared by all cores through atomics (never a lock): the
//! count of connected sessions for the per-node limit, each core's count of
//! pending connections, the drain flag set by signals, whether a successor
//! process listens on our address (hand-over), and how many cores are still
//! draining (so all cores exit together) and the drain's progress, the load watcher's shedding flag and readings,
//! and each core's thread id (for the watcher's CPU readings).
//!
//! Two kinds of connection are counted apart (see `net::admit`):
//! - *pending*: accepted but not past the protocol `connect` (HTTP requests,
//!   upgraded WebSockets that have not sent `connect`). Capped per core by
//!   `server.max_pending_connections_per_core`; cheap to refuse.
//! - *connected*: sessions past `connect` (and conformance echo sessions).
//!   Capped per node by `server.max_connections`; this count alone drives
//!   `/health` "shedding", so idle sockets cannot flip a node to 503.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// Load shedding set by the load watcher (`load::watch`), and its last readings in
/// thousandths of each resource's limit.
#[derive(Debug, Default)]
pub struct LoadGauges {
    /// Over the high-water mark (and not yet back below the low one for the dwell time).
    pub overloaded: AtomicBool,
    /// `shedding.memory_limit_bytes` in force (set at start, replaced by SIGHUP).
    pub memory_limit_setting: AtomicU64,
    /// The memory limit of the last reading (0: memory not watched).
    pub memory_limit: AtomicU64,
    pub memory: AtomicU32,
    pub cpu: AtomicU32,
    pub connections: AtomicU32,
    pub shed_total: AtomicU64,
    pub recover_total: AtomicU64,
}

/// Progress of a graceful drain (`runtime::drain`), summed over the cores.
#[derive(Debug, Default)]
pub struct DrainGauges {
    /// Sessions not yet sent their 3001 (counted once the leave-pool wait is over).
    pub sessions_left: AtomicUsize,
    /// Batches of disconnects sent.
    pub batches: AtomicU64,
    /// Disconnects (3001) sent by the drain.
    pub disconnects: AtomicU64,
}

#[derive(Debug, Default)]
pub struct NodeState {
    connected: AtomicUsize,
    /// Pending connections, one slot per core (each written by its own core only).
    pending: Box<[AtomicUsize]>,
    draining: AtomicBool,
    /// A stop signal arrived (set before the hand-over check and the drain flag).
    stopping: AtomicBool,
    /// A successor process listens on our address: listeners are being closed.
    successor: AtomicBool,
    /// Cores whose sessions are not all closed yet (during a drain).
    cores_draining: AtomicUsize,
    pub max_connections: usize,
    pub max_pending_per_core: usize,
    /// Load shedding state and readings.
    pub load: LoadGauges,
    /// Drain progress.
    pub drain: DrainGauges,
    /// Each core's executor thread id (0 until it started), for the load watcher.
    core_threads: Box<[AtomicU32]>,
}

impl NodeState {
    pub fn new(max_connections: usize, max_pending_per_core: usize, cores: usize) -> Self {
        NodeState {
            max_connections,
            max_pending_per_core,
            pending: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            core_threads: (0..cores).map(|_| AtomicU32::new(0)).collect(),
            cores_draining: AtomicUsize::new(cores),
            ..Default::default()
        }
    }

    /// This core has closed all its sessions.
    pub fn core_drained(&self) {
        self.cores_draining.fetch_sub(1, AcqRel);
    }

    /// Every core has closed its sessions: the node may exit.
    pub fn all_drained(&self) -> bool {
        self.cores_draining.load(Acquire) == 0
    }

    /// Reserves a pending slot on `core`; false when the core holds its maximum.
    pub fn try_pending(&self, core: usize) -> bool {
        let slot = &self.pending[core];
        // only this core changes its slot, so load-then-store cannot race
        let n = slot.load(Relaxed);
        if n >= self.max_pending_per_core {
            return false;
        }
        slot.store(n + 1, Relaxed);
        true
    }

    /// Releases a pending slot of `core` (the connection closed or was admitted).
    pub fn pending_done(&self, core: usize) {
        self.pending[core].fetch_sub(1, Relaxed);
    }

    pub fn pending(&self, core: usize) -> usize {
        self.pending[core].load(Relaxed)
    }

    /// Reserves a connected-session slot; false when the node is full.
    pub fn try_admit_connected(&self) -> bool {
        let mut n = self.connected.load(Relaxed);
        loop {
            if n >= self.max_connections {
                return false;
            }
            match self
                .connected
                .compare_exchange_weak(n, n + 1, AcqRel, Relaxed)
            {
                Ok(_) => return true,
                Err(cur) => n = cur,
            }
        }
    }

    /// A session admitted by [`Self::try_admit_connected`] has closed.
    pub fn connected_closed(&self) {
        self.connected.fetch_sub(1, AcqRel);
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Relaxed)
    }

    /// Whether the node sheds load: it holds `max_connections` connected sessions, or the
    /// load watcher found it over its high-water mark.
    pub fn shedding(&self) -> bool {
        self.connected() >= self.max_connections || self.load.overloaded.load(Relaxed)
    }

    /// Records the calling thread as core `core`'s executor thread.
    pub fn set_core_thread(&self, core: usize) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        if let Some(slot) = self.core_threads.get(core) {
            slot.store(tid, Relaxed);
        }
    }

    /// The executor threads of the cores that started.
    pub fn core_threads(&self) -> Vec<u32> {
        self.core_threads
            .iter()
            .map(|t| t.load(Relaxed))
            .filter(|&t| t != 0)
            .collect()
    }

    pub fn start_drain(&self) {
        self.draining.store(true, Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Acquire)
    }

    /// Marks the node as going away at once (`/health` 503), before anything slower.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Release);
    }

    /// A stop signal arrived or the node drains: load balancers must take it out.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Acquire) || self.draining()
    }

    /// A successor listens on our address; set after our listeners were shut down.
    pub fn set_successor(&self) {
        self.successor.store(true, Release);
    }

    pub fn successor(&self) -> bool {
        self.successor.load(Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_limit() {
        let n = NodeState::new(2, 1, 1);
        assert!(n.try_admit_connected() && n.try_admit_connected());
        assert!(!n.try_admit_connected() && n.shedding());
        n.connected_closed();
        assert!(n.try_admit_connected());
        assert!(!n.all_drained());
        n.core_drained();
        assert!(n.all_drained());
    }

    #[test]
    fn pending_is_capped_per_core_and_apart_from_connected() {
        let n = NodeState::new(1, 2, 2);
        assert!(n.try_pending(0) && n.try_pending(0) && !n.try_pending(0));
        assert!(n.try_pending(1), "another core has its own cap");
        assert!(
            !n.shedding(),
            "pending connections do not count toward shedding"
        );
        n.pending_done(0);
        assert_eq!(n.pending(0), 1);
        assert!(n.try_pending(0));
    }
}
