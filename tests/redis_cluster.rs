//! Two wiresocket nodes on one Redis (`engine.kind = "redis"`): a publication made
//! through one node's API reaches a client of the other with its offset, a client
//! recovers across a reconnect to the other node, presence and join/leave are one
//! for the cluster, a node refuses to start with a
//! clear message when Redis is down, and a Redis restart never acknowledges a
//! publish it lost: publishes fail with a temporary error while Redis is away, and
//! subscribers are told to resubscribe (2500) when it returns, then recover (here
//! `recovered: false` with a new epoch, since the restarted Redis kept nothing).

mod common;
mod redis_support;

use common::{Client, Server};
use redis_support::NodeOverrides;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiresocket_testkit::RedisServer;

fn publish(node: &Server, channel: &str, data: Value) -> (u16, Value) {
    node.api("publish", json!({"channel": channel, "data": data}))
}

/// Next push for `channel` that is a publication or an unsubscribe.
fn next_push(c: &mut Client) -> Value {
    loop {
        let v = c
            .recv()
            .unwrap_or_else(|e| panic!("expected a push, got {e:?}"));
        if let Some(p) = v.get("push") {
            if p.get("pub").is_some() || p.get("unsubscribe").is_some() {
                return p.clone();
            }
        }
    }
}

#[test]
fn publications_cross_nodes_and_clients_recover_on_the_other_node() {
    let redis = RedisServer::start();
    let a = Server::start_with(&redis.node_overrides(10));
    let b = Server::start_with(&redis.node_overrides(10));

    let (mut on_a, _) = Client::connect(&a, "alice");
    let r = on_a.subscribe("doc");
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty(), "{r}");

    let (status, res) = publish(&b, "doc", json!({"n": 1}));
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["result"]["offset"], 1);
    assert_eq!(
        res["result"]["epoch"],
        epoch.as_str(),
        "one stream for both nodes"
    );
    let (channel, p) = on_a.next_pub();
    assert_eq!(
        (channel.as_str(), &p["data"], &p["offset"]),
        ("doc", &json!({"n": 1}), &json!(1))
    );

    // the client leaves node A; two more publications land (one through each node)
    drop(on_a);
    for (node, n) in [(&a, 2), (&b, 3)] {
        let (status, res) = publish(node, "doc", json!({"n": n}));
        assert_eq!(
            (status, &res["result"]["offset"]),
            (200, &json!(n)),
            "{res}"
        );
    }
    // and it comes back on node B, recovering what it missed
    let (mut on_b, _) = Client::connect(&b, "alice");
    let r = on_b.call(
        "subscribe",
        json!({"channel": "doc", "recover": true, "epoch": epoch, "offset": 1}),
    );
    let s = &r["subscribe"];
    assert_eq!(s["recovered"], true, "{r}");
    let offsets: Vec<u64> = s["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![2, 3], "{r}");
    // and it is live on B for publications made through A
    publish(&a, "doc", json!({"n": 4}));
    let (_, p) = on_b.next_pub();
    assert_eq!(p["offset"], 4);
}

#[test]
fn a_node_refuses_to_start_without_redis_by_default() {
    let redis = RedisServer::start();
    let overrides = redis.node_overrides(10);
    drop(redis);
    let err = match Server::try_start(&overrides) {
        Ok(_) => panic!("a node started without its Redis"),
        Err(report) => report,
    };
    assert!(
        err.contains("cannot connect to Redis at redis://127.0.0.1"),
        "{err}"
    );
}

#[test]
fn a_redis_restart_fails_publishes_then_resets_subscribers() {
    let redis = RedisServer::start();
    let port = redis.port;
    let a = Server::start_with(&redis.node_overrides(10));
    let (mut c, _) = Client::connect(&a, "bob");
    let r = c.subscribe("doc");
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    let (status, _) = publish(&a, "doc", json!({"n": 1}));
    assert_eq!(status, 200);
    assert_eq!(c.next_pub().1["offset"], 1);

    drop(redis); // killed
    let (status, res) = publish(&a, "doc", json!({"n": 2}));
    assert_eq!(
        status, 503,
        "a temporary failure, never an acknowledgement: {res}"
    );
    assert_eq!(res["error"]["code"], 100, "{res}");
    assert!(a.metric_sum("wiresocket_engine_redis_errors_total", &[]) >= 1.0);

    let _back = RedisServer::on_port(port);
    c.set_timeout(Duration::from_secs(10));
    let push = next_push(&mut c);
    assert_eq!(
        push["unsubscribe"]["code"], 2500,
        "told to resubscribe: {push}"
    );
    assert!(a.metric_sum("wiresocket_engine_redis_resubscribes_total", &[]) >= 1.0);

    // the SDK resubscribes with recovery: the restarted Redis lost the stream, so the
    // answer is an honest `recovered: false` on a new epoch, never a silent gap
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let r = c.call(
            "subscribe",
            json!({"channel": "doc", "recover": true, "epoch": epoch, "offset": 1}),
        );
        if r.get("subscribe").is_some() || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100)); // the command connection reconnects
    };
    assert_eq!(s["subscribe"]["recovered"], false, "{s}");
    assert_ne!(s["subscribe"]["epoch"], epoch.as_str(), "{s}");
    let (status, res) = publish(&a, "doc", json!({"n": 3}));
    assert_eq!(
        (status, &res["result"]["offset"]),
        (200, &json!(1)),
        "{res}"
    );
    assert_eq!(c.next_pub().1["data"], json!({"n": 3}));
}

