//! Runs one scenario against one system under test: spawns the worker pool, connects every
//! client (the step all scenarios share), hands over to the scenario kind (`idle`, `publish`,
//! `reconnect`, `slow`), and wraps the result in one JSON object that records the scenario
//! definition, the system and the connect step.
//!
//! Server cost is measured over all of the system's processes (`Sut::pids`: e.g. Node workers
//! plus their Redis, nginx master plus workers), load-generator cost over the parent and its
//! workers, both from `/proc`.

use crate::dialect::Dialect;
use crate::events::Report;
use crate::hist::{add_pairs, new_hist, summarize};
use crate::pool::{Pool, ReadySummary, Spread};
use crate::redis_probe::RedisSample;
use crate::scenario::{Kind, ScenarioDef};
use crate::sys::{self, ProcSample, SockStat};
use crate::worker::WorkerArgs;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The system under test: how to reach it and which processes are it.
#[derive(Debug, Clone)]
pub struct Sut {
    pub name: String,
    pub dialect: Dialect,
    /// WebSocket URL (`ws://127.0.0.1:PORT/connection/websocket` for wiresocket; peers use
    /// their own paths on the same host and port, see `dialect`); comma-separated for a
    /// cluster (clients round-robin over them).
    pub url: String,
    /// HTTP base URL for publishing; comma-separated for a cluster (the publisher's
    /// connections round-robin over them, so publications cross nodes).
    pub api_url: String,
    pub api_key: String,
    pub secret: String,
    pub pids: Vec<u32>,
    /// The Redis the system fans out through, when it has one (INFO and CPU are sampled).
    pub redis: Option<crate::redis_probe::RedisProbe>,
}

/// Machine and process readings at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub at: Instant,
    pub server: ProcSample,
    pub loadgen: ProcSample,
    pub sock: Option<SockStat>,
    pub slab_kb: Option<u64>,
    /// Machine-wide CPU ticks (busy, total).
    pub machine: Option<(u64, u64)>,
}

impl Snapshot {
    pub fn take(server: &[u32], loadgen: &[u32]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            server: sys::sum_samples(server),
            loadgen: sys::sum_samples(loadgen),
            sock: sys::sockstat(),
            slab_kb: sys::slab_kb(),
            machine: sys::machine_ticks(),
        }
    }
}

/// CPU of `which` between two snapshots, in % of one core.
pub fn cpu_pct(a: &Snapshot, b: &Snapshot, which: fn(&Snapshot) -> ProcSample) -> f64 {
    let secs = (b.at - a.at).as_secs_f64().max(1e-9);
    which(b).cpu_ms.saturating_sub(which(a).cpu_ms) as f64 / 10.0 / secs
}

/// Everything a scenario kind needs after the connect step.
pub struct Connected {
    pub pool: Pool,
    pub ready: ReadySummary,
    pub time_to_n: Duration,
    /// Load-generator processes (parent and workers).
    pub lg_pids: Vec<u32>,
    pub before: Snapshot,
    pub after_connect: Snapshot,
}

impl Connected {
    pub fn snapshot(&self, sut: &Sut) -> Snapshot {
        Snapshot::take(&sut.pids, &self.lg_pids)
    }
}

/// Upper bound of a scenario's run time after connecting, for the workers' own deadline.
fn budget_s(def: &ScenarioDef) -> f64 {
    let phases = def.rates.len().max(1) as f64 * (def.secs_per_rate * 1.5 + 2.0 + def.drain_s);
    match def.kind {
        Kind::Connect => 10.0,
        Kind::Idle => def.hold_s + 10.0,
        Kind::Publish => phases + 40.0,
        Kind::Slow => 2.0 * phases + 60.0,
        Kind::Reconnect => def.hold_s + def.max_recover_s + 30.0,
    }
}

