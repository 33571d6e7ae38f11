//! Executors per core, placement, preflight, and shutdown.
//!
//! [`serve`] checks the host ([`preflight`]), binds one SO_REUSEPORT listener
//! per core on the main thread, starts one pinned glommio executor per
//! configured CPU, and waits for them. Each executor builds its [`core::Core`]
//! and runs: the accept loop, the mesh receive loops, the flusher, the
//! heartbeat sweep and the drain watcher.
//!
//! One server per port: `serve` refuses to start when another process listens
//! on the address, unless `takeover` is set (`net::listener`, `net::handover`).
//!
//! Signals: the first SIGTERM/SIGINT starts a drain (stop accepting, or hand
//! the port to a successor, `/health` 503, `disconnect` 3001 to every client
//! spread over `drain_window_ms`, then exit 0); a second one exits at once
//! with status 1.
//!
//! glommio stays inside `runtime`, `net` and `mesh`: other modules use the
//! small helpers here ([`spawn`], [`sleep`], [`timeout`], [`yield_if_needed`]).

pub mod core;
mod drain;
pub mod node;
pub mod notify;
pub mod pool;
pub mod preflight;

use anyhow::Context as _;
use std::future::Future;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::ConfigOrigin;
use crate::config::Config;
use crate::metrics::Registry;
use node::NodeState;

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
pub fn serve(cfg: Config, origin: ConfigOrigin, takeover: bool) -> anyhow::Result<()> {
    let cpus = cfg.server.cores.resolve()?;
    preflight::check(&cfg, cpus.len())?;
    if !takeover {
        crate::net::listener::ensure_free(cfg.server.listen)?;
    }
    let listeners =
        crate::net::listener::bind_all(cfg.server.listen, cpus.len(), cfg.server.backlog)?;
    let addr = listeners[0]
        .local_addr()?
        .as_socket()
        .context("listener address")?;
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
    let mesh =
        (cpus.len() > 1).then(|| crate::mesh::builder(cpus.len(), cfg.mesh.channel_capacity));
    drain::install_signal_handlers(node.clone(), handover)?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let mut handles = Vec::new();
    for (i, (cpu, listener)) in cpus.iter().zip(listeners).enumerate() {
        let (cfg, node, registry, mesh, ready) = (
            cfg.clone(),
            node.clone(),
            registry.clone(),
            mesh.clone(),
            ready_tx.clone(),
        );
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(*cpu))
            .name(&format!("core-{i}"))
            .ring_depth(cfg.server.ring_depth)
            .io_memory(IO_MEMORY)
            .preempt_timer(PREEMPT)
            .spawn(
                move || async move { run_core(cfg, node, registry, mesh, listener, ready).await },
            )
            .map_err(|e| anyhow::anyhow!("starting the executor for CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    // Bounded: a core that dies while starting (its executor or the mesh join failing)
    // would otherwise leave this thread, and the core's peers in the mesh join, waiting
    // forever. Its own error is logged above this one.
    for started in 0..cpus.len() {
        if ready_rx.recv_timeout(STARTUP_TIMEOUT).is_err() {
            tracing::error!(
                started,
                cores = cpus.len(),
                "a core failed to start within {STARTUP_TIMEOUT:?}; exiting"
            );
            std::process::exit(1);
        }
    }
    tracing::info!(cores = cpus.len(), cpus = ?cpus, engine = ?cfg.engine.kind, "wiresocket {} started", env!("CARGO_PKG_VERSION"));
    // the readiness line scripts wait for; a closed stdout must not stop the server
    let _ = writeln!(std::io::stdout(), "wiresocket listening on http://{addr}");
    if matches!(origin, ConfigOrigin::Defaults) {
        tracing::warn!(
            "no config file: using built-in defaults with a random secret and API key for this run"
        );
        for line in crate::cli::dev_token_hint(&cfg).lines() {
            tracing::info!("{line}");
        }
    }
    let mut failed = false;
    for h in handles {
        failed |= h.join().is_err();
    }
    tracing::info!("all cores stopped");
    anyhow::ensure!(!failed, "a core panicked");
    Ok(())
}

async fn run_core(
    cfg: Arc<Config>,
    node: Arc<NodeState>,
    registry: Registry,
    mesh: Option<crate::mesh::Builder>,
    listener: socket2::Socket,
    ready: std::sync::mpsc::Sender<()>,
) {
    let (mesh, inbox) =
        crate::mesh::Mesh::join(mesh, cfg.mesh.pending_limit, |me| registry.core(me)).await;
    let me = mesh.me();
    let metrics = registry.core(me);
    let flusher = Rc::new(crate::session::Flusher::new(
        cfg.websocket.outbound_queue_bytes,
        metrics.clone(),
    ));
    let hub = Rc::new(crate::hub::Hub::new(
        mesh.clone(),
        flusher.clone(),
        metrics.clone(),
    ));
    let engine: Rc<dyn crate::engine::Engine> = Rc::new(crate::engine::memory::MemoryEngine::new(
        me,
        mesh.ncores(),
        mesh.clone(),
        hub.clone(),
        &cfg.engine,
    ));
    let verifier = crate::auth::Verifier::new(&cfg.auth).expect("auth config was validated");
    let core = Rc::new(core::Core::new(
        cfg,
        node,
        registry,
        mesh,
        hub,
        engine,
        flusher.clone(),
        verifier,
    ));

    if let Some(mut inbox) = inbox {
        for (_, rx) in inbox.streams() {
            let core = core.clone();
            spawn(async move {
                while let Some(msg) = rx.recv().await {
                    core.on_message(msg);
                }
            });
        }
    }
    spawn(flusher.run());
    spawn(crate::session::heartbeat::run(core.clone()));
    let listener = listener_from(listener);
    let _ = ready.send(());
    spawn(drain::accept(core.clone(), listener));
    drain::wait_for_drain(&core).await;
    drain::drain_sessions(&core).await;
    tracing::debug!(core = me, "core stopped");
}

fn listener_from(s: socket2::Socket) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the fd is a listening TCP socket we own; ownership moves to glommio.
    unsafe { glommio::net::TcpListener::from_raw_fd(s.into_raw_fd()) }
}

/// Spawns a task on this core, detached.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Polls `fut` at least every `period`, whether or not it woke itself: a guard against a lost
/// cross-executor wake-up. glommio's mesh join (shared channels between executors) sometimes
/// never completed at startup when several servers started at once (about 1 start in 15 in a
/// 6-parallel-starts loop; cf. glommio issues #261, #555).
pub async fn poll_at_least_every<F: Future>(period: Duration, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    loop {
        let tick = async {
            sleep(period).await;
            None
        };
        if let Some(v) = futures_lite::future::or(async { Some(fut.as_mut().await) }, tick).await {
            return v;
        }
    }
}

/// Runs `fut` for at most `d`; `None` on timeout.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}

/// Lets other tasks and I/O on this core run if this task has used its time slice
/// ([`PREEMPT`]); otherwise returns at once.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// Milliseconds on the process's monotonic clock (the session timers' unit).
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
