//! Session records (API `connections`): what each connected client is, where it runs and how
//! far its subscriptions got, kept in the engine where the engine stores records (Redis) and
//! read from the live sessions where it does not (memory engine: one node).
//!
//! Write-behind: each core runs [`run`], one sync every `engine.redis.session_sync_ms` over
//! its session table (one timer per core, not per connection). A record is built only when
//! the session's fingerprint (token expiry, subscriptions, their epochs and the offsets the
//! core delivered) changed since the record was last written, or its TTL is due (every
//! third of `session_ttl_s`: then every record is written again, so a Redis that lost the
//! records, restarted or failed over, has them back within that period). The batch goes to
//! the engine in pipelines (`Engine::write_sessions`) from this task: the per-message path
//! never waits on the engine, and a record is written at most once per sync. Records of
//! sessions that left the table (closed) since the last sync are deleted the same way.
//!
//! The caches ([`super::session_cache`]) are per core and bounded by config; see there why
//! each is safe. Positions in a record are as of the last sync (at most `session_sync_ms`
//! old): the offset is the highest one the core delivered on the channel since the
//! subscribe (`Hub::top_offset`), or the subscribe's own.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session_cache::{self, Seen};
use crate::engine::cluster::{RecordPosition, SessionRecord};
use crate::engine::EngineError;
use crate::mesh::Mesh;
use crate::metrics::CoreMetrics;
use crate::session::{Env, Phase, Session};

/// Sessions whose records are built and handed to the engine at once. Small: the records,
/// their JSON and the pipeline of a chunk are what a sync holds at its peak, and the
/// allocator keeps that peak; with 1024 (and 256 records per pipeline) an idle 10,000-client
/// cluster held ~1.4 KB more RSS per connection (`bench/README.md`).
const WRITE_CHUNK: usize = 64;

/// The position `s` reached on each subscription: (channel, offset, epoch).
fn positions(env: &Env, s: &Session, mut f: impl FnMut(&str, u64, &str)) {
    s.subscriptions().with_all(|subs| {
        for sub in subs {
            match &sub.position {
                Some((offset, epoch)) => {
                    let top = env.hub.top_offset(&sub.channel);
                    f(&sub.channel, (*offset).max(top), epoch)
                }
                None => f(&sub.channel, 0, ""),
            }
        }
    });
}

/// What a record of `s` depends on beyond what never changes after `connect`.
fn fingerprint(env: &Env, s: &Session) -> u64 {
    let mut h = ahash::AHasher::default();
    s.expires_at.get().hash(&mut h);
    positions(env, s, |channel, offset, epoch| {
        (channel, offset, epoch).hash(&mut h);
    });
    h.finish()
}

/// The record of a connected session, now.
pub fn record_of(env: &Env, s: &Session) -> SessionRecord {
    let mut channels = BTreeMap::new();
    positions(env, s, |channel, offset, epoch| {
        let epoch = epoch.to_owned();
        channels.insert(channel.to_owned(), RecordPosition { offset, epoch });
    });
    let id = s.identity.borrow();
    let (name, version) = id.app();
    SessionRecord {
        client: s.client_id(),
        user: id.user.to_string(),
        node: super::node_uid().to_owned(),
        node_name: env.node_name.to_string(),
        connected_at: u64::from(s.connected_at.get()),
        expire_at: u64::from(s.expires_at.get()),
        name: name.to_owned(),
        version: version.to_owned(),
        channels,
    }
}

/// This core's records (only `user`'s, when given), at most `limit`.
fn local_records(env: &Env, user: Option<&str>, limit: usize) -> Vec<SessionRecord> {
    let mut out = Vec::new();
    env.sessions.for_each(|s| {
        if out.len() < limit
            && s.phase.get() == Phase::Connected
            && user.is_none_or(|u| *s.identity.borrow().user == *u)
        {
            out.push(record_of(env, s));
        }
    });
    out
}

