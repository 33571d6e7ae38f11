//! The server API across two nodes on one private Redis (`engine.kind = "redis"`): a user
//! command sent to node A reaches the user's connections on node B through the control
//! channel (`disconnect` closes them with the given code, `subscribe` sends the subscribe
//! push and then publications made anywhere, `unsubscribe` ends it), `channels` surveys
//! both nodes, `info` lists both nodes from the node registry and forgets a killed node
//! after `engine.redis.node_ttl_s`, and `server.max_connections_per_user` holds across the
//! nodes (a killed node's connections stop counting after the TTL).

mod common;
mod redis_support;

use common::{Client, Overrides, Server};
use redis_support::NodeOverrides;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiresocket_testkit::RedisServer;

const NODE_TTL_S: u64 = 3;

fn cluster_node(redis: &RedisServer, name: &str, server: &str) -> Server {
    let mut o: Overrides = redis.node_overrides(10);
    o.env.push((
        "WIRESOCKET_ENGINE__REDIS__NODE_TTL_S".into(),
        NODE_TTL_S.to_string(),
    ));
    o.server = format!("node_name = \"{name}\"\n{server}");
    Server::start_with(&o)
}

/// Next push carrying `kind`.
fn next_push(c: &mut Client, kind: &str) -> Value {
    loop {
        let v = c
            .recv()
            .unwrap_or_else(|e| panic!("expected a {kind} push, got {e:?}"));
        if let Some(p) = v.get("push") {
            if p.get(kind).is_some() {
                return p.clone();
            }
        }
    }
}

fn node_names(server: &Server) -> Vec<String> {
    let (status, v) = server.api("info", json!({}));
    assert_eq!(status, 200, "{v}");
    v["result"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn user_commands_sent_to_one_node_reach_connections_on_the_other() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "a", "");
    let b = cluster_node(&redis, "b", "");

    let (mut on_b, _) = Client::connect(&b, "alice");
    let (mut other_on_b, _) = Client::connect(&b, "bob");

    // subscribe on A -> push on B, then publications made through A
    let (status, v) = a.api("subscribe", json!({"user": "alice", "channel": "doc"}));
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    let p = next_push(&mut on_b, "subscribe");
    assert_eq!(p["channel"], "doc", "{p}");
    let (status, v) = a.api("publish", json!({"channel": "doc", "data": {"n": 1}}));
    assert_eq!(status, 200, "{v}");
    let (ch, p) = on_b.next_pub();
    assert_eq!((ch.as_str(), &p["data"]), ("doc", &json!({"n": 1})));

    // channels: a survey of both nodes
    let (mut carol, _) = Client::connect(&a, "carol");
    carol.subscribe("doc");
    let (status, v) = b.api("channels", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["channels"],
        json!({"doc": {"num_clients": 2}}),
        "{v}"
    );

    // unsubscribe on A -> unsubscribe push on B
    let (status, _) = a.api("unsubscribe", json!({"user": "alice", "channel": "doc"}));
    assert_eq!(status, 200);
    let p = next_push(&mut on_b, "unsubscribe");
    assert_eq!(
        (&p["channel"], &p["unsubscribe"]["code"]),
        (&json!("doc"), &json!(2000))
    );

    // disconnect on A -> alice's connection on B closes with the code; bob stays
    let (status, _) = a.api(
        "disconnect",
        json!({"user": "alice", "disconnect": {"code": 3011, "reason": "x"}}),
    );
    assert_eq!(status, 200);
    assert_eq!(on_b.wait_close(), (3011, "force reconnect".into()));
    let r = other_on_b.call("presence_stats", json!({"channel": "doc"}));
    assert!(r.get("id").is_some(), "bob is still connected: {r}");
}

#[test]
fn info_lists_both_nodes_and_forgets_a_killed_one() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "a", "");
    let mut b = cluster_node(&redis, "b", "");
    let (_c1, _) = Client::connect(&b, "alice");
    let (_c2, _) = Client::connect(&b, "bob");

    // each node announces itself at start
    common::wait_for(|| node_names(&a) == ["a", "b"] && node_names(&b) == ["a", "b"]);
    // B's counts reach A with B's next announcement
    common::wait_for(|| {
        let (_, v) = a.api("info", json!({}));
        let nodes = v["result"]["nodes"].as_array().unwrap().clone();
        nodes
            .iter()
            .any(|n| n["name"] == "b" && n["num_clients"] == 2 && n["num_users"] == 2)
    });

    let _ = b.child.kill();
    let _ = b.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    common::wait_for(|| node_names(&a) == ["a"]);
    assert!(
        killed.elapsed() >= Duration::from_secs(NODE_TTL_S - 2),
        "the entry lives until its TTL"
    );
}

