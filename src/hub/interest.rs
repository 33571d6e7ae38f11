//! Owner-side interest table: for each channel this core owns, the set of cores
//! that have at least one subscriber, and whether the node's engine subscription
//! for it is complete. A publication is sent only to those cores, and a core's
//! interest is acknowledged only once the engine subscription is in place.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::Ready;

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

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_CORES).filter(|c| self.0[c / 64] & (1 << (c % 64)) != 0)
    }
}

#[derive(Default)]
pub struct InterestTable {
    channels: HashMap<Arc<str>, (CoreSet, Rc<Ready>), ahash::RandomState>,
}

impl InterestTable {
    /// Adds `core`; returns whether it is the channel's first interested core, and the
    /// flag that is set once the engine subscription for the channel is complete.
    pub fn add(&mut self, channel: &Arc<str>, core: usize) -> (bool, Rc<Ready>) {
        let (set, ready) = self.channels.entry(channel.clone()).or_default();
        let first = set.is_empty();
        set.insert(core);
        (first, ready.clone())
    }

    /// Returns true when no core is interested any more (the entry is dropped).
    pub fn remove(&mut self, channel: &str, core: usize) -> bool {
        let Some((set, _)) = self.channels.get_mut(channel) else {
            return false;
        };
        set.remove(core);
        if set.is_empty() {
            self.channels.remove(channel);
            return true;
        }
        false
    }

    pub fn get(&self, channel: &str) -> Option<(&Arc<str>, &CoreSet)> {
        self.channels
            .get_key_value(channel)
            .map(|(k, (set, _))| (k, set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_first_and_last() {
        let mut t = InterestTable::default();
        let ch: Arc<str> = "news".into();
        let (first, ready) = t.add(&ch, 0);
        assert!(first && !ready.is_set());
        ready.set();
        let (first, ready) = t.add(&ch, 3);
        assert!(!first && ready.is_set(), "later cores see the same flag");
        assert_eq!(
            t.get("news").unwrap().1.iter().collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert!(!t.remove("news", 0));
        assert!(t.remove("news", 3));
        assert!(t.get("news").is_none());
    }
}
