//! One core's wiring: builds the session [`Env`] (hub, engine, flusher, pools,
//! verifier, session table) and keeps what only the HTTP side needs beside it
//! (the metrics registry, the mesh end, the drain flag).
//!
//! Built once per executor by [`crate::runtime::run_core`] and shared as
//! `Rc<Core>` by the accept loop and HTTP tasks; sessions get only the `Env`.
//! `Core` derefs to `Env` so HTTP code reads `core.cfg`, `core.engine`, ….
//! Nothing here is `Send`, except [`EngineShared`]: what the main thread builds
//! once per node for the engine `engine.kind` names (the memory engine's node-wide
//! limits, or the Redis engine's I/O thread, connected before any core starts so
//! an unreachable Redis is a clear start-up error unless `engine.redis.connect_retry`).

use std::cell::Cell;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::config::EngineKind;
use crate::engine::memory::{Limits, MemoryEngine};
use crate::engine::redis::{RedisEngine, RedisNode};
use crate::hub::Hub;
use crate::mesh::{CoreMsg, Mesh};
use crate::metrics::Registry;
use crate::node::NodeState;
use crate::session::table::SessionTable;
use crate::session::{Env, Flusher, Session};
use crate::ws::readbuf::BufferPool;

/// The node-wide part of the configured engine, cloned into every core.
#[derive(Clone)]
pub enum EngineShared {
    Memory(Arc<Limits>),
    Redis(Arc<RedisNode>),
}

impl EngineShared {
    /// Builds it for `engine.kind`; for Redis, connects (or fails with the reason).
    pub fn build(cfg: &Config) -> anyhow::Result<EngineShared> {
        Ok(match cfg.engine.kind {
            EngineKind::Memory => EngineShared::Memory(Limits::new(&cfg.engine)),
            EngineKind::Redis => EngineShared::Redis(RedisNode::start(&cfg.engine.redis)?),
        })
    }

    /// This core's engine handle, delivering to `sink`.
    fn engine(
        self,
        cfg: &Config,
        mesh: &Rc<Mesh>,
        sink: Rc<dyn crate::engine::PublicationSink>,
        metrics: &Arc<crate::metrics::CoreMetrics>,
    ) -> Rc<dyn crate::engine::Engine> {
        match self {
            EngineShared::Memory(limits) => Rc::new(MemoryEngine::new(
                mesh.clone(),
                sink,
                limits,
                metrics.clone(),
            )),
            EngineShared::Redis(node) => Rc::new(
                RedisEngine::new(
                    mesh.me(),
                    node,
                    sink,
                    metrics.clone(),
                    cfg.engine.idempotency_ttl_s,
                )
                .expect("the Redis I/O thread runs while the node starts"),
            ),
        }
    }
}

pub struct Core {
    pub me: usize,
    pub env: Rc<Env>,
    pub registry: Registry,
    pub mesh: Rc<Mesh>,
    /// Set when this core stops accepting (drain).
    pub draining: Cell<bool>,
    /// The node's TLS (its counters go with `/metrics`), when `[server.tls]` is set.
    pub tls: Option<Arc<crate::net::tls::Tls>>,
    /// The Redis engine's node handle (`engine.kind = "redis"`), for `/health` and `/metrics`.
    pub redis: Option<Arc<RedisNode>>,
}

impl Deref for Core {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Arc<Config>,
        node: Arc<NodeState>,
        registry: Registry,
        mesh: Rc<Mesh>,
        engine: EngineShared,
        node_name: Arc<str>,
        verifier: crate::auth::Verifier,
        regions: Option<Arc<crate::region::Regions>>,
    ) -> Self {
        let me = mesh.me();
        let metrics = registry.core(me);
        let redis = match &engine {
            EngineShared::Redis(node) => Some(node.clone()),
            EngineShared::Memory(_) => None,
        };
        let flusher = Rc::new(Flusher::new(
            cfg.websocket.outbound_queue_bytes,
            metrics.clone(),
        ));
        let hub: Rc<Hub<Session>> = Hub::new(
            mesh.clone(),
            Rc::new(()),
            metrics.clone(),
            cfg.websocket.subscribe_buffer_frames,
        );
        let engine = engine.engine(&cfg, &mesh, hub.clone(), &metrics);
        hub.set_engine(engine.clone());
        let policy = crate::channel::Policy::from_config(&cfg.channels)
            .expect("channels config was validated");
        let env = Rc::new(Env {
            core: me,
            pool: BufferPool::new(
                cfg.websocket.read_buffer_bytes,
                cfg.websocket.buffer_pool_size,
            ),
            sessions: SessionTable::new(me),
            cfg,
            node,
            metrics,
            hub,
            engine,
            flusher,
            verifier,
            node_name,
            policy,
            pins: regions.map(|r| crate::region::core::CorePins::new(r, me)),
        });
        crate::cluster::install(&env, &mesh);
        if let Some(pins) = &env.pins {
            let weak = Rc::downgrade(&env);
            pins.on_conflict(Box::new(move |doc, reason| {
                if let Some(env) = weak.upgrade() {
                    env.redirect_document(doc, reason);
                }
            }));
        }
        Core {
            me,
            env,
            registry,
            mesh,
            draining: Cell::new(false),
            tls: None,
            redis,
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
            } => self.hub.on_interest(channel, from, on, ack),
            CoreMsg::Deliver {
                channel,
                frame,
                offset,
                published_at,
            } => self.hub.fanout(&channel, &frame, offset, published_at),
            CoreMsg::Reset { channel } => self.hub.reset_local(&channel),
            CoreMsg::Run(task) => task(),
        }
    }
}

/// The mesh limits from config.
pub fn mesh_limits(cfg: &Config) -> crate::mesh::Limits {
    crate::mesh::Limits {
        pending: cfg.mesh.pending_limit,
        call_timeout: Duration::from_millis(cfg.mesh.call_timeout_ms),
    }
}
