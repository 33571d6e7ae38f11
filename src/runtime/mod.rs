//! Executors per core, placement, preflight, and shutdown.
//!
//! [`serve`] checks the host ([`preflight`]), binds one SO_REUSEPORT listener
//! per core on the main thread, starts one pinned glommio executor per
//! configured CPU, and waits for them. Each executor builds its [`core::Core`]
//! and runs: the accept loop, the mesh receive loops, the flusher, the
//! heartbeat sweep and the drain watcher.
//!
//! With `server.internal_listen`, a second set of per-core listeners serves the internal
//! endpoints (`net::edge`); its address is printed as `wiresocket internal on http://…`.
//! The node's per-client limits (`limits::Limits`) are built here once and shared.
//!
//! One server per port: `serve` refuses to start when another process listens
//! on the address, unless `takeover` is set (`net::listener`, `net::handover`).
//!
//! Signals: the first SIGTERM/SIGINT starts a drain (stop accepting, or hand
//! the port to a successor, `/health` 503, wait `drain_leave_pool_ms`, then
//! `disconnect` 3001 to every client in batches spread over `drain_window_ms`,
//! then exit 0); a second one exits at once
//! with status 1.
//!
//! A core that stops while the node is not draining (a panic outside a
//! session) takes the node down with status 1 at once, so `/health` never
//! keeps answering 200 for a node with a dead core.
//!
//! glommio stays inside `runtime`, `exec`, `net` and `mesh`; the executor
//! helpers (`spawn`, `sleep`, …) live in [`crate::exec`] and are re-exported here.

pub mod core;
mod drain;
pub use drain::render as render_drain;
pub mod preflight;
mod reload;
mod startup;

use anyhow::Context as _;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::metrics::Registry;
use crate::node::NodeState;

/// Memory glommio may register for its own DMA buffers, per executor. We do
/// no file I/O through glommio, so a small amount keeps RSS and memlock low.
const IO_MEMORY: usize = 256 << 10;

/// How long every core may take to build its executor, join the mesh and start accepting.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Time slice after which a long-running task (a flush to thousands of sockets) yields to
/// I/O and other tasks at its next [`yield_if_needed`]. glommio's default, 100 ms, let one
/// big fan-out delay every other request on the core by that long.
const PREEMPT: Duration = Duration::from_millis(5);

/// Runs the server until it has drained. `takeover`: share the port with a process already
/// listening on it (a hand-over, see `net::handover`) instead of refusing to start.
/// `dev_hint`: lines to log once started (the token and key of a run on built-in defaults).
/// `config_path`: the file SIGHUP re-reads (`reload`).
pub fn serve(
    cfg: Config,
    config_path: Option<std::path::PathBuf>,
    dev_hint: Option<String>,
    takeover: bool,
) -> anyhow::Result<()> {
    let cpus = cfg.server.cores.resolve()?;
    preflight::check(&cfg, cpus.len())?;
    // one verifier per node: its clones on every core share keys, JWKS set and revocations
    let verifier = crate::auth::Verifier::new(&cfg.auth)?;
    let port_wait = std::time::Duration::from_millis(cfg.server.port_wait_ms);
    if !takeover {
        crate::net::listener::ensure_free(cfg.server.listen, port_wait)?;
    }
    let listeners =
        crate::net::listener::bind_all(cfg.server.listen, cpus.len(), cfg.server.backlog)?;
    let addr = listeners[0]
        .local_addr()?
        .as_socket()
        .context("listener address")?;
    let internal = match cfg.server.internal_listen {
        Some(at) => {
            if !takeover {
                crate::net::listener::ensure_free(at, port_wait)?;
            }
            let v = crate::net::listener::bind_all(at, cpus.len(), cfg.server.backlog)?;
            let bound = v[0].local_addr()?.as_socket().context("internal address")?;
            Some((v, bound))
        }
        None => None,
    };
    let handover = crate::net::handover::Handover::new(addr, &listeners);
    if takeover {
        tracing::info!(%addr, "takeover: sharing the port until the previous process drains");
    }
    let cfg = Arc::new(cfg);
    let node = Arc::new(NodeState::new(
        cfg.server.max_connections,
        cfg.server.max_pending_connections_per_core,
        cpus.len(),
    ));
    let registry = Registry::new(cpus.len());
    let limits = core::EngineShared::build(&cfg)?;
    let regions = crate::region::Regions::start(&cfg)?;
    let node_name: Arc<str> = node_name(&cfg, addr).into();
    let edge_limits = crate::limits::Limits::new(&cfg.server);
    let (internal, internal_addr) = match internal {
        Some((v, a)) => (v.into_iter().map(Some).collect(), Some(a)),
        None => ((0..cpus.len()).map(|_| None).collect::<Vec<_>>(), None),
    };
    let mesh =
        (cpus.len() > 1).then(|| crate::mesh::builder(cpus.len(), cfg.mesh.channel_capacity));
    drain::install_signal_handlers(node.clone(), handover)?;
    let tls = crate::net::tls::Tls::from_config(&cfg.server.tls)?;
    reload::install(tls.clone(), node.clone(), config_path)?;

    let template = Shared {
        cfg: cfg.clone(),
        node: node.clone(),
        registry: registry.clone(),
        mesh,
        limits,
        node_name,
        edge_limits,
        verifier,
        tls,
        regions,
    };
    let inputs = listeners
        .into_iter()
        .zip(internal)
        .map(|listeners| (template.clone(), listeners))
        .collect();
    let ring_depth = cfg.server.ring_depth;
    let configure = move |i: usize, cpu: usize| {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .name(&format!("core-{i}"))
            .ring_depth(ring_depth)
            .io_memory(IO_MEMORY)
            .preempt_timer(PREEMPT)
    };
    let run = |(shared, listeners), life| run_core(shared, listeners, life);
    let cores = startup::Cores::start(&cpus, inputs, configure, run, STARTUP_TIMEOUT)?;
    crate::load::watch(&cfg.shedding, node.clone())?;
    tracing::info!(cores = cpus.len(), cpus = ?cpus, engine = ?cfg.engine.kind, "wiresocket {} started", env!("CARGO_PKG_VERSION"));
    // the readiness line scripts wait for; a closed stdout must not stop the server
    let scheme = if cfg.server.tls.cert.is_some() {
        "https"
    } else {
        "http"
    };
    let _ = writeln!(
        std::io::stdout(),
        "wiresocket listening on {scheme}://{addr}"
    );
    if let Some(at) = internal_addr {
        tracing::info!(%at, "internal endpoints (/metrics, /api, /health, /livez) listen apart");
        let _ = writeln!(std::io::stdout(), "wiresocket internal on http://{at}");
    }
    if let Some(hint) = dev_hint {
        tracing::warn!(
            "no config file: using built-in defaults with a random secret and API key for this run"
        );
        for line in hint.lines() {
            tracing::info!("{line}");
        }
    }
    // the first core to end: a drain ends them all; anything else is a dead core
    let core = cores.first_exit();
    if !node.draining() {
        tracing::error!(
            core,
            "a core stopped unexpectedly; exiting so the node is replaced"
        );
        std::process::exit(1);
    }
    let failed = cores.join();
    tracing::info!("all cores stopped");
    anyhow::ensure!(!failed, "a core panicked");
    Ok(())
}

