//! The `idle` scenario: open N connections (connect + subscribe, answering heartbeats), hold
//! them, and measure what an idle connection costs the server — VmRSS delta per connection and
//! kernel TCP memory (`/proc/net/sockstat`) — plus time-to-N, handshake failures and the load
//! generator's own CPU and RSS. Writes one JSON object (`--out`) and a human summary.

use crate::pool::{Pool, Spread};
use crate::sys::{self, proc_sample, sockstat, ProcSample};
use crate::worker::WorkerArgs;
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// WebSocket endpoint, e.g. ws://127.0.0.1:8000/connection/websocket
    #[arg(long)]
    pub url: String,
    /// HS256 secret for connection tokens.
    #[arg(long)]
    pub secret: String,
    #[arg(long)]
    pub conns: u64,
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Seconds to hold all connections after they are subscribed (>25 s sees one heartbeat).
    #[arg(long, default_value_t = 30)]
    pub hold_s: u64,
    #[command(flatten)]
    pub spread: Spread,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn server(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(proc_sample)
}

/// Bytes per connection of a KiB delta, `null` when unknown.
fn per_conn_kb(before: Option<ProcSample>, after: Option<ProcSample>, n: u64) -> Value {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => {
            json!((a.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / n as f64)
        }
        _ => Value::Null,
    }
}

pub async fn run(a: IdleArgs) -> Result<Value> {
    sys::raise_nofile();
    let n_ips = a.spread.n_ips()?;
    crate::net::Target::parse(&a.url)?;
    let procs = a.spread.workers(a.conns)?;
    let me = std::process::id();
    let srv0 = server(a.spread.server_pid);
    let sock0 = sockstat();
    let slab0 = sys::slab_kb();
    let self0 = proc_sample(me).unwrap_or_default();
    eprintln!(
        "idle: {} connections over {procs} workers, hold {} s",
        a.conns, a.hold_s
    );

    let template = WorkerArgs {
        url: a.url.clone(),
        secret: a.secret.clone(),
        channel: a.channel.clone(),
        conns: a.conns,
        concurrency: a.spread.concurrency,
        src_ips: a.spread.src_ips.clone(),
        ip_offset: 0,
        id: 0,
        phases: 0,
        deadline_s: a.spread.connect_timeout_s + a.hold_s + 60,
        handshake_timeout_s: a.spread.handshake_timeout_s,
        token_ttl_s: 3600,
        pace_us: 0,
    };
    let t0 = Instant::now();
    let mut pool = Pool::spawn(&template, procs, n_ips)?;
    let ready = pool
        .wait_ready(t0 + Duration::from_secs(a.spread.connect_timeout_s))
        .await
        .context("connect phase")?;
    let time_to_n = t0.elapsed();
    let mut pids = pool.pids.clone();
    pids.push(me);
    let srv1 = server(a.spread.server_pid);
    let sock1 = sockstat();
    let lg1 = sys::sum_samples(&pids);
    eprintln!(
        "idle: {} subscribed, {} failed in {:.1} s; holding {} s",
        ready.ready,
        ready.failed,
        time_to_n.as_secs_f64(),
        a.hold_s
    );
    tokio::time::sleep(Duration::from_secs(a.hold_s)).await;
    let srv2 = server(a.spread.server_pid);
    let sock2 = sockstat();
    let slab2 = sys::slab_kb();
    let lg2 = sys::sum_samples(&pids);
    let reports = pool.collect_reports(Duration::from_secs(30)).await?;
    pool.shutdown().await;

    let n = ready.ready;
    let mut closed = std::collections::BTreeMap::<String, u64>::new();
    for r in &reports {
        for (k, v) in &r.closed {
            *closed.entry(k.clone()).or_default() += v;
        }
    }
    let pings: u64 = reports.iter().map(|r| r.pings).sum();
    let kmem = |s: Option<sys::SockStat>| s.map(|s| s.mem_bytes());
    let kernel_per_conn = match (kmem(sock0), kmem(sock2)) {
        (Some(b), Some(a)) if n > 0 => json!((a as f64 - b as f64) / n as f64),
        _ => Value::Null,
    };
    let lg_cpu_connect = lg1.cpu_ms.saturating_sub(self0.cpu_ms);
    Ok(json!({
        "scenario": "idle",
        "conns_requested": a.conns,
        "conns_ready": n,
        "handshake_failures": ready.failed,
        "failures": ready.failures,
        "procs": procs,
        "concurrency": a.spread.concurrency,
        "src_ips": a.spread.src_ips,
        "time_to_n_ms": time_to_n.as_millis() as u64,
        "connect_rate_per_s": n as f64 / time_to_n.as_secs_f64().max(1e-9),
        "hold_s": a.hold_s,
        "server": {
            "pid": a.spread.server_pid,
            "baseline": srv0, "after_connect": srv1, "after_hold": srv2,
            "rss_per_conn_bytes_after_connect": per_conn_kb(srv0, srv1, n),
            "rss_per_conn_bytes_after_hold": per_conn_kb(srv0, srv2, n),
            "cpu_ms_connect": srv0.zip(srv1).map(|(b, a)| a.cpu_ms - b.cpu_ms),
            "cpu_ms_hold": srv1.zip(srv2).map(|(b, a)| a.cpu_ms - b.cpu_ms),
        },
        "sockstat": {
            "page_size": sys::page_size(),
            "baseline": sock0, "after_connect": sock1, "after_hold": sock2,
            "kernel_tcp_mem_per_conn_bytes_after_hold": kernel_per_conn,
            "note": "system-wide: covers both ends of every loopback connection",
        },
        "slab": {
            "baseline_kb": slab0, "after_hold_kb": slab2,
            "kernel_slab_per_conn_bytes_after_hold": match (slab0, slab2) {
                (Some(b), Some(a)) if n > 0 => json!((a as f64 - b as f64) * 1024.0 / n as f64),
                _ => Value::Null,
            },
            "note": "system-wide /proc/meminfo Slab: both ends' sockets, files, epoll entries",
        },
        "hold": { "pings_answered": pings, "closed": closed },
        "loadgen": {
            "cpu_ms_connect": lg_cpu_connect,
            "cpu_pct_connect": lg_cpu_connect as f64 / 10.0 / time_to_n.as_secs_f64().max(1e-9),
            "cpu_ms_hold": lg2.cpu_ms.saturating_sub(lg1.cpu_ms),
            "rss_kb": lg2.rss_kb,
            "hwm_kb": lg2.hwm_kb,
            "rss_per_conn_bytes": if n > 0 { json!(lg2.rss_kb as f64 * 1024.0 / n as f64) } else { Value::Null },
        },
    }))
}

