//! One simulated client inside a worker: WebSocket upgrade and the dialect's handshake
//! (`handshake`), then read forever answering heartbeats and timing every publication into the
//! worker's `Stats`. The worker's `Control` can make every client drop its connection and
//! reconnect at once (reconnect storm), or make the "slow" clients stop reading (slow consumers).
//!
//! Invariant: the handshake permit (bounded in-flight handshakes) is held from TCP connect until
//! the client is subscribed or failed, never longer; every first attempt ends in exactly one of
//! `Stats::ready` or `Stats::failures`, and each session later in at most one `closed` cause.

use crate::dialect::{Dialect, Incoming};
use crate::handshake::handshake;
use crate::net::Target;
use crate::stats::Stats;
use crate::sys::mono_ns;
use crate::ws::{encode_text, Outcome, Refused, WsConn};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{sleep, timeout, Instant};

/// Per-connection settings shared by every client of a worker.
pub struct ClientCfg {
    /// The system's WebSocket endpoints (one per node of a cluster); client `g` uses
    /// `targets[g % len]`, so clients are spread round-robin over the nodes.
    pub targets: Vec<Target>,
    pub dialect: Dialect,
    pub secret: String,
    pub channels: ChannelPlan,
    pub handshake_timeout: Duration,
    pub token_ttl_s: u64,
    pub user_prefix: String,
    /// Every `stall_every`-th client (by global index) is a slow consumer; 0 = none.
    pub stall_every: u64,
    /// Reconnect attempts stop at this instant (the worker's own deadline).
    pub give_up_at: Instant,
}

impl ClientCfg {
    /// The endpoint client `g` connects to (and reconnects to).
    pub fn target_for(&self, g: u64) -> &Target {
        &self.targets[(g % self.targets.len() as u64) as usize]
    }

    /// Whether client `g` is one of the slow consumers.
    pub fn is_slow(&self, g: u64) -> bool {
        self.stall_every > 0 && g.is_multiple_of(self.stall_every)
    }
}

/// Which channels client `g` (global index) subscribes to: `per_client` channels out of
/// `count`, spread so every channel gets the same number of subscribers.
#[derive(Debug, Clone)]
pub struct ChannelPlan {
    pub prefix: String,
    pub count: u64,
    pub per_client: u64,
}

impl ChannelPlan {
    pub fn for_client(&self, g: u64) -> Vec<String> {
        if self.count <= 1 {
            return vec![self.prefix.clone()];
        }
        (0..self.per_client.min(self.count))
            .map(|j| format!("{}{}", self.prefix, (g * self.per_client + j) % self.count))
            .collect()
    }

    /// The channel publication `seq` goes to (round robin over all channels).
    pub fn for_publication(&self, seq: u64) -> String {
        if self.count <= 1 {
            return self.prefix.clone();
        }
        format!("{}{}", self.prefix, seq % self.count)
    }
}

/// Worker-wide switches every client watches.
#[derive(Clone)]
pub struct Control {
    /// Incremented by `drop`: every live client closes its socket and reconnects.
    pub generation: watch::Receiver<u32>,
    /// While true, slow clients do not read their sockets.
    pub stalled: watch::Receiver<bool>,
}

/// How one session ended.
enum End {
    /// The connection ended on its own (cause for `closed`).
    Closed(String),
    /// The worker asked for a reconnect storm.
    Dropped,
}

/// Runs client number `g` until its connection ends for good. `permit` is released once ready.
pub async fn run(
    cfg: &ClientCfg,
    ctl: Control,
    g: u64,
    src: Option<Ipv4Addr>,
    stats: &Stats,
    permit: OwnedSemaphorePermit,
) {
    let started = mono_ns();
    let first = timeout(cfg.handshake_timeout, handshake(cfg, g, src, stats)).await;
    drop(permit);
    let mut ws = match first {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return stats.fail(format!("{e:#}")),
        Err(_) => return stats.fail("timeout: handshake".into()),
    };
    stats.connected(mono_ns() - started);
    let slow = cfg.is_slow(g);
    let mut ctl = ctl;
    loop {
        match session(&mut ws, cfg.dialect, &mut ctl, slow, stats).await {
            End::Closed(cause) => {
                stats.session_closed(cause, slow);
                return;
            }
            End::Dropped => {
                stats.live_down();
                drop(ws);
                match reconnect(cfg, g, src, stats).await {
                    Some(new) => ws = new,
                    None => return,
                }
            }
        }
    }
}

