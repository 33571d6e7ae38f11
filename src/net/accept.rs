//! The accept loop of one core: every connection its SO_REUSEPORT listener
//! accepts becomes an HTTP task ([`super::conn::serve`]). Runs for the life of the
//! core, or until a successor process has taken the port over
//! ([`super::handover`]): then the listener is dropped here so new connections go
//! only to the successor.
//!
//! Spawned by the runtime as a critical core task; accept errors (EMFILE and
//! friends) back off 10 ms instead of spinning.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;

use crate::runtime::core::Core;

/// Accepts for the life of the core (the task ends with the executor), or until a
/// successor has taken the port over (then the listener is closed here).
/// `edge`: which listener this is (public or internal) and the node's per-client limits.
pub async fn run(core: Rc<Core>, listener: TcpListener, edge: Rc<super::edge::Edge>) {
    loop {
        let accepted = listener.accept().await;
        if core.node.successor() {
            tracing::debug!(core = core.me, "listener closed for the successor");
            return; // drops the listener, already out of the port's group
        }
        match accepted {
            Ok(stream) => {
                crate::exec::spawn(super::conn::serve(core.clone(), edge.clone(), stream))
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // EMFILE and friends: back off instead of spinning
                crate::exec::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
