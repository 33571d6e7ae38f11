//! Fixed-size, lock-free counters keyed by a hash: connections per client address, per
//! network prefix and per user (node-local).
//!
//! A count-min sketch: [`DEPTH`] rows of `width` atomic counters; a key adds one to one
//! counter in each row, and its count is the smallest of its counters. Memory is fixed at
//! construction (`DEPTH * width * 4` bytes) and never grows, whatever addresses an
//! attacker rotates through, so there is no map to evict from. A collision can only make a
//! key look busier, never freer: a key is refused only when every one of its counters is at
//! the cap, which with 4 rows of 65,536 needs other keys holding the cap in all four of its
//! cells at once.
//!
//! Called from [`super::Limits`] by every core at accept and close; the hash seeds are
//! random per process so collisions cannot be planned from outside.
//!
//! Invariant: every successful [`CountSketch::try_inc`] is matched by exactly one
//! [`CountSketch::dec`] with the same key (the lease types guarantee it); then every
//! counter equals the number of live holders mapped to it.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Rows of a sketch.
pub const DEPTH: usize = 4;

#[derive(Debug)]
pub struct CountSketch {
    cells: Box<[AtomicU32]>,
    mask: usize,
}

impl CountSketch {
    /// `width` counters per row, rounded up to a power of two.
    pub fn new(width: usize) -> Self {
        let width = width.max(2).next_power_of_two();
        CountSketch {
            cells: (0..width * DEPTH).map(|_| AtomicU32::new(0)).collect(),
            mask: width - 1,
        }
    }

    fn cells(&self, key: u64) -> impl Iterator<Item = &AtomicU32> + '_ {
        let (h1, h2) = (key as u32 as usize, ((key >> 32) as u32 | 1) as usize);
        let width = self.mask + 1;
        (0..DEPTH).map(move |r| &self.cells[r * width + (h1.wrapping_add(r * h2) & self.mask)])
    }

    /// Counts one more holder of `key` unless it already holds `cap`; false: refused.
    pub fn try_inc(&self, key: u64, cap: u32) -> bool {
        let mut least = u32::MAX;
        for c in self.cells(key) {
            least = least.min(c.fetch_add(1, Relaxed));
        }
        if least < cap {
            return true;
        }
        self.dec(key);
        false
    }

    /// One holder of `key` has gone.
    pub fn dec(&self, key: u64) {
        for c in self.cells(key) {
            c.fetch_sub(1, Relaxed);
        }
    }

    /// The estimated holders of `key` (never below the true count).
    pub fn count(&self, key: u64) -> u32 {
        self.cells(key).map(|c| c.load(Relaxed)).min().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_key_and_frees_on_dec() {
        let s = CountSketch::new(1024);
        assert!(s.try_inc(7, 2) && s.try_inc(7, 2));
        assert!(!s.try_inc(7, 2), "third holder of the same key");
        assert_eq!(s.count(7), 2, "a refusal leaves no trace");
        assert!(s.try_inc(8, 2), "another key is independent");
        s.dec(7);
        assert!(s.try_inc(7, 2));
    }

    #[test]
    fn rotating_keys_use_no_memory_and_leave_no_residue() {
        let s = CountSketch::new(64);
        for k in 0..100_000u64 {
            let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert!(s.try_inc(key, 1_000));
            s.dec(key);
        }
        assert!(s.cells.iter().all(|c| c.load(Relaxed) == 0));
        assert_eq!(s.cells.len(), 64 * DEPTH);
    }
}