/// Spawns the workers and waits until every client is subscribed or failed.
async fn connect(def: &ScenarioDef, sut: &Sut, spread: &Spread) -> Result<Connected> {
    let n_ips = spread.n_ips()?;
    crate::net::Target::parse_list(&sut.url)?;
    let procs = spread.workers(def.conns)?;
    let phases = match def.kind {
        Kind::Slow => 2,
        _ => def.rates.len(),
    };
    let template = WorkerArgs {
        url: sut.url.clone(),
        dialect: sut.dialect,
        secret: sut.secret.clone(),
        channel: def.channel_plan().prefix,
        channel_count: def.channels,
        channels_per_client: def.channels_per_client,
        conns: def.conns,
        index_base: 0,
        stall_every: def.stall_every(),
        concurrency: def.concurrency,
        src_ips: spread.src_ips.clone(),
        ip_offset: 0,
        id: 0,
        phases,
        deadline_s: spread.connect_timeout_s + budget_s(def).ceil() as u64 + 90,
        handshake_timeout_s: spread.handshake_timeout_s,
        token_ttl_s: 3600,
    };
    eprintln!(
        "{} on {}: {} clients over {procs} workers",
        def.name, sut.name, def.conns
    );
    let me = std::process::id();
    let before = Snapshot::take(&sut.pids, &[me]);
    let t0 = Instant::now();
    let mut pool = Pool::spawn(&template, procs, n_ips)?;
    let ready = pool
        .wait_ready(t0 + Duration::from_secs(spread.connect_timeout_s))
        .await
        .context("connect phase")?;
    let time_to_n = t0.elapsed();
    let mut lg_pids = pool.pids.clone();
    lg_pids.push(me);
    let after_connect = Snapshot::take(&sut.pids, &lg_pids);
    eprintln!(
        "  {} ready, {} failed in {:.1} s",
        ready.ready,
        ready.failed,
        time_to_n.as_secs_f64()
    );
    Ok(Connected {
        pool,
        ready,
        time_to_n,
        lg_pids,
        before,
        after_connect,
    })
}

/// Runs `def` against `sut` and returns the result object.
pub async fn run(def: &ScenarioDef, sut: &Sut, spread: &Spread, scale: f64) -> Result<Value> {
    sys::raise_nofile();
    let redis0 = sut.redis.as_ref().and_then(|r| r.try_sample());
    let mut c = connect(def, sut, spread).await?;
    let redis1 = sut.redis.as_ref().and_then(|r| r.try_sample());
    let specific = match def.kind {
        Kind::Connect => Ok(json!({})),
        Kind::Idle => crate::idle::hold(def, sut, &mut c).await,
        Kind::Publish => crate::publish::run(def, sut, &mut c).await,
        Kind::Reconnect => crate::reconnect::run(def, sut, &mut c).await,
        Kind::Slow => crate::slow::run(def, sut, &mut c).await,
    };
    let redis2 = sut.redis.as_ref().and_then(|r| r.try_sample());
    let reports = c.pool.collect_reports(Duration::from_secs(30)).await;
    let end = c.snapshot(sut);
    let redis = match (redis0, redis1, redis2) {
        (Some(a), Some(b), Some(e)) => redis_json(def, &c, &a, &b, &e),
        _ => Value::Null,
    };
    let lg_procs = c.pool.pids.len();
    let connect = connect_json(def, &c, reports.as_deref().unwrap_or_default());
    c.pool.shutdown().await;
    let (specific, reports) = (specific?, reports?);
    let mut v = json!({
        "scenario": def,
        "scale": scale,
        "system": sut.name,
        "dialect": sut.dialect,
        "connect": connect,
        "closed": sum_maps(&reports, |r| &r.closed),
        "disconnect_pushes": sum_maps(&reports, |r| &r.disconnect_pushes),
        "heartbeats_answered": reports.iter().map(|r| r.pings).sum::<u64>(),
        "unphased_pubs": reports.iter().map(|r| r.unphased_pubs).sum::<u64>(),
        "loadgen": {
            "procs": lg_procs,
            "rss_kb": end.loadgen.rss_kb,
            "cpu_ms_total": end.loadgen.cpu_ms,
        },
        "server_end": { "rss_kb": end.server.rss_kb, "cpu_ms_total": end.server.cpu_ms },
        "redis": redis,
    });
    let extra = match def.kind {
        Kind::Publish => crate::publish::merge_phases(&specific, &reports),
        Kind::Slow => {
            let mut v = crate::publish::merge_phases(&specific, &reports);
            let outcome = crate::slow::slow_outcome(&reports);
            v["slow"]["disconnected"] = outcome["disconnected"].clone();
            v["slow"]["after_resume"] = outcome;
            v
        }
        Kind::Reconnect => crate::reconnect::merge(&specific, &reports),
        _ => specific,
    };
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Ok(v)
}

