//! Markdown and SVG charts of a comparison: a header with the run's metadata, one section per
//! scenario (definition, charts, a table of every metric with the ratio wiresocket/peer), and
//! the measured costs `capacity` reads.

use super::{base_system, rates, systems, Metric};
use crate::chart;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

pub fn ratio_cell(m: &Metric, peer: &str) -> String {
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
    let base = base_system(&systems);
    let peers: Vec<&String> = systems.iter().filter(|s| **s != base).collect();
    let mut s = String::from("# wiresocket vs peers\n\n");
    for (k, v) in doc["meta"].as_object().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- **{k}**: {}",
            v.as_str().map_or(v.to_string(), String::from)
        );
    }
    let _ = write!(s, "\nRatios are {base} / peer (columns `ws/<peer>`);");
    s.push_str(" ✓ marks where wiresocket is better, ✗ where it is behind, ≈ within 5%.\n");
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

/// One series per system: the values of the metrics `labels` of scenario `sc` (NaN if missing).
fn series_of(
    doc: &Value,
    metrics: &[Metric],
    sc: &str,
    labels: &[String],
) -> Vec<(String, Vec<f64>)> {
    systems(doc)
        .into_iter()
        .map(|sys| {
            let v = labels
                .iter()
                .map(|l| {
                    metrics
                        .iter()
                        .find(|m| m.scenario == sc && &m.label == l)
                        .and_then(|m| m.value(&sys))
                        .unwrap_or(f64::NAN)
                })
                .collect();
            (sys, v)
        })
        .collect()
}

/// Draws the charts into `dir`; returns (file name, title) pairs.
pub fn charts(doc: &Value, metrics: &[Metric], dir: &Path) -> Vec<(String, String)> {
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
        "server RSS per connection (peak)",
        "idle-hold",
        &mut out,
    );
    bar(
        "slow-consumers-memory.svg",
        "Slow consumers: server memory growth (lower is better)",
        "MiB",
        "memory growth while stalled (RSS + kernel TCP)",
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
            let labels: Vec<String> = cats
                .iter()
                .map(|q| format!("{top}/s: latency {q}"))
                .collect();
            let series = series_of(doc, metrics, sc, &labels);
            let file = format!("{sc}-latency.svg");
            let title = format!(
                "{sc}: publish→deliver latency at {top}/s (ms, log scale; lower is better)"
            );
            if chart::grouped_bars_svg(&dir.join(&file), &title, "ms", &cats, &series, true).is_ok()
            {
                out.push((file, title));
            }
            let cats: Vec<String> = rs.iter().map(|r| format!("{r}/s")).collect();
            let labels: Vec<String> = rs.iter().map(|r| format!("{r}/s: deliveries/s")).collect();
            let series = series_of(doc, metrics, sc, &labels);
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
