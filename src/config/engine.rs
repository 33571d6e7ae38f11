//! The `[engine]` section and its `[engine.redis]` table: which engine stores history,
//! presence and PUB/SUB (the embedded memory engine, or Redis shared by a cluster of nodes)
//! and how the Redis engine connects (standalone, `rediss://`, Sentinel, Redis Cluster),
//! waits for replicas and keeps its session records. Declared with `config_section!` (see
//! `config.rs`), so docs, defaults, the example and environment typing come from here;
//! checked in `validate/redis.rs`.

use serde::{Deserialize, Serialize};

use super::{string_or_list, FieldDoc};

config_section! {
    /// Publication storage backend.
    pub struct EngineConfig {
        /// Engine kind: "memory" (embedded, one node) or "redis" (nodes share history,
        /// presence and PUB/SUB through Redis: set it on every node of a cluster, with
        /// `[engine.redis]`). Default: `"memory"`.
        pub kind: EngineKind = EngineKind::Memory,
        /// Deprecated: use `channels.default.history_size` (history is set per namespace).
        /// Set alone, it becomes the default namespace's history. Default: `0`.
        pub history_size: usize = 0,
        /// Deprecated: use `channels.default.history_ttl_s`. Default: `300` s.
        pub history_ttl_s: u64 = 300,
        /// Channel streams (history, epoch, offset) the memory engine keeps node-wide;
        /// beyond it, publishing into or subscribing to a new history channel fails with
        /// error 106 (`wiresocket_engine_channel_refusals_total`). Reading history never
        /// creates a stream. Default: `100_000`.
        pub max_channels: usize = 100_000,
        /// How long the result of a publish with an `idempotency_key` is remembered: a
        /// repeat within it is answered with the first result and not published again.
        /// Default: `300` s.
        pub idempotency_ttl_s: u64 = 300,
        /// Idempotency results remembered node-wide; beyond it new keys are not
        /// deduplicated until old ones expire. Default: `100_000`.
        pub max_idempotency_keys: usize = 100_000,
        /// The Redis engine (`kind = "redis"`): the `[engine.redis]` table (its keys are
        /// listed there). Default: each option's own default.
        pub redis: RedisConfig = RedisConfig::default(),
    }
}

