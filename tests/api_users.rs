//! The server API's commands on a user's connections and the node introspection, against a
//! real node (memory engine, 2 cores, clients spread over both): `disconnect` closes every
//! connection of the user (or one client) with the given code and no one else's,
//! `subscribe` sends each connection a `subscribe` push and then the channel's publications,
//! `unsubscribe` an `unsubscribe` push (2000) after which nothing more arrives, `refresh`
//! with `expired` closes with 3005, `info` counts clients, users, subscriptions and
//! channels, and `channels` lists channels with their subscriber counts.

mod common;

use common::{Client, Overrides, Server};
use serde_json::{json, Value};
use std::time::Duration;

fn node() -> Server {
    Server::start_with(&Overrides {
        cores: Some(2),
        channels: "\n[[channels.namespaces]]\nname = \"room\"\nhistory_size = 10\n".into(),
        ..Default::default()
    })
}

/// Next push carrying `kind` (`subscribe`, `unsubscribe`, `pub`, ...) for `channel`.
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

/// Connections of `user` (opened before any other) until both cores hold some, at least 4.
fn spread(server: &Server, user: &str) -> Vec<Client> {
    let mut out = Vec::new();
    let on =
        |core: usize| server.metric_sum("wiresocket_connections", &[&format!("core=\"{core}\"")]);
    while out.len() < 4 || on(0) < 1.0 || on(1) < 1.0 {
        assert!(out.len() < 64, "connections never reached both cores");
        out.push(Client::connect(server, user).0);
    }
    out
}

