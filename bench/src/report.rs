//! The `report` subcommand: merges the JSON of one `idle` run and of `fanout` runs labelled by
//! server core count into `engine-<date>.json` and renders `engine-<date>.md` (idle cost per
//! connection, fan-out table per core count, 2-core/1-core scaling, load-generator CPU).
//! Called by `engine-bench.sh`; pure data in, files out.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    #[arg(long)]
    pub idle: Option<PathBuf>,
    /// `CORES=FILE`, e.g. `2=fanout-2.json`; repeatable.
    #[arg(long)]
    pub fanout: Vec<String>,
    /// `KEY=VALUE` lines for the header (date, kernel, commit, ...); repeatable.
    #[arg(long)]
    pub meta: Vec<String>,
    #[arg(long)]
    pub out_json: PathBuf,
    #[arg(long)]
    pub out_md: PathBuf,
}

fn load(p: &PathBuf) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

pub fn run(a: ReportArgs) -> Result<()> {
    let mut meta = Map::new();
    for kv in &a.meta {
        let (k, v) = kv.split_once('=').context("--meta wants KEY=VALUE")?;
        meta.insert(k.into(), v.into());
    }
    let idle = a.idle.as_ref().map(load).transpose()?;
    let mut fanout = Map::new();
    for spec in &a.fanout {
        let (label, file) = spec.split_once('=').context("--fanout wants CORES=FILE")?;
        fanout.insert(label.into(), load(&PathBuf::from(file))?);
    }
    let scaling = scaling(&fanout);
    let doc = json!({ "meta": meta, "idle": idle, "fanout": fanout, "scaling": scaling });
    std::fs::write(&a.out_json, serde_json::to_string_pretty(&doc)? + "\n")?;
    std::fs::write(&a.out_md, markdown(&doc))?;
    Ok(())
}

/// deliveries/s of the 2-core run divided by the 1-core run, per target rate.
fn scaling(fanout: &Map<String, Value>) -> Value {
    let (Some(two), Some(one)) = (fanout.get("2"), fanout.get("1")) else {
        return Value::Null;
    };
    let rows: Vec<Value> = phases(two)
        .iter()
        .filter_map(|p2| {
            let rate = p2["rate_target"].as_u64()?;
            let p1 = phases(one)
                .into_iter()
                .find(|p| p["rate_target"].as_u64() == Some(rate))?;
            let (d2, d1) = (
                p2["deliveries_per_s"].as_f64()?,
                p1["deliveries_per_s"].as_f64()?,
            );
            Some(json!({
                "rate_target": rate,
                "deliveries_per_s_2core": d2,
                "deliveries_per_s_1core": d1,
                "ratio": if d1 > 0.0 { json!(d2 / d1) } else { Value::Null },
            }))
        })
        .collect();
    Value::Array(rows)
}

fn phases(v: &Value) -> Vec<Value> {
    v["phases"].as_array().cloned().unwrap_or_default()
}

fn n(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None if v.is_null() => "n/a".into(),
        None => v.to_string(),
    }
}

fn kib(v: &Value) -> String {
    v.as_f64()
        .map_or("n/a".into(), |x| format!("{:.1} MiB", x / 1024.0))
}

fn markdown(doc: &Value) -> String {
    let mut s = String::from("# wiresocket engine benchmark\n\n");
    for (k, v) in doc["meta"].as_object().into_iter().flatten() {
        let _ = writeln!(s, "- **{k}**: {}", v.as_str().unwrap_or_default());
    }
    if let Some(i) = doc.get("idle").filter(|v| !v.is_null()) {
        idle_md(&mut s, i);
    }
    for (cores, f) in doc["fanout"].as_object().into_iter().flatten().rev() {
        fanout_md(&mut s, cores, f);
    }
    if let Some(rows) = doc["scaling"].as_array() {
        s.push_str("\n## Scaling (deliveries/s, 2 cores / 1 core)\n\n");
        s.push_str("| target pub/s | 2 cores | 1 core | ratio |\n|---:|---:|---:|---:|\n");
        for r in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r["rate_target"],
                n(&r["deliveries_per_s_2core"], 0),
                n(&r["deliveries_per_s_1core"], 0),
                n(&r["ratio"], 2)
            );
        }
    }
    s.push_str(
        "\n## Reading this\n\n\
         - Server and load generator share the same 2 cores. CPU columns are % of one core (200 % = \
         the whole machine); machine CPU % is all processes incl. kernel softirq work. When it is \
         near 200 %, the numbers measure the machine, not the server alone.\n\
         - Latency is publish (HTTP request sent) -> delivery (frame parsed by the subscriber), \
         CLOCK_MONOTONIC across processes; it includes the subscriber's own scheduling delay.\n\
         - Kernel TCP memory is system-wide and counts both ends of each loopback connection.\n\
         - See bench/README.md for the definitions.\n",
    );
    s
}

