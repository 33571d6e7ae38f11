//! Latency histograms: one HdrHistogram configuration (1 µs .. 60 s, 3 significant digits) for
//! every recorder, a compact `[[value, count], ...]` form that workers print to the parent over
//! their stdout pipe, and the percentile summary that lands in the JSON/Markdown reports.
//!
//! Invariant: pairs are produced from `iter_recorded` bucket values, so re-recording them into a
//! histogram of the same configuration reproduces the same buckets exactly.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest trackable latency, microseconds.
const MAX_US: u64 = 60_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// Records a latency in nanoseconds as microseconds (clamped into the trackable range).
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1_000).clamp(1, MAX_US));
}

pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub fn add_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(v, c) in pairs {
        h.saturating_record_n(v.clamp(1, MAX_US), c);
    }
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    Summary {
        count: h.len(),
        mean_us: (h.mean() * 10.0).round() / 10.0,
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_roundtrip_exactly() {
        let mut a = new_hist();
        for ns in [1_000u64, 2_500_000, 2_500_000, 7_000_000_000, 10] {
            record_ns(&mut a, ns);
        }
        let mut b = new_hist();
        add_pairs(&mut b, &to_pairs(&a));
        assert_eq!(a.len(), 5);
        assert_eq!(b.len(), a.len());
        assert_eq!(summarize(&a).p99_us, summarize(&b).p99_us);
        assert_eq!(summarize(&a).max_us, summarize(&b).max_us);
        assert_eq!(summarize(&b).p50_us, a.value_at_quantile(0.5));
    }
}
