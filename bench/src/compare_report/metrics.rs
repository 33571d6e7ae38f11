//! What the report compares: every metric read from each system's result of a scenario (a table
//! of JSON pointers for the plain ones, per-phase rows for the publish scenarios, computed ones
//! such as peak RSS per connection), and the per-connection / per-message `costs` of each system
//! that `capacity` plans with.

use super::{f, rates, systems, Metric};
use serde_json::{json, Map, Value};

/// (scenario, label, unit, higher is better, pointer, multiplier)
type Plain = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static str,
    f64,
);

/// Multiplier turning µs into ms.
const MS: f64 = 1e-3;

#[rustfmt::skip]
const PLAIN: &[Plain] = &[
    ("connect-storm", "connects/s", "1/s", true, "/connect/rate_per_s", 1.0),
    ("connect-storm", "handshake p50", "ms", false, "/connect/handshake_latency_us/p50_us", MS),
    ("connect-storm", "handshake p99", "ms", false, "/connect/handshake_latency_us/p99_us", MS),
    ("connect-storm", "server CPU per connect", "µs", false, "/connect/server_cpu_us_per_connect", 1.0),
    ("connect-storm", "failed handshakes", "", false, "/connect/failed", 1.0),
    ("idle-hold", "kernel slab per connection (both ends)", "B", false, "/memory/slab_per_conn_bytes", 1.0),
    ("idle-hold", "server CPU while idle", "% core", false, "/idle_cpu/server_cpu_pct", 1.0),
    ("idle-hold", "Redis used_memory per connection", "B", false, "/redis/used_memory_per_conn_bytes", 1.0),
    ("idle-hold", "Redis RSS per connection", "B", false, "/redis/rss_per_conn_bytes", 1.0),
    ("many-channels", "Redis used_memory per channel (after connect)", "B", false, "/redis/used_memory_per_channel_bytes", 1.0),
    ("many-channels", "Redis pubsub channels (after connect)", "", false, "/redis/after_connect/pubsub_channels", 1.0),
    ("reconnect-storm", "Redis commands during the storm", "", false, "/redis/after_connect_to_end/commands", 1.0),
    ("reconnect-storm", "time until all back", "s", false, "/time_all_back_ms", MS),
    ("reconnect-storm", "accept latency p99", "ms", false, "/storm/accept_latency_us/p99_us", MS),
    ("reconnect-storm", "accept latency max", "ms", false, "/storm/accept_latency_us/max_us", MS),
    ("reconnect-storm", "gave up", "", false, "/gave_up", 1.0),
    ("reconnect-storm", "503 answers (shedding)", "", false, "/storm/shed_503", 1.0),
    ("slow-consumers", "healthy p99, all reading", "ms", false, "/phases/0/latency_us/p99_us", MS),
    ("slow-consumers", "healthy p99, 10% stalled", "ms", false, "/phases/1/latency_us/p99_us", MS),
    ("slow-consumers", "healthy loss, 10% stalled", "%", false, "/phases/1/loss_pct", 1.0),
    ("slow-consumers", "memory growth while stalled (RSS + kernel TCP)", "MiB", false, "/slow/memory_growth_mb", 1.0),
    ("slow-consumers", "server RSS growth while stalled", "MiB", false, "/slow/server_rss_growth_mb", 1.0),
    ("slow-consumers", "slow clients disconnected by the server", "", false, "/slow/disconnected", 1.0),
];

/// Per-phase rows of the publish scenarios: (label suffix, unit, higher is better, key, multiplier).
#[rustfmt::skip]
const PER_PHASE: &[(&str, &str, bool, &str, f64)] = &[
    ("publishes/s achieved", "1/s", true, "achieved_pub_rate", 1.0),
    ("deliveries/s", "1/s", true, "deliveries_per_s", 1.0),
    ("latency p50", "ms", false, "latency_us/p50_us", MS),
    ("latency p90", "ms", false, "latency_us/p90_us", MS),
    ("latency p99", "ms", false, "latency_us/p99_us", MS),
    ("latency p999", "ms", false, "latency_us/p999_us", MS),
    ("loss", "%", false, "loss_pct", 1.0),
    ("server CPU per delivery", "µs", false, "server_cpu_us_per_delivery", 1.0),
    ("Redis commands per publication", "", false, "redis/ops_per_publication", 1.0),
    ("Redis CPU", "% core", false, "redis/cpu_pct", 1.0),
    ("Redis CPU per publication", "µs", false, "redis/cpu_us_per_publication", 1.0),
];

