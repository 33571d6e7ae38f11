//! The `publish` kind (broadcast fan-out, many channels): for each rate, publish for
//! `secs_per_rate` seconds round-robin over the scenario's channels, then pause `drain_s`; after
//! the last phase wait until deliveries stop arriving. Per phase: achieved publish rate,
//! deliveries/s, expected vs received deliveries (loss), publish->deliver latency percentiles
//! (merged from every worker's HdrHistogram), and CPU of server and load generator.
//!
//! `publish_phase` and `merge_phases` are shared with the `slow` kind.

use crate::events::Report;
use crate::hist::{add_pairs, new_hist, summarize};
use crate::publisher::{run_phase, PubCfg};
use crate::runner::{cpu_pct, Connected, Sut};
use crate::scenario::ScenarioDef;
use anyhow::Result;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

/// Publisher settings for `def` against `sut`.
pub fn pub_cfg(def: &ScenarioDef, sut: &Sut) -> Result<Rc<PubCfg>> {
    Ok(Rc::new(PubCfg {
        targets: crate::net::Target::parse_list(&sut.api_url)?,
        api_key: sut.api_key.clone(),
        dialect: sut.dialect,
        channels: def.channel_plan(),
        pad: def.payload_bytes,
    }))
}

/// Publishes phase `i` at `rate`/s and returns its window: publisher outcome, CPU, and how many
/// deliveries each accepted publication should produce (`fanout`).
pub async fn publish_phase(
    def: &ScenarioDef,
    sut: &Sut,
    c: &Connected,
    cfg: &Rc<PubCfg>,
    i: usize,
    rate: u64,
    fanout: f64,
) -> Value {
    // Enough connections that the publisher never limits the rate: a publish round trip grows
    // to tens of milliseconds when a server is busy fanning out.
    let conns = (rate / 5).clamp(16, 256) as usize;
    let r0 = sut.redis.as_ref().and_then(|r| r.try_sample());
    let s0 = c.snapshot(sut);
    let others0 = crate::sys::all_proc_cpu();
    let bar = crate::progress::timer(def.secs_per_rate, &format!("{rate}/s"));
    let ticker = {
        let bar = bar.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.inc(1);
            }
        })
    };
    let p = run_phase(cfg.clone(), conns, i as u32, rate, def.secs_per_rate).await;
    ticker.abort();
    bar.finish_and_clear();
    let s1 = c.snapshot(sut);
    let r1 = sut.redis.as_ref().and_then(|r| r.try_sample());
    let wall = (p.end_ns - p.start_ns) as f64 / 1e9;
    let ours: Vec<u32> = sut.pids.iter().chain(&c.lg_pids).copied().collect();
    let others = crate::sys::top_others(&others0, &crate::sys::all_proc_cpu(), &ours, wall, 3);
    eprintln!(
        "  phase {i}: {rate}/s target, {} ok, {} failed, {} skipped in {wall:.1} s",
        p.ok, p.failed, p.skipped
    );
    json!({
        "rate_target": rate,
        "secs": def.secs_per_rate,
        "published_ok": p.ok,
        "publish_failed": p.failed,
        "publish_skipped": p.skipped,
        "publish_errors": p.errors,
        "publish_wall_s": wall,
        "pub_conns": conns,
        "achieved_pub_rate": p.ok as f64 / wall.max(1e-9),
        "fanout_per_pub": fanout,
        "start_ns": p.start_ns,
        "publish_rtt_us": summarize(&p.rtt),
        "publish_lag_us": summarize(&p.lag),
        "server_cpu_pct": cpu_pct(&s0, &s1, |s| s.server),
        "server_cpu_ms": s1.server.cpu_ms.saturating_sub(s0.server.cpu_ms),
        "loadgen_cpu_pct": cpu_pct(&s0, &s1, |s| s.loadgen),
        "machine_cpu_pct": crate::sys::machine_busy_pct(s0.machine, s1.machine),
        "other_processes_cpu_pct": others,
        "server_rss_kb_end": s1.server.rss_kb,
        // Redis work of the phase (commands, CPU per publication), when the system has one.
        "redis": match (&r0, &r1) {
            (Some(a), Some(b)) => crate::redis_probe::delta_json(a, b, wall, p.ok),
            _ => Value::Null,
        },
    })
}

pub async fn run(def: &ScenarioDef, sut: &Sut, c: &mut Connected) -> Result<Value> {
    let cfg = pub_cfg(def, sut)?;
    let fanout = def.subs_per_channel(c.ready.ready);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut windows = Vec::new();
    for (i, &rate) in def.rates.iter().enumerate() {
        windows.push(publish_phase(def, sut, c, &cfg, i, rate, fanout).await);
        tokio::time::sleep(Duration::from_secs_f64(def.drain_s)).await;
    }
    let settle_s = c.pool.settle(Duration::from_secs(30)).await?;
    Ok(json!({ "windows": windows, "settle_s": settle_s }))
}

/// Turns the publish windows of `specific` plus the workers' histograms into `phases`.
pub fn merge_phases(specific: &Value, reports: &[Report]) -> Value {
    let mut out = specific.clone();
    let phases: Vec<Value> = specific["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| phase_json(i, w, reports))
        .collect();
    if let Some(o) = out.as_object_mut() {
        o.remove("windows");
        o.insert("phases".into(), Value::Array(phases));
    }
    out
}

fn phase_json(i: usize, w: &Value, reports: &[Report]) -> Value {
    let mut h = new_hist();
    let (mut received, mut last_ns) = (0u64, 0u64);
    for r in reports {
        if let Some(ph) = r.phases.get(i) {
            add_pairs(&mut h, &ph.hist);
            received += ph.count;
            last_ns = last_ns.max(ph.last_ns);
        }
    }
    let start_ns = w["start_ns"].as_u64().unwrap_or(0);
    let ok = w["published_ok"].as_u64().unwrap_or(0);
    let expected = (ok as f64 * w["fanout_per_pub"].as_f64().unwrap_or(0.0)).round() as u64;
    let window = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    let wall = w["publish_wall_s"].as_f64().unwrap_or(0.0);
    let srv_ms = w["server_cpu_ms"].as_f64().unwrap_or(0.0);
    let mut p = w.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("start_ns");
        o.extend(
            json!({
                "expected_deliveries": expected,
                "received": received,
                "lost": expected as i64 - received as i64,
                "loss_pct": if expected > 0 { 100.0 * (expected as f64 - received as f64) / expected as f64 } else { 0.0 },
                "delivery_window_s": window,
                "deliveries_per_s": if window > 0.0 { received as f64 / window } else { 0.0 },
                "latency_us": summarize(&h),
                "server_cpu_us_per_delivery": if received > 0 && wall > 0.0 { json!(srv_ms * 1000.0 / received as f64) } else { Value::Null },
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
    }
    p
}
