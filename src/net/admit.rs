//! Admission of connections: the per-core cap on *pending* connections and the
//! per-node cap on *connected* sessions (counters in `node`).
//!
//! A connection is pending from accept until its protocol `connect` succeeds:
//! while it sends HTTP requests, and after an upgrade while it has not sent
//! `connect`. Its slot is a [`Pending`] guard in the HTTP task; on upgrade the
//! guard is handed to the session ([`Pending::into_session`]), and the session
//! gives the slot back on `connect` (`session::Env::admit_connected`) or on
//! close (`session::Env::close`).
//!
//! Answers:
//! - accept beyond `max_pending_connections_per_core`: HTTP 503 + jittered
//!   Retry-After, written without reading the request, then closed
//!   (`wiresocket_pending_refused_total`). Cheaper than the 503 of a full node
//!   and just as clear to a client; one write per refused socket.
//! - upgrade while connected sessions are at `max_connections` (or draining):
//!   503 + Retry-After, counted in `wiresocket_connections_refused_total`.
//! - `connect` that finds the node full (a race: several upgrades passed the
//!   check above together): disconnect 3013 "too many requests". It is of the
//!   reconnect class, so SDKs retry with backoff; Centrifugo's 3504
//!   "connection limit" would stop them for good.
//!
//! Conformance echo sessions have no `connect`: they are admitted as connected
//! at upgrade ([`admit_echo_upgrade`], `session::Env::admit_echo`) and have no connect
//! deadline, so the heartbeat sweep never closes them 3502 while they work.
//!
//! Invariant: every pending slot taken is returned exactly once, and a session
//! counts toward `max_connections` exactly while `Session::admitted` is set.

use std::rc::Rc;

use crate::metrics::CoreMetrics;
use crate::runtime::core::Core;

/// A pending slot held by the HTTP task; returned on drop.
pub struct Pending {
    core: Rc<Core>,
}

impl Pending {
    /// Takes a pending slot on this core; `None` when it is full (answer 503).
    pub fn enter(core: &Rc<Core>) -> Option<Pending> {
        if !core.node.try_pending(core.me) {
            CoreMetrics::inc(&core.metrics.pending_refused);
            return None;
        }
        CoreMetrics::gauge(&core.metrics.pending, 1);
        Some(Pending { core: core.clone() })
    }

    /// The slot now belongs to the session opened for this connection.
    pub fn into_session(self) {
        std::mem::forget(self);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.core.release_pending();
    }
}

/// Whether an upgrade may proceed: not draining and connected sessions below the limit.
pub fn may_upgrade(core: &Core) -> bool {
    !core.draining.get() && !core.node.draining() && !core.node.shedding()
}

/// Upgrade of a conformance echo connection: it has no `connect`, so it is admitted as
/// connected now (false when the node is full: answer 503); the caller drops its
/// [`Pending`] and the driver calls [`echo_session`].
pub fn admit_echo_upgrade(core: &Core) -> bool {
    core.node.try_admit_connected()
}
