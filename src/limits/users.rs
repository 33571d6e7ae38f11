//! Connections per user (the token's `sub`): the interface a cluster-wide registry (the
//! Redis engine) will implement, and the node-local implementation used today.
//!
//! Called at `connect` through the connection's [`super::ConnLease`], which releases what it
//! acquired when the connection ends. Anonymous connections (empty user) are not counted.
//! Invariant: every `acquire` that returned true is matched by one `release` of the same
//! user.

use super::sketch::CountSketch;

/// Counts the open connections of each user; an implementation may be node-local or shared
/// by the cluster.
pub trait UserConnections: Send + Sync + std::fmt::Debug {
    /// Counts one more connection of `user`; false (nothing counted) when `user` already
    /// holds `max`.
    fn acquire(&self, user: &str, max: u32) -> bool;
    /// One connection of `user` counted by `acquire` has closed.
    fn release(&self, user: &str);
}

/// Node-local: a [`CountSketch`] of user-id hashes shared by every core.
#[derive(Debug)]
pub struct LocalUsers {
    counts: CountSketch,
    hasher: ahash::RandomState,
}

impl LocalUsers {
    pub fn new(width: usize) -> Self {
        LocalUsers {
            counts: CountSketch::new(width),
            hasher: ahash::RandomState::new(),
        }
    }
}

impl UserConnections for LocalUsers {
    fn acquire(&self, user: &str, max: u32) -> bool {
        self.counts.try_inc(self.hasher.hash_one(user), max)
    }

    fn release(&self, user: &str) {
        self.counts.dec(self.hasher.hash_one(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_user() {
        let u = LocalUsers::new(256);
        assert!(u.acquire("alice", 2) && u.acquire("alice", 2));
        assert!(!u.acquire("alice", 2));
        assert!(u.acquire("bob", 2));
        u.release("alice");
        assert!(u.acquire("alice", 2));
    }
}