/// Reads until the connection ends or a drop is requested; slow clients pause while stalled.
async fn session(
    ws: &mut WsConn,
    dialect: Dialect,
    ctl: &mut Control,
    slow: bool,
    stats: &Stats,
) -> End {
    let mut was_stalled = false;
    loop {
        if slow && *ctl.stalled.borrow() {
            was_stalled = true;
            tokio::select! {
                _ = ctl.stalled.wait_for(|s| !*s) => continue,
                _ = ctl.generation.changed() => return End::Dropped,
            }
        }
        let mut on_text = |msg: &[u8], out: &mut Vec<u8>| {
            dialect.for_each(msg, |inc| match inc {
                Incoming::Pub { .. } if was_stalled => stats.slow_delivery(),
                Incoming::Pub { phase, ts } => stats.delivered(phase, ts),
                Incoming::Heartbeat { reply } => {
                    encode_text(out, reply);
                    stats.ping();
                }
                Incoming::Refused(why) => stats.disconnect_push(why),
                _ => {}
            });
        };
        let res = tokio::select! {
            r = ws.read_batch(&mut on_text) => r,
            _ = ctl.generation.changed() => return End::Dropped,
            _ = ctl.stalled.changed(), if slow => continue,
        };
        match res {
            Ok(Outcome::Open) => continue,
            Ok(Outcome::Closed(code)) => {
                return End::Closed(format!(
                    "close:{}",
                    code.map_or("none".into(), |c| c.to_string())
                ))
            }
            Ok(Outcome::Eof) => return End::Closed("eof".into()),
            Err(e) => return End::Closed(format!("error: {e:#}")),
        }
    }
}

/// Reconnects after a drop, retrying until the worker's deadline: `503` answers wait their
/// `Retry-After` (plus up to 250 ms), other failures back off exponentially (100 ms .. 2 s, with
/// jitter). Records drop-to-ready and per-attempt latency. `None` when it gave up.
async fn reconnect(
    cfg: &ClientCfg,
    g: u64,
    src: Option<Ipv4Addr>,
    stats: &Stats,
) -> Option<WsConn> {
    let dropped_at = mono_ns();
    let mut attempt: u32 = 0;
    while Instant::now() < cfg.give_up_at {
        let t0 = mono_ns();
        let res = timeout(cfg.handshake_timeout, handshake(cfg, g, src, stats)).await;
        let err = match res {
            Ok(Ok(ws)) => {
                stats.reconnected(mono_ns() - dropped_at, mono_ns() - t0);
                return Some(ws);
            }
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("timeout: handshake"),
        };
        attempt += 1;
        let wait = match err.downcast_ref::<Refused>() {
            Some(r) if r.status == 503 => {
                stats.shed(r.retry_after_s);
                Duration::from_secs(r.retry_after_s.unwrap_or(1))
                    + Duration::from_millis(fastrand::u64(0..250))
            }
            _ => {
                stats.retry_failed(format!("{err:#}"));
                let cap = (100u64 << attempt.min(5)).min(2000);
                Duration::from_millis(cap / 2 + fastrand::u64(0..=cap / 2))
            }
        };
        sleep(wait).await;
    }
    stats.gave_up();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_plan_spreads_evenly() {
        let p = ChannelPlan {
            prefix: "c".into(),
            count: 10,
            per_client: 3,
        };
        let mut per_channel = std::collections::HashMap::<String, u32>::new();
        for g in 0..10 {
            let chans = p.for_client(g);
            assert_eq!(chans.len(), 3);
            let distinct: std::collections::HashSet<_> = chans.iter().collect();
            assert_eq!(distinct.len(), 3, "no duplicate channel per client");
            for c in chans {
                *per_channel.entry(c).or_default() += 1;
            }
        }
        assert_eq!(per_channel.len(), 10);
        assert!(per_channel.values().all(|&n| n == 3));
        assert_eq!(p.for_publication(13), "c3");
        let one = ChannelPlan {
            prefix: "bench".into(),
            count: 1,
            per_client: 1,
        };
        assert_eq!(one.for_client(5), vec!["bench".to_string()]);
        assert_eq!(one.for_publication(9), "bench");
    }
}
