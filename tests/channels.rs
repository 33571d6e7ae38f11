//! Channel namespaces and the one permission function, against the real server: the history
//! leak of issue 7 (a client refused `subscribe $secret` could read its history), unknown
//! namespaces (102), per-namespace history, user-limited channels, per-namespace name rules,
//! and `[channels.default]` options set from the environment.

mod common;

use common::{token_with, Client, Overrides, Server};
use serde_json::{json, Value};

fn code(reply: &Value) -> u64 {
    reply["error"]["code"].as_u64().unwrap_or(0)
}

/// Three API publications into `channel`, each acknowledged (with its offset where the
/// channel keeps history; channels without history have no stream position).
fn publish_three(server: &Server, channel: &str) {
    for n in 1..=3 {
        let (status, body) = server.api("publish", json!({"channel": channel, "data": n}));
        assert_eq!(status, 200, "{body}");
        let offset = &body["result"]["offset"];
        assert!(offset.is_null() || *offset == json!(n), "{body}");
    }
}

#[test]
fn history_of_a_private_channel_is_refused_to_a_client_refused_its_subscription() {
    // the old config shape (engine history only) still turns history on for the default namespace
    let server = Server::start_with(&Overrides {
        env: vec![("WIRESOCKET_ENGINE__HISTORY_SIZE".into(), "10".into())],
        ..Default::default()
    });
    publish_three(&server, "$secret");
    let (mut mallory, _) = Client::connect(&server, "mallory");
    let r = mallory.call("subscribe", json!({"channel": "$secret"}));
    assert_eq!(code(&r), 103, "{r}");
    let r = mallory.call("history", json!({"channel": "$secret", "limit": -1}));
    assert_eq!(code(&r), 103, "history leaked: {r}");
    assert!(r.get("history").is_none());
    // nor by just asking about an ordinary channel it is not subscribed to
    publish_three(&server, "news");
    let r = mallory.call("history", json!({"channel": "news", "limit": -1}));
    assert_eq!(code(&r), 103, "{r}");
    assert!(
        server.metric_sum(
            "wiresocket_channel_denied_total",
            &["reason=\"permission_denied\""]
        ) >= 3.0
    );

    // the history is there for a client holding a subscription token
    let (mut alice, _) = Client::connect(&server, "alice");
    let token = token_with("alice", 600, json!({"channel": "$secret"}));
    let r = alice.call("subscribe", json!({"channel": "$secret", "token": token}));
    assert!(r.get("subscribe").is_some(), "{r}");
    let r = alice.call("history", json!({"channel": "$secret", "limit": -1}));
    assert_eq!(
        r["history"]["publications"].as_array().map(Vec::len),
        Some(3),
        "{r}"
    );
}

/// Namespaces: `h` keeps history, `dm` has user-limited channels, `ids` takes short numeric
/// names only; the default namespace has no history.
fn namespaced_server() -> Server {
    Server::start_with(&Overrides {
        channels: r#"
[[channels.namespaces]]
name = "h"
history_size = 5

[[channels.namespaces]]
name = "dm"
allow_user_limited_channels = true
allow_publish_for_subscriber = true

[[channels.namespaces]]
name = "ids"
channel_regex = "^[0-9]+$"
max_channel_length = 10
"#
        .into(),
        ..Default::default()
    })
}

#[test]
fn unknown_namespace_is_102_for_every_operation() {
    let server = namespaced_server();
    let (mut c, _) = Client::connect(&server, "u");
    for method in ["subscribe", "publish", "history", "presence"] {
        let r = c.call(method, json!({"channel": "nope:x", "data": 1}));
        assert_eq!(code(&r), 102, "{method}: {r}");
    }
    let (status, body) = server.api("publish", json!({"channel": "nope:x", "data": 1}));
    assert_eq!((status, code(&body)), (200, 102), "{body}");
    assert!(
        server.metric_sum(
            "wiresocket_channel_denied_total",
            &["reason=\"unknown_namespace\""]
        ) >= 5.0
    );
}

#[test]
fn history_follows_the_namespace() {
    let server = namespaced_server();
    let (mut c, _) = Client::connect(&server, "u");
    let r = c.subscribe("h:room");
    assert!(
        r["subscribe"]["epoch"].is_string(),
        "positions with history: {r}"
    );
    let r = c.subscribe("room");
    assert!(r["subscribe"].get("epoch").is_none(), "none without: {r}");
    publish_three(&server, "h:room");
    publish_three(&server, "room");
    let r = c.call("history", json!({"channel": "h:room", "limit": -1}));
    assert_eq!(
        r["history"]["publications"].as_array().map(Vec::len),
        Some(3),
        "{r}"
    );
    let r = c.call("history", json!({"channel": "room", "limit": -1}));
    assert_eq!(code(&r), 108, "{r}");
}

#[test]
fn user_limited_channel_admits_listed_users_only() {
    let server = namespaced_server();
    let channel = "dm:talk#alice,bob";
    let (mut bob, _) = Client::connect(&server, "bob");
    bob.subscribe(channel);
    let (mut eve, _) = Client::connect(&server, "eve");
    let r = eve.call("subscribe", json!({"channel": channel}));
    assert_eq!(code(&r), 103, "{r}");
    let r = eve.call("publish", json!({"channel": channel, "data": "hi"}));
    assert_eq!(code(&r), 103, "{r}");
    // a listed subscriber may publish (allow_publish_for_subscriber) and bob receives it
    let (mut alice, _) = Client::connect(&server, "alice");
    alice.subscribe(channel);
    let r = alice.call("publish", json!({"channel": channel, "data": "hi"}));
    assert_eq!(r["publish"], json!({}), "{r}");
    let (got, publication) = bob.next_pub();
    assert_eq!(
        (got.as_str(), &publication["data"]),
        (channel, &json!("hi"))
    );
}

#[test]
fn name_rules_are_per_namespace() {
    let server = namespaced_server();
    let (mut c, _) = Client::connect(&server, "u");
    c.subscribe("ids:123");
    for bad in ["ids:12a", "ids:1234567", "ids:"] {
        let r = c.call("subscribe", json!({"channel": bad}));
        assert_eq!(code(&r), 107, "{bad}: {r}");
    }
    // the default namespace has no regex and the default length limit
    c.subscribe("abc");
    c.subscribe(&"x".repeat(255));
    let r = c.call("subscribe", json!({"channel": "x".repeat(256)}));
    assert_eq!(code(&r), 107, "{r}");
    let (status, _) = server.api("publish", json!({"channel": "ids:abc", "data": 1}));
    assert_eq!(status, 400);
}

#[test]
fn default_namespace_options_come_from_the_environment() {
    let server = Server::start_with(&Overrides {
        env: vec![
            (
                "WIRESOCKET_CHANNELS__DEFAULT__PRESENCE".into(),
                "true".into(),
            ),
            (
                "WIRESOCKET_CHANNELS__DEFAULT__HISTORY_SIZE".into(),
                "2".into(),
            ),
        ],
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&server, "u");
    // presence on: a non-subscriber is refused (103), not told it is off (108)
    let r = c.call("presence", json!({"channel": "p"}));
    assert_eq!(code(&r), 103, "{r}");
    // history on, two kept
    let r = c.subscribe("p");
    assert!(r["subscribe"]["epoch"].is_string(), "{r}");
    publish_three(&server, "p");
    let r = c.call("history", json!({"channel": "p", "limit": -1}));
    let offsets: Vec<u64> = r["history"]["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [2, 3]);
}
