//! The comparison report: from the raw `compare` results it derives one row per metric (value
//! per system, and the ratio wiresocket/peer with which direction is better), the per-connection
//! and per-message `costs` that `capacity` plans with, SVG charts, and the Markdown a person
//! reads. Writes `<name>.json`, `<name>.md` and `<name>/` (charts) into the results directory.

use crate::chart;
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::Path;

/// One compared number.
#[derive(Debug, Clone)]
pub struct Metric {
    pub scenario: String,
    pub label: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Value per system, in the run's system order (None: failed or not measured).
    pub values: Vec<(String, Option<f64>)>,
}

impl Metric {
    fn value(&self, sys: &str) -> Option<f64> {
        self.values.iter().find(|(s, _)| s == sys).and_then(|v| v.1)
    }

    /// wiresocket / peer (None when either is missing or the peer is 0).
    pub fn ratio(&self, peer: &str) -> Option<f64> {
        let (w, p) = (self.value("wiresocket")?, self.value(peer)?);
        (p != 0.0).then(|| w / p)
    }

    fn to_json(&self, systems: &[String]) -> Value {
        let ratios: Map<String, Value> = systems
            .iter()
            .filter(|s| *s != "wiresocket")
            .map(|s| (s.clone(), json!(self.ratio(s))))
            .collect();
        json!({
            "scenario": self.scenario, "metric": self.label, "unit": self.unit,
            "better": if self.higher_is_better { "higher" } else { "lower" },
            "values": self.values.iter().map(|(s, v)| (s.clone(), json!(v))).collect::<Map<_, _>>(),
            "ratio_wiresocket_over_peer": ratios,
        })
    }
}

