//! Node-wide operations on users' connections and node statistics, for the server API:
//! disconnect a user, subscribe or unsubscribe a user's live connections, refresh their
//! expiry, count clients, users, subscriptions and channels.
//!
//! The API encodes a [`Command`] and hands it to the engine (`Engine::command`), which
//! carries it to every node of the cluster (the memory engine: this node only; Redis: the
//! control channel). On each node the engine gives it to the core's [`NodeSink`], which runs
//! it on every core through the mesh ([`Mesh::call`], with its deadline); there
//! `commands::apply` finds the core's sessions through the thread's [`Env`] (installed once
//! per core by the runtime with [`install`]). Surveys (`Engine::survey`) work alike and
//! return one answer per node ([`Survey`]).
//!
//! [`run`] is the per-core upkeep where the engine keeps a registry: core 0 announces this
//! node's [`NodeInfo`] every `registry_refresh_every`, every core refreshes the cluster-wide
//! count of its users' connections; [`leave`] withdraws the node at the end of a drain.
//! [`sessions`] keeps the session records (API `connections`): each core's write-behind
//! sync ([`sessions::run`]) in front of the engine, behind per-core caches.
//! Nothing here knows which engine runs.

mod commands;
mod session_cache;
pub mod sessions;
mod stats;

pub use commands::{Command, Survey};
pub use stats::{local_info, node_uid};

use bytes::Bytes;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::engine::cluster::{ControlSink, NodeInfo};
use crate::mesh::Mesh;
use crate::session::Env;

thread_local! {
    /// This core's session environment (one executor per thread), for closures other cores send.
    static ENV: RefCell<Weak<Env>> = const { RefCell::new(Weak::new()) };
}

/// Registers this core's `Env` for node commands and gives the engine its [`NodeSink`].
pub fn install(env: &Rc<Env>, mesh: &Rc<Mesh>) {
    ENV.with(|e| *e.borrow_mut() = Rc::downgrade(env));
    stats::started();
    env.engine
        .set_control_sink(Rc::new(NodeSink { mesh: mesh.clone() }));
}

/// Runs `f` with this core's `Env` (`None` while the core is not wired or is gone).
fn with_env<R>(f: impl FnOnce(&Rc<Env>) -> R) -> Option<R> {
    let env = ENV.with(|e| e.borrow().upgrade())?;
    Some(f(&env))
}

/// Runs `f` on every core of this node and collects what each returned (cores that did not
/// answer within the mesh deadline are left out, and logged).
async fn on_every_core<T: Send + 'static>(
    mesh: &Mesh,
    f: impl Fn(&Rc<Env>) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let mut out = Vec::with_capacity(mesh.ncores());
    for core in 0..mesh.ncores() {
        let f = f.clone();
        match mesh.call(core, move || with_env(|env| f(env))).await {
            Ok(Some(v)) => out.push(v),
            Ok(None) => {}
            Err(e) => tracing::warn!(core, error = %e, "node command did not reach a core"),
        }
    }
    out
}

/// The engine's receiver of node commands and surveys on one core.
pub struct NodeSink {
    mesh: Rc<Mesh>,
}

#[async_trait::async_trait(?Send)]
impl ControlSink for NodeSink {
    async fn command(&self, cmd: Bytes) {
        let cmd = match serde_json::from_slice::<Command>(&cmd) {
            Ok(c) => std::sync::Arc::new(c),
            Err(e) => return tracing::warn!(error = %e, "undecodable node command ignored"),
        };
        on_every_core(&self.mesh, move |env| commands::apply(env, &cmd)).await;
    }

    async fn survey(&self, request: Bytes) -> Bytes {
        match serde_json::from_slice::<Survey>(&request) {
            Ok(s) => commands::answer(&self.mesh, s).await,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable survey ignored");
                Bytes::from_static(b"{}")
            }
        }
    }
}

/// At the end of a graceful drain: every core deletes its closed sessions' records, core 0
/// takes this node out of the engine's registry (the announcements stop with the process).
pub async fn leave(env: &Env) {
    sessions::finish(env).await;
    if env.core != 0 || env.engine.registry_refresh_every().is_none() {
        return;
    }
    match env.engine.withdraw(node_uid()).await {
        Ok(()) => tracing::info!(uid = node_uid(), "left the node registry"),
        Err(e) => {
            tracing::warn!(error = %e, "leaving the node registry failed; the entry expires by itself")
        }
    }
}

/// Per-core upkeep for engines with a registry (see the module doc); returns at once for
/// the others.
pub async fn run(env: Rc<Env>, mesh: Rc<Mesh>) {
    let Some(every) = env.engine.registry_refresh_every() else {
        return;
    };
    while !env.node.stopping() {
        if env.core == 0 {
            let info: NodeInfo = local_info(&mesh, &env.node_name).await;
            tracing::debug!(uid = %info.uid, "announcing the node");
            if let Err(e) = env.engine.announce(&info).await {
                tracing::debug!(error = %e, "node announce failed");
            }
        }
        if env.cfg.server.max_connections_per_user > 0 {
            let entries = stats::user_connections(&env);
            if !entries.is_empty() {
                if let Err(e) = env.engine.refresh_user_connections(entries).await {
                    tracing::debug!(error = %e, "user connections refresh failed");
                }
            }
        }
        crate::exec::sleep(every).await;
    }
}

/// At the start of a graceful drain: core 0 announces the entry with `draining` set, so the
/// registry (API `info`) shows the node leaving until [`leave`] removes it. Bounded: a
/// Redis that does not answer must not hold the drain up.
pub async fn announce_draining(env: &Env, mesh: &Mesh) {
    if env.core != 0 || env.engine.registry_refresh_every().is_none() {
        return;
    }
    let announce = async {
        let info: NodeInfo = local_info(mesh, &env.node_name).await;
        env.engine.announce(&info).await
    };
    match crate::exec::timeout(std::time::Duration::from_secs(1), announce).await {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::debug!(error = %e, "draining announce failed"),
        None => tracing::debug!("draining announce timed out"),
    }
}
