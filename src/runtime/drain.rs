//! Accepting, and the graceful drain on SIGTERM/SIGINT.
//!
//! A signal thread first hands the port over if a successor process already
//! listens on it (`net::handover`: our listeners leave the SO_REUSEPORT group,
//! and each core's accept loop then drops its listener), then sets the node's
//! drain flag; each core's watcher sees it within [`POLL`]. Without a
//! successor the listeners stay open so `/health` can answer 503 to load
//! balancers, but upgrades are refused (503 + Retry-After) and API calls get
//! 503 (temporary); a successor that appears later still takes the port over.
//!
//! The drain leaves the pool first: from the signal on, `/health` answers 503
//! "draining" and upgrades are refused, but sessions stay up for
//! `drain_leave_pool_ms`, long enough for active health checks (HAProxy, a
//! health-checked DNS record: docs/POOLS.md) to take the node out. Were clients
//! disconnected at once, their reconnects could reach this node through a
//! balancer that has not noticed yet and be refused. With a successor on the
//! port the wait is skipped: new connections already reach the successor.
//!
//! Each core then asks its sessions to close with 3001 "shutdown" (reconnect
//! allowed) in `drain_batches` batches (fewer when it has fewer sessions), spread
//! evenly over `drain_window_ms` so clients do not all reconnect elsewhere at
//! the same instant (the cores' batches are due at the same times), and waits (bounded) for them to finish. Progress is in
//! `node.drain` and on `/metrics` ([`render`]): sessions left to disconnect,
//! batches and disconnects sent. A second signal exits the process immediately
//! with status 1.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::Core;
use crate::net::handover::Handover;
use crate::node::NodeState;
use crate::ws::close::Disconnect;

const POLL: Duration = Duration::from_millis(50);
/// Extra time after the window for the last closes to be written.
const GRACE: Duration = Duration::from_secs(3);

pub fn install_signal_handlers(node: Arc<NodeState>, handover: Handover) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let count = AtomicUsize::new(0);
    let mut handover = Some(handover);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    // /health says 503 at once, whatever the hand-over check below costs
                    node.begin_stop();
                    // before the drain flag: with a successor listening, no new
                    // connection reaches this process to be refused
                    if let Some(h) = handover.take() {
                        crate::net::handover::on_drain(node.clone(), h);
                    }
                    node.start_drain(); // before logging, so no logging trouble can prevent it
                    tracing::info!(
                        signal = sig,
                        "draining: no new connections, disconnecting clients (3001)"
                    );
                } else {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

/// Resolves once the node starts draining.
pub async fn wait_for_drain(core: &Core) {
    while !core.node.draining() {
        super::sleep(POLL).await;
    }
    core.draining.set(true);
}

/// Sessions per batch for `sessions` split into at most `batches` batches.
fn batch_size(sessions: usize, batches: usize) -> usize {
    sessions.div_ceil(batches.max(1)).max(1)
}

/// When batch `k` of `batches` is due, `window` after the disconnects start: evenly spread,
/// the first at once, the last one batch interval before the window ends.
fn batch_due(window: Duration, k: usize, batches: usize) -> Duration {
    window.mul_f64(k as f64 / batches.max(1) as f64)
}

pub async fn drain_sessions(core: &Rc<Core>) {
    let cfg = &core.cfg.server;
    let progress = &core.node.drain;
    let before = core.sessions.len();
    progress.sessions_left.fetch_add(before, Relaxed);
    // leave the pool first: health is 503 and upgrades are refused since the signal
    let leave = Instant::now() + Duration::from_millis(cfg.drain_leave_pool_ms);
    while Instant::now() < leave && !core.node.successor() {
        super::sleep(POLL.min(leave.saturating_duration_since(Instant::now()))).await;
    }
    let window = Duration::from_millis(cfg.drain_window_ms);
    let start = Instant::now();
    let sessions = core.sessions.snapshot();
    let size = batch_size(sessions.len(), cfg.drain_batches);
    let batches = sessions.len().div_ceil(size);
    // sessions that closed, or finished connecting, during the wait
    progress.sessions_left.fetch_add(sessions.len(), Relaxed);
    progress.sessions_left.fetch_sub(before, Relaxed);
    if core.me == 0 {
        tracing::info!(
            leave_pool_ms = cfg.drain_leave_pool_ms,
            max_batches = cfg.drain_batches,
            window_ms = cfg.drain_window_ms,
            "draining: out of the pool, disconnecting clients (3001) in batches"
        );
    }
    for (k, batch) in sessions.chunks(size).enumerate() {
        let due = start + batch_due(window, k, batches);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            super::sleep(wait).await;
        }
        for s in batch {
            s.request_close(Disconnect::SHUTDOWN);
        }
        progress.sessions_left.fetch_sub(batch.len(), Relaxed);
        progress.disconnects.fetch_add(batch.len() as u64, Relaxed);
        progress.batches.fetch_add(1, Relaxed);
    }
    tracing::info!(
        core = core.me,
        sessions = sessions.len(),
        batches,
        "drain: every session of this core was asked to close (3001)"
    );
    drop(sessions);
    let deadline = start + window + GRACE;
    while !core.sessions.is_empty() && Instant::now() < deadline {
        // sessions opened during the window (handshakes in flight) are closed too
        core.sessions
            .for_each(|s| s.request_close(Disconnect::SHUTDOWN));
        super::sleep(POLL).await;
    }
    // Keep this core's listener open (health answers 503, upgrades are refused) until every
    // core is done: a core that exited early would reset connections the kernel had already
    // queued on its SO_REUSEPORT listener.
    core.node.core_drained();
    while !core.node.all_drained() && Instant::now() < deadline {
        super::sleep(POLL).await;
    }
}

/// Appends the drain metrics to a Prometheus text exposition.
pub fn render(node: &NodeState, out: &mut String) {
    use std::fmt::Write as _;
    let d = &node.drain;
    let _ = write!(
        out,
        "# HELP wiresocket_draining 1 from the stop signal on (out of the pool, draining).\n\
         # TYPE wiresocket_draining gauge\n\
         wiresocket_draining {}\n\
         # HELP wiresocket_drain_sessions_left Sessions the drain has not yet sent 3001.\n\
         # TYPE wiresocket_drain_sessions_left gauge\n\
         wiresocket_drain_sessions_left {}\n\
         # HELP wiresocket_drain_batches_total Batches of drain disconnects (3001) sent.\n\
         # TYPE wiresocket_drain_batches_total counter\n\
         wiresocket_drain_batches_total {}\n\
         # HELP wiresocket_drain_disconnects_total Sessions the drain sent 3001.\n\
         # TYPE wiresocket_drain_disconnects_total counter\n\
         wiresocket_drain_disconnects_total {}\n",
        u8::from(node.stopping()),
        d.sessions_left.load(Relaxed),
        d.batches.load(Relaxed),
        d.disconnects.load(Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_split_into_batches_spread_over_the_window() {
        assert_eq!(batch_size(100, 20), 5);
        assert_eq!(batch_size(101, 20), 6);
        assert_eq!(batch_size(6, 20), 1);
        assert_eq!(batch_size(0, 20), 1);
        let w = Duration::from_millis(1000);
        assert_eq!(batch_due(w, 0, 4), Duration::ZERO);
        assert_eq!(batch_due(w, 2, 4), Duration::from_millis(500));
        assert_eq!(batch_due(w, 3, 4), Duration::from_millis(750));
    }
}
