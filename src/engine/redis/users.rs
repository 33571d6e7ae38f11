//! The cluster-wide count of a user's connections (for `server.max_connections_per_user`):
//! a sorted set `p:user:{user}` of the user's client ids scored by expiry (unix seconds).
//! `connect` adds the client in one script that first drops expired members and refuses
//! when the user already holds `max`; the close removes it; each core extends its live
//! clients' expiry every third of `engine.redis.node_ttl_s` (`cluster::run`; `ZADD XX`, so a
//! client closed meanwhile is not brought back), so the connections of a node that died stop
//! counting within `node_ttl_s`. After a Redis restart the count starts empty: connections
//! made before it do not count until they reconnect. Expiry compares the nodes' clocks. Client ids are random per node start
//! (`session::table`), so two nodes' ids do not collide in practice.

use std::sync::LazyLock;

use redis::Script;

use super::RedisNode;
use crate::engine::EngineError;

/// KEYS: the user's set. ARGV: now, client, expire_at, max, key TTL. Returns 1 when counted
/// (or already counted), 0 when the user holds `max`.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
",
    )
});

fn key(node: &RedisNode, user: &str) -> String {
    format!("{}:user:{{{user}}}", node.cfg.prefix)
}

fn ttl(node: &RedisNode) -> u64 {
    node.cfg.node_ttl_s.max(1)
}

pub async fn add(
    node: &RedisNode,
    user: &str,
    client: &str,
    max: u32,
) -> Result<bool, EngineError> {
    let key = key(node, user);
    let now = crate::exec::unix_now();
    let ttl = ttl(node);
    let client = client.to_owned();
    let counted: i64 = node
        .run(move |mut conn| async move {
            ADD.key(key)
                .arg(now)
                .arg(client)
                .arg(now + ttl)
                .arg(max)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(counted == 1)
}

pub async fn remove(node: &RedisNode, user: &str, client: &str) -> Result<(), EngineError> {
    let key = key(node, user);
    let client = client.to_owned();
    node.run(move |mut conn| async move {
        ::redis::cmd("ZREM")
            .arg(key)
            .arg(client)
            .query_async::<i64>(&mut conn)
            .await
    })
    .await
    .map(drop)
}

/// Extends the expiry of live connections (pipelines of 500).
pub async fn refresh(node: &RedisNode, entries: Vec<(String, String)>) -> Result<(), EngineError> {
    let ttl = ttl(node);
    let at = crate::exec::unix_now() + ttl;
    for chunk in entries.chunks(500) {
        let keys: Vec<(String, String)> = chunk
            .iter()
            .map(|(user, client)| (key(node, user), client.clone()))
            .collect();
        node.run(move |mut conn| async move {
            let mut p = ::redis::pipe();
            for (key, client) in &keys {
                // XX: a client removed meanwhile (closed) is not brought back
                p.cmd("ZADD")
                    .arg(key)
                    .arg("XX")
                    .arg(at)
                    .arg(client)
                    .ignore();
                p.cmd("EXPIRE").arg(key).arg(ttl).ignore();
            }
            p.query_async::<()>(&mut conn).await
        })
        .await?;
    }
    Ok(())
}
