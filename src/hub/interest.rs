//! Owner-side interest table: for each channel this core owns, the set of cores
//! that have at least one subscriber, and the state of the node's engine
//! subscription. Pure data; the transitions are driven by `hub::owner`.
//!
//! Invariant: at most one engine subscribe/unsubscribe per channel is in flight
//! (`busy`); an entry exists while a core is interested or an engine call is in
//! flight; while the engine subscription is not `on`, every interested core is
//! waiting for an answer in `waiting`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::mesh::InterestAck;

/// Most cores one node supports (a fixed-size bitset keeps entries small).
pub const MAX_CORES: usize = 256;

/// A set of core indexes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreSet([u64; MAX_CORES / 64]);

impl CoreSet {
    pub fn insert(&mut self, core: usize) {
        self.0[core / 64] |= 1 << (core % 64);
    }

    pub fn remove(&mut self, core: usize) {
        self.0[core / 64] &= !(1 << (core % 64));
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Members in increasing order (visits only set bits).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            let mut w = word;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + bit
                })
            })
        })
    }
}

/// One owned channel's interest and engine-subscription state.
#[derive(Default)]
pub struct Interest {
    pub cores: CoreSet,
    /// The node's engine subscription is in place.
    pub on: bool,
    /// An engine subscribe/unsubscribe is in flight.
    pub busy: bool,
    /// Cores waiting to hear that the subscription is in place (or failed).
    pub waiting: Vec<(usize, InterestAck)>,
}

pub type InterestTable = HashMap<Arc<str>, Interest, ahash::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_set_iterates_members() {
        let mut s = CoreSet::default();
        assert!(s.is_empty());
        for c in [0, 3, 64, 255] {
            s.insert(c);
        }
        s.remove(3);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 64, 255]);
        s.remove(0);
        s.remove(64);
        s.remove(255);
        assert!(s.is_empty());
    }
}
