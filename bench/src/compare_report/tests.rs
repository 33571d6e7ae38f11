//! Report tests on a hand-made results document: metric extraction (failed systems give no
//! value), ratios and their direction marks, costs (peak RSS, the unsaturated phase), the
//! Markdown table, and the files `write` produces.

use super::*;
use serde_json::json;

fn sample() -> Value {
    json!({
        "meta": {"date": "d"},
        "systems": ["wiresocket", "node-ws"],
        "results": {
            "idle-hold": {"definition": {"version": 1, "description": "idle"}, "systems": {
                "wiresocket": {"memory": {"server_rss_kb_after_hold": 2500, "slab_per_conn_bytes": 3000.0}, "idle_cpu": {"server_cpu_pct": 1.0, "server_cpu_us_per_conn_s": 0.5},
                               "connect": {"ready": 1024, "server_rss_kb_before": 1000, "server_rss_kb_after": 3000}},
                "node-ws": {"memory": {"server_rss_kb_after_hold": 5000, "server_rss_kb_peak": 9000}, "idle_cpu": {"server_cpu_pct": 4.0},
                            "connect": {"ready": 1024, "server_rss_kb_before": 1000, "server_rss_kb_after": 8000}}
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
        .find(|m| m.label == "server RSS per connection (peak)")
        .unwrap();
    assert_eq!(rss.ratio("node-ws"), Some(0.25));
    assert_eq!(render::ratio_cell(rss, "node-ws"), "0.25 ✓");
    let cpu = ms
        .iter()
        .find(|m| m.label == "server CPU while idle")
        .unwrap();
    assert_eq!(render::ratio_cell(cpu, "node-ws"), "0.25 ✓");
    let p99 = ms
        .iter()
        .find(|m| m.label == "1000/s: latency p99")
        .unwrap();
    assert_eq!(p99.value("wiresocket"), Some(9.0));
    assert_eq!(p99.value("node-ws"), None, "failed system has no value");
    let c = costs(&doc);
    assert_eq!(
        c["wiresocket"]["rss_per_conn_bytes"], 2000.0,
        "peak = after connect"
    );
    let after = ms
        .iter()
        .find(|m| m.label == "server RSS per connection after the hold")
        .unwrap();
    assert_eq!(after.value("wiresocket"), Some(1500.0));
    assert_eq!(
        after.value("node-ws"),
        Some(4000.0),
        "GC shrank it after the peak"
    );
    assert_eq!(
        c["wiresocket"]["cpu_us_per_delivery"], 5.0,
        "saturated phase skipped"
    );
    assert_eq!(c["wiresocket"]["idle_cpu_us_per_conn_s"], 0.5);
    let md = render::markdown(&doc, &ms, "x", &[]);
    assert!(md.contains("## idle-hold (v1)"));
    assert!(md.contains("| server RSS per connection (peak) (B) | 2000 | 8000 | 0.25 ✓ |"));
    assert!(md.contains("node-ws failed"));
    let dir = std::env::temp_dir().join(format!("ws-cmp-{}", std::process::id()));
    let md_path = write(&doc, &dir, "t").unwrap();
    assert!(md_path.exists());
    assert!(dir.join("t.json").exists());
    assert!(dir.join("t/idle-hold-rss.svg").exists());
    let _ = std::fs::remove_dir_all(dir);
}
