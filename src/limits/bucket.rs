//! Token buckets shared by all cores: connection attempts per client address and per node,
//! publications per user and per channel.
//!
//! The rule is the per-connection command limiter's (`session::limiter`): a bucket of
//! `burst` tokens refilled at `per_s` tokens a second, lazily when someone takes. That
//! bucket is a `Cell` owned by one session on one core; these are taken from every core,
//! so the state (milli-tokens and a millisecond stamp) is packed into one `AtomicU64` and
//! updated with compare-and-swap, never a lock.
//!
//! [`BucketTable`] is a fixed array of buckets indexed by a key's hash in [`ROWS`] rows: a
//! key is allowed when any of its buckets has a token (a collision with an abuser in one
//! row does not lock an innocent key out) and an abuser, who drains all of its own buckets,
//! is refused. Memory is fixed (`ROWS * width * 8` bytes): rotating keys grow nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Rate and size of a bucket; `per_s == 0` disables it (every take succeeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

impl Rate {
    pub fn enabled(&self) -> bool {
        self.per_s > 0
    }
}

/// One bucket: `tokens_milli << 32 | stamp_ms` (stamp: low 32 bits of `exec::now_ms`, never
/// 0 in a used bucket; a zero word is a full, never-used bucket).
#[derive(Debug, Default)]
pub struct AtomicBucket(AtomicU64);

impl AtomicBucket {
    /// Takes one token at `now_ms`; false when the bucket is empty.
    pub fn take(&self, now_ms: u64, rate: Rate) -> bool {
        if !rate.enabled() {
            return true;
        }
        let full = u64::from(rate.burst.max(1)) * 1000;
        let stamp = (now_ms as u32).max(1);
        let mut cur = self.0.load(Relaxed);
        loop {
            let tokens = if cur == 0 {
                full
            } else {
                let elapsed = u64::from(stamp.wrapping_sub(cur as u32));
                ((cur >> 32) + elapsed * u64::from(rate.per_s)).min(full)
            };
            let (left, ok) = if tokens >= 1000 {
                (tokens - 1000, true)
            } else {
                (tokens, false)
            };
            let next = (left.min(u32::MAX as u64) << 32) | u64::from(stamp);
            match self.0.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return ok,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Rows of a [`BucketTable`].
pub const ROWS: usize = 2;

#[derive(Debug)]
pub struct BucketTable {
    cells: Box<[AtomicBucket]>,
    mask: usize,
}

impl BucketTable {
    /// `width` buckets per row, rounded up to a power of two.
    pub fn new(width: usize) -> Self {
        let width = width.max(2).next_power_of_two();
        BucketTable {
            cells: (0..width * ROWS).map(|_| AtomicBucket::default()).collect(),
            mask: width - 1,
        }
    }

    /// Takes a token for `key` from each of its buckets; true when at least one had one.
    pub fn take(&self, key: u64, now_ms: u64, rate: Rate) -> bool {
        let width = self.mask + 1;
        let (h1, h2) = (key as u32 as usize, ((key >> 32) as u32 | 1) as usize);
        let mut any = false;
        for r in 0..ROWS {
            any |= self.cells[r * width + (h1.wrapping_add(r * h2) & self.mask)].take(now_ms, rate);
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        per_s: 10,
        burst: 5,
    };

    #[test]
    fn bursts_then_refuses_then_refills() {
        let b = AtomicBucket::default();
        assert!((0..5).all(|_| b.take(1000, R)));
        assert!(!b.take(1000, R));
        assert!(!b.take(1050, R), "half a token after 50 ms");
        assert!(b.take(1100, R), "one token after 100 ms");
        assert!(!b.take(1100, R));
        assert!(
            (0..5).all(|_| b.take(60_000, R)),
            "refills to the burst only"
        );
        assert!(!b.take(60_000, R));
        let off = AtomicBucket::default();
        assert!((0..10_000).all(|_| off.take(1, Rate { per_s: 0, burst: 0 })));
    }

    #[test]
    fn table_stops_a_flood_and_keeps_other_keys_free() {
        let t = BucketTable::new(1024);
        let admitted = (0..15_000).filter(|_| t.take(42, 5000, R)).count();
        assert!((5..=10).contains(&admitted), "{admitted}");
        assert!(t.take(43, 5000, R), "another key has its own tokens");
    }
}
