//! Load shedding with hysteresis (`[shedding]`): a node leaves the pool before it is full.
//!
//! A watcher thread ([`watch`]) samples, every `check_interval_ms`:
//! - **memory**: the process RSS against `memory_limit_bytes`, or, when that is 0, the
//!   memory limit of the process's cgroup (v2 `memory.max`, read at every check so a resized
//!   container is followed; none: memory is not watched). SIGHUP re-reads
//!   `memory_limit_bytes` ([`set_memory_limit`], `runtime::reload`). RSS is what the kernel
//!   counts against the node, but it seldom falls when clients leave: the allocator keeps
//!   freed pages for reuse. A node that shed on memory therefore re-enters once the limit
//!   is raised (SIGHUP, a larger cgroup) or its RSS really fell;
//! - **cpu**: the busiest core's busy ratio over the interval (CPU time of each core's
//!   executor thread, from `/proc/self/task/<tid>/stat`, per wall time);
//! - **connections**: connected sessions against `server.max_connections`.
//!
//! The load is the highest of the three ratios ([`Shedder`]). At `high_water` (default 0.8)
//! the node sheds: `/health` answers 503 `{"status":"shedding"}` so load balancers take it
//! out of rotation, and new upgrades get 503 with the jittered `Retry-After`; sessions
//! already connected are untouched. It re-enters the pool once the load has stayed at or
//! below `low_water` (default 0.7) for `min_dwell_ms`, and never less than `min_dwell_ms`
//! after it started shedding, so it does not flap. Transitions are logged (with the
//! resource that crossed), counted (`wiresocket_shedding_transitions_total{to}`), and
//! visible as `wiresocket_shedding` and `wiresocket_load_ratio{resource}`.
//!
//! The hard cap stays: at `max_connections` upgrades are refused whatever the watermarks.

mod sample;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::SheddingConfig;
use crate::node::{LoadGauges, NodeState};

/// One reading of the watched resources, each as a fraction of its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub memory: f64,
    pub cpu: f64,
    pub connections: f64,
}

impl Load {
    /// The highest ratio and the resource it belongs to.
    pub fn peak(&self) -> (f64, &'static str) {
        [
            (self.memory, "memory"),
            (self.cpu, "cpu"),
            (self.connections, "connections"),
        ]
        .into_iter()
        .fold((0.0, "none"), |a, b| if b.0 > a.0 { b } else { a })
    }
}

/// What a reading changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Stay,
    /// Crossed the high-water mark: leave the pool.
    Shed,
    /// Below the low-water mark for the dwell time: back in the pool.
    Recover,
}

/// The hysteresis state machine (pure: the watcher feeds it readings and times).
#[derive(Debug)]
pub struct Shedder {
    high: f64,
    low: f64,
    dwell: Duration,
    /// Shedding since.
    shedding_since: Option<Instant>,
    /// The load has been at or below `low` since (while shedding).
    calm_since: Option<Instant>,
}

impl Shedder {
    pub fn new(high: f64, low: f64, dwell: Duration) -> Self {
        Shedder {
            high,
            low,
            dwell,
            shedding_since: None,
            calm_since: None,
        }
    }

    pub fn shedding(&self) -> bool {
        self.shedding_since.is_some()
    }

    pub fn observe(&mut self, load: &Load, now: Instant) -> Transition {
        let (peak, _) = load.peak();
        match self.shedding_since {
            None if peak >= self.high => {
                self.shedding_since = Some(now);
                self.calm_since = None;
                Transition::Shed
            }
            None => Transition::Stay,
            Some(since) => {
                if peak > self.low {
                    self.calm_since = None;
                    return Transition::Stay;
                }
                let calm = *self.calm_since.get_or_insert(now);
                if now.duration_since(calm) >= self.dwell && now.duration_since(since) >= self.dwell
                {
                    self.shedding_since = None;
                    self.calm_since = None;
                    Transition::Recover
                } else {
                    Transition::Stay
                }
            }
        }
    }
}

