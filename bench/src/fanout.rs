//! The `fanout` scenario: N subscribers on one channel, a publisher posting through the HTTP API
//! at each requested rate for D seconds. Per rate: achieved publish rate, deliveries/s, expected
//! vs received deliveries (loss), publish->deliver latency percentiles (merged from every
//! worker's histogram), and CPU of the load generator and of the server during the phase.

use crate::events::Report;
use crate::hist::{add_pairs, new_hist, summarize};
use crate::pool::{Pool, Spread};
use crate::publisher::{run_phase, PubCfg};
use crate::sys::{self, proc_sample};
use crate::worker::WorkerArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[arg(long)]
    pub url: String,
    /// Server base URL for the HTTP API, e.g. http://127.0.0.1:8000
    #[arg(long)]
    pub api_url: String,
    #[arg(long)]
    pub api_key: String,
    #[arg(long)]
    pub secret: String,
    #[arg(long)]
    pub subs: u64,
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Publications per second, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    pub rates: Vec<u64>,
    #[arg(long, default_value_t = 10.0)]
    pub secs_per_rate: f64,
    /// Pause after each phase so late deliveries land before the next phase starts.
    #[arg(long, default_value_t = 3.0)]
    pub drain_s: f64,
    #[command(flatten)]
    pub spread: Spread,
    /// Keep-alive HTTP connections used by the publisher (0 = automatic: rate/50, 2..128).
    #[arg(long, default_value_t = 0)]
    pub pub_conns: usize,
    /// Extra filler bytes per publication.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// After the last phase, wait up to this long for deliveries still in flight (until the
    /// count stops changing) before reporting; whatever is still missing then counts as lost.
    #[arg(long, default_value_t = 30)]
    pub settle_max_s: u64,
    /// Subscriber read pacing in µs (see `worker --pace-us`); 0 = off. Adds up to this much
    /// latency but lowers the load generator's CPU per delivery.
    #[arg(long, default_value_t = 0)]
    pub pace_us: u64,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

struct PhaseWindow {
    rate: u64,
    pub_conns: usize,
    publish: crate::publisher::PhaseResult,
    lg_cpu_ms: u64,
    srv_cpu_ms: Option<u64>,
    machine_pct: Option<f64>,
    /// Heaviest processes other than server and load generator during the phase.
    others: Vec<(String, f64)>,
}