/// The human-readable lines for stdout.
pub fn summary(v: &Value) -> String {
    let f = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_f64)
            .map_or("n/a".into(), |x| format!("{x:.0}"))
    };
    format!(
        "idle: {} / {} connected+subscribed ({} failed) in {} ms ({} conn/s)\n\
         server RSS/conn: {} B after connect, {} B after hold; kernel TCP mem/conn: {} B, slab/conn: {} B\n\
         heartbeats answered: {}; closed during hold: {}\n\
         loadgen: {} ms CPU while connecting ({}% of one core), RSS {} KiB ({} B/conn)",
        v["conns_ready"],
        v["conns_requested"],
        v["handshake_failures"],
        v["time_to_n_ms"],
        f("/connect_rate_per_s"),
        f("/server/rss_per_conn_bytes_after_connect"),
        f("/server/rss_per_conn_bytes_after_hold"),
        f("/sockstat/kernel_tcp_mem_per_conn_bytes_after_hold"),
        f("/slab/kernel_slab_per_conn_bytes_after_hold"),
        v["hold"]["pings_answered"],
        v["hold"]["closed"],
        v["loadgen"]["cpu_ms_connect"],
        f("/loadgen/cpu_pct_connect"),
        v["loadgen"]["rss_kb"],
        f("/loadgen/rss_per_conn_bytes"),
    )
}