fn permille(r: f64) -> u32 {
    (r * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32
}

fn record(g: &LoadGauges, load: &Load) {
    g.memory.store(permille(load.memory), Relaxed);
    g.cpu.store(permille(load.cpu), Relaxed);
    g.connections.store(permille(load.connections), Relaxed);
}

/// Appends the shedding metrics to a Prometheus text exposition.
pub fn render(node: &NodeState, out: &mut String) {
    use std::fmt::Write as _;
    let g = &node.load;
    let ratio = |a: &std::sync::atomic::AtomicU32| a.load(Relaxed) as f64 / 1000.0;
    let _ = write!(
        out,
        "# HELP wiresocket_shedding 1 while the node sheds load (/health 503, upgrades 503).\n\
         # TYPE wiresocket_shedding gauge\n\
         wiresocket_shedding {}\n\
         # HELP wiresocket_shedding_transitions_total Times the node left (on) or re-entered (off) the pool.\n\
         # TYPE wiresocket_shedding_transitions_total counter\n\
         wiresocket_shedding_transitions_total{{to=\"on\"}} {}\n\
         wiresocket_shedding_transitions_total{{to=\"off\"}} {}\n\
         # HELP wiresocket_load_ratio Watched resources as a fraction of their limit.\n\
         # TYPE wiresocket_load_ratio gauge\n\
         wiresocket_load_ratio{{resource=\"memory\"}} {}\n\
         wiresocket_load_ratio{{resource=\"cpu\"}} {}\n\
         wiresocket_load_ratio{{resource=\"connections\"}} {}\n\
         # HELP wiresocket_memory_limit_bytes The memory limit the load is measured against (0: none).\n\
         # TYPE wiresocket_memory_limit_bytes gauge\n\
         wiresocket_memory_limit_bytes {}\n",
        u8::from(node.shedding()),
        g.shed_total.load(Relaxed),
        g.recover_total.load(Relaxed),
        ratio(&g.memory),
        ratio(&g.cpu),
        ratio(&g.connections),
        g.memory_limit.load(Relaxed),
    );
}

/// Replaces `shedding.memory_limit_bytes` (SIGHUP); the next check uses it.
pub fn set_memory_limit(node: &NodeState, bytes: u64) {
    node.load.memory_limit_setting.store(bytes, Relaxed);
}

/// The memory limit to check against now: the setting, or the cgroup's when it is 0.
fn memory_limit(node: &NodeState) -> Option<u64> {
    match node.load.memory_limit_setting.load(Relaxed) {
        0 => sample::cgroup_memory_limit(),
        n => Some(n),
    }
}

/// Starts the watcher thread (nothing when `[shedding] enabled = false`).
pub fn watch(cfg: &SheddingConfig, node: Arc<NodeState>) -> anyhow::Result<()> {
    if !cfg.enabled {
        return Ok(());
    }
    set_memory_limit(&node, cfg.memory_limit_bytes);
    let initial_limit = memory_limit(&node);
    tracing::info!(
        high = cfg.high_water,
        low = cfg.low_water,
        memory_limit = ?initial_limit,
        "load shedding on"
    );
    let interval = Duration::from_millis(cfg.check_interval_ms);
    let mut shedder = Shedder::new(
        cfg.high_water,
        cfg.low_water,
        Duration::from_millis(cfg.min_dwell_ms),
    );
    std::thread::Builder::new()
        .name("load-watch".into())
        .spawn(move || {
            let mut cpu = sample::CoreCpu::default();
            loop {
                std::thread::sleep(interval);
                let limit = memory_limit(&node);
                node.load.memory_limit.store(limit.unwrap_or(0), Relaxed);
                let load = Load {
                    memory: limit.map_or(0.0, |limit| sample::rss_bytes() as f64 / limit as f64),
                    cpu: cpu.busiest(&node.core_threads()),
                    connections: node.connected() as f64 / node.max_connections.max(1) as f64,
                };
                let state = &node.load;
                record(state, &load);
                let (peak, resource) = load.peak();
                match shedder.observe(&load, Instant::now()) {
                    Transition::Stay => {}
                    Transition::Shed => {
                        state.overloaded.store(true, Relaxed);
                        state.shed_total.fetch_add(1, Relaxed);
                        tracing::warn!(
                            resource,
                            load = peak,
                            ?load,
                            "shedding: leaving the pool (/health 503, upgrades 503 + Retry-After)"
                        );
                    }
                    Transition::Recover => {
                        state.overloaded.store(false, Relaxed);
                        state.recover_total.fetch_add(1, Relaxed);
                        tracing::info!(load = peak, ?load, "shedding over: back in the pool");
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(load: f64) -> Load {
        Load {
            memory: 0.1,
            cpu: load,
            connections: 0.2,
        }
    }

    #[test]
    fn sheds_at_high_water_and_recovers_after_dwell_below_low_water() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut sh = Shedder::new(0.8, 0.7, Duration::from_millis(1000));
        assert_eq!(sh.observe(&at(0.79), s(0)), Transition::Stay);
        assert_eq!(sh.observe(&at(0.80), s(100)), Transition::Shed);
        // between the marks: still shedding (hysteresis)
        assert_eq!(sh.observe(&at(0.75), s(2000)), Transition::Stay);
        // calm, but not for the dwell yet
        assert_eq!(sh.observe(&at(0.70), s(2100)), Transition::Stay);
        assert_eq!(sh.observe(&at(0.60), s(3000)), Transition::Stay);
        // a spike resets the calm period
        assert_eq!(sh.observe(&at(0.71), s(3050)), Transition::Stay);
        assert_eq!(sh.observe(&at(0.50), s(3100)), Transition::Stay);
        assert_eq!(sh.observe(&at(0.50), s(4099)), Transition::Stay);
        assert_eq!(sh.observe(&at(0.50), s(4100)), Transition::Recover);
        assert!(!sh.shedding());
    }

    #[test]
    fn stays_out_for_the_dwell_even_when_load_drops_at_once() {
        let t0 = Instant::now();
        let mut sh = Shedder::new(0.8, 0.7, Duration::from_millis(1000));
        assert_eq!(sh.observe(&at(0.95), t0), Transition::Shed);
        assert_eq!(
            sh.observe(&at(0.0), t0 + Duration::from_millis(10)),
            Transition::Stay
        );
        assert_eq!(
            sh.observe(&at(0.0), t0 + Duration::from_millis(999)),
            Transition::Stay
        );
        assert_eq!(
            sh.observe(&at(0.0), t0 + Duration::from_millis(1010)),
            Transition::Recover
        );
    }

    #[test]
    fn the_peak_names_its_resource() {
        let l = Load {
            memory: 0.9,
            cpu: 0.3,
            connections: 0.85,
        };
        assert_eq!(l.peak(), (0.9, "memory"));
    }
}