pub async fn run(a: FanoutArgs) -> Result<Value> {
    sys::raise_nofile();
    if a.rates.is_empty() || a.rates.contains(&0) {
        bail!("--rates needs positive publications/s");
    }
    let n_ips = a.spread.n_ips()?;
    crate::net::Target::parse(&a.url)?;
    let mut api = crate::net::Target::parse(&a.api_url)?;
    api.path = format!("{}/api/publish", api.path.trim_end_matches('/'));
    let procs = a.spread.workers(a.subs)?;
    let phase_budget = a.rates.len() as f64 * (a.secs_per_rate * 1.5 + 2.0 + a.drain_s);
    let template = WorkerArgs {
        url: a.url.clone(),
        secret: a.secret.clone(),
        channel: a.channel.clone(),
        conns: a.subs,
        concurrency: a.spread.concurrency,
        src_ips: a.spread.src_ips.clone(),
        ip_offset: 0,
        id: 0,
        phases: a.rates.len(),
        deadline_s: a.spread.connect_timeout_s + phase_budget.ceil() as u64 + a.settle_max_s + 90,
        handshake_timeout_s: a.spread.handshake_timeout_s,
        token_ttl_s: 3600,
        pace_us: a.pace_us,
    };
    eprintln!(
        "fanout: {} subscribers over {procs} workers, rates {:?}",
        a.subs, a.rates
    );
    let t0 = Instant::now();
    let mut pool = Pool::spawn(&template, procs, n_ips)?;
    let ready = pool
        .wait_ready(t0 + Duration::from_secs(a.spread.connect_timeout_s))
        .await
        .context("connect phase")?;
    let time_to_n = t0.elapsed();
    eprintln!(
        "fanout: {} subscribed, {} failed in {:.1} s",
        ready.ready,
        ready.failed,
        time_to_n.as_secs_f64()
    );
    let mut pids = pool.pids.clone();
    pids.push(std::process::id());
    let cfg = Rc::new(PubCfg {
        target: api,
        api_key: a.api_key.clone(),
        channel: a.channel.clone(),
        pad: a.payload_bytes,
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut windows = Vec::new();
    for (i, &rate) in a.rates.iter().enumerate() {
        let lg0 = sys::sum_samples(&pids);
        let srv0 = a.spread.server_pid.and_then(proc_sample);
        let m0 = sys::machine_ticks();
        let all0 = sys::all_proc_cpu();
        let conns = if a.pub_conns == 0 {
            (rate / 50).clamp(2, 128) as usize
        } else {
            a.pub_conns
        };
        let publish = run_phase(cfg.clone(), conns, i as u32, rate, a.secs_per_rate).await;
        let lg1 = sys::sum_samples(&pids);
        let srv1 = a.spread.server_pid.and_then(proc_sample);
        let machine_pct = sys::machine_busy_pct(m0, sys::machine_ticks());
        let wall = (publish.end_ns - publish.start_ns) as f64 / 1e9;
        let mut ours = pids.clone();
        ours.extend(a.spread.server_pid);
        let others = sys::top_others(&all0, &sys::all_proc_cpu(), &ours, wall, 4);
        eprintln!(
            "  phase {i}: {rate}/s target, {} ok, {} failed, {} skipped in {:.1} s",
            publish.ok,
            publish.failed,
            publish.skipped,
            (publish.end_ns - publish.start_ns) as f64 / 1e9
        );
        windows.push(PhaseWindow {
            rate,
            pub_conns: conns,
            publish,
            lg_cpu_ms: lg1.cpu_ms.saturating_sub(lg0.cpu_ms),
            srv_cpu_ms: srv0
                .zip(srv1)
                .map(|(b, a)| a.cpu_ms.saturating_sub(b.cpu_ms)),
            machine_pct,
            others,
        });
        tokio::time::sleep(Duration::from_secs_f64(a.drain_s)).await;
    }
    let settle_s = pool.settle(Duration::from_secs(a.settle_max_s)).await?;
    eprintln!("fanout: deliveries settled after {settle_s:.1} s more");
    let lg_end = sys::sum_samples(&pids);
    let reports = pool.collect_reports(Duration::from_secs(30)).await?;
    pool.shutdown().await;
    let phases: Vec<Value> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| phase_json(i, w, &reports, ready.ready, a.secs_per_rate))
        .collect();
    let sum_map = |f: fn(&Report) -> &std::collections::BTreeMap<String, u64>| {
        let mut m = std::collections::BTreeMap::<String, u64>::new();
        reports
            .iter()
            .flat_map(|r| f(r).iter())
            .for_each(|(k, v)| *m.entry(k.clone()).or_default() += v);
        m
    };
    Ok(json!({
        "scenario": "fanout",
        "subs_requested": a.subs,
        "subs_ready": ready.ready,
        "handshake_failures": ready.failed,
        "failures": ready.failures,
        "procs": procs,
        "time_to_n_ms": time_to_n.as_millis() as u64,
        "secs_per_rate": a.secs_per_rate,
        "payload_extra_bytes": a.payload_bytes,
        "pub_conns": a.pub_conns,
        "pace_us": a.pace_us,
        "settle_s": settle_s,
        "phases": phases,
        "closed": sum_map(|r| &r.closed),
        "disconnect_pushes": sum_map(|r| &r.disconnect_pushes),
        "pings_answered": reports.iter().map(|r| r.pings).sum::<u64>(),
        "unphased_pubs": reports.iter().map(|r| r.unphased_pubs).sum::<u64>(),
        "loadgen": { "rss_kb": lg_end.rss_kb, "hwm_kb": lg_end.hwm_kb, "cpu_ms_total": lg_end.cpu_ms },
    }))
}

fn phase_json(i: usize, w: &PhaseWindow, reports: &[Report], subs: u64, secs: f64) -> Value {
    let p = &w.publish;
    let mut h = new_hist();
    let (mut received, mut last_ns) = (0u64, 0u64);
    for r in reports {
        if let Some(ph) = r.phases.get(i) {
            add_pairs(&mut h, &ph.hist);
            received += ph.count;
            last_ns = last_ns.max(ph.last_ns);
        }
    }
    let pub_wall = (p.end_ns - p.start_ns) as f64 / 1e9;
    let window = last_ns.saturating_sub(p.start_ns) as f64 / 1e9;
    let expected = p.ok * subs;
    json!({
        "rate_target": w.rate,
        "secs": secs,
        "published_ok": p.ok,
        "publish_failed": p.failed,
        "publish_skipped": p.skipped,
        "publish_errors": p.errors,
        "publish_wall_s": pub_wall,
        "pub_conns": w.pub_conns,
        "achieved_pub_rate": p.ok as f64 / pub_wall.max(1e-9),
        "expected_deliveries": expected,
        "received": received,
        "lost": expected as i64 - received as i64,
        "loss_pct": if expected > 0 { 100.0 * (expected as f64 - received as f64) / expected as f64 } else { 0.0 },
        "delivery_window_s": window,
        "deliveries_per_s": if window > 0.0 { received as f64 / window } else { 0.0 },
        "latency_us": summarize(&h),
        "publish_rtt_us": summarize(&p.rtt),
        "loadgen_cpu_pct": w.lg_cpu_ms as f64 / 10.0 / pub_wall.max(1e-9),
        "machine_cpu_pct": w.machine_pct,
        "other_processes_cpu_pct": w.others,
        "server_cpu_pct": w.srv_cpu_ms.map(|c| c as f64 / 10.0 / pub_wall.max(1e-9)),
    })
}

/// The human-readable table for stdout.
pub fn summary(v: &Value) -> String {
    let mut s = format!(
        "fanout: {} / {} subscribers ready ({} failed) in {} ms\n\
         {:>8} {:>9} {:>11} {:>12} {:>12} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}\n",
        v["subs_ready"],
        v["subs_requested"],
        v["handshake_failures"],
        v["time_to_n_ms"],
        "rate",
        "pub/s",
        "deliv/s",
        "expected",
        "received",
        "loss%",
        "p50us",
        "p90us",
        "p99us",
        "p999us",
        "maxus",
        "lgCPU%",
        "svCPU%",
        "mCPU%"
    );
    for p in v["phases"].as_array().into_iter().flatten() {
        let l = &p["latency_us"];
        let num = |x: &Value| x.as_f64().map_or("n/a".into(), |x| format!("{x:.0}"));
        s.push_str(&format!(
            "{:>8} {:>9.0} {:>11.0} {:>12} {:>12} {:>7.2} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}\n",
            p["rate_target"].to_string(),
            p["achieved_pub_rate"].as_f64().unwrap_or(0.0),
            p["deliveries_per_s"].as_f64().unwrap_or(0.0),
            p["expected_deliveries"].to_string(),
            p["received"].to_string(),
            p["loss_pct"].as_f64().unwrap_or(0.0),
            l["p50_us"].to_string(),
            l["p90_us"].to_string(),
            l["p99_us"].to_string(),
            l["p999_us"].to_string(),
            l["max_us"].to_string(),
            num(&p["loadgen_cpu_pct"]),
            num(&p["server_cpu_pct"]),
            num(&p["machine_cpu_pct"]),
        ));
    }
    s.push_str(&format!(
        "closed: {}  disconnect pushes: {}\n",
        v["closed"], v["disconnect_pushes"]
    ));
    s
}
