//! What a session may use of its core: the configuration, the hub (subscribe,
//! unsubscribe), the engine (publish, history, presence), the flusher, the read
//! buffer pool, the token verifier, its core's session table and metrics.
//!
//! Built once per core by the runtime's wiring and shared as `Rc<Env>`; the
//! session code depends on nothing above it (no `runtime` import).
//! [`Env::close`] is the one place a session's resources are released.

use std::rc::Rc;
use std::sync::Arc;

use super::table::SessionTable;
use super::{Flusher, Session};
use crate::auth::Verifier;
use crate::config::Config;
use crate::engine::{ChannelEvent, ClientInfo, Engine};
use crate::hub::Hub;
use crate::metrics::CoreMetrics;
use crate::node::NodeState;
use crate::ws::readbuf::BufferPool;

pub struct Env {
    /// This core's index.
    pub core: usize,
    pub cfg: Arc<Config>,
    pub node: Arc<NodeState>,
    pub metrics: Arc<CoreMetrics>,
    pub hub: Rc<Hub<Session>>,
    pub engine: Rc<dyn Engine>,
    pub flusher: Rc<Flusher>,
    pub pool: BufferPool,
    pub verifier: Verifier,
    pub sessions: SessionTable,
    /// This node's name, reported as `node` in connect results.
    pub node_name: Arc<str>,
    /// Channel rules and namespace options.
    pub policy: crate::channel::Policy,
    /// Document pins (`[regions]` enabled).
    pub pins: Option<Rc<crate::region::core::CorePins>>,
}

impl Env {
    /// Registers a new session for an accepted WebSocket.
    pub fn open_session(&self, sock: crate::net::socket::Socket) -> Rc<Session> {
        let connect_by = crate::exec::now_ms() + self.cfg.server.header_timeout_ms;
        let s = self.sessions.open(sock, connect_by, self.flusher.clone());
        CoreMetrics::gauge(&self.metrics.connections, 1);
        CoreMetrics::inc(&self.metrics.accepted);
        s
    }

    /// Releases everything the session holds: its subscriptions (hub, presence, leave
    /// announcements), its table slot and its connection count. Called once, when the
    /// driver has ended (the session is already marked closed).
    pub fn close(&self, s: &Rc<Session>, code: u16) {
        for sub in s.subscriptions().take_all() {
            self.release_subscription(s, &sub);
        }
        if let Some(pins) = &self.pins {
            pins.forget(s.id);
        }
        self.sessions.remove(s);
        self.forget_user_connection(s);
        CoreMetrics::gauge(&self.metrics.connections, -1);
        self.metrics.closed(code);
        if s.admitted.replace(false) {
            self.node.connected_closed();
        } else {
            self.release_pending();
        }
    }

    /// Removes a connected client from the engine's cluster-wide count of its user's
    /// connections (`server.max_connections_per_user`; a no-op for the memory engine).
    fn forget_user_connection(&self, s: &Session) {
        if self.cfg.server.max_connections_per_user == 0 || !s.admitted.get() {
            return;
        }
        let user = s.identity.borrow().user.to_string();
        if user.is_empty() {
            return;
        }
        let (engine, client) = (self.engine.clone(), s.client_id());
        crate::exec::spawn(async move {
            if let Err(e) = engine.remove_user_connection(&user, &client).await {
                tracing::debug!(error = %e, "removing a user connection from the engine failed");
            }
        });
    }

    /// On `connect`: moves the session from pending to connected; false when the node is
    /// full (the caller disconnects with 3013 and the session stays pending until it closes).
    /// The admission rules are `net::admit`'s.
    pub fn admit_connected(&self, s: &Session) -> bool {
        if s.admitted.get() {
            return true;
        }
        if !self.node.try_admit_connected() {
            return false;
        }
        s.admitted.set(true);
        self.release_pending();
        true
    }

    /// A conformance echo session (admitted as connected at upgrade): no connect deadline.
    pub fn admit_echo(&self, s: &Session) {
        s.admitted.set(true);
        s.next_ping_ms.set(u64::MAX);
    }

    /// Gives back one pending-connection slot of this core.
    pub fn release_pending(&self) {
        self.node.pending_done(self.core);
        CoreMetrics::gauge(&self.metrics.pending, -1);
    }

    /// Undoes what a subscription holds beyond the hub entry (presence, leave).
    pub fn release_subscription(&self, s: &Rc<Session>, sub: &super::Subscription) {
        self.hub.leave(&sub.channel, s.id);
        if let (true, Some(pins)) = (sub.pinned, &self.pins) {
            pins.leave(s.id, &sub.channel);
        }
        if !sub.presence && !sub.join_leave {
            return;
        }
        let engine = self.engine.clone();
        let channel = sub.channel.clone();
        let info = sub.join_leave.then(|| self.client_info(s));
        let client = s.client_id();
        let presence = sub.presence;
        crate::exec::spawn(async move {
            if presence {
                let _ = engine.presence_remove(&channel, &client).await;
            }
            if let Some(info) = info {
                let _ = engine
                    .publish_join_leave(&channel, ChannelEvent::Leave(info))
                    .await;
            }
        });
    }

    /// Closes every session of this core holding `document` with 4009 and `reason` (a renewal
    /// found the document pinned to another region; see `region`).
    pub fn redirect_document(&self, document: &str, reason: &str) {
        let Some(pins) = &self.pins else { return };
        self.sessions.for_each(|s| {
            if s.subscriptions()
                .get(document)
                .is_some_and(|sub| sub.pinned)
            {
                pins.set_redirect(s.id, reason.to_owned());
                s.request_close(crate::ws::close::Disconnect::REDIRECT);
            }
        });
    }

    /// This client's presence/join/leave entry.
    pub fn client_info(&self, s: &Session) -> ClientInfo {
        let id = s.identity.borrow();
        ClientInfo {
            user: id.user.to_string(),
            client: s.client_id(),
            conn_info: id
                .conn_info
                .as_deref()
                .map(|i| bytes::Bytes::copy_from_slice(i.as_bytes())),
            chan_info: None,
        }
    }
}
