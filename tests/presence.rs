//! Presence, join/leave and publish options on the memory engine (issue 7,
//! item 9), through namespaces: a namespace with presence and join/leave on, one
//! without; multi-device users count once in `num_users`; the API's
//! `idempotency_key`, `tags` and `skip_history` are honoured.

mod common;

use common::{Client, Overrides, Server};
use serde_json::json;

fn server() -> Server {
    Server::start_with(&Overrides {
        channels: "\n[[channels.namespaces]]\nname = \"room\"\npresence = true\njoin_leave = true\nhistory_size = 10\n"
            .into(),
        ..Default::default()
    })
}

/// Next push of `kind` (join/leave) on `channel`.
fn next_push(c: &mut Client, channel: &str, kind: &str) -> serde_json::Value {
    loop {
        let v = c
            .recv()
            .unwrap_or_else(|e| panic!("waiting for {kind}: {e:?}"));
        if v["push"]["channel"] == channel && v["push"].get(kind).is_some() {
            return v["push"][kind].clone();
        }
    }
}

#[test]
fn presence_counts_clients_and_users_and_announces_join_and_leave() {
    let server = server();
    let (mut a1, _) = Client::connect(&server, "alice");
    a1.subscribe("room:1");
    let (mut a2, _) = Client::connect(&server, "alice"); // second device
    a2.subscribe("room:1");
    let (mut b, _) = Client::connect(&server, "bob");
    b.subscribe("room:1");
    let j = next_push(&mut a1, "room:1", "join");
    assert!(["alice", "bob"].contains(&j["info"]["user"].as_str().unwrap()));
    let stats = a1.call("presence_stats", json!({"channel": "room:1"}));
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 3, "num_users": 2}),
        "{stats}"
    );
    let p = a1.call("presence", json!({"channel": "room:1"}));
    let entries = p["presence"]["presence"].as_object().unwrap();
    assert_eq!(entries.len(), 3, "{p}");
    assert!(entries
        .values()
        .all(|e| e["user"] == "alice" || e["user"] == "bob"));
    // bob leaves: a leave push, and presence follows
    let r = b.call("unsubscribe", json!({"channel": "room:1"}));
    assert!(r.get("unsubscribe").is_some());
    loop {
        let l = next_push(&mut a1, "room:1", "leave");
        if l["info"]["user"] == "bob" {
            break;
        }
    }
    let stats = a1.call("presence_stats", json!({"channel": "room:1"}));
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 2, "num_users": 1})
    );
    // a disconnect removes the entry too
    drop(a2);
    common::wait_for(|| {
        let mut probe = Client::connect(&server, "probe").0;
        probe.subscribe("room:1");
        let s = probe.call("presence_stats", json!({"channel": "room:1"}));
        s["presence_stats"]["num_clients"] == 2 // alice's first device and the probe
    });
}

#[test]
fn presence_is_refused_where_off_or_not_subscribed() {
    let server = server();
    let (mut c, _) = Client::connect(&server, "u");
    c.subscribe("plain");
    let r = c.call("presence", json!({"channel": "plain"}));
    assert_eq!(
        r["error"]["code"], 108,
        "presence off in the default namespace: {r}"
    );
    let r = c.call("presence_stats", json!({"channel": "room:2"}));
    assert_eq!(r["error"]["code"], 103, "not subscribed: {r}");
    let r = c.call("presence", json!({"channel": "nowhere:1"}));
    assert_eq!(r["error"]["code"], 102, "unknown namespace: {r}");
}

#[test]
fn api_publish_honours_idempotency_key_tags_and_skip_history() {
    let server = server();
    let (mut c, _) = Client::connect(&server, "u");
    c.subscribe("room:3");
    let body = json!({"channel": "room:3", "data": {"n": 1}, "idempotency_key": "k-1", "tags": {"kind": "x"}});
    let (s1, r1) = server.api("publish", body.clone());
    let (s2, r2) = server.api("publish", body);
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(r1, r2, "a repeat answers the first result");
    let (_, p) = c.next_pub();
    assert_eq!(p["tags"], json!({"kind": "x"}));
    let (_, r3) = server.api(
        "publish",
        json!({"channel": "room:3", "data": {"n": 2}, "skip_history": true}),
    );
    assert!(
        r3["result"].get("offset").is_none(),
        "not stored: no offset: {r3}"
    );
    let (_, p2) = c.next_pub();
    assert_eq!(
        p2["data"],
        json!({"n": 2}),
        "delivered once; the repeat was not"
    );
    let h = c.call("history", json!({"channel": "room:3", "limit": 10}));
    assert_eq!(
        h["history"]["publications"].as_array().unwrap().len(),
        1,
        "{h}"
    );
    let (status, _) = server.api(
        "publish",
        json!({"channel": "room:3", "data": 1, "tags": {"k": 1}}),
    );
    assert_eq!(status, 400, "tags must be strings");
}
