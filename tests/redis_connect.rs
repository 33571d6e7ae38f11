//! The Redis engine's connection life (black box, real `redis-server`): `/health`
//! answers 503 `{"status":"unavailable","reason":"redis"}` while Redis is away and
//! 200 again once the node has reconnected (the reconnect and connection-up
//! metrics follow), and with `engine.redis.connect_retry = true` a node starts
//! while Redis is down, answers temporary errors, and serves subscribers and
//! publishes once Redis comes up. A Redis that hangs (SIGSTOP) without closing
//! its connections is found by the `PING` health check. The shipped Redis config examples (Sentinel, Cluster) pass
//! `check-config`.

mod common;
mod redis_support;

use common::{http, Client, Overrides, Server};
use redis_support::NodeOverrides;
use serde_json::{json, Value};
use std::time::Duration;
use wiresocket_testkit::{free_port, wait_until, RedisProcess, RedisServer};

fn health(node: &Server) -> (u16, String) {
    http(node.addr, "GET", "/health", &[], "")
}

fn fast_checks(mut o: Overrides) -> Overrides {
    o.env.extend([
        (
            "WIRESOCKET_ENGINE__REDIS__HEALTH_CHECK_MS".to_string(),
            "200".to_string(),
        ),
        (
            "WIRESOCKET_ENGINE__REDIS__RECONNECT_MAX_DELAY_MS".to_string(),
            "200".to_string(),
        ),
    ]);
    o
}

fn publish(node: &Server, channel: &str, data: Value) -> (u16, Value) {
    node.api("publish", json!({"channel": channel, "data": data}))
}

