//! Node-wide metrics of the Redis connections: whether each connection is up,
//! reconnects, failed connect attempts, and the round-trip time of commands.
//!
//! One [`RedisStats`] per node, written only by the Redis I/O thread (relaxed
//! atomics; the latency histogram has that single writer) and read by
//! `GET /metrics` on any core, which appends [`RedisStats::render`] to the
//! per-core metrics. No `core` label: the connections belong to no core. The
//! per-core Redis counters (errors, resubscribed channels, dropped events) stay in
//! `CoreMetrics`. Invariant: counters only grow.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::metrics::Histogram;

/// The two connections of a node, the `connection` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Command = 0,
    PubSub = 1,
}

impl Link {
    const ALL: [Link; 2] = [Link::Command, Link::PubSub];

    fn label(self) -> &'static str {
        match self {
            Link::Command => "command",
            Link::PubSub => "pubsub",
        }
    }
}

#[derive(Debug, Default)]
pub struct RedisStats {
    up: [AtomicBool; 2],
    reconnects: [AtomicU64; 2],
    connect_failures: [AtomicU64; 2],
    /// Engine commands issued to Redis: time from issue to answer (or failure).
    pub command_latency: Histogram,
}

impl RedisStats {
    pub fn set_up(&self, link: Link, up: bool) {
        self.up[link as usize].store(up, Relaxed);
    }

    pub fn is_up(&self, link: Link) -> bool {
        self.up[link as usize].load(Relaxed)
    }

    /// Both connections are up: commands run and channel events arrive.
    pub fn all_up(&self) -> bool {
        Link::ALL.iter().all(|l| self.is_up(*l))
    }

    /// A connection came back after it had been up before.
    pub fn reconnected(&self, link: Link) {
        self.reconnects[link as usize].fetch_add(1, Relaxed);
    }

    pub fn connect_failed(&self, link: Link) {
        self.connect_failures[link as usize].fetch_add(1, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let name = "wiresocket_engine_redis_up";
        header(out, name, "gauge", "1 while the node's Redis connection is up (command: engine calls run; pubsub: channel events arrive), else 0.");
        for l in Link::ALL {
            let _ = writeln!(
                out,
                "{name}{{connection=\"{}\"}} {}",
                l.label(),
                u8::from(self.is_up(l))
            );
        }
        let name = "wiresocket_engine_redis_reconnects_total";
        header(out, name, "counter", "Redis connections opened again after they had been lost (the pubsub one also resubscribes and resets its channels).");
        for l in Link::ALL {
            let n = self.reconnects[l as usize].load(Relaxed);
            let _ = writeln!(out, "{name}{{connection=\"{}\"}} {n}", l.label());
        }
        let name = "wiresocket_engine_redis_connect_failures_total";
        header(
            out,
            name,
            "counter",
            "Failed attempts to open a Redis connection (retried with backoff).",
        );
        for l in Link::ALL {
            let n = self.connect_failures[l as usize].load(Relaxed);
            let _ = writeln!(out, "{name}{{connection=\"{}\"}} {n}", l.label());
        }
        let name = "wiresocket_engine_redis_command_seconds";
        header(out, name, "histogram", "Round trip of engine commands to Redis, from the I/O thread issuing them to their answer or failure.");
        self.command_latency.write_samples(out, name, "");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let s = RedisStats::default();
        s.set_up(Link::Command, true);
        s.reconnected(Link::PubSub);
        s.command_latency.record_us(120);
        let mut out = String::new();
        s.render(&mut out);
        assert!(!s.all_up());
        for line in [
            "wiresocket_engine_redis_up{connection=\"command\"} 1",
            "wiresocket_engine_redis_up{connection=\"pubsub\"} 0",
            "wiresocket_engine_redis_reconnects_total{connection=\"pubsub\"} 1",
            "wiresocket_engine_redis_connect_failures_total{connection=\"command\"} 0",
            "wiresocket_engine_redis_command_seconds_bucket{le=\"0.00025\"} 1",
            "wiresocket_engine_redis_command_seconds_count 1",
        ] {
            assert!(out.contains(line), "{line} missing in:\n{out}");
        }
    }
}