/// Up to `limit` records cluster-wide (only `user`'s, when given): from the engine where it
/// stores them (`connections {user}` through this core's lookup cache), else from every core
/// of this node.
pub async fn connections(
    env: &Rc<Env>,
    mesh: &Mesh,
    user: Option<String>,
    limit: usize,
) -> Result<Vec<SessionRecord>, EngineError> {
    if let Some(u) = &user {
        if let Some(hit) = session_cache::lookup(u, limit) {
            CoreMetrics::inc(&env.metrics.session_lookup_hits);
            return Ok(hit);
        }
    }
    match env.engine.connections(user.as_deref(), limit).await? {
        Some(records) => {
            if let Some(u) = user {
                CoreMetrics::inc(&env.metrics.session_lookup_misses);
                session_cache::remember(&env.cfg.engine.redis, u, limit, &records);
            }
            Ok(records)
        }
        None => {
            let user = Arc::new(user);
            let per_core =
                super::on_every_core(mesh, move |env| local_records(env, user.as_deref(), limit))
                    .await;
            Ok(per_core.into_iter().flatten().take(limit).collect())
        }
    }
}

/// This core's write-behind sync (see the module doc); returns at once where the engine
/// stores no records.
pub async fn run(env: Rc<Env>) {
    let Some(ttl) = env.engine.session_ttl() else {
        return;
    };
    let cfg = &env.cfg.engine.redis;
    session_cache::configure(cfg.session_cache_size);
    let every = Duration::from_millis(cfg.session_sync_ms.max(10));
    let refresh_every = (ttl / 3).max(every);
    let mut refreshed = Instant::now();
    loop {
        crate::exec::sleep(every).await;
        let refresh = refreshed.elapsed() >= refresh_every;
        if refresh {
            refreshed = Instant::now();
        }
        sync(&env, refresh).await;
    }
}

/// The last sync, at the end of a graceful drain: the records of the sessions closed since
/// the previous one are deleted now, not left to expire.
pub async fn finish(env: &Env) {
    if env.engine.session_ttl().is_some() {
        sync(env, false).await;
    }
}

/// One sync: writes new and changed records (all of them when `refresh`), deletes the
/// records of sessions that closed since the last one.
async fn sync(env: &Env, refresh: bool) {
    let m = &env.metrics;
    let mut due: Vec<Rc<Session>> = Vec::new();
    let pass = session_cache::begin_pass();
    env.sessions.for_each(|s| {
        if s.phase.get() != Phase::Connected {
            return;
        }
        let fp = fingerprint(env, s);
        let seen = session_cache::seen(pass, s.id, fp, || s.identity.borrow().user.clone());
        match seen {
            Seen::Unchanged => CoreMetrics::inc(&m.session_cache_hits),
            Seen::Changed | Seen::Uncached => CoreMetrics::inc(&m.session_cache_misses),
        }
        if refresh || seen != Seen::Unchanged {
            due.push(s.clone());
        }
    });
    let closed = session_cache::end_pass(pass);
    // records are built chunk by chunk, so a refresh of many sessions holds few at a time
    for chunk in due.chunks(WRITE_CHUNK) {
        let live = chunk.iter().filter(|s| s.phase.get() == Phase::Connected);
        let records: Vec<SessionRecord> = live.map(|s| record_of(env, s)).collect();
        if records.is_empty() {
            continue;
        }
        let n = records.len() as u64;
        match env.engine.write_sessions(records).await {
            Ok(trips) => {
                CoreMetrics::add(&m.session_records_written, n);
                CoreMetrics::add(&m.session_record_batches, trips as u64);
            }
            Err(e) => {
                // written again at the next sync
                let ids: Vec<u64> = chunk.iter().map(|s| s.id).collect();
                session_cache::forget_written(&ids);
                tracing::debug!(records = n, error = %e, "writing session records failed");
            }
        }
    }
    drop(due);
    if !closed.is_empty() {
        let n = closed.len() as u64;
        match env.engine.remove_sessions(super::node_uid(), closed).await {
            Ok(()) => CoreMetrics::add(&m.session_records_deleted, n),
            Err(e) => {
                tracing::debug!(records = n, error = %e, "deleting session records failed; they expire")
            }
        }
    }
}
