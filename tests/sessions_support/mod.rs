//! Helpers of the session-record tests (`tests/redis_sessions*.rs`): nodes on a private Redis
//! with fast record syncs, `redis-cli`, the API `connections`, a named `connect`.

#![allow(dead_code)]

use crate::common::{Client, Overrides, Server};
use crate::redis_support::NodeOverrides;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiresocket_testkit::RedisServer;

pub fn env(o: &mut Overrides, key: &str, value: impl ToString) {
    o.env.push((
        format!("WIRESOCKET_ENGINE__REDIS__{key}"),
        value.to_string(),
    ));
}

/// A node named `name` on `redis`, syncing records every 100 ms, records living `ttl_s`,
/// without the per-core lookup cache (so every answer reads Redis).
pub fn node(redis: &RedisServer, name: &str, ttl_s: u64) -> Server {
    node_syncing(redis, name, ttl_s, 100)
}

pub fn node_syncing(redis: &RedisServer, name: &str, ttl_s: u64, sync_ms: u64) -> Server {
    let mut o: Overrides = redis.node_overrides(10);
    env(&mut o, "SESSION_SYNC_MS", sync_ms);
    env(&mut o, "SESSION_LOOKUP_CACHE_MS", 0);
    env(&mut o, "SESSION_TTL_S", ttl_s);
    env(&mut o, "NODE_TTL_S", 3);
    o.env.push((
        "WIRESOCKET_CHANNELS__DEFAULT__ALLOW_USER_LIMITED_CHANNELS".into(),
        "true".into(),
    ));
    o.server = format!("node_name = \"{name}\"\n");
    Server::start_with(&o)
}

/// `connections` on `server` (`user` only when given): client id -> record.
pub fn connections(server: &Server, user: Option<&str>) -> serde_json::Map<String, Value> {
    let body = match user {
        Some(u) => json!({ "user": u }),
        None => json!({}),
    };
    let (status, v) = server.api("connections", body);
    assert_eq!(status, 200, "{v}");
    v["result"]["connections"]
        .as_object()
        .unwrap_or_else(|| panic!("no connections map: {v}"))
        .clone()
}

/// Connects as `user` with the SDK name and version `js`/`5.1.0`; returns the client and its id.
pub fn connect_named(server: &Server, user: &str) -> (Client, String) {
    let mut c = Client::open(server);
    let r = c.call(
        "connect",
        json!({"token": server.token(user, 3600), "name": "js", "version": "5.1.0"}),
    );
    let id = r["connect"]["client"]
        .as_str()
        .unwrap_or_else(|| panic!("connect failed: {r}"))
        .to_owned();
    (c, id)
}

/// Polls `cond` up to `within`.
pub fn wait_within(within: Duration, what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn commands(redis: &RedisServer, name: &str) -> u64 {
    wiresocket_testkit::command_calls(redis.port, name)
}

pub fn info_field(redis: &RedisServer, section: &str, field: &str) -> f64 {
    redis
        .cli(&["INFO", section])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO {section}"))
}
