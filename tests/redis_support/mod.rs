//! What the Redis black-box tests add to the `wiresocket-testkit` harness (private
//! `redis-server`, Redis Cluster, Sentinel group): the `Overrides` that point a
//! wiresocket node at each of them, as the [`NodeOverrides`] extension trait (it needs
//! `tests/common`'s types, so it cannot live in the testkit).

use wiresocket_testkit::keys::key;
use wiresocket_testkit::{RedisCluster, RedisServer, SentinelGroup, MASTER_NAME};

use crate::common::{history_env, Overrides};

/// A node's engine settings for a Redis harness.
pub trait NodeOverrides {
    /// A node on this Redis keeping `history` publications per channel.
    fn node_overrides(&self, history: usize) -> Overrides;
}

fn redis_node(engine: Vec<(String, String)>, history: usize) -> Overrides {
    let mut env = vec![("WIRESOCKET_ENGINE__KIND".to_string(), "redis".to_string())];
    env.extend(engine);
    env.push(history_env(history));
    Overrides {
        env,
        ..Default::default()
    }
}

impl NodeOverrides for RedisServer {
    fn node_overrides(&self, history: usize) -> Overrides {
        redis_node(
            vec![("WIRESOCKET_ENGINE__REDIS__URL".into(), self.url())],
            history,
        )
    }
}

impl NodeOverrides for RedisCluster {
    fn node_overrides(&self, history: usize) -> Overrides {
        redis_node(
            vec![("WIRESOCKET_ENGINE__REDIS__CLUSTER".into(), self.seeds())],
            history,
        )
    }
}

/// Via the sentinels (TLS to master and replica in a TLS group), with quick health
/// checks and reconnects so a failover is followed within a second.
impl NodeOverrides for SentinelGroup {
    fn node_overrides(&self, history: usize) -> Overrides {
        let mut engine = Vec::new();
        if self.tls {
            engine.push((
                "WIRESOCKET_ENGINE__REDIS__SENTINEL__TLS".to_string(),
                "true".to_string(),
            ));
            engine.push((
                "WIRESOCKET_ENGINE__REDIS__TLS_CA".to_string(),
                key("redis-ca.crt.pem"),
            ));
        }
        engine.extend([
            (
                "WIRESOCKET_ENGINE__REDIS__SENTINEL__MASTER".into(),
                MASTER_NAME.into(),
            ),
            (
                "WIRESOCKET_ENGINE__REDIS__SENTINEL__URLS".into(),
                self.sentinel_urls().join(","),
            ),
            (
                "WIRESOCKET_ENGINE__REDIS__HEALTH_CHECK_MS".into(),
                "300".into(),
            ),
            (
                "WIRESOCKET_ENGINE__REDIS__RECONNECT_MAX_DELAY_MS".into(),
                "300".into(),
            ),
        ]);
        redis_node(engine, history)
    }
}
