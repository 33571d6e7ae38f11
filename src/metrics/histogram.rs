//! A fixed-bucket, lock-free latency histogram in microseconds, exposed as a
//! Prometheus histogram. One writer (its core), any number of readers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the buckets, in microseconds (the last bucket is +Inf).
pub const BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn record_us(&self, us: u64) {
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Cumulative counts per bound (Prometheus `le` semantics), the +Inf count last.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.buckets
            .iter()
            .map(|b| {
                acc += b.load(Relaxed);
                acc
            })
            .collect()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Relaxed) as f64 / 1e6
    }

    /// Its Prometheus sample lines as `name` (`_bucket` per bound and `+Inf`, `_sum`,
    /// `_count`), each with `labels` (`core="0"`, or empty for none); the HELP/TYPE header
    /// is the caller's.
    pub fn write_samples(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        let own = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let cum = self.cumulative();
        for (bound, count) in BOUNDS_US.iter().zip(&cum) {
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}");
        }
        let total = cum.last().copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{own} {}", self.sum_seconds());
        let _ = writeln!(out, "{name}_count{own} {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets() {
        let h = Histogram::new();
        h.record_us(10);
        h.record_us(700);
        h.record_us(10_000_000);
        let c = h.cumulative();
        assert_eq!(c[0], 1);
        assert_eq!(c[4], 2);
        assert_eq!(*c.last().unwrap(), 3);
        assert!((h.sum_seconds() - 10.00071).abs() < 1e-9);
    }
}