/// Reads `ptr` scaled by `k`. Loss is clipped at 0: a publish whose HTTP answer timed out
/// (5 s) counts as failed but may still be delivered, which makes raw loss negative (the JSON
/// keeps the raw value).
fn read(r: &Value, ptr: &str, k: f64) -> Option<f64> {
    let v = f(r, ptr)?;
    Some(
        if ptr.ends_with("loss_pct") {
            v.max(0.0)
        } else {
            v
        } * k,
    )
}

/// A metric computed from every system's result of `scenario` (failed runs give None).
fn metric(
    doc: &Value,
    scenario: &str,
    label: &str,
    unit: &'static str,
    higher: bool,
    get: impl Fn(&Value) -> Option<f64>,
) -> Option<Metric> {
    let res = doc["results"].get(scenario)?;
    let values = systems(doc)
        .into_iter()
        .map(|s| {
            let r = &res["systems"][&s];
            let v = if r.get("error").is_some() {
                None
            } else {
                get(r)
            };
            (s, v)
        })
        .collect();
    Some(Metric {
        scenario: scenario.into(),
        label: label.into(),
        unit,
        higher_is_better: higher,
        values,
    })
}

/// Peak server RSS per idle connection: the largest of the readings after connecting, during
/// and after the hold, minus the RSS before any client, per connected client (garbage-collected
/// servers shrink while idle; a host must hold the peak).
pub fn peak_rss_per_conn(r: &Value) -> Option<f64> {
    let before = f(r, "/connect/server_rss_kb_before")?;
    let peak = [
        "/connect/server_rss_kb_after",
        "/memory/server_rss_kb_after_hold",
        "/memory/server_rss_kb_peak",
    ]
    .iter()
    .filter_map(|p| f(r, p))
    .fold(f64::NAN, f64::max);
    let n = f(r, "/connect/ready")?;
    (n > 0.0 && peak.is_finite()).then(|| (peak - before) * 1024.0 / n)
}

/// RSS per connection after the hold; None when a garbage collector took the process below
/// its pre-connect baseline (a negative cost means nothing).
fn rss_after_hold_per_conn(r: &Value) -> Option<f64> {
    let d = f(r, "/memory/server_rss_kb_after_hold")? - f(r, "/connect/server_rss_kb_before")?;
    (d >= 0.0).then(|| d * 1024.0 / f(r, "/connect/ready").unwrap_or(f64::NAN))
}

/// Every compared metric of the run, grouped by scenario in presentation order.
pub fn metrics(doc: &Value) -> Vec<Metric> {
    let mut m: Vec<Metric> = Vec::new();
    let plain = |sc: &str, m: &mut Vec<Metric>| {
        for &(s, label, unit, higher, ptr, k) in PLAIN.iter().filter(|p| p.0 == sc) {
            m.extend(metric(doc, s, label, unit, higher, |r| read(r, ptr, k)));
        }
    };
    plain("connect-storm", &mut m);
    m.extend(metric(
        doc,
        "idle-hold",
        "server RSS per connection (peak)",
        "B",
        false,
        peak_rss_per_conn,
    ));
    m.extend(metric(
        doc,
        "idle-hold",
        "server RSS per connection after the hold",
        "B",
        false,
        rss_after_hold_per_conn,
    ));
    plain("idle-hold", &mut m);
    for sc in ["fanout", "many-channels"] {
        for (i, rate) in rates(doc, sc).into_iter().enumerate() {
            for &(label, unit, higher, key, k) in PER_PHASE {
                let ptr = format!("/phases/{i}/{key}");
                let label = format!("{rate}/s: {label}");
                m.extend(metric(doc, sc, &label, unit, higher, |r| read(r, &ptr, k)));
            }
        }
    }
    plain("many-channels", &mut m);
    plain("reconnect-storm", &mut m);
    plain("slow-consumers", &mut m);
    m
}