#[test]
fn health_follows_redis_and_reconnects_are_counted() {
    let redis = RedisServer::start();
    let port = redis.port;
    let node = Server::start_with(&fast_checks(redis.node_overrides(10)));
    assert_eq!(health(&node), (200, r#"{"status":"ok"}"#.to_string()));
    assert_eq!(
        node.metric_sum("wiresocket_engine_redis_up", &["connection=\"command\""]),
        1.0
    );
    let (status, res) = publish(&node, "doc", json!({"n": 1}));
    assert_eq!(status, 200, "{res}");
    assert!(
        node.metric_sum("wiresocket_engine_redis_command_seconds_count", &[]) >= 1.0,
        "command round trips are measured"
    );

    // steady state: the health checks pass, nothing reconnects
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        node.metric_sum("wiresocket_engine_redis_reconnects_total", &[])
            + node.metric_sum("wiresocket_engine_redis_connect_failures_total", &[]),
        0.0
    );
    assert_eq!(health(&node).0, 200);

    drop(redis); // killed
    wait_until(Duration::from_secs(10), "/health to answer 503", || {
        health(&node).0 == 503
    });
    assert_eq!(
        health(&node),
        (
            503,
            r#"{"status":"unavailable","reason":"redis"}"#.to_string()
        )
    );
    wait_until(
        Duration::from_secs(10),
        "both connections seen down",
        || node.metric_sum("wiresocket_engine_redis_up", &[]) == 0.0,
    );
    let (status, res) = publish(&node, "doc", json!({"n": 2}));
    assert_eq!((status, &res["error"]["code"]), (503, &json!(100)), "{res}");

    let _back = RedisServer::on_port(port);
    wait_until(Duration::from_secs(10), "/health to answer 200", || {
        health(&node).0 == 200
    });
    for connection in ["command", "pubsub"] {
        let label = format!("connection=\"{connection}\"");
        assert_eq!(
            node.metric_sum("wiresocket_engine_redis_up", &[&label]),
            1.0
        );
        assert!(
            node.metric_sum("wiresocket_engine_redis_reconnects_total", &[&label]) >= 1.0,
            "{connection} reconnect counted"
        );
        assert!(
            node.metric_sum("wiresocket_engine_redis_connect_failures_total", &[&label]) >= 1.0,
            "{connection} failed attempts counted"
        );
    }
    let (status, res) = publish(&node, "doc", json!({"n": 3}));
    assert_eq!(status, 200, "{res}");
}

#[test]
fn connect_retry_starts_without_redis_and_serves_once_it_is_up() {
    let port = free_port();
    let mut o = fast_checks(Overrides {
        env: vec![
            ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
            (
                "WIRESOCKET_ENGINE__REDIS__URL".into(),
                format!("redis://127.0.0.1:{port}/0"),
            ),
            (
                "WIRESOCKET_ENGINE__REDIS__CONNECT_RETRY".into(),
                "true".into(),
            ),
            common::history_env(10),
        ],
        ..Default::default()
    });
    o.env
        .push(("WIRESOCKET_ENGINE__REDIS__TIMEOUT_MS".into(), "500".into()));
    let mut node = Server::start_with(&o);
    assert!(
        node.wait_log("starting anyway", Duration::from_secs(5))
            .is_some(),
        "the start-up warning names connect_retry"
    );
    assert_eq!(
        health(&node),
        (
            503,
            r#"{"status":"unavailable","reason":"redis"}"#.to_string()
        )
    );
    let (mut c, _) = Client::connect(&node, "alice");
    let r = c.call("subscribe", json!({"channel": "doc"}));
    assert_eq!(r["error"]["code"], 100, "a temporary error meanwhile: {r}");
    assert_eq!(r["error"]["temporary"], true, "{r}");
    let (status, res) = publish(&node, "doc", json!({"n": 0}));
    assert_eq!((status, &res["error"]["code"]), (503, &json!(100)), "{res}");

    let _redis = RedisServer::on_port(port);
    wait_until(Duration::from_secs(10), "/health to answer 200", || {
        health(&node).0 == 200
    });
    let r = c.subscribe("doc");
    assert!(r["subscribe"]["epoch"].is_string(), "{r}");
    let (status, res) = publish(&node, "doc", json!({"n": 1}));
    assert_eq!(
        (status, &res["result"]["offset"]),
        (200, &json!(1)),
        "{res}"
    );
    let (channel, p) = c.next_pub();
    assert_eq!((channel.as_str(), &p["data"]), ("doc", &json!({"n": 1})));
    // the first connection is not a reconnect
    assert_eq!(
        node.metric_sum("wiresocket_engine_redis_reconnects_total", &[]),
        0.0
    );
}

#[test]
fn the_shipped_redis_examples_pass_check_config() {
    // each with the secret its comments say to keep in wiresocket.env
    for (example, secret) in [
        (
            "systemd/wiresocket-redis.toml.example",
            ("WIRESOCKET_ENGINE__REDIS__SENTINEL__PASSWORD", "12345"),
        ),
        (
            "systemd/wiresocket-redis-cluster.toml.example",
            (
                "WIRESOCKET_ENGINE__REDIS__CLUSTER",
                "rediss://wiresocket:12345@10.0.0.21:6379,rediss://wiresocket:12345@10.0.0.22:6379",
            ),
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wiresocket"))
            .args(["check-config", "--config", example])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "WIRESOCKET_AUTH__HMAC_SECRET",
                "a-long-enough-test-secret-0123456789",
            )
            .env("WIRESOCKET_API__KEY", "a-long-enough-api-key-0123456789")
            .env(secret.0, secret.1)
            .output()
            .expect("run check-config");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{example}: {text}");
        assert!(text.contains("config OK"), "{example}: {text}");
    }
}

#[test]
fn a_hung_redis_is_found_by_the_health_check() {
    let redis = RedisProcess::server(free_port(), &[]);
    let mut o = fast_checks(Overrides {
        env: vec![
            ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
            (
                "WIRESOCKET_ENGINE__REDIS__URL".into(),
                format!("redis://127.0.0.1:{}/0", redis.port),
            ),
            common::history_env(10),
        ],
        ..Default::default()
    });
    o.env
        .push(("WIRESOCKET_ENGINE__REDIS__TIMEOUT_MS".into(), "500".into()));
    let node = Server::start_with(&o);
    assert_eq!(health(&node).0, 200);
    redis.signal("STOP"); // connections stay open, nothing answers
    wait_until(Duration::from_secs(10), "/health to answer 503", || {
        health(&node).0 == 503
    });
    let (status, res) = publish(&node, "doc", json!({"n": 1}));
    assert_eq!((status, &res["error"]["code"]), (503, &json!(100)), "{res}");
    redis.signal("CONT");
    wait_until(Duration::from_secs(10), "/health to answer 200", || {
        health(&node).0 == 200
    });
    let (status, res) = publish(&node, "doc", json!({"n": 2}));
    assert_eq!(status, 200, "{res}");
}
