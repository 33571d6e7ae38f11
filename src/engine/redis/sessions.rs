//! Session records in Redis (API `connections`): one record per connected client, indexed
//! per user and per node, everything expiring after `engine.redis.session_ttl_s` unless
//! written again.
//!
//! - `p:session:{<client>}`: the [`SessionRecord`] as JSON (`SET ... EX ttl`).
//! - `p:sessions:user:{<user>}`: sorted set of the user's client ids scored by their
//!   record's expiry (unix seconds); anonymous clients (empty user) are not indexed here.
//! - `p:sessions:node:{<uid>}`: sorted set of the node's client ids, scored the same way.
//!
//! Writes come from each core's write-behind sync (`cluster::sessions`): only new or changed
//! records, plus every record once per third of the TTL, in pipelines of
//! [`RECORD_PIPELINE`] records (one round trip each; per record one `SET`, one `ZADD` and
//! one `EXPIRE` on the user's index, one `ZADD` member on the node's index). Closed
//! connections are deleted the same way. A node that dies stops writing: its records and
//! index members expire within the TTL (readers skip members whose score passed and trim
//! them). The per-message path never waits on any of this.
//!
//! `connections {user}` reads the user's index and `GET`s the records; without a user it
//! walks the live nodes of the registry (`registry::nodes`) and their indexes, so a dead
//! node's clients leave the answer with its registry entry (within `node_ttl_s`). Ids are
//! random per node start (`session::table`), so two nodes' client ids do not collide.
//! On a Redis Cluster each key is in its own slot and a pipeline is sent command by command.

use super::{registry, RedisNode};
use crate::engine::cluster::SessionRecord;
use crate::engine::EngineError;

/// Records written per pipeline (one round trip).
pub const RECORD_PIPELINE: usize = 64;

fn record_key(node: &RedisNode, client: &str) -> String {
    format!("{}:session:{{{client}}}", node.cfg.prefix)
}

fn user_key(node: &RedisNode, user: &str) -> String {
    format!("{}:sessions:user:{{{user}}}", node.cfg.prefix)
}

fn node_key(node: &RedisNode, uid: &str) -> String {
    format!("{}:sessions:node:{{{uid}}}", node.cfg.prefix)
}

pub fn ttl(node: &RedisNode) -> u64 {
    node.cfg.session_ttl_s.max(1)
}

/// Writes `records` (replacing older versions) with a fresh TTL; returns the round trips.
pub async fn write(node: &RedisNode, records: Vec<SessionRecord>) -> Result<usize, EngineError> {
    let ttl = ttl(node);
    let at = crate::exec::unix_now() + ttl;
    let mut trips = 0;
    for chunk in records.chunks(RECORD_PIPELINE) {
        let mut p = ::redis::pipe();
        let mut by_node: Vec<(String, Vec<&str>)> = Vec::new();
        for r in chunk {
            let json = serde_json::to_vec(r).map_err(|e| EngineError::Internal(e.to_string()))?;
            p.cmd("SET")
                .arg(record_key(node, &r.client))
                .arg(json)
                .arg("EX")
                .arg(ttl)
                .ignore();
            if !r.user.is_empty() {
                let ukey = user_key(node, &r.user);
                p.cmd("ZADD").arg(&ukey).arg(at).arg(&r.client).ignore();
                p.cmd("EXPIRE").arg(&ukey).arg(ttl).ignore();
            }
            match by_node.iter_mut().find(|(uid, _)| *uid == r.node) {
                Some((_, clients)) => clients.push(&r.client),
                None => by_node.push((r.node.clone(), vec![&r.client])),
            }
        }
        for (uid, clients) in by_node {
            let nkey = node_key(node, &uid);
            let zadd = p.cmd("ZADD").arg(&nkey);
            for c in clients {
                zadd.arg(at).arg(c);
            }
            zadd.ignore();
            p.cmd("EXPIRE").arg(&nkey).arg(ttl).ignore();
        }
        node.run(move |mut conn| async move { p.query_async::<()>(&mut conn).await })
            .await?;
        trips += 1;
    }
    Ok(trips)
}

/// Deletes the records of closed connections of node `uid`: (user, client) each.
pub async fn remove(
    node: &RedisNode,
    uid: &str,
    closed: Vec<(String, String)>,
) -> Result<(), EngineError> {
    let nkey = node_key(node, uid);
    for chunk in closed.chunks(RECORD_PIPELINE) {
        let mut p = ::redis::pipe();
        let zrem = p.cmd("ZREM").arg(&nkey);
        for (_, client) in chunk {
            zrem.arg(client);
        }
        zrem.ignore();
        for (user, client) in chunk {
            p.cmd("DEL").arg(record_key(node, client)).ignore();
            if !user.is_empty() {
                p.cmd("ZREM").arg(user_key(node, user)).arg(client).ignore();
            }
        }
        node.run(move |mut conn| async move { p.query_async::<()>(&mut conn).await })
            .await?;
    }
    Ok(())
}

/// Live client ids of one index (trimming the expired ones), at most `limit`.
async fn live_members(
    node: &RedisNode,
    key: String,
    limit: usize,
) -> Result<Vec<String>, EngineError> {
    let now = crate::exec::unix_now();
    node.run(move |mut conn| async move {
        let (_, members): (i64, Vec<String>) = ::redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({now}"))
            .cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg(now)
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        Ok(members)
    })
    .await
}

/// The records of `clients` (missing ones, expired meanwhile, are left out).
async fn records(
    node: &RedisNode,
    clients: Vec<String>,
) -> Result<Vec<SessionRecord>, EngineError> {
    let mut out = Vec::with_capacity(clients.len());
    for chunk in clients.chunks(RECORD_PIPELINE) {
        let mut p = ::redis::pipe();
        for c in chunk {
            p.cmd("GET").arg(record_key(node, c));
        }
        let raw: Vec<Option<Vec<u8>>> = node
            .run(move |mut conn| async move { p.query_async(&mut conn).await })
            .await?;
        for json in raw.into_iter().flatten() {
            match serde_json::from_slice::<SessionRecord>(&json) {
                Ok(r) => out.push(r),
                Err(e) => tracing::debug!(error = %e, "undecodable session record skipped"),
            }
        }
    }
    Ok(out)
}

/// Up to `limit` live records: `user`'s, or every live node's.
pub async fn connections(
    node: &RedisNode,
    user: Option<&str>,
    limit: usize,
) -> Result<Vec<SessionRecord>, EngineError> {
    let limit = limit.max(1);
    let clients = match user {
        Some(user) => live_members(node, user_key(node, user), limit).await?,
        None => {
            let mut all = Vec::new();
            for n in registry::nodes(node).await? {
                if all.len() >= limit {
                    break;
                }
                let left = limit - all.len();
                all.extend(live_members(node, node_key(node, &n.uid), left).await?);
            }
            all
        }
    };
    records(node, clients).await
}
