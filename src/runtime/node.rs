//! Node-wide state shared by all cores through atomics (never a lock): the
//! connection count for the per-node limit, the drain flag set by signals, and
//! how many cores are still draining (so all cores exit together).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

#[derive(Debug, Default)]
pub struct NodeState {
    connections: AtomicUsize,
    draining: AtomicBool,
    /// Cores whose sessions are not all closed yet (during a drain).
    cores_draining: AtomicUsize,
    pub max_connections: usize,
}

impl NodeState {
    pub fn new(max_connections: usize, cores: usize) -> Self {
        NodeState {
            max_connections,
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

    /// Reserves a connection slot; false when the node is full.
    pub fn try_admit(&self) -> bool {
        let mut n = self.connections.load(Relaxed);
        loop {
            if n >= self.max_connections {
                return false;
            }
            match self
                .connections
                .compare_exchange_weak(n, n + 1, AcqRel, Relaxed)
            {
                Ok(_) => return true,
                Err(cur) => n = cur,
            }
        }
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, AcqRel);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Whether the node is at its connection limit (load shedding).
    pub fn shedding(&self) -> bool {
        self.connections() >= self.max_connections
    }

    pub fn start_drain(&self) {
        self.draining.store(true, Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_limit() {
        let n = NodeState::new(2, 1);
        assert!(n.try_admit() && n.try_admit());
        assert!(!n.try_admit() && n.shedding());
        n.connection_closed();
        assert!(n.try_admit());
        assert!(!n.all_drained());
        n.core_drained();
        assert!(n.all_drained());
    }
}