fn f(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn systems(doc: &Value) -> Vec<String> {
    doc["systems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// A metric read at the same JSON pointer from every system's result of `scenario`.
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

/// Rates of the phases of `scenario` as defined.
fn rates(doc: &Value, scenario: &str) -> Vec<u64> {
    doc["results"][scenario]["definition"]["rates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

/// Every compared metric of the run.
pub fn metrics(doc: &Value) -> Vec<Metric> {
    let mut m = Vec::new();
    let mut push = |x: Option<Metric>| m.extend(x);
    let ms = |us: Option<f64>| us.map(|u| u / 1000.0);
    push(metric(
        doc,
        "connect-storm",
        "connects/s",
        "1/s",
        true,
        |r| f(r, "/connect/rate_per_s"),
    ));
    push(metric(
        doc,
        "connect-storm",
        "handshake p50",
        "ms",
        false,
        |r| ms(f(r, "/connect/handshake_latency_us/p50_us")),
    ));
    push(metric(
        doc,
        "connect-storm",
        "handshake p99",
        "ms",
        false,
        |r| ms(f(r, "/connect/handshake_latency_us/p99_us")),
    ));
    push(metric(
        doc,
        "connect-storm",
        "server CPU per connect",
        "µs",
        false,
        |r| f(r, "/connect/server_cpu_us_per_connect"),
    ));
    push(metric(
        doc,
        "connect-storm",
        "failed handshakes",
        "",
        false,
        |r| f(r, "/connect/failed"),
    ));
    push(metric(
        doc,
        "idle-hold",
        "server RSS per connection",
        "B",
        false,
        |r| f(r, "/memory/rss_per_conn_bytes"),
    ));
    push(metric(
        doc,
        "idle-hold",
        "kernel slab per connection (both ends)",
        "B",
        false,
        |r| f(r, "/memory/slab_per_conn_bytes"),
    ));
    push(metric(
        doc,
        "idle-hold",
        "server CPU while idle",
        "% core",
        false,
        |r| f(r, "/idle_cpu/server_cpu_pct"),
    ));
    for sc in ["fanout", "many-channels"] {
        for (i, rate) in rates(doc, sc).into_iter().enumerate() {
            let p = move |k: &str| format!("/phases/{i}/{k}");
            push(metric(
                doc,
                sc,
                &format!("{rate}/s: publishes/s achieved"),
                "1/s",
                true,
                |r| f(r, &p("achieved_pub_rate")),
            ));
            push(metric(
                doc,
                sc,
                &format!("{rate}/s: deliveries/s"),
                "1/s",
                true,
                |r| f(r, &p("deliveries_per_s")),
            ));
            for q in ["p50", "p90", "p99", "p999"] {
                push(metric(
                    doc,
                    sc,
                    &format!("{rate}/s: latency {q}"),
                    "ms",
                    false,
                    |r| ms(f(r, &p(&format!("latency_us/{q}_us")))),
                ));
            }
            push(metric(
                doc,
                sc,
                &format!("{rate}/s: loss"),
                "%",
                false,
                |r| f(r, &p("loss_pct")),
            ));
            push(metric(
                doc,
                sc,
                &format!("{rate}/s: server CPU per delivery"),
                "µs",
                false,
                |r| f(r, &p("server_cpu_us_per_delivery")),
            ));
        }
    }
    push(metric(
        doc,
        "reconnect-storm",
        "time until all back",
        "s",
        false,
        |r| f(r, "/time_all_back_ms").map(|x| x / 1000.0),
    ));
    push(metric(
        doc,
        "reconnect-storm",
        "accept latency p99",
        "ms",
        false,
        |r| ms(f(r, "/storm/accept_latency_us/p99_us")),
    ));
    push(metric(
        doc,
        "reconnect-storm",
        "accept latency max",
        "ms",
        false,
        |r| ms(f(r, "/storm/accept_latency_us/max_us")),
    ));
    push(metric(doc, "reconnect-storm", "gave up", "", false, |r| {
        f(r, "/gave_up")
    }));
    push(metric(
        doc,
        "reconnect-storm",
        "503 answers (shedding)",
        "",
        false,
        |r| f(r, "/storm/shed_503"),
    ));
    push(metric(
        doc,
        "slow-consumers",
        "healthy p99, all reading",
        "ms",
        false,
        |r| ms(f(r, "/phases/0/latency_us/p99_us")),
    ));
    push(metric(
        doc,
        "slow-consumers",
        "healthy p99, 10% stalled",
        "ms",
        false,
        |r| ms(f(r, "/phases/1/latency_us/p99_us")),
    ));
    push(metric(
        doc,
        "slow-consumers",
        "healthy loss, 10% stalled",
        "%",
        false,
        |r| f(r, "/phases/1/loss_pct"),
    ));
    push(metric(
        doc,
        "slow-consumers",
        "server memory growth while stalled",
        "MiB",
        false,
        |r| f(r, "/slow/server_rss_growth_mb"),
    ));
    m
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
        let connect_rss = |v: &Value| -> Option<f64> {
            let n = f(v, "/connect/ready")?;
            let d = f(v, "/connect/server_rss_kb_after")? - f(v, "/connect/server_rss_kb_before")?;
            (n > 0.0).then(|| d * 1024.0 / n)
        };
        let per_sub = match (
            connect_rss(&many),
            connect_rss(&idle),
            f(&many, "/scenario/channels_per_client"),
        ) {
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
                "rss_per_conn_bytes": f(&idle, "/memory/rss_per_conn_bytes"),
                "rss_per_sub_bytes": per_sub,
                "kernel_per_conn_bytes": f(&idle, "/memory/kernel_tcp_mem_per_conn_bytes"),
                "slab_per_conn_bytes": f(&idle, "/memory/slab_per_conn_bytes"),
                "cpu_us_per_delivery": per_delivery,
                "cpu_us_per_publish": per_publish,
                "cpu_us_per_connect": f(&conn, "/connect/server_cpu_us_per_connect"),
                "idle_cpu_us_per_conn_s": f(&idle, "/idle_cpu/server_cpu_us_per_conn_s"),
                "msg_bytes": 48 + fan["scenario"]["payload_bytes"].as_u64().unwrap_or(0),
                "source": {
                    "idle": "idle-hold (memory after the hold, CPU during it)",
                    "fanout": "fanout (highest rate delivered in full)",
                    "connect": "connect-storm",
                    "subs": "many-channels vs idle-hold, RSS after connecting",
                },
            }),
        );
    }
    Value::Object(out)
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

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn ratio_cell(m: &Metric, peer: &str) -> String {
    match m.ratio(peer) {
        None => "—".into(),
        Some(r) => {
            let better = if m.higher_is_better { r > 1.0 } else { r < 1.0 };
            let mark = if (r - 1.0).abs() < 0.05 {
                "≈"
            } else if better {
                "✓"
            } else {
                "✗"
            };
            format!("{r:.2} {mark}")
        }
    }
}

/// Markdown for a person: header, headline, per-scenario tables with ratios, charts, costs.
pub fn markdown(
    doc: &Value,
    metrics: &[Metric],
    chart_dir: &str,
    charts: &[(String, String)],
) -> String {
    let systems = systems(doc);
    let peers: Vec<&String> = systems.iter().filter(|s| *s != "wiresocket").collect();
    let mut s = String::from("# wiresocket vs peers\n\n");
    for (k, v) in doc["meta"].as_object().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- **{k}**: {}",
            v.as_str().map_or(v.to_string(), String::from)
        );
    }
    s.push_str("\nRatios are wiresocket / peer; ✓ marks where wiresocket is better, ✗ where it is behind, ≈ within 5%.\n");
    let mut scenario = String::new();
    for m in metrics {
        if m.scenario != scenario {
            scenario = m.scenario.clone();
            let def = &doc["results"][&scenario]["definition"];
            let _ = write!(
                s,
                "\n## {scenario} (v{})\n\n{}\n\n",
                def["version"],
                def["description"].as_str().unwrap_or_default()
            );
            for (file, title) in charts.iter().filter(|(f, _)| f.starts_with(&scenario)) {
                let _ = writeln!(s, "![{title}]({chart_dir}/{file})");
            }
            let _ = write!(s, "\n| metric | {} |", systems.join(" | "));
            for p in &peers {
                let _ = write!(s, " ws/{p} |");
            }
            let _ = write!(s, "\n|---|{}", "---:|".repeat(systems.len() + peers.len()));
            s.push('\n');
            for (sys, r) in doc["results"][&scenario]["systems"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if let Some(e) = r.get("error") {
                    let _ = writeln!(
                        s,
                        "| **{sys} failed**: {} |",
                        e.as_str()
                            .unwrap_or_default()
                            .replace('|', "/")
                            .lines()
                            .next()
                            .unwrap_or_default()
                    );
                }
            }
        }
        let unit = if m.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", m.unit)
        };
        let _ = write!(s, "| {}{unit} |", m.label);
        for sys in &systems {
            let _ = write!(s, " {} |", fmt(m.value(sys)));
        }
        for p in &peers {
            let _ = write!(s, " {} |", ratio_cell(m, p));
        }
        s.push('\n');
    }
    s.push_str("\n## Measured costs (input to `wiresocket-bench capacity`)\n\n");
    s.push_str("| system | RSS/conn (B) | RSS/extra sub (B) | slab/conn (B) | CPU/delivery (µs) | CPU/connect (µs) | idle CPU (µs/conn/s) |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (sys, c) in doc["costs"].as_object().into_iter().flatten() {
        let g = |k: &str| fmt(c[k].as_f64());
        let _ = writeln!(
            s,
            "| {sys} | {} | {} | {} | {} | {} | {} |",
            g("rss_per_conn_bytes"),
            g("rss_per_sub_bytes"),
            g("slab_per_conn_bytes"),
            g("cpu_us_per_delivery"),
            g("cpu_us_per_connect"),
            g("idle_cpu_us_per_conn_s")
        );
    }
    s
}

