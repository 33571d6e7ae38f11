//! One core's world: its sessions, hub, engine instance, mesh end, buffer pool
//! and metrics, plus the orchestration that spans them (interest
//! announcements, cross-core message dispatch, session registration).
//!
//! Built once per executor by [`crate::runtime::run_core`] and shared as
//! `Rc<Core>` by every task on that core. Nothing here is `Send`.

use futures_channel::oneshot;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use super::node::NodeState;
use super::pool::BufferPool;
use crate::auth::Verifier;
use crate::channel::Policy;
use crate::config::Config;
use crate::engine::Engine;
use crate::hub::{Hub, Joined, Ready};
use crate::mesh::{owner_of, CoreMsg, Mesh};
use crate::metrics::{CoreMetrics, Registry};
use crate::session::{Flusher, Session};

pub struct Core {
    pub me: usize,
    pub cfg: Arc<Config>,
    pub node: Arc<NodeState>,
    pub metrics: Arc<CoreMetrics>,
    pub registry: Registry,
    pub mesh: Rc<Mesh>,
    pub hub: Rc<Hub>,
    pub engine: Rc<dyn Engine>,
    pub flusher: Rc<Flusher>,
    pub pool: BufferPool,
    pub verifier: Verifier,
    /// Channel namespaces and permissions (the one decision every command asks).
    pub policy: Policy,
    pub sessions: RefCell<Slab<Rc<Session>>>,
    next_session: Cell<u64>,
    /// Set when this core stops accepting (drain).
    pub draining: Cell<bool>,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Arc<Config>,
        node: Arc<NodeState>,
        registry: Registry,
        mesh: Rc<Mesh>,
        hub: Rc<Hub>,
        engine: Rc<dyn Engine>,
        flusher: Rc<Flusher>,
        verifier: Verifier,
    ) -> Self {
        let me = mesh.me();
        let policy = Policy::from_config(&cfg.channels)
            .expect("channels config is validated before the cores start");
        Core {
            me,
            metrics: registry.core(me),
            pool: BufferPool::new(
                cfg.websocket.read_buffer_bytes,
                cfg.websocket.buffer_pool_size,
            ),
            cfg,
            node,
            registry,
            mesh,
            hub,
            engine,
            flusher,
            verifier,
            policy,
            sessions: RefCell::new(Slab::new()),
            // ids: core index in the top byte, a random start below, so ids are unique per node
            next_session: Cell::new(((me as u64) << 56) | (fastrand::u64(..) >> 16)),
            draining: Cell::new(false),
        }
    }

    /// Registers a new session for an accepted WebSocket.
    pub fn open_session(&self, fd: std::os::fd::RawFd) -> Rc<Session> {
        let id = self.next_session.get();
        self.next_session.set(id + 1);
        let mut sessions = self.sessions.borrow_mut();
        let entry = sessions.vacant_entry();
        let connect_by = super::now_ms() + self.cfg.server.header_timeout_ms;
        let s = Rc::new(Session::new(id, entry.key() as u32, fd, connect_by));
        entry.insert(s.clone());
        CoreMetrics::gauge(&self.metrics.connections, 1);
        CoreMetrics::inc(&self.metrics.accepted);
        s
    }

    /// Unsubscribes everything and forgets the session.
    pub fn close_session(&self, s: &Rc<Session>, code: u16) {
        for channel in s.take_subscriptions() {
            self.leave(&channel, s.id);
        }
        self.sessions.borrow_mut().try_remove(s.key as usize);
        CoreMetrics::gauge(&self.metrics.connections, -1);
        self.metrics.closed(code);
        self.node.connection_closed();
    }

    /// Adds a local subscriber and waits until publications to `channel` will reach this core.
    pub async fn join(&self, channel: &str, s: &Rc<Session>) -> Arc<str> {
        let (key, ready) = match self.hub.join(channel, s) {
            Joined::Existing(key, ready) => (key, ready),
            Joined::First(key, ready) => {
                self.announce(key.clone(), true, Some(ready.clone()));
                (key, ready)
            }
        };
        if !ready.is_set() {
            ready.wait().await;
        }
        key
    }

    /// Removes a local subscriber, withdrawing this core's interest when it was the last.
    pub fn leave(&self, channel: &str, session_id: u64) {
        if let Some(key) = self.hub.leave(channel, session_id) {
            self.announce(key, false, None);
        }
    }

    fn announce(&self, channel: Arc<str>, on: bool, ready: Option<Rc<Ready>>) {
        let owner = owner_of(&channel, self.mesh.ncores());
        let ack = ready.map(|ready| {
            let (tx, rx) = oneshot::channel();
            super::spawn(async move {
                let _ = rx.await;
                ready.set();
            });
            tx
        });
        if owner == self.me {
            self.on_interest(channel, self.me, on, ack);
        } else {
            self.mesh.send(
                owner,
                CoreMsg::Interest {
                    channel,
                    from: self.me,
                    on,
                    ack,
                },
            );
        }
    }

    /// Owner side of an interest change.
    fn on_interest(
        &self,
        channel: Arc<str>,
        from: usize,
        on: bool,
        ack: Option<oneshot::Sender<()>>,
    ) {
        if on {
            let (first, engine_ready) = self.hub.interest_add(&channel, from);
            if first {
                let engine = self.engine.clone();
                super::spawn(async move {
                    if let Err(e) = engine.subscribe_node(&channel).await {
                        tracing::error!(%channel, error = %e, "engine subscribe failed");
                    }
                    engine_ready.set();
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                });
            } else if let Some(ack) = ack {
                if engine_ready.is_set() {
                    let _ = ack.send(());
                } else {
                    // the node's engine subscription is still in flight: ack when it lands
                    super::spawn(async move {
                        engine_ready.wait().await;
                        let _ = ack.send(());
                    });
                }
            }
        } else if self.hub.interest_remove(&channel, from) {
            let engine = self.engine.clone();
            super::spawn(async move {
                if let Err(e) = engine.unsubscribe_node(&channel).await {
                    tracing::warn!(%channel, error = %e, "engine unsubscribe failed");
                }
            });
        }
    }

    /// Dispatches one message from another core.
    pub fn on_message(&self, msg: CoreMsg) {
        match msg {
            CoreMsg::Interest {
                channel,
                from,
                on,
                ack,
            } => self.on_interest(channel, from, on, ack),
            CoreMsg::Deliver {
                channel,
                frame,
                published_at,
            } => self.hub.fanout(&channel, &frame, published_at),
            CoreMsg::Engine(req) => self.engine.on_peer_request(req),
        }
    }
}
