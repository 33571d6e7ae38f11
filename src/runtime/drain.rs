//! Accepting, and the graceful drain on SIGTERM/SIGINT.
//!
//! A signal thread first hands the port over if a successor process already
//! listens on it (`net::handover`: our listeners leave the SO_REUSEPORT group,
//! and each core's accept loop then drops its listener), then sets the node's
//! drain flag; each core's watcher sees it within [`POLL`]. Without a
//! successor the listeners stay open so `/health` can answer 503 to load
//! balancers, but upgrades are refused (503 + Retry-After) and API calls get
//! 503 (temporary); a successor that appears later still takes the port over.
//! The core then asks its sessions to
//! close with 3001 "shutdown" (reconnect allowed), spread evenly over
//! `drain_window_ms` so clients do not all reconnect elsewhere at the same
//! instant, and waits (bounded) for them to finish. A second signal exits the
//! process immediately with status 1.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

pub async fn drain_sessions(core: &Rc<Core>) {
    let window = Duration::from_millis(core.cfg.server.drain_window_ms);
    let start = Instant::now();
    let sessions = core.sessions.snapshot();
    let n = sessions.len().max(1) as u32;
    for (i, s) in sessions.iter().enumerate() {
        let due = start + window * i as u32 / n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            super::sleep(wait).await;
        }
        s.request_close(Disconnect::SHUTDOWN);
    }
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