/// Next push on `channel` of `kind` (`join`, `leave`), skipping others.
fn next_kind(c: &mut Client, channel: &str, kind: &str) -> Value {
    loop {
        let v = c
            .recv()
            .unwrap_or_else(|e| panic!("expected a {kind} push, got {e:?}"));
        if let Some(p) = v.get("push") {
            if p["channel"] == channel && p.get(kind).is_some() {
                return p[kind].clone();
            }
        }
    }
}

#[test]
fn presence_and_join_leave_span_nodes() {
    let redis = RedisServer::start();
    let mut o = redis.node_overrides(10);
    o.channels =
        "\n[[channels.namespaces]]\nname = \"room\"\npresence = true\njoin_leave = true\n".into();
    let a = Server::start_with(&o);
    let b = Server::start_with(&o);
    let (mut alice, _) = Client::connect(&a, "alice");
    alice.subscribe("room:1");
    let (mut bob, _) = Client::connect(&b, "bob");
    bob.subscribe("room:1");
    let (mut bob2, _) = Client::connect(&a, "bob"); // bob's second device, on the other node
    bob2.subscribe("room:1");
    // alice (node A) hears bob join on node B
    loop {
        if next_kind(&mut alice, "room:1", "join")["info"]["user"] == "bob" {
            break;
        }
    }
    let stats = alice.call("presence_stats", json!({"channel": "room:1"}));
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 3, "num_users": 2}),
        "one presence for the cluster: {stats}"
    );
    let p = bob.call("presence", json!({"channel": "room:1"}));
    let entries = p["presence"]["presence"].as_object().expect("presence");
    assert_eq!(entries.len(), 3, "the same entries from node B: {p}");
    // bob leaves on node B: alice on node A sees the leave and presence follows
    let r = bob.call("unsubscribe", json!({"channel": "room:1"}));
    assert!(r.get("unsubscribe").is_some());
    let l = next_kind(&mut alice, "room:1", "leave");
    assert_eq!(l["info"]["user"], "bob");
    let stats = alice.call("presence_stats", json!({"channel": "room:1"}));
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 2, "num_users": 2}),
        "{stats}"
    );
}

#[test]
fn presence_outlives_its_ttl_while_the_client_stays() {
    let redis = RedisServer::start();
    let mut o = redis.node_overrides(10);
    o.channels = "\n[[channels.namespaces]]\nname = \"room\"\npresence = true\n".into();
    o.env.push((
        "WIRESOCKET_ENGINE__REDIS__PRESENCE_TTL_S".into(),
        "3".into(),
    ));
    let a = Server::start_with(&o);
    let (mut alice, _) = Client::connect(&a, "alice");
    alice.subscribe("room:1");
    // well past the 3 s TTL: the node re-adds the entry of its client that is still here
    std::thread::sleep(std::time::Duration::from_secs(8));
    let stats = alice.call("presence_stats", json!({"channel": "room:1"}));
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 1, "num_users": 1}),
        "a present client stays present: {stats}"
    );
    // a client that left is gone at once, and one whose node died would expire with the TTL
    drop(alice);
    let (mut bob, _) = Client::connect(&a, "bob");
    bob.subscribe("room:1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = bob.call("presence_stats", json!({"channel": "room:1"}));
        if s["presence_stats"] == json!({"num_clients": 1, "num_users": 1}) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alice's entry stayed: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The periodic presence refresh is pipelined: 600 present clients on one core are re-added
/// every second (TTL 3 s) in a couple of Redis round trips each time, not one per entry
/// (`wiresocket_engine_redis_command_seconds_count` counts round trips).
#[test]
fn presence_refresh_is_batched_into_few_round_trips() {
    const CLIENTS: usize = 600;
    let redis = RedisServer::start();
    let mut o = redis.node_overrides(0);
    o.cores = Some(1);
    o.channels = "\n[[channels.namespaces]]\nname = \"room\"\npresence = true\n".into();
    o.env.push((
        "WIRESOCKET_ENGINE__REDIS__PRESENCE_TTL_S".into(),
        "3".into(),
    ));
    let a = Server::start_with(&o);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let (mut c, _) = Client::connect(&a, &format!("u{i}"));
            c.subscribe("room:big");
            c
        })
        .collect();
    let trips = || a.metric_sum("wiresocket_engine_redis_command_seconds_count", &[]);
    let before = trips();
    // three refresh periods (every TTL/3 = 1 s)
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    let during = trips() - before;
    let stats = clients[0].call("presence_stats", json!({"channel": "room:big"}));
    assert_eq!(stats["presence_stats"]["num_clients"], CLIENTS, "{stats}");
    assert!(
        during < CLIENTS as f64,
        "{during} round trips for three refreshes of {CLIENTS} entries: not batched"
    );
    clients.clear();
}