fn idle_md(s: &mut String, i: &Value) {
    s.push_str("\n## Idle connections\n\n| metric | value |\n|---|---:|\n");
    let rows = [
        ("connections requested", n(&i["conns_requested"], 0)),
        ("connected + subscribed", n(&i["conns_ready"], 0)),
        ("handshake failures", n(&i["handshake_failures"], 0)),
        (
            "time to N (s)",
            n(&json!(i["time_to_n_ms"].as_f64().map(|x| x / 1000.0)), 2),
        ),
        ("connect rate (conn/s)", n(&i["connect_rate_per_s"], 0)),
        (
            "server RSS baseline",
            kib(&i["server"]["baseline"]["rss_kb"]),
        ),
        (
            "server RSS after connect",
            kib(&i["server"]["after_connect"]["rss_kb"]),
        ),
        (
            "server RSS after hold",
            kib(&i["server"]["after_hold"]["rss_kb"]),
        ),
        (
            "**server RSS per connection (after connect)**",
            n(&i["server"]["rss_per_conn_bytes_after_connect"], 0) + " B",
        ),
        (
            "**server RSS per connection (after hold)**",
            n(&i["server"]["rss_per_conn_bytes_after_hold"], 0) + " B",
        ),
        (
            "kernel TCP mem per connection (both ends)",
            n(
                &i["sockstat"]["kernel_tcp_mem_per_conn_bytes_after_hold"],
                0,
            ) + " B",
        ),
        (
            "kernel slab per connection (both ends, system-wide)",
            n(&i["slab"]["kernel_slab_per_conn_bytes_after_hold"], 0) + " B",
        ),
        ("hold (s)", n(&i["hold_s"], 0)),
        (
            "heartbeats answered during hold",
            n(&i["hold"]["pings_answered"], 0),
        ),
        (
            "connections closed during hold",
            i["hold"]["closed"].to_string(),
        ),
        (
            "server CPU while connecting (ms)",
            n(&i["server"]["cpu_ms_connect"], 0),
        ),
        (
            "loadgen CPU while connecting",
            n(&i["loadgen"]["cpu_pct_connect"], 0) + " % of one core",
        ),
        ("loadgen RSS", kib(&i["loadgen"]["rss_kb"])),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    if i["failures"].as_object().is_some_and(|m| !m.is_empty()) {
        let _ = writeln!(s, "\nHandshake failures by cause: `{}`", i["failures"]);
    }
}

fn fanout_md(s: &mut String, cores: &str, f: &Value) {
    let _ = write!(
        s,
        "\n## Fan-out, server cores = {cores}\n\n{} of {} subscribers on one channel ({} handshake failures), \
         {} s per rate, publisher over HTTP API keep-alive.\n\n\
         | target pub/s | achieved pub/s | deliveries/s | expected | received | loss % | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | loadgen CPU % | server CPU % | machine CPU % |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        f["subs_ready"], f["subs_requested"], f["handshake_failures"], f["secs_per_rate"]
    );
    for p in phases(f) {
        let l = &p["latency_us"];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p["rate_target"],
            n(&p["achieved_pub_rate"], 0),
            n(&p["deliveries_per_s"], 0),
            p["expected_deliveries"],
            p["received"],
            n(&p["loss_pct"], 2),
            l["p50_us"],
            l["p90_us"],
            l["p99_us"],
            l["p999_us"],
            l["max_us"],
            n(&p["loadgen_cpu_pct"], 0),
            n(&p["server_cpu_pct"], 0),
            n(&p["machine_cpu_pct"], 0)
        );
    }
    for p in phases(f) {
        if let Some(o) = p["other_processes_cpu_pct"]
            .as_array()
            .filter(|o| !o.is_empty())
        {
            let list: Vec<String> = o
                .iter()
                .map(|e| format!("{} {}%", e[0].as_str().unwrap_or("?"), n(&e[1], 0)))
                .collect();
            let _ = writeln!(
                s,
                "\nOther CPU during {}/s: {}",
                p["rate_target"],
                list.join(", ")
            );
        }
    }
    let _ = writeln!(
        s,
        "\nClosed subscribers: `{}`; disconnect pushes: `{}`; publish errors per phase: {}",
        f["closed"],
        f["disconnect_pushes"],
        phases(f)
            .iter()
            .map(|p| p["publish_errors"].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_pairs_rates() {
        let mk = |d: f64| json!({"phases": [{"rate_target": 100, "deliveries_per_s": d}]});
        let mut m = Map::new();
        m.insert("2".into(), mk(300.0));
        m.insert("1".into(), mk(200.0));
        let s = scaling(&m);
        assert_eq!(s[0]["ratio"], json!(1.5));
        let md = markdown(&json!({"meta": {}, "idle": null, "fanout": m, "scaling": s}));
        assert!(md.contains("| 100 | 300 | 200 | 1.50 |"));
    }
}
