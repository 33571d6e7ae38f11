//! Counters of one worker process (single-threaded: `Cell`/`RefCell`, shared by its clients via
//! `Rc`): handshake outcomes and latency, per-phase delivery histograms, heartbeats, how sessions
//! ended, the reconnect storm (drop-to-ready latency, attempts, `503` shedding) and what the slow
//! consumers saw. `report` turns them into the `events::Report` the parent merges.

use crate::events::{PhaseReport, ReconnectReport, Report};
use crate::hist::{new_hist, record_ns, to_pairs};
use crate::sys::mono_ns;
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

struct PhaseRec {
    hist: Histogram<u64>,
    count: u64,
    first_ns: u64,
    last_ns: u64,
}

#[derive(Default)]
struct Reconnects {
    done: u64,
    gave_up: u64,
    attempts_failed: u64,
    shed_503: u64,
    retry_after_max_s: u64,
    failures: BTreeMap<String, u64>,
}

pub struct Stats {
    pub ready: Cell<u64>,
    pub failed: Cell<u64>,
    /// Sessions open right now (ready, not yet closed or dropped).
    live: Cell<u64>,
    failures: RefCell<BTreeMap<String, u64>>,
    closed: RefCell<BTreeMap<String, u64>>,
    slow_closed: RefCell<BTreeMap<String, u64>>,
    disconnects: RefCell<BTreeMap<String, u64>>,
    pings: Cell<u64>,
    unphased: Cell<u64>,
    slow_received: Cell<u64>,
    phases: RefCell<Vec<PhaseRec>>,
    connect_hist: RefCell<Histogram<u64>>,
    reconnect_hist: RefCell<Histogram<u64>>,
    attempt_hist: RefCell<Histogram<u64>>,
    reconnects: RefCell<Reconnects>,
}

/// Counts `key` (cut to 160 characters, so error texts stay usable as keys) in `map`.
fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.chars().take(160).collect()).or_default() += 1;
}

fn bump(map: &RefCell<BTreeMap<String, u64>>, key: String) {
    count(&mut map.borrow_mut(), &key);
}

impl Stats {
    pub fn new(phases: usize) -> Stats {
        let recs = (0..phases)
            .map(|_| PhaseRec {
                hist: new_hist(),
                count: 0,
                first_ns: 0,
                last_ns: 0,
            })
            .collect();
        Stats {
            ready: Cell::new(0),
            failed: Cell::new(0),
            live: Cell::new(0),
            failures: RefCell::default(),
            closed: RefCell::default(),
            slow_closed: RefCell::default(),
            disconnects: RefCell::default(),
            pings: Cell::new(0),
            unphased: Cell::new(0),
            slow_received: Cell::new(0),
            phases: RefCell::new(recs),
            connect_hist: RefCell::new(new_hist()),
            reconnect_hist: RefCell::new(new_hist()),
            attempt_hist: RefCell::new(new_hist()),
            reconnects: RefCell::default(),
        }
    }

    pub fn fail(&self, why: String) {
        self.failed.set(self.failed.get() + 1);
        bump(&self.failures, why);
    }

    /// A first handshake succeeded after `ns` (TCP connect to subscribed).
    pub fn connected(&self, ns: u64) {
        self.ready.set(self.ready.get() + 1);
        self.live.set(self.live.get() + 1);
        record_ns(&mut self.connect_hist.borrow_mut(), ns);
    }

    pub fn live_down(&self) {
        self.live.set(self.live.get().saturating_sub(1));
    }

    pub fn session_closed(&self, cause: String, slow: bool) {
        self.live_down();
        bump(
            if slow {
                &self.slow_closed
            } else {
                &self.closed
            },
            cause,
        );
    }

    pub fn ping(&self) {
        self.pings.set(self.pings.get() + 1);
    }

    pub fn disconnect_push(&self, why: String) {
        bump(&self.disconnects, why);
    }

    /// A publication read by a slow consumer after it resumed reading (kept out of latency).
    pub fn slow_delivery(&self) {
        self.slow_received.set(self.slow_received.get() + 1);
    }

    pub fn delivered(&self, phase: Option<u32>, ts: Option<u64>) {
        let mut phases = self.phases.borrow_mut();
        let rec = match (phase, ts) {
            (Some(p), Some(_)) => phases.get_mut(p as usize),
            _ => None,
        };
        let (Some(rec), Some(ts)) = (rec, ts) else {
            self.unphased.set(self.unphased.get() + 1);
            return;
        };
        let now = mono_ns();
        record_ns(&mut rec.hist, now.saturating_sub(ts));
        rec.count += 1;
        if rec.first_ns == 0 {
            rec.first_ns = now;
        }
        rec.last_ns = now;
    }