/// Draws the charts into `dir`; returns (file name, title) pairs.
fn charts(doc: &Value, metrics: &[Metric], dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bar = |file: &str,
               title: &str,
               unit: &str,
               label: &str,
               sc: &str,
               out: &mut Vec<(String, String)>| {
        if let Some(m) = metrics
            .iter()
            .find(|m| m.scenario == sc && m.label == label)
        {
            let vals: Vec<(String, f64)> = m
                .values
                .iter()
                .filter_map(|(s, v)| Some((s.clone(), (*v)?)))
                .collect();
            if !vals.is_empty() && chart::bars_svg(&dir.join(file), title, unit, &vals).is_ok() {
                out.push((file.to_string(), title.to_string()));
            }
        }
    };
    bar(
        "connect-storm-rate.svg",
        "Connect storm: connections/s (higher is better)",
        "connections/s",
        "connects/s",
        "connect-storm",
        &mut out,
    );
    bar(
        "idle-hold-rss.svg",
        "Idle: server RSS per connection (lower is better)",
        "bytes",
        "server RSS per connection",
        "idle-hold",
        &mut out,
    );
    bar(
        "slow-consumers-memory.svg",
        "Slow consumers: server memory growth (lower is better)",
        "MiB",
        "server memory growth while stalled",
        "slow-consumers",
        &mut out,
    );
    for sc in ["fanout", "many-channels"] {
        let rs = rates(doc, sc);
        if let Some(&top) = rs.last() {
            let cats: Vec<String> = ["p50", "p90", "p99", "p999"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let series: Vec<(String, Vec<f64>)> = systems(doc)
                .into_iter()
                .map(|sys| {
                    let v = cats
                        .iter()
                        .map(|q| {
                            metrics
                                .iter()
                                .find(|m| {
                                    m.scenario == sc && m.label == format!("{top}/s: latency {q}")
                                })
                                .and_then(|m| m.value(&sys))
                                .unwrap_or(f64::NAN)
                        })
                        .collect();
                    (sys, v)
                })
                .collect();
            let file = format!("{sc}-latency.svg");
            let title = format!(
                "{sc}: publish→deliver latency at {top}/s (ms, log scale; lower is better)"
            );
            if chart::grouped_bars_svg(&dir.join(&file), &title, "ms", &cats, &series, true).is_ok()
            {
                out.push((file, title));
            }
            let cats: Vec<String> = rs.iter().map(|r| format!("{r}/s")).collect();
            let series: Vec<(String, Vec<f64>)> = systems(doc)
                .into_iter()
                .map(|sys| {
                    let v = rs
                        .iter()
                        .map(|r| {
                            metrics
                                .iter()
                                .find(|m| {
                                    m.scenario == sc && m.label == format!("{r}/s: deliveries/s")
                                })
                                .and_then(|m| m.value(&sys))
                                .unwrap_or(f64::NAN)
                        })
                        .collect();
                    (sys, v)
                })
                .collect();
            let file = format!("{sc}-deliveries.svg");
            let title = format!("{sc}: deliveries/s per publish rate (higher is better)");
            if chart::grouped_bars_svg(
                &dir.join(&file),
                &title,
                "deliveries/s",
                &cats,
                &series,
                false,
            )
            .is_ok()
            {
                out.push((file, title));
            }
        }
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = systems(doc)
        .into_iter()
        .filter_map(|sys| {
            let tl = doc["results"]["reconnect-storm"]["systems"][&sys]["live_timeline"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect::<Vec<_>>();
            (!tl.is_empty()).then_some((sys, tl))
        })
        .collect();
    if !series.is_empty() {
        let file = "reconnect-storm-live.svg".to_string();
        let title = "Reconnect storm: live connections after everyone dropped".to_string();
        if chart::lines_svg(
            &dir.join(&file),
            &title,
            "seconds since the drop",
            "live connections",
            &series,
        )
        .is_ok()
        {
            out.push((file, title));
        }
    }
    out
}

/// Writes `<name>.json`, `<name>.md` and the charts under `<name>/`; returns the Markdown path.
pub fn write(doc: &Value, out_dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let ms = metrics(doc);
    let systems = systems(doc);
    let mut full = doc.clone();
    full["metrics"] = Value::Array(ms.iter().map(|m| m.to_json(&systems)).collect());
    full["costs"] = costs(doc);
    let chart_dir = out_dir.join(name);
    std::fs::create_dir_all(&chart_dir)?;
    let drawn = charts(&full, &ms, &chart_dir);
    std::fs::write(
        out_dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&full)? + "\n",
    )?;
    let md_path = out_dir.join(format!("{name}.md"));
    std::fs::write(&md_path, markdown(&full, &ms, name, &drawn))?;
    eprintln!("wrote {} and {}/", md_path.display(), chart_dir.display());
    Ok(md_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "meta": {"date": "d"},
            "systems": ["wiresocket", "node-ws"],
            "results": {
                "idle-hold": {"definition": {"version": 1, "description": "idle"}, "systems": {
                    "wiresocket": {"memory": {"rss_per_conn_bytes": 2000.0, "slab_per_conn_bytes": 3000.0}, "idle_cpu": {"server_cpu_pct": 1.0, "server_cpu_us_per_conn_s": 0.5},
                                   "connect": {"ready": 1000, "server_rss_kb_before": 1000, "server_rss_kb_after": 3000}},
                    "node-ws": {"memory": {"rss_per_conn_bytes": 8000.0}, "idle_cpu": {"server_cpu_pct": 4.0}}
                }},
                "fanout": {"definition": {"version": 1, "description": "f", "rates": [100, 1000]}, "systems": {
                    "wiresocket": {"scenario": {"payload_bytes": 0}, "phases": [
                        {"rate_target": 100, "achieved_pub_rate": 100.0, "loss_pct": 0.0, "deliveries_per_s": 1000.0, "server_cpu_us_per_delivery": 5.0, "latency_us": {"p99_us": 2000}},
                        {"rate_target": 1000, "achieved_pub_rate": 500.0, "loss_pct": 0.0, "deliveries_per_s": 5000.0, "server_cpu_us_per_delivery": 3.0, "latency_us": {"p99_us": 9000}}]},
                    "node-ws": {"error": "did not start"}
                }}
            }
        })
    }

    #[test]
    fn ratios_costs_and_markdown() {
        let doc = sample();
        let ms = metrics(&doc);
        let rss = ms
            .iter()
            .find(|m| m.label == "server RSS per connection")
            .unwrap();
        assert_eq!(rss.ratio("node-ws"), Some(0.25));
        assert_eq!(ratio_cell(rss, "node-ws"), "0.25 ✓");
        let cpu = ms
            .iter()
            .find(|m| m.label == "server CPU while idle")
            .unwrap();
        assert_eq!(ratio_cell(cpu, "node-ws"), "0.25 ✓");
        let p99 = ms
            .iter()
            .find(|m| m.label == "1000/s: latency p99")
            .unwrap();
        assert_eq!(p99.value("wiresocket"), Some(9.0));
        assert_eq!(p99.value("node-ws"), None, "failed system has no value");
        let c = costs(&doc);
        assert_eq!(c["wiresocket"]["rss_per_conn_bytes"], 2000.0);
        assert_eq!(
            c["wiresocket"]["cpu_us_per_delivery"], 5.0,
            "saturated phase skipped"
        );
        assert_eq!(c["wiresocket"]["idle_cpu_us_per_conn_s"], 0.5);
        let md = markdown(&doc, &ms, "x", &[]);
        assert!(md.contains("## idle-hold (v1)"));
        assert!(md.contains("| server RSS per connection (B) | 2000 | 8000 | 0.25 ✓ |"));
        assert!(md.contains("node-ws failed"));
        let dir = std::env::temp_dir().join(format!("ws-cmp-{}", std::process::id()));
        let md_path = write(&doc, &dir, "t").unwrap();
        assert!(md_path.exists());
        assert!(dir.join("t.json").exists());
        assert!(dir.join("t/idle-hold-rss.svg").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
