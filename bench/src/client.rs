//! One simulated client inside a worker: WebSocket upgrade, `connect` with a fresh HS256 token,
//! `subscribe` to the benchmark channel, then read forever answering heartbeats and timing every
//! publication into the worker's per-phase histograms (`Stats`).
//!
//! Invariant: the handshake permit (bounded in-flight handshakes) is held from TCP connect until
//! the subscribe reply or failure, never longer; every attempt ends in exactly one of
//! `Stats::ready` or `Stats::failures`, and each ready client later in at most one `closed` cause.

use crate::events::{PhaseReport, Report};
use crate::hist::{new_hist, record_ns, to_pairs};
use crate::net::Target;
use crate::proto::{self, Line};
use crate::sys::mono_ns;
use crate::ws::{encode_text, Outcome, WsConn};
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout_at, Instant};

/// Per-connection settings shared by every client of a worker.
pub struct ClientCfg {
    pub target: Target,
    pub secret: String,
    pub channel: String,
    pub handshake_timeout: Duration,
    pub token_ttl_s: u64,
    pub user_prefix: String,
}

struct PhaseRec {
    hist: Histogram<u64>,
    count: u64,
    first_ns: u64,
    last_ns: u64,
}

/// Counters of one worker (single-threaded: `Cell`/`RefCell`, shared via `Rc`).
pub struct Stats {
    pub ready: Cell<u64>,
    pub failed: Cell<u64>,
    failures: RefCell<BTreeMap<String, u64>>,
    closed: RefCell<BTreeMap<String, u64>>,
    disconnects: RefCell<BTreeMap<String, u64>>,
    pings: Cell<u64>,
    unphased: Cell<u64>,
    phases: RefCell<Vec<PhaseRec>>,
}

fn bump(map: &RefCell<BTreeMap<String, u64>>, key: String) {
    *map.borrow_mut().entry(key).or_default() += 1;
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
            failures: RefCell::default(),
            closed: RefCell::default(),
            disconnects: RefCell::default(),
            pings: Cell::new(0),
            unphased: Cell::new(0),
            phases: RefCell::new(recs),
        }
    }

    fn fail(&self, why: String) {
        self.failed.set(self.failed.get() + 1);
        let short: String = why.chars().take(160).collect();
        bump(&self.failures, short);
    }

    fn delivered(&self, phase: Option<u32>, ts: Option<u64>) {
        let mut phases = self.phases.borrow_mut();
        let (Some(p), Some(ts)) = (phase, ts) else {
            self.unphased.set(self.unphased.get() + 1);
            return;
        };
        let Some(rec) = phases.get_mut(p as usize) else {
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

    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.borrow().clone()
    }

    /// Publications received so far, all phases plus unphased ones.
    pub fn delivered_total(&self) -> u64 {
        self.unphased.get() + self.phases.borrow().iter().map(|r| r.count).sum::<u64>()
    }

    pub fn report(&self, id: usize) -> Report {
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
            proc: crate::sys::proc_sample(std::process::id()).unwrap_or_default(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    AwaitConnect,
    AwaitSubscribe,
    Ready,
}

/// Runs client number `idx` until its connection ends. `permit` is released once subscribed.
pub async fn run(
    cfg: &ClientCfg,
    idx: u64,
    src: Option<Ipv4Addr>,
    stats: &Stats,
    permit: OwnedSemaphorePermit,
) {
    let deadline = Instant::now() + cfg.handshake_timeout;
    let mut ws = match timeout_at(deadline, WsConn::connect(&cfg.target, src)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return stats.fail(format!("{e:#}")),
        Err(_) => return stats.fail("timeout: tcp/upgrade".into()),
    };
    let token = crate::jwt::connection_token(
        &cfg.secret,
        &format!("{}{idx}", cfg.user_prefix),
        cfg.token_ttl_s,
    );
    if let Err(e) = ws.send_text(proto::connect_cmd(1, &token).as_bytes()).await {
        return stats.fail(format!("send connect: {e:#}"));
    }
    let subscribe = proto::subscribe_cmd(2, &cfg.channel);
    let mut state = State::AwaitConnect;
    let mut error: Option<String> = None;
    let mut permit = Some(permit);
    loop {
        let mut on_text = |msg: &[u8], out: &mut Vec<u8>| {
            for line in proto::split_lines(msg) {
                match proto::classify(line) {
                    Line::Ping => {
                        encode_text(out, b"{}");
                        stats.pings.set(stats.pings.get() + 1);
                    }
                    Line::Pub { phase, ts } => stats.delivered(phase, ts),
                    Line::Reply { id: 1, error: None } if state == State::AwaitConnect => {
                        encode_text(out, subscribe.as_bytes());
                        state = State::AwaitSubscribe;
                    }
                    Line::Reply { id: 2, error: None } if state == State::AwaitSubscribe => {
                        state = State::Ready;
                    }
                    Line::Reply { id, error: Some(e) } => {
                        error = Some(format!("reply {id} error {e}"))
                    }
                    Line::Disconnect(d) => bump(&stats.disconnects, d),
                    _ => {}
                }
            }
        };
        let was_ready = permit.is_none();
        let res = if was_ready {
            ws.read_batch(&mut on_text).await
        } else {
            match timeout_at(deadline, ws.read_batch(&mut on_text)).await {
                Ok(r) => r,
                Err(_) => return stats.fail(format!("timeout: {state:?}")),
            }
        };
        if let Some(e) = error.take() {
            if !was_ready {
                return stats.fail(e);
            }
            bump(&stats.closed, format!("late {e}"));
        }
        if state == State::Ready && permit.is_some() {
            permit = None;
            stats.ready.set(stats.ready.get() + 1);
        }
        let end = match res {
            Ok(Outcome::Open) => continue,
            Ok(Outcome::Closed(code)) => {
                format!("close:{}", code.map_or("none".into(), |c| c.to_string()))
            }
            Ok(Outcome::Eof) => "eof".into(),
            Err(e) => format!("error: {e:#}"),
        };
        if permit.is_some() {
            return stats.fail(format!("{end} during {state:?}"));
        }
        return bump(&stats.closed, end);
    }
}
