//! The node registry of the Redis engine: one hash `p:nodes` of node uid -> the node's
//! [`NodeInfo`] as JSON. Every node writes its entry each third of `engine.redis.node_ttl_s`
//! (`cluster::run` on core 0 calls [`announce`]); a reader keeps the entries updated within
//! the TTL and deletes older ones, so a node that died leaves the registry within the TTL.
//! A node that drains gracefully removes its entry at the end ([`withdraw`]).
//! The hash itself expires after the TTL when no node announces any more. Entry ages are
//! compared with the reader's clock: nodes' clocks must agree within a few seconds.

use super::RedisNode;
use crate::engine::cluster::NodeInfo;
use crate::engine::EngineError;

fn key(node: &RedisNode) -> String {
    format!("{}:nodes", node.cfg.prefix)
}

pub async fn announce(node: &RedisNode, info: &NodeInfo) -> Result<(), EngineError> {
    let key = key(node);
    let uid = info.uid.clone();
    let json = serde_json::to_vec(info).map_err(|e| EngineError::Internal(e.to_string()))?;
    let ttl = node.cfg.node_ttl_s.max(1);
    node.run(move |mut conn| async move {
        ::redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg(uid)
            .arg(json)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(ttl)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    })
    .await
}

/// Removes a node's entry (a node that stops gracefully leaves at once, not after the TTL).
pub async fn withdraw(node: &RedisNode, uid: &str) -> Result<(), EngineError> {
    let (key, uid) = (key(node), uid.to_owned());
    node.run(move |mut conn| async move {
        ::redis::cmd("HDEL")
            .arg(key)
            .arg(uid)
            .query_async::<i64>(&mut conn)
            .await
    })
    .await
    .map(drop)
}

/// The live entries; stale ones are deleted on the way.
pub async fn nodes(node: &RedisNode) -> Result<Vec<NodeInfo>, EngineError> {
    let key = key(node);
    let k = key.clone();
    let all: Vec<(String, Vec<u8>)> =
        node.run(move |mut conn| async move {
            ::redis::cmd("HGETALL").arg(k).query_async(&mut conn).await
        })
        .await?;
    let oldest = crate::exec::unix_now().saturating_sub(node.cfg.node_ttl_s.max(1));
    let mut live = Vec::with_capacity(all.len());
    let mut stale = Vec::new();
    for (uid, json) in all {
        match serde_json::from_slice::<NodeInfo>(&json) {
            Ok(n) if n.updated_at >= oldest => live.push(n),
            _ => stale.push(uid),
        }
    }
    if !stale.is_empty() {
        let r = node
            .run(move |mut conn| async move {
                ::redis::cmd("HDEL")
                    .arg(key)
                    .arg(stale)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "removing stale node entries failed");
        }
    }
    Ok(live)
}