/// What every core receives from the main thread (each core gets a clone).
#[derive(Clone)]
struct Shared {
    cfg: Arc<Config>,
    node: Arc<NodeState>,
    registry: Registry,
    mesh: Option<crate::mesh::Builder>,
    limits: core::EngineShared,
    node_name: Arc<str>,
    edge_limits: Arc<crate::limits::Limits>,
    verifier: crate::auth::Verifier,
    tls: Option<Arc<crate::net::tls::Tls>>,
    regions: Option<Arc<crate::region::Regions>>,
}

/// `server.node_name`, or `hostname:port`.
fn node_name(cfg: &Config, addr: std::net::SocketAddr) -> String {
    if let Some(name) = cfg.server.node_name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", addr.port())
}

/// This core's public listener and, if configured, its internal one.
type CoreListeners = (socket2::Socket, Option<socket2::Socket>);

async fn run_core(shared: Shared, listeners: CoreListeners, life: startup::CoreLife) {
    let Shared {
        cfg,
        node,
        registry,
        mesh,
        limits,
        node_name,
        edge_limits,
        verifier,
        tls,
        regions,
    } = shared;
    let edge = |internal| {
        Rc::new(crate::net::edge::Edge::new(
            &cfg.server,
            edge_limits.clone(),
            internal,
            tls.clone(),
        ))
    };
    let (public, internal) = (edge(false), edge(true));
    let (mesh, inbox) =
        crate::mesh::Mesh::join(mesh, core::mesh_limits(&cfg), |me| registry.core(me)).await;
    life.reached(startup::Stage::Wiring);
    let me = mesh.me();
    node.set_core_thread(me);
    let mut core = core::Core::new(
        cfg, node, registry, mesh, limits, node_name, verifier, regions,
    );
    core.tls = tls;
    let core = Rc::new(core);

    if let Some(mut inbox) = inbox {
        for (_, rx) in inbox.streams() {
            let core = core.clone();
            crate::exec::spawn_critical("mesh-inbox", async move {
                while let Some(msg) = rx.recv().await {
                    core.on_message(msg);
                }
            });
        }
    }
    crate::exec::spawn_critical("flusher", core.flusher.clone().run());
    crate::exec::spawn_critical(
        "heartbeat",
        crate::session::heartbeat::run(core.env.clone()),
    );
    crate::exec::spawn_critical(
        "cluster",
        crate::cluster::run(core.env.clone(), core.mesh.clone()),
    );
    crate::exec::spawn_critical(
        "session-records",
        crate::cluster::sessions::run(core.env.clone()),
    );
    let (listener, internal_listener) = listeners;
    let listener = listener_from(listener);
    let internal_listener = internal_listener.map(listener_from);
    life.reached(startup::Stage::Ready);
    let accept = crate::net::accept::run(core.clone(), listener, public);
    crate::exec::spawn_critical("accept", accept);
    if let Some(l) = internal_listener {
        let accept = crate::net::accept::run(core.clone(), l, internal);
        crate::exec::spawn_critical("accept-internal", accept);
    }
    drain::wait_for_drain(&core).await;
    crate::cluster::announce_draining(&core.env, &core.mesh).await;
    drain::drain_sessions(&core).await;
    crate::cluster::leave(&core.env).await;
    tracing::debug!(core = me, "core stopped");
}

fn listener_from(s: socket2::Socket) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the fd is a listening TCP socket we own; ownership moves to glommio.
    unsafe { glommio::net::TcpListener::from_raw_fd(s.into_raw_fd()) }
}

pub use crate::exec::{
    now_ms, poll_at_least_every, sleep, spawn, timeout, unix_now, yield_if_needed,
};
