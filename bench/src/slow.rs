//! The `slow` kind (slow-consumer mix): publish at `rates[0]` with every client reading
//! (baseline phase 0), then make `slow_share` of the clients stop reading and publish the same
//! again (phase 1), then let them resume. Reports the healthy clients' latency in both phases
//! (they must not suffer), the server's memory during phase 1 (it must stay bounded: a server
//! that buffers without limit grows here), and what became of the slow clients (disconnected,
//! or how much they were still sent).

use crate::events::Report;
use crate::publish::{pub_cfg, publish_phase};
use crate::runner::{sum_maps, Connected, Sut};
use crate::scenario::ScenarioDef;
use anyhow::Result;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

pub async fn run(def: &ScenarioDef, sut: &Sut, c: &mut Connected) -> Result<Value> {
    let cfg = pub_cfg(def, sut)?;
    let rate = def.rates[0];
    let ready = c.ready.ready;
    let every = def.stall_every();
    let slow = (0..def.conns).filter(|g| g.is_multiple_of(every)).count() as u64;
    let healthy = ready.saturating_sub(slow) as f64;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = publish_phase(def, sut, c, &cfg, 0, rate, ready as f64).await;
    tokio::time::sleep(Duration::from_secs_f64(def.drain_s)).await;
    c.pool.broadcast("stall").await?;
    let rss_before = c.snapshot(sut).server.rss_kb;
    let tcp_before = tcp_mem_bytes();
    let peak = Rc::new(Cell::new(rss_before));
    let tcp_peak = Rc::new(Cell::new(tcp_before));
    let sampler = {
        let (peak, tcp_peak, pids) = (peak.clone(), tcp_peak.clone(), sut.pids.clone());
        tokio::task::spawn_local(async move {
            loop {
                peak.set(peak.get().max(crate::sys::sum_samples(&pids).rss_kb));
                tcp_peak.set(tcp_peak.get().max(tcp_mem_bytes()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let stalled = publish_phase(def, sut, c, &cfg, 1, rate, healthy).await;
    tokio::time::sleep(Duration::from_secs_f64(def.drain_s)).await;
    sampler.abort();
    let rss_stalled_end = c.snapshot(sut).server.rss_kb;
    c.pool.broadcast("resume").await?;
    let settle_s = c.pool.settle(Duration::from_secs(30)).await?;
    let rss_after = c.snapshot(sut).server.rss_kb;
    Ok(json!({
        "windows": [base, stalled],
        "settle_s": settle_s,
        "slow": {
            "clients": slow,
            "healthy_clients": healthy,
            "server_rss_kb_before_stall": rss_before,
            "server_rss_kb_peak_while_stalled": peak.get(),
            "server_rss_kb_end_of_stall": rss_stalled_end,
            "server_rss_kb_after_resume": rss_after,
            "server_rss_growth_mb": (peak.get() as f64 - rss_before as f64) / 1024.0,
            "kernel_tcp_mem_growth_mb": (tcp_peak.get() as f64 - tcp_before as f64) / 1048576.0,
            "memory_growth_mb": (peak.get() as f64 - rss_before as f64) / 1024.0
                + (tcp_peak.get() as f64 - tcp_before as f64) / 1048576.0,
        },
    }))
}

/// Kernel memory in TCP socket buffers, machine-wide (`/proc/net/sockstat`): data a server has
/// written but a stalled client has not taken sits here before the server's own queue grows.
fn tcp_mem_bytes() -> u64 {
    crate::sys::sockstat().map_or(0, |s| s.mem_bytes())
}

/// What the slow clients got once they resumed reading, and how their sessions ended.
pub fn slow_outcome(reports: &[Report]) -> Value {
    let closed = sum_maps(reports, |r| &r.slow_closed);
    json!({
        "received_after_resume": reports.iter().map(|r| r.slow_received).sum::<u64>(),
        "disconnected": closed.values().sum::<u64>(),
        "closed": closed,
    })
}
