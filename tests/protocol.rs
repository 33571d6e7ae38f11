//! Client protocol over real sockets: connect with good, bad and expired
//! tokens; subscribe/publish/receive across cores; unsubscribe; batching in
//! both directions; error replies.

mod common;

use common::{token_with, Client, Server};
use serde_json::json;
use std::time::Duration;

#[test]
fn connect_with_valid_token_reports_client_ping_and_pong() {
    let server = Server::start();
    let (_c, result) = Client::connect(&server, "alice");
    assert!(
        result["client"].as_str().is_some_and(|s| !s.is_empty()),
        "{result}"
    );
    assert_eq!(result["pong"], true);
    assert_eq!(result["ping"], 25);
    assert!(result["version"].is_string());
    assert_eq!(result["expires"], true, "token has exp: {result}");
    assert!(result["ttl"].as_u64().unwrap() > 3000);
}

#[test]
fn invalid_token_closes_3500_and_expired_token_replies_109() {
    let server = Server::start();
    let mut c = Client::open(&server);
    c.send_text(r#"{"id":1,"connect":{"token":"not-a-jwt"}}"#);
    assert_eq!(c.wait_close(), (3500, "invalid token".to_string()));

    let mut c = Client::open(&server);
    let bad_sig = token_with("bob", 3600, json!({})).replace('.', ".x");
    c.send_text(&json!({"id":1,"connect":{"token":bad_sig}}).to_string());
    assert_eq!(c.wait_close().0, 3500);

    let mut c = Client::open(&server);
    let r = c.call("connect", json!({"token": server.token("carol", -60)}));
    assert_eq!(r["error"]["code"], 109, "{r}");
    assert_eq!(
        server.metric_sum("wiresocket_disconnects_total", &["code=\"3500\""]),
        2.0
    );
}

#[test]
fn command_before_connect_closes_3501() {
    let server = Server::start();
    let mut c = Client::open(&server);
    c.send_text(r#"{"id":1,"subscribe":{"channel":"x"}}"#);
    assert_eq!(c.wait_close().0, 3501);
    let mut c = Client::open(&server);
    c.send_text("this is not json");
    assert_eq!(c.wait_close().0, 3501);
}

#[test]
fn publications_reach_subscribers_on_both_cores() {
    let server = Server::start_with(&common::Overrides::with_history(10));
    // Open clients until both cores hold subscribers (SO_REUSEPORT spreads them).
    let mut subs = Vec::new();
    for i in 0..16 {
        let (mut c, _) = Client::connect(&server, &format!("sub{i}"));
        c.subscribe("news");
        subs.push(c);
        let per_core: Vec<f64> = (0..2)
            .map(|core| {
                server.metric_sum("wiresocket_subscriptions", &[&format!("core=\"{core}\"")])
            })
            .collect();
        if i >= 3 && per_core.iter().all(|n| *n > 0.0) {
            break;
        }
    }
    for core in 0..2 {
        let n = server.metric_sum("wiresocket_subscriptions", &[&format!("core=\"{core}\"")]);
        assert!(n > 0.0, "no subscriber landed on core {core}");
    }
    let (mut publisher, _) = Client::connect(&server, "pub");
    for n in 1..=3 {
        let r = publisher.call("publish", json!({"channel": "news", "data": {"n": n}}));
        assert_eq!(r["publish"], json!({}), "{r}");
    }
    for c in subs.iter_mut() {
        let mut offsets = vec![];
        for n in 1..=3 {
            let (channel, publication) = c.next_pub();
            assert_eq!(channel, "news");
            assert_eq!(publication["data"], json!({"n": n}));
            assert_eq!(publication["info"]["user"], "pub");
            offsets.push(publication["offset"].as_u64().unwrap());
        }
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    }
    // every subscriber got each publication once: deliveries == 3 * subscribers, split over both cores
    let delivered: f64 = server.metric_sum("wiresocket_deliveries_total", &[]);
    assert_eq!(delivered, 3.0 * subs.len() as f64);
    for core in 0..2 {
        assert!(
            server.metric_sum(
                "wiresocket_deliveries_total",
                &[&format!("core=\"{core}\"")]
            ) > 0.0
        );
    }
    // traffic counters: every delivery is a queued frame and its bytes were written
    let m = server.metrics();
    let out_frames = common::metric_sum(&m, "wiresocket_messages_out_total", &[]);
    assert!(
        out_frames >= delivered,
        "{out_frames} frames queued for {delivered} deliveries"
    );
    assert!(common::metric_sum(&m, "wiresocket_bytes_out_total", &[]) > 40.0 * delivered);
    assert!(common::metric_sum(&m, "wiresocket_messages_in_total", &[]) >= 3.0 + subs.len() as f64);
    assert!(common::metric_sum(&m, "wiresocket_bytes_in_total", &[]) > 0.0);
}

#[test]
fn api_publish_delivers_and_unsubscribe_stops_delivery() {
    let server = Server::start_with(&common::Overrides::with_history(10));
    let (mut a, _) = Client::connect(&server, "a");
    a.subscribe("room");
    let (status, body) = server.api("publish", json!({"channel": "room", "data": "hello"}));
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["offset"].as_u64().unwrap() >= 1);
    assert!(body["result"]["epoch"].is_string());
    assert_eq!(a.next_pub().1["data"], "hello");

    let r = a.call("unsubscribe", json!({"channel": "room"}));
    assert_eq!(r["unsubscribe"], json!({}));
    server.api("publish", json!({"channel": "room", "data": "after"}));
    a.set_timeout(Duration::from_millis(500));
    let r = a.call("subscribe", json!({"channel": "other"}));
    assert!(r.get("subscribe").is_some());
    assert!(
        a.pending.is_empty(),
        "got a publication after unsubscribe: {:?}",
        a.pending
    );
    assert_eq!(server.metric_sum("wiresocket_subscriptions", &[]), 1.0);
}

#[test]
fn batched_commands_get_batched_replies() {
    let server = Server::start();
    let mut c = Client::open(&server);
    let token = server.token("u", 3600);
    let batch = format!(
        "{}\n{}\n{}",
        json!({"id":1,"connect":{"token":token}}),
        json!({"id":2,"subscribe":{"channel":"a"}}),
        json!({"id":3,"subscribe":{"channel":"b"}})
    );
    c.send_text(&batch);
    // all three replies arrive in ONE frame, newline-separated
    let frame = match c.ws.read().unwrap() {
        tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("{other:?}"),
    };
    let replies: Vec<serde_json::Value> = frame
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 3, "{frame}");
    assert_eq!(replies[0]["id"], 1);
    assert!(replies[1]["subscribe"].is_object() && replies[2]["subscribe"].is_object());
}