/// Redis readings of a run: before any client, after connecting, at the end; memory per
/// connection and per channel from the connect step, commands and CPU of the connect step and
/// of the rest of the run (per publication in `phases[i].redis`).
fn redis_json(
    def: &ScenarioDef,
    c: &Connected,
    before: &RedisSample,
    connected: &RedisSample,
    end: &RedisSample,
) -> Value {
    use crate::redis_probe::{delta_json, sample_json};
    let mem = connected.used_memory as f64 - before.used_memory as f64;
    let per = |n: u64| {
        if n > 0 {
            json!(mem / n as f64)
        } else {
            Value::Null
        }
    };
    let run_s = c.after_connect.at.elapsed().as_secs_f64();
    json!({
        "before": sample_json(before),
        "after_connect": sample_json(connected),
        "end": sample_json(end),
        "used_memory_per_conn_bytes": per(c.ready.ready),
        "used_memory_per_channel_bytes": per(def.channels.min(c.ready.ready * def.channels_per_client).max(1)),
        "rss_per_conn_bytes": per_kb(before.rss_kb, connected.rss_kb, c.ready.ready),
        "connect": delta_json(before, connected, c.time_to_n.as_secs_f64(), 0),
        "after_connect_to_end": delta_json(connected, end, run_s, 0),
    })
}

fn per_kb(a_kb: u64, b_kb: u64, n: u64) -> Value {
    if n == 0 {
        return Value::Null;
    }
    json!((b_kb as f64 - a_kb as f64) * 1024.0 / n as f64)
}

fn connect_json(def: &ScenarioDef, c: &Connected, reports: &[Report]) -> Value {
    let mut h = new_hist();
    for r in reports {
        add_pairs(&mut h, &r.connect_hist);
    }
    let n = c.ready.ready;
    let secs = c.time_to_n.as_secs_f64().max(1e-9);
    let srv_cpu_ms = c
        .after_connect
        .server
        .cpu_ms
        .saturating_sub(c.before.server.cpu_ms);
    json!({
        "requested": def.conns,
        "ready": n,
        "failed": c.ready.failed,
        "failures": c.ready.failures,
        "time_to_n_ms": c.time_to_n.as_millis() as u64,
        "rate_per_s": n as f64 / secs,
        "handshake_latency_us": summarize(&h),
        "server_cpu_ms": srv_cpu_ms,
        "server_cpu_us_per_connect": if n > 0 { json!(srv_cpu_ms as f64 * 1000.0 / n as f64) } else { Value::Null },
        "server_cpu_pct": cpu_pct(&c.before, &c.after_connect, |s| s.server),
        "loadgen_cpu_pct": cpu_pct(&c.before, &c.after_connect, |s| s.loadgen),
        "server_rss_kb_before": c.before.server.rss_kb,
        "server_rss_kb_after": c.after_connect.server.rss_kb,
    })
}

pub fn sum_maps(
    reports: &[Report],
    f: fn(&Report) -> &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    reports
        .iter()
        .flat_map(|r| f(r).iter())
        .for_each(|(k, v)| *m.entry(k.clone()).or_default() += v);
    m
}
