//! This node's identity (a uid per process start), uptime and live statistics gathered from
//! every core: connected clients, distinct users, subscriptions and channels (a channel is
//! counted once, by its owner core's interest table).

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Instant;

use crate::engine::cluster::NodeInfo;
use crate::mesh::Mesh;
use crate::session::{Env, Phase};

static UID: OnceLock<String> = OnceLock::new();
static STARTED: OnceLock<Instant> = OnceLock::new();

/// This process's node uid (random, fixed for the process).
pub fn node_uid() -> &'static str {
    UID.get_or_init(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)))
}

/// Marks the node start (the first call wins).
pub(super) fn started() {
    STARTED.get_or_init(Instant::now);
    node_uid();
}

/// What one core counts.
struct CoreStats {
    shedding: bool,
    draining: bool,
    clients: u64,
    users: Vec<Box<str>>,
    subs: u64,
    channels: u64,
}

fn core_stats(env: &Env) -> CoreStats {
    let mut st = CoreStats {
        shedding: env.node.shedding(),
        draining: env.node.stopping(),
        clients: 0,
        users: Vec::new(),
        subs: 0,
        channels: env.hub.owned_channels() as u64,
    };
    let mut users = HashSet::new();
    env.sessions.for_each(|s| {
        if s.phase.get() != Phase::Connected {
            return;
        }
        st.clients += 1;
        st.subs += s.subscriptions().len() as u64;
        let id = s.identity.borrow();
        if !id.user.is_empty() && !users.contains(&id.user) {
            users.insert(id.user.clone());
        }
    });
    st.users = users.into_iter().collect();
    st
}

/// This node's entry, counted now on every core.
pub async fn local_info(mesh: &Mesh, name: &str) -> NodeInfo {
    let per_core = super::on_every_core(mesh, |env| core_stats(env)).await;
    let mut users: HashSet<Box<str>> = HashSet::new();
    let mut info = NodeInfo {
        uid: node_uid().to_owned(),
        name: name.to_owned(),
        version: crate::session::dispatch::VERSION.to_owned(),
        num_clients: 0,
        num_users: 0,
        num_subs: 0,
        num_channels: 0,
        uptime: STARTED.get().map_or(0, |t| t.elapsed().as_secs()),
        updated_at: crate::exec::unix_now(),
        shedding: false,
        draining: false,
    };
    for st in per_core {
        info.shedding |= st.shedding;
        info.draining |= st.draining;
        info.num_clients += st.clients;
        info.num_subs += st.subs;
        info.num_channels += st.channels;
        users.extend(st.users);
    }
    info.num_users = users.len() as u64;
    info
}

/// (user, client) of this core's connected named clients.
pub(super) fn user_connections(env: &Env) -> Vec<(String, String)> {
    let mut out = Vec::new();
    env.sessions.for_each(|s| {
        if s.phase.get() == Phase::Connected {
            let id = s.identity.borrow();
            if !id.user.is_empty() {
                out.push((id.user.to_string(), s.client_id()));
            }
        }
    });
    out
}