#[test]
fn command_errors_use_protocol_codes() {
    let server = Server::start_with(&common::Overrides {
        channels: "max_subscriptions_per_client = 2".into(),
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&server, "u");
    c.subscribe("one");
    assert_eq!(
        c.call("subscribe", json!({"channel":"one"}))["error"]["code"],
        105
    );
    c.subscribe("two");
    assert_eq!(
        c.call("subscribe", json!({"channel":"three"}))["error"]["code"],
        106
    );
    assert_eq!(
        c.call("subscribe", json!({"channel":""}))["error"]["code"],
        107
    );
    assert_eq!(
        c.call("subscribe", json!({"channel":"$private"}))["error"]["code"],
        103
    );
    assert_eq!(c.call("frobnicate", json!({}))["error"]["code"], 104);
    assert_eq!(
        c.call("presence", json!({"channel":"one"}))["error"]["code"],
        108
    );
    assert_eq!(c.call("rpc", json!({"method":"x"}))["error"]["code"], 108);
    assert!(server.metric_sum("wiresocket_command_errors_total", &[]) >= 7.0);
}

#[test]
fn private_channel_needs_a_matching_subscription_token() {
    let server = Server::start();
    let (mut c, _) = Client::connect(&server, "alice");
    let good = token_with("alice", 600, json!({"channel": "$secret"}));
    let other_user = token_with("mallory", 600, json!({"channel": "$secret"}));
    assert_eq!(
        c.call("subscribe", json!({"channel":"$secret","token":other_user}))["error"]["code"],
        103
    );
    let r = c.call("subscribe", json!({"channel":"$secret","token":good}));
    assert!(r.get("subscribe").is_some(), "{r}");
}

#[test]
fn server_side_subscriptions_from_token_channels() {
    let server = Server::start();
    let mut c = Client::open(&server);
    let token = token_with("svc", 600, json!({"channels": ["alerts"]}));
    let r = c.call("connect", json!({"token": token}));
    assert!(r["connect"]["subs"]["alerts"].is_object(), "{r}");
    server.api(
        "publish",
        json!({"channel": "alerts", "data": {"level": "high"}}),
    );
    let (channel, publication) = c.next_pub();
    assert_eq!(channel, "alerts");
    assert_eq!(publication["data"]["level"], "high");
}

#[test]
fn anonymous_connections_only_when_configured() {
    let server = Server::start();
    let mut c = Client::open(&server);
    c.send_text(r#"{"id":1,"connect":{}}"#);
    assert_eq!(c.wait_close().0, 3500, "no token, anonymous not allowed");

    let server = Server::start_with(&common::Overrides {
        auth: "allow_anonymous = true".into(),
        channels: "allow_anonymous_subscribe = true".into(),
        ..Default::default()
    });
    let mut c = Client::open(&server);
    let r = c.call("connect", json!({}));
    assert!(r["connect"]["client"].is_string(), "{r}");
    assert!(r["connect"].get("expires").is_none());
    c.subscribe("public");
}