/// `key` of the highest-rate phase that kept up (achieved ≥ 90% of target, loss < 1%), else
/// of the first phase.
fn best_unsaturated(run: &Value, key: &str) -> Option<f64> {
    let phases = run["phases"].as_array()?;
    let ok = |p: &&Value| {
        let target = f(p, "/rate_target").unwrap_or(0.0);
        f(p, "/achieved_pub_rate").unwrap_or(0.0) >= 0.9 * target
            && f(p, "/loss_pct").unwrap_or(100.0) < 1.0
    };
    let pick = phases.iter().rfind(ok).or(phases.first())?;
    f(pick, &format!("/{key}"))
}

/// RSS per connection right after connecting (for the per-subscription difference).
fn connect_rss_per_conn(v: &Value) -> Option<f64> {
    let n = f(v, "/connect/ready")?;
    let d = f(v, "/connect/server_rss_kb_after")? - f(v, "/connect/server_rss_kb_before")?;
    (n > 0.0).then(|| d * 1024.0 / n)
}

/// `ptr` divided by the run's connected clients.
fn per_client(v: &Value, ptr: &str) -> Option<f64> {
    let n = f(v, "/connect/ready")?;
    (n > 0.0).then(|| f(v, ptr).map(|x| x / n)).flatten()
}

/// Per-connection and per-message costs of each system, for `capacity`.
pub fn costs(doc: &Value) -> Value {
    let mut out = Map::new();
    for s in systems(doc) {
        let r = |sc: &str| doc["results"][sc]["systems"][&s].clone();
        let (idle, conn, fan, many) = (
            r("idle-hold"),
            r("connect-storm"),
            r("fanout"),
            r("many-channels"),
        );
        let per_delivery = best_unsaturated(&fan, "server_cpu_us_per_delivery");
        let k = f(&many, "/scenario/channels_per_client");
        let per_sub = match (connect_rss_per_conn(&many), connect_rss_per_conn(&idle), k) {
            (Some(m), Some(i), Some(k)) if k > 1.0 => Some(((m - i) / (k - 1.0)).max(0.0)),
            _ => None,
        };
        let per_publish = many["phases"].as_array().and_then(|ph| {
            let p = ph.first()?;
            let (ms, ok, recv) = (
                f(p, "/server_cpu_ms")?,
                f(p, "/published_ok")?,
                f(p, "/received")?,
            );
            let d = per_delivery?;
            (ok > 0.0).then(|| ((ms * 1000.0 - recv * d) / ok).max(0.0))
        });
        out.insert(
            s.clone(),
            json!({
                "rss_per_conn_bytes": peak_rss_per_conn(&idle),
                "rss_per_sub_bytes": per_sub,
                "kernel_per_conn_bytes": f(&idle, "/memory/kernel_tcp_mem_per_conn_bytes"),
                "slab_per_conn_bytes": f(&idle, "/memory/slab_per_conn_bytes"),
                "cpu_us_per_delivery": per_delivery,
                "cpu_us_per_publish": per_publish,
                "cpu_us_per_connect": f(&conn, "/connect/server_cpu_us_per_connect"),
                "idle_cpu_us_per_conn_s": f(&idle, "/idle_cpu/server_cpu_us_per_conn_s"),
                "redis_used_memory_per_conn_bytes": f(&idle, "/redis/used_memory_per_conn_bytes"),
                "redis_used_memory_per_channel_bytes": f(&many, "/redis/used_memory_per_channel_bytes"),
                "redis_cmds_per_connect": per_client(&idle, "/redis/connect/commands"),
                "redis_cmds_per_conn_s": per_client(&idle, "/redis/after_connect_to_end/ops_per_s"),
                "redis_ops_per_publication": best_unsaturated(&fan, "redis/ops_per_publication"),
                "redis_cpu_us_per_publication": best_unsaturated(&fan, "redis/cpu_us_per_publication"),
                "msg_bytes": 48 + fan["scenario"]["payload_bytes"].as_u64().unwrap_or(0),
                "source": {
                    "idle": "idle-hold (peak RSS from connect through the hold; CPU during the hold)",
                    "fanout": "fanout (highest rate delivered in full)",
                    "connect": "connect-storm",
                    "subs": "many-channels vs idle-hold, RSS right after connecting",
                },
            }),
        );
    }
    Value::Object(out)
}