    /// Back after a drop: `total_ns` since the drop, `attempt_ns` for the successful attempt.
    pub fn reconnected(&self, total_ns: u64, attempt_ns: u64) {
        self.live.set(self.live.get() + 1);
        self.reconnects.borrow_mut().done += 1;
        record_ns(&mut self.reconnect_hist.borrow_mut(), total_ns);
        record_ns(&mut self.attempt_hist.borrow_mut(), attempt_ns);
    }

    /// A reconnect attempt was answered `503` (load shedding).
    pub fn shed(&self, retry_after_s: Option<u64>) {
        let mut r = self.reconnects.borrow_mut();
        r.shed_503 += 1;
        r.retry_after_max_s = r.retry_after_max_s.max(retry_after_s.unwrap_or(0));
    }

    pub fn retry_failed(&self, why: String) {
        let mut r = self.reconnects.borrow_mut();
        r.attempts_failed += 1;
        count(&mut r.failures, &why);
    }

    pub fn gave_up(&self) {
        self.reconnects.borrow_mut().gave_up += 1;
    }

    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.borrow().clone()
    }

    /// Publications received so far, all phases plus unphased ones.
    pub fn delivered_total(&self) -> u64 {
        self.unphased.get() + self.phases.borrow().iter().map(|r| r.count).sum::<u64>()
    }

    /// (open sessions, reconnects done, reconnects given up)
    pub fn live_counts(&self) -> (u64, u64, u64) {
        let r = self.reconnects.borrow();
        (self.live.get(), r.done, r.gave_up)
    }

    pub fn report(&self, id: usize) -> Report {
        let r = self.reconnects.borrow();
        Report {
            id,
            ready: self.ready.get(),
            failures: self.failures(),
            closed: self.closed.borrow().clone(),
            disconnect_pushes: self.disconnects.borrow().clone(),
            pings: self.pings.get(),
            unphased_pubs: self.unphased.get(),
            phases: self
                .phases
                .borrow()
                .iter()
                .map(|r| PhaseReport {
                    count: r.count,
                    first_ns: r.first_ns,
                    last_ns: r.last_ns,
                    hist: to_pairs(&r.hist),
                })
                .collect(),
            connect_hist: to_pairs(&self.connect_hist.borrow()),
            reconnect: ReconnectReport {
                done: r.done,
                gave_up: r.gave_up,
                attempts_failed: r.attempts_failed,
                shed_503: r.shed_503,
                retry_after_max_s: r.retry_after_max_s,
                failures: r.failures.clone(),
                total_hist: to_pairs(&self.reconnect_hist.borrow()),
                attempt_hist: to_pairs(&self.attempt_hist.borrow()),
            },
            slow_received: self.slow_received.get(),
            slow_closed: self.slow_closed.borrow().clone(),
            proc: crate::sys::proc_sample(std::process::id()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_phases_reconnects_and_slow_consumers() {
        let s = Stats::new(2);
        s.connected(2_000_000);
        s.delivered(Some(1), Some(mono_ns()));
        s.delivered(Some(7), Some(1));
        s.delivered(None, None);
        s.slow_delivery();
        s.live_down();
        s.shed(Some(3));
        s.retry_failed("eof".into());
        s.reconnected(4_000_000_000, 1_000_000);
        s.session_closed("close:3008".into(), true);
        let r = s.report(3);
        assert_eq!((r.id, r.ready), (3, 1));
        assert_eq!(r.phases[1].count, 1);
        assert_eq!(r.phases[0].count, 0);
        assert_eq!(r.unphased_pubs, 2, "unknown phase and no payload");
        assert_eq!(r.slow_received, 1);
        assert_eq!(r.slow_closed.get("close:3008"), Some(&1));
        assert_eq!(r.reconnect.done, 1);
        assert_eq!(r.reconnect.shed_503, 1);
        assert_eq!(r.reconnect.retry_after_max_s, 3);
        assert_eq!(r.reconnect.attempts_failed, 1);
        assert_eq!(r.connect_hist.iter().map(|p| p.1).sum::<u64>(), 1);
        assert_eq!(s.live_counts(), (0, 1, 0));
        assert_eq!(s.delivered_total(), 3);
    }
}
