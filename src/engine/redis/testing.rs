//! Test support for the engine conformance suite and the Redis engine's own tests:
//! the Redis engine config of a test on a private `redis-server`, Redis Cluster or
//! Sentinel group, and a glommio executor to run engine tests on. The processes
//! themselves come from the `wiresocket-testkit` dev crate (shared with the
//! integration tests); only what needs this crate's types is here.

pub use wiresocket_testkit::{RedisCluster, RedisServer, SentinelGroup};

use crate::config::{RedisConfig, RedisSentinelConfig};

/// A key prefix of its own for each test, so tests sharing a server never meet.
fn test_prefix() -> String {
    format!("t{}", fastrand::u32(..))
}

/// The Redis engine config of a test on `server`.
pub fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        url: server.url(),
        prefix: test_prefix(),
        ..Default::default()
    }
}

/// The Redis engine config of a test on `cluster` (`engine.redis.cluster`).
pub fn cluster_config(cluster: &RedisCluster) -> RedisConfig {
    RedisConfig {
        cluster: cluster.seed_urls(),
        prefix: test_prefix(),
        ..Default::default()
    }
}

/// The Redis engine config of a test on `group`'s master, found through its
/// sentinels (`engine.redis.sentinel`) under `master_name`.
pub fn sentinel_config(group: &SentinelGroup, master_name: &str) -> RedisConfig {
    RedisConfig {
        sentinel: Some(RedisSentinelConfig {
            master: master_name.to_owned(),
            urls: group.sentinel_urls(),
            tls: group.tls,
            ..Default::default()
        }),
        tls_ca: if group.tls {
            wiresocket_testkit::keys::key("redis-ca.crt.pem")
        } else {
            String::new()
        },
        prefix: test_prefix(),
        ..Default::default()
    }
}

/// Runs `fut` on a fresh glommio executor.
pub fn run<F: std::future::Future<Output = ()> + 'static>(fut: F) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .make()
        .expect("executor (needs RLIMIT_MEMLOCK >= 512 KiB)")
        .run(fut);
}