/// `connect` as `user`: the client, or the close code it got.
fn try_connect(node: &Server, user: &str) -> Result<Client, u16> {
    let mut c = Client::open(node);
    c.send_text(&json!({"id": 1, "connect": {"token": node.token(user, 3600)}}).to_string());
    loop {
        match c.recv() {
            Ok(v) if v.get("connect").is_some() => return Ok(c),
            Ok(_) => continue, // the disconnect push before the close
            Err(common::Ended::Closed(code, _)) => return Err(code),
            Err(e) => panic!("connect as {user}: {e:?}"),
        }
    }
}

/// Connects as soon as the cluster lets `user` in (places are given back asynchronously).
fn connect_when_allowed(node: &Server, user: &str, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    loop {
        match try_connect(node, user) {
            Ok(c) => return c,
            Err(code) => assert_eq!(code, 3504),
        }
        assert!(Instant::now() < deadline, "{user} still over the cap");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_per_user_connection_cap_holds_across_nodes() {
    let redis = RedisServer::start();
    let cap = "max_connections_per_user = 2";
    let a = cluster_node(&redis, "a", cap);
    let mut b = cluster_node(&redis, "b", cap);

    let (on_a, _) = Client::connect(&a, "alice");
    let (_on_b, _) = Client::connect(&b, "alice");
    for node in [&a, &b] {
        assert_eq!(
            try_connect(node, "alice").err(),
            Some(3504),
            "a third connection"
        );
    }
    let (_bob, _) = Client::connect(&a, "bob"); // other users are not affected

    // a closed connection gives its place back
    drop(on_a);
    let _second_on_b = connect_when_allowed(&b, "alice", Duration::from_secs(10));
    assert_eq!(try_connect(&a, "alice").err(), Some(3504));

    // the connections of a node that died stop counting after the node TTL
    let _ = b.child.kill();
    let _ = b.wait_exit(Duration::from_secs(5));
    let within = Duration::from_secs(NODE_TTL_S * 2 + 5);
    let _x = connect_when_allowed(&a, "alice", within);
    let _y = connect_when_allowed(&a, "alice", within);
    assert_eq!(
        try_connect(&a, "alice").err(),
        Some(3504),
        "the cap still holds"
    );
}

/// The control channel is an engine channel with a reserved name: even where the channel
/// rules let a client name it, subscribing and publishing are refused, so
/// no client can take the node's control subscription away.
#[test]
fn clients_cannot_reach_the_control_channel() {
    let redis = RedisServer::start();
    let mut o = redis.node_overrides(10);
    o.channels = "\n[channels.default]\nchannel_regex = \".*\"\n".into();
    let a = Server::start_with(&o);
    let reserved = "\u{0}control";

    let (mut bob, _) = Client::connect(&a, "bob");
    let r = bob.call("subscribe", json!({"channel": reserved}));
    assert!(r.get("error").is_some(), "{r}"); // the engine refuses; the hub reports 100
    let r = bob.call("unsubscribe", json!({"channel": reserved}));
    assert!(r.get("unsubscribe").is_some(), "{r}");
    let r = bob.call("publish", json!({"channel": reserved, "data": {}}));
    assert_eq!(r["error"]["code"], 108, "{r}");
    let (status, v) = a.api("publish", json!({"channel": reserved, "data": {}}));
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (200, Some(108)),
        "{v}"
    );
    drop(bob);

    // node commands still arrive
    let (mut alice, _) = Client::connect(&a, "alice");
    let (status, _) = a.api("subscribe", json!({"user": "alice", "channel": "doc"}));
    assert_eq!(status, 200);
    assert_eq!(next_push(&mut alice, "subscribe")["channel"], "doc");
}

/// A node that stops gracefully (SIGTERM) leaves the registry at the end of its drain, not
/// after the TTL (here a minute).
#[test]
fn a_node_that_drains_leaves_info_at_once() {
    let redis = RedisServer::start();
    let node = |name: &str| {
        let mut o = redis.node_overrides(10);
        o.env
            .push(("WIRESOCKET_ENGINE__REDIS__NODE_TTL_S".into(), "60".into()));
        o.server = format!("node_name = \"{name}\"");
        Server::start_with(&o)
    };
    let a = node("a");
    let mut b = node("b");
    common::wait_for(|| node_names(&a) == ["a", "b"]);
    b.sigterm();
    assert!(b.wait_exit(Duration::from_secs(10)).is_some(), "b drained");
    assert_eq!(node_names(&a), ["a"]);
}
