//! History and recovery on the embedded engine (`channels.default.history_size > 0`):
//! stream positions in subscribe replies, recovery by (epoch, offset) with
//! `recovered: false` rather than a silent gap, the `history` command, and
//! token refresh / connection expiry.

mod common;

use common::{token_with, wait_for, Client, Overrides, Server};
use serde_json::json;

fn history_server() -> Server {
    Server::start_with(&Overrides {
        env: vec![common::history_env(5)],
        ..Default::default()
    })
}

#[test]
fn subscribe_reports_position_and_recovers_missed_publications() {
    let server = history_server();
    let (mut a, _) = Client::connect(&server, "a");
    let r = a.subscribe("h");
    let epoch = r["subscribe"]["epoch"].as_str().expect("epoch").to_string();
    assert_eq!(r["subscribe"]["recoverable"], true);
    assert_eq!(r["subscribe"]["offset"].as_u64().unwrap_or(0), 0);
    for n in 1..=3 {
        let (status, body) = server.api("publish", json!({"channel": "h", "data": {"n": n}}));
        assert_eq!(body["result"]["offset"], n, "{status} {body}");
        assert_eq!(body["result"]["epoch"], epoch.as_str());
    }
    // a client that saw offset 1 recovers 2 and 3, in order
    let (mut b, _) = Client::connect(&server, "b");
    let r = b.call(
        "subscribe",
        json!({"channel": "h", "recover": true, "epoch": epoch, "offset": 1}),
    );
    let s = &r["subscribe"];
    assert_eq!(s["recovered"], true, "{r}");
    assert_eq!(s["was_recovering"], true);
    assert_eq!(s["offset"], 3);
    let offsets: Vec<u64> = s["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![2, 3]);
    assert_eq!(s["publications"][0]["data"], json!({"n": 2}));

    // the history command
    let r = a.call("history", json!({"channel": "h", "limit": -1}));
    assert_eq!(
        r["history"]["publications"].as_array().unwrap().len(),
        3,
        "{r}"
    );
    let r = a.call(
        "history",
        json!({"channel": "h", "limit": 1, "reverse": true}),
    );
    assert_eq!(r["history"]["publications"][0]["offset"], 3);
}

#[test]
fn recovery_says_unrecovered_instead_of_leaving_a_gap() {
    let server = history_server();
    let (mut a, _) = Client::connect(&server, "a");
    let epoch = a.subscribe("g")["subscribe"]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 1..=9 {
        server.api("publish", json!({"channel": "g", "data": n}));
    }
    // history keeps 5 (offsets 5..9): a client at offset 2 cannot be made whole
    let (mut b, _) = Client::connect(&server, "b");
    let r = b.call(
        "subscribe",
        json!({"channel": "g", "recover": true, "epoch": epoch, "offset": 2}),
    );
    assert_eq!(r["subscribe"]["recovered"], false, "{r}");
    assert!(
        r["subscribe"].get("publications").is_none(),
        "no partial list: {r}"
    );
    assert_eq!(r["subscribe"]["offset"], 9);
    // a wrong epoch (stream reset) is unrecoverable too
    let (mut c, _) = Client::connect(&server, "c");
    let r = c.call(
        "subscribe",
        json!({"channel": "g", "recover": true, "epoch": "other", "offset": 8}),
    );
    assert_eq!(r["subscribe"]["recovered"], false, "{r}");
    // history from a lost position answers 112
    let r = c.call(
        "history",
        json!({"channel": "g", "limit": 10, "since": {"offset": 1, "epoch": epoch}}),
    );
    assert_eq!(r["error"]["code"], 112, "{r}");
}

#[test]
fn history_is_not_available_without_retention() {
    let server = Server::start();
    let (mut a, _) = Client::connect(&server, "a");
    assert_eq!(
        a.call("history", json!({"channel": "x", "limit": 10}))["error"]["code"],
        108
    );
}

#[test]
fn refresh_extends_the_connection_and_expiry_closes_3005() {
    let server = Server::start();
    let mut c = Client::open(&server);
    let r = c.call("connect", json!({"token": server.token("ann", 2)}));
    assert_eq!(r["connect"]["expires"], true);
    assert!(r["connect"]["ttl"].as_u64().unwrap() <= 2);
    let r = c.call("refresh", json!({"token": server.token("ann", 600)}));
    assert!(r["refresh"]["ttl"].as_u64().unwrap() > 500, "{r}");
    // refreshed: still connected after the first token's expiry
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert!(c
        .call("subscribe", json!({"channel": "still-here"}))
        .get("subscribe")
        .is_some());
    // a token for another user is refused
    let eve = token_with("eve", 600, json!({}));
    c.send_text(&json!({"id": 99, "refresh": {"token": eve}}).to_string());
    assert_eq!(c.wait_close().0, 3500);

    // without refresh the connection expires
    let mut d = Client::open(&server);
    d.call("connect", json!({"token": server.token("bob", 1)}));
    assert_eq!(d.wait_close(), (3005, "connection expired".into()));
    wait_for(|| server.metric_sum("wiresocket_disconnects_total", &["code=\"3005\""]) == 1.0);
}
