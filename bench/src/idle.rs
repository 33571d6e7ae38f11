//! The `idle` kind: after every client is subscribed, hold them for `hold_s` seconds (long
//! enough for one heartbeat round on every system) and measure what an idle connection costs:
//! server RSS per connection (over all of the system's processes; the **peak** seen from the end
//! of the connect step through the hold, sampled every 0.5 s, minus the RSS before any client,
//! because garbage-collected servers shrink and grow while idle and a host must hold the peak;
//! the value after the hold is reported too), kernel memory per connection
//! (`/proc/net/sockstat` TCP pages and `/proc/meminfo` Slab, system-wide, so both loopback ends
//! are counted), and server CPU while idle (heartbeats).

use crate::runner::{cpu_pct, Connected, Snapshot, Sut};
use crate::scenario::ScenarioDef;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

/// Bytes per connection of a KiB delta between two readings.
fn per_conn(before_kb: u64, after_kb: u64, n: u64) -> Value {
    if n == 0 {
        return Value::Null;
    }
    json!((after_kb as f64 - before_kb as f64) * 1024.0 / n as f64)
}

pub async fn hold(def: &ScenarioDef, sut: &Sut, c: &mut Connected) -> Result<Value> {
    let bar = crate::progress::timer(def.hold_s, "holding");
    let start = c.snapshot(sut);
    let steps = (def.hold_s * 10.0).ceil() as u64;
    let mut peak_kb = start.server.rss_kb;
    for i in 0..steps {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if i % 5 == 0 {
            peak_kb = peak_kb.max(crate::sys::sum_samples(&sut.pids).rss_kb);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let end = c.snapshot(sut);
    let peak_kb = peak_kb.max(end.server.rss_kb);
    Ok(memory_json(
        &c.before,
        &end,
        c.ready.ready,
        &start,
        peak_kb,
        def,
    ))
}

fn memory_json(
    base: &Snapshot,
    end: &Snapshot,
    n: u64,
    hold_start: &Snapshot,
    peak_kb: u64,
    def: &ScenarioDef,
) -> Value {
    let kernel = match (base.sock, end.sock) {
        (Some(a), Some(b)) if n > 0 => {
            json!((b.mem_bytes() as f64 - a.mem_bytes() as f64) / n as f64)
        }
        _ => Value::Null,
    };
    let slab = match (base.slab_kb, end.slab_kb) {
        (Some(a), Some(b)) => per_conn(a, b, n),
        _ => Value::Null,
    };
    let idle_cpu_ms = end.server.cpu_ms.saturating_sub(hold_start.server.cpu_ms);
    json!({
        "hold_s": def.hold_s,
        "memory": {
            "server_rss_kb_before": base.server.rss_kb,
            "server_rss_kb_after_hold": end.server.rss_kb,
            "server_rss_kb_peak": peak_kb,
            "rss_per_conn_bytes": per_conn(base.server.rss_kb, peak_kb, n),
            "rss_per_conn_bytes_after_hold": per_conn(base.server.rss_kb, end.server.rss_kb, n),
            "kernel_tcp_mem_per_conn_bytes": kernel,
            "slab_per_conn_bytes": slab,
            "note": "kernel figures are system-wide: both loopback ends of every connection",
        },
        "idle_cpu": {
            "server_cpu_pct": cpu_pct(hold_start, end, |s| s.server),
            "server_cpu_us_per_conn_s": if n > 0 && def.hold_s > 0.0 {
                json!(idle_cpu_ms as f64 * 1000.0 / n as f64 / def.hold_s)
            } else { Value::Null },
            "loadgen_cpu_pct": cpu_pct(hold_start, end, |s| s.loadgen),
        },
    })
}
