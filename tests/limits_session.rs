//! Black-box tests of the limits a session meets after the upgrade: connections per user
//! (disconnect 3504), publishes per user and per channel (error 111, then 3013), and the
//! namespace's largest publication (error 106, client and API alike).

mod common;

use serde_json::{json, Value};

use common::{wait_for, Client, Overrides, Server};

fn server(server: &str, env: Vec<(String, String)>) -> Server {
    Server::start_with(&Overrides {
        server: server.into(),
        env,
        ..Default::default()
    })
}

fn refusals(server: &Server, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    server.metric_sum("wiresocket_limit_refused_total", &[&label])
}

fn error_code(reply: &Value) -> Option<u64> {
    reply["error"]["code"].as_u64()
}

#[test]
fn a_user_beyond_its_connection_limit_is_disconnected_3504() {
    let server = server("max_connections_per_user = 2", vec![]);
    let (a, _) = Client::connect(&server, "alice");
    let (_b, _) = Client::connect(&server, "alice");
    let mut third = Client::open(&server);
    third.send_text(
        &json!({"id": 1, "connect": {"token": server.token("alice", 3600)}}).to_string(),
    );
    assert_eq!(third.wait_close().0, 3504);
    let (_bob, _) = Client::connect(&server, "bob");
    assert_eq!(refusals(&server, "user_connections"), 1.0);
    drop(a);
    // the slot comes back once the server has seen the close: until then a try is refused
    // with 3504 again, which is an answer, not a failure
    wait_for(|| {
        let mut c = Client::open(&server);
        c.send_text(
            &json!({"id": 1, "connect": {"token": server.token("alice", 3600)}}).to_string(),
        );
        matches!(c.recv(), Ok(v) if v.get("connect").is_some())
    });
}

#[test]
fn publishes_beyond_the_users_rate_get_111_then_3013() {
    let server = server(
        "publish_rate_per_user = 1\npublish_burst_per_user = 3",
        vec![],
    );
    let (mut alice, _) = Client::connect(&server, "alice");
    let (mut other, _) = Client::connect(&server, "alice");
    let (mut bob, _) = Client::connect(&server, "bob");
    let publish = |c: &mut Client| c.call("publish", json!({"channel": "news", "data": {"n": 1}}));
    for _ in 0..3 {
        assert!(publish(&mut alice).get("publish").is_some());
    }
    assert_eq!(error_code(&publish(&mut alice)), Some(111));
    // the limit is the user's, whichever connection publishes
    assert_eq!(error_code(&publish(&mut other)), Some(111));
    assert!(publish(&mut bob).get("publish").is_some());
    // the third refusal in a row (the burst) is persistent abuse
    alice.send_text(&json!({"id": 99, "publish": {"channel": "news", "data": 1}}).to_string());
    assert_eq!(alice.wait_close().0, 3013);
    assert_eq!(refusals(&server, "publish_user"), 3.0);
}

#[test]
fn publishes_beyond_the_channels_rate_get_111() {
    let server = server(
        "publish_rate_per_channel = 1\npublish_burst_per_channel = 2",
        vec![],
    );
    let publish = |c: &mut Client, ch: &str| c.call("publish", json!({"channel": ch, "data": 1}));
    let (mut a, _) = Client::connect(&server, "a");
    let (mut b, _) = Client::connect(&server, "b");
    let (mut c, _) = Client::connect(&server, "c");
    assert!(publish(&mut a, "room").get("publish").is_some());
    assert!(publish(&mut b, "room").get("publish").is_some());
    assert_eq!(error_code(&publish(&mut c, "room")), Some(111));
    assert!(publish(&mut c, "other").get("publish").is_some());
    assert_eq!(refusals(&server, "publish_channel"), 1.0);
}

#[test]
fn publications_larger_than_the_namespace_allows_get_106() {
    let env = vec![(
        "WIRESOCKET_CHANNELS__DEFAULT__MAX_PUBLICATION_BYTES".to_string(),
        "64".to_string(),
    )];
    let server = server("", env);
    let (mut c, _) = Client::connect(&server, "alice");
    let big = "x".repeat(100);
    let r = c.call("publish", json!({"channel": "news", "data": big}));
    assert_eq!(error_code(&r), Some(106), "{r}");
    let r = c.call("publish", json!({"channel": "news", "data": "small"}));
    assert!(r.get("publish").is_some(), "{r}");
    let (status, v) = server.api("publish", json!({"channel": "news", "data": big}));
    assert_eq!((status, error_code(&v)), (200, Some(106)), "{v}");
    let (status, v) = server.api("publish", json!({"channel": "news", "data": "small"}));
    assert_eq!(status, 200);
    assert!(v.get("result").is_some(), "{v}");
    assert_eq!(refusals(&server, "publication_size"), 2.0);
}