config_section! {
    /// Redis engine: connection, key prefix, timeouts, presence expiry.
    pub struct RedisConfig {
        /// Standalone Redis URL, `redis://[user][:password@]host:port/db`, or `rediss://...`
        /// for TLS (server certificate checked against the system roots, or `tls_ca`). An ACL
        /// user and password go in the URL. Leave it at its default when `sentinel` is set.
        /// Env `WIRESOCKET_ENGINE__REDIS__URL`. Default: `"redis://127.0.0.1:6379/0"`.
        pub url: String = "redis://127.0.0.1:6379/0".to_owned(),
        /// PEM file of the CA that signed the Redis server's certificate (`rediss://`, or
        /// `sentinel.tls`), for a private CA; read at start-up. Default: `""` (the system's
        /// trusted roots).
        pub tls_ca: String = String::new(),
        /// Redis Sentinel: `{ master = "mymaster", urls = ["redis://10.0.0.1:26379", ...] }`
        /// (optional keys: `username`, `password`, `db`, `tls` for the master). The node asks
        /// the sentinels for the master on every (re)connect of each connection and checks its
        /// `ROLE`, so it follows a failover. Exclusive with a non-default `url`. Default: unset.
        pub sentinel: Option<RedisSentinelConfig> = None,
        /// Redis Cluster seed nodes, `["redis://10.0.0.1:7000", ...]` (a list, or one string
        /// of comma-separated URLs; `rediss://` for TLS with `tls_ca`; one user/password for
        /// all, in the URLs). The node learns the slot map from them, routes each channel's
        /// keys and scripts to the slot's master, and uses sharded PUB/SUB (`SPUBLISH`,
        /// `SSUBSCRIBE`). Exclusive with `sentinel` and a non-default `url`. Default: `[]`
        /// (standalone or Sentinel).
        #[serde(deserialize_with = "string_or_list")]
        pub cluster: Vec<String> = Vec::new(),
        /// Start even when Redis is unreachable and keep trying in the background (engine
        /// calls fail with the temporary error 100 and `/health` answers 503 meanwhile).
        /// Default: `false` (the node refuses to start, naming the reason).
        pub connect_retry: bool = false,
        /// Period of the `PING` that checks each Redis connection; a failed one drops the
        /// connection and reconnects (`/health` answers 503 while it is down). Default:
        /// `1_000` ms.
        pub health_check_ms: u64 = 1_000,
        /// Longest wait between reconnect attempts (the wait doubles from 50 ms up to it).
        /// Default: `1_000` ms.
        pub reconnect_max_delay_ms: u64 = 1_000,
        /// Prefix of every key and PUB/SUB channel, so several deployments can share one
        /// Redis. Default: `"wiresocket"`.
        pub prefix: String = "wiresocket".to_owned(),
        /// Deadline of connecting and of every Redis command; beyond it the operation fails
        /// with a temporary error (100) and `wiresocket_engine_redis_errors_total` counts it.
        /// Default: `2_000` ms. Raise it for a distant Redis.
        pub timeout_ms: u64 = 2_000,
        /// How long a channel's meta hash (epoch, top offset) outlives its last publish; when
        /// it expires the channel's next use starts a new epoch. Keep it well above the
        /// history TTL. Default: `2_592_000` s (30 days).
        pub meta_ttl_s: u64 = 2_592_000,
        /// How long a presence entry lives without being refreshed (the entries of a node
        /// that died disappear after it). Default: `60` s.
        pub presence_ttl_s: u64 = 60,
        /// Events from Redis waiting for one core; beyond it the channel is reset (its
        /// subscribers resubscribe and recover) and `wiresocket_engine_redis_dropped_total`
        /// counts it. Default: `65_536`.
        pub core_queue: usize = 65_536,
        /// Engine operations waiting for the Redis I/O thread; beyond it operations fail with
        /// error 111 (too many requests). Default: `65_536`.
        pub pending_limit: usize = 65_536,
        /// Replicas that must confirm a publication stored in history (`WAIT`) before the
        /// publisher gets its acknowledgement; `0` does not wait. Redis replicates
        /// asynchronously, so without it a publication acknowledged just before the master
        /// dies may be missing on the promoted replica. A publication confirmed by fewer
        /// within `wait_timeout_ms` is answered with the temporary error 100 (it is stored on
        /// the master and may still be delivered: publish with an `idempotency_key` to retry
        /// safely) and counted in `wiresocket_engine_redis_wait_shortfalls_total`. The cost:
        /// one replica round trip per such publish, during which this node's other Redis
        /// commands wait behind it (`bench/README.md`). Default: `0`.
        pub wait_replicas: u32 = 0,
        /// How long a publish waits for `wait_replicas` confirmations; below
        /// `timeout_ms`. Default: `500` ms.
        pub wait_timeout_ms: u64 = 500,
        /// How long a node's entry in the node registry (API `info`) lives without a
        /// heartbeat; every node re-announces itself each third of it, so a node that died
        /// leaves `info` within it. Also bounds how long a dead node's connections count
        /// toward `server.max_connections_per_user`. Default: `15` s.
        pub node_ttl_s: u64 = 15,
        /// How long a client's session record (API `connections`) lives without being
        /// written again; each core rewrites its clients' records every third of it, in
        /// pipelines, so the records of a node that died disappear after it. Default: `60` s.
        pub session_ttl_s: u64 = 60,
        /// How often each core writes the session records that changed (new connections,
        /// subscribes, unsubscribes, stream positions reached) and deletes those of closed
        /// connections; a record is written at most once per period. A client on a channel
        /// that publishes all the time has its record written every period (its position
        /// moved; about 4 µs of Redis CPU each): raise it to write positions less often. At
        /// most a third of `session_ttl_s`. Default: `1_000` ms.
        pub session_sync_ms: u64 = 1_000,
        /// Sessions per core whose last written record the core remembers (to write only
        /// changes, and to delete the record when the connection closes); beyond it a
        /// session's record is written every `session_sync_ms` and, once closed, expires
        /// after `session_ttl_s` instead. Each entry costs about 80 bytes. Default: `100_000`.
        pub session_cache_size: usize = 100_000,
        /// Users per core whose looked-up connections (API `connections {user}`) are kept
        /// for `session_lookup_cache_ms`. `0` disables the cache. Default: `1_000`.
        pub session_lookup_cache_size: usize = 1_000,
        /// How long a looked-up user's connections are answered from the core's cache (how
        /// stale `connections {user}` may be). Default: `500` ms.
        pub session_lookup_cache_ms: u64 = 500,
    }
}

config_section! {
    /// Redis Sentinel group of the Redis engine (`engine.redis.sentinel`).
    pub struct RedisSentinelConfig {
        /// The master's name in the sentinels' configuration (`sentinel monitor <name>`).
        /// Default: `""` (required).
        pub master: String = String::new(),
        /// Sentinel URLs, `redis://[user][:password@]host:port` (a list, or one string of
        /// comma-separated URLs; the sentinels share one user and password). Default: `[]`
        /// (at least one required).
        #[serde(deserialize_with = "string_or_list")]
        pub urls: Vec<String> = Vec::new(),
        /// ACL user on the master (and replicas). Default: `""` (none).
        pub username: String = String::new(),
        /// Password on the master. Default: `""` (none).
        pub password: String = String::new(),
        /// Database number on the master. Default: `0`.
        pub db: i64 = 0,
        /// TLS to the master and replicas the sentinels name (verified against the system
        /// roots, or `engine.redis.tls_ca`); the sentinels themselves are reached over plain
        /// TCP. Default: `false`.
        pub tls: bool = false,
    }
}

/// Storage engine kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Embedded in-memory engine (one node).
    #[default]
    Memory,
    /// Redis (several nodes sharing history, presence and PUB/SUB).
    Redis,
}
