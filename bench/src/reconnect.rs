//! The `reconnect` kind (reconnect storm): once every client is subscribed and `hold_s` has
//! passed, every client drops its connection at the same moment and reconnects at once
//! (retrying with backoff, honouring `Retry-After` on `503`). Measures the time until all are
//! back, the live-connection curve, drop-to-subscribed and per-attempt (accept) latency, and how
//! the server shed load (`503` count, largest `Retry-After`).

use crate::events::Report;
use crate::hist::{add_pairs, new_hist, summarize};
use crate::runner::{cpu_pct, sum_maps, Connected, Sut};
use crate::scenario::ScenarioDef;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

pub async fn run(def: &ScenarioDef, sut: &Sut, c: &mut Connected) -> Result<Value> {
    tokio::time::sleep(Duration::from_secs_f64(def.hold_s)).await;
    let before = c.pool.counts(Duration::from_secs(10)).await?;
    let n = before.live;
    let s0 = c.snapshot(sut);
    let t0 = Instant::now();
    c.pool.broadcast("drop").await?;
    let bar = crate::progress::bar(n, "reconnecting");
    let mut timeline = vec![(0.0, n)];
    let mut first_drop_seen = false;
    let mut all_back = None;
    while t0.elapsed().as_secs_f64() < def.max_recover_s {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = c.pool.counts(Duration::from_secs(10)).await?;
        let t = t0.elapsed().as_secs_f64();
        timeline.push(((t * 10.0).round() / 10.0, now.live));
        bar.set_position(now.reconnected);
        first_drop_seen |= now.live < n || now.reconnected > 0;
        if first_drop_seen && now.reconnected + now.gave_up >= n {
            all_back = Some(t0.elapsed());
            break;
        }
    }
    bar.finish_and_clear();
    let s1 = c.snapshot(sut);
    let after = c.pool.counts(Duration::from_secs(10)).await?;
    eprintln!(
        "  storm: {} of {n} back in {}",
        after.reconnected,
        all_back.map_or("(not all)".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    );
    Ok(json!({
        "dropped": n,
        "reconnected": after.reconnected,
        "gave_up": after.gave_up,
        "all_back": all_back.is_some(),
        "time_all_back_ms": all_back.map(|d| d.as_millis() as u64),
        "live_timeline": timeline,
        "server_cpu_pct": cpu_pct(&s0, &s1, |s| s.server),
        "server_cpu_ms": s1.server.cpu_ms.saturating_sub(s0.server.cpu_ms),
        "server_rss_kb_after": s1.server.rss_kb,
    }))
}

/// Adds the workers' reconnect histograms and shedding counters to `specific`.
pub fn merge(specific: &Value, reports: &[Report]) -> Value {
    let (mut total, mut attempt) = (new_hist(), new_hist());
    for r in reports {
        add_pairs(&mut total, &r.reconnect.total_hist);
        add_pairs(&mut attempt, &r.reconnect.attempt_hist);
    }
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let mut out = specific.clone();
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "storm".into(),
            json!({
                "drop_to_ready_us": summarize(&total),
                "accept_latency_us": summarize(&attempt),
                "attempts_failed": sum(|r| r.reconnect.attempts_failed),
                "shed_503": sum(|r| r.reconnect.shed_503),
                "retry_after_max_s": reports.iter().map(|r| r.reconnect.retry_after_max_s).max().unwrap_or(0),
                "failures": sum_maps(reports, |r| &r.reconnect.failures),
            }),
        );
    }
    out
}