fn publish(server: &Server, channel: &str, n: u64) {
    let (status, v) = server.api("publish", json!({"channel": channel, "data": {"n": n}}));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn disconnect_closes_every_connection_of_the_user_with_the_code() {
    let server = node();
    let mut alice = spread(&server, "alice");
    let (mut bob, _) = Client::connect(&server, "bob");
    bob.subscribe("room:b");

    let (status, v) = server.api(
        "disconnect",
        json!({"user": "alice", "disconnect": {"code": 3011, "reason": "go"}}),
    );
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    for a in &mut alice {
        assert_eq!(a.wait_close(), (3011, "force reconnect".into()));
    }
    publish(&server, "room:b", 1);
    assert_eq!(bob.next_pub().1["data"]["n"], 1, "bob is still connected");

    // one client only; the default code is 3503
    let (mut c1, r1) = Client::connect(&server, "carol");
    let (mut c2, r2) = Client::connect(&server, "carol");
    let c2_client = r2["client"].as_str().unwrap().to_owned();
    c2.subscribe("room:c");
    let (status, _) = server.api(
        "disconnect",
        json!({"user": "carol", "client": r1["client"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(c1.wait_close(), (3503, "force disconnect".into()));
    publish(&server, "room:c", 2);
    assert_eq!(c2.next_pub().1["data"]["n"], 2, "the other client stays");

    // all but the whitelisted client
    let (mut c3, _) = Client::connect(&server, "carol");
    let (status, _) = server.api(
        "disconnect",
        json!({"user": "carol", "whitelist": [c2_client]}),
    );
    assert_eq!(status, 200);
    assert_eq!(c3.wait_close().0, 3503);
    publish(&server, "room:c", 3);
    assert_eq!(
        c2.next_pub().1["data"]["n"],
        3,
        "the whitelisted client stays"
    );

    for bad in [
        json!({"user": "carol", "disconnect": {"code": 4242}}),
        json!({"user": "carol", "disconnect": {"code": 1000}}),
        json!({"client": "x"}),
    ] {
        let (status, v) = server.api("disconnect", bad.clone());
        assert_eq!(
            (status, v["error"]["code"].as_u64()),
            (400, Some(107)),
            "{bad} -> {v}"
        );
    }
}

#[test]
fn subscribe_and_unsubscribe_push_to_every_connection_of_the_user() {
    let server = node();
    publish(&server, "room:s", 1); // the stream exists: offset 1
    let mut alice = spread(&server, "alice");
    let (mut bob, _) = Client::connect(&server, "bob");

    let (status, v) = server.api("subscribe", json!({"user": "alice", "channel": "room:s"}));
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    for a in &mut alice {
        let p = next_push(a, "subscribe");
        assert_eq!(p["channel"], "room:s", "{p}");
        assert_eq!(p["subscribe"]["offset"], 1, "{p}");
        assert!(
            p["subscribe"]["epoch"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{p}"
        );
    }
    publish(&server, "room:s", 2);
    for a in &mut alice {
        let (ch, p) = a.next_pub();
        assert_eq!(
            (ch.as_str(), &p["data"]["n"], &p["offset"]),
            ("room:s", &json!(2), &json!(2))
        );
    }
    // a second subscribe changes nothing; the client may not subscribe again itself
    let (status, _) = server.api("subscribe", json!({"user": "alice", "channel": "room:s"}));
    assert_eq!(status, 200);
    let r = alice[0].call("subscribe", json!({"channel": "room:s"}));
    assert_eq!(
        r["error"]["code"], 105,
        "already subscribed by the server: {r}"
    );

    let (status, v) = server.api("unsubscribe", json!({"user": "alice", "channel": "room:s"}));
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    for a in &mut alice {
        let p = next_push(a, "unsubscribe");
        assert_eq!(p["channel"], "room:s");
        assert_eq!(p["unsubscribe"]["code"], 2000, "{p}");
    }
    bob.subscribe("room:s");
    publish(&server, "room:s", 3);
    assert_eq!(bob.next_pub().1["data"]["n"], 3);
    for a in &mut alice {
        a.set_timeout(Duration::from_millis(300));
        // everything already sent arrives before the read times out
        while let Ok(v) = a.recv() {
            assert!(
                v.get("push").and_then(|p| p.get("pub")).is_none(),
                "after unsubscribe: {v}"
            );
        }
    }

    let (status, v) = server.api("subscribe", json!({"user": "alice", "channel": "nope:x"}));
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (200, Some(102)),
        "{v}"
    );
    let (status, v) = server.api("subscribe", json!({"user": "alice"}));
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (400, Some(107)),
        "{v}"
    );
}

#[test]
fn refresh_expired_closes_with_3005() {
    let server = node();
    let (mut a, _) = Client::connect(&server, "alice");
    let (status, _) = server.api("refresh", json!({"user": "alice", "expired": true}));
    assert_eq!(status, 200);
    assert_eq!(a.wait_close().0, 3005);
}

#[test]
fn info_and_channels_count_the_node() {
    let server = node();
    let mut clients = Vec::new();
    for (user, channels) in [
        ("alice", &["room:x", "room:y"][..]),
        ("alice", &["room:x"]),
        ("bob", &["room:x"]),
    ] {
        let (mut c, _) = Client::connect(&server, user);
        for ch in channels {
            c.subscribe(ch);
        }
        clients.push(c);
    }
    let (status, v) = server.api("info", json!({}));
    assert_eq!(status, 200, "{v}");
    let nodes = v["result"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    let n = &nodes[0];
    assert_eq!(
        (
            &n["num_clients"],
            &n["num_users"],
            &n["num_subs"],
            &n["num_channels"]
        ),
        (&json!(3), &json!(2), &json!(4), &json!(2)),
        "{v}"
    );
    assert!(n["uid"].as_str().is_some_and(|u| !u.is_empty()), "{v}");
    assert!(n["name"].as_str().is_some_and(|u| !u.is_empty()), "{v}");
    assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
    assert!(n["uptime"].as_u64().is_some(), "{v}");

    let (status, v) = server.api("channels", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["channels"],
        json!({"room:x": {"num_clients": 3}, "room:y": {"num_clients": 1}})
    );
    let (_, v) = server.api("channels", json!({"pattern": "*:y"}));
    assert_eq!(
        v["result"]["channels"],
        json!({"room:y": {"num_clients": 1}})
    );
    drop(clients);
    common::wait_for(|| {
        let (_, v) = server.api("channels", json!({}));
        v["result"]["channels"] == json!({})
    });
}

/// `subscribe` with `data` and `recover_since`: the push carries the data and the
/// publications after the position, flagged `recovered`.
#[test]
fn subscribe_sends_data_and_recovers_from_a_position() {
    let server = node();
    for n in 1..=3 {
        publish(&server, "room:r", n);
    }
    let (_, h) = server.api("history", json!({"channel": "room:r"}));
    let epoch = h["result"]["epoch"].as_str().unwrap().to_owned();
    let (mut a, _) = Client::connect(&server, "alice");

    let (status, v) = server.api(
        "subscribe",
        json!({"user": "alice", "channel": "room:r", "data": {"hello": 1},
               "recover_since": {"offset": 1, "epoch": epoch}}),
    );
    assert_eq!(status, 200, "{v}");
    let p = next_push(&mut a, "subscribe");
    let sub = &p["subscribe"];
    assert_eq!(sub["data"], json!({"hello": 1}), "{p}");
    assert_eq!(
        (&sub["recovered"], &sub["offset"]),
        (&json!(true), &json!(3)),
        "{p}"
    );
    let offsets: Vec<u64> = sub["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("publications in {p}"))
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [2, 3], "{p}");
}
