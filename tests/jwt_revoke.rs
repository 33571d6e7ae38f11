//! Black-box tests of token revocation through the server API: `revoke_token` (by `jti`) and
//! `invalidate_user_tokens` (by user, for tokens issued before a time) refuse such tokens on
//! connect and refresh with 3500; bad calls are 400; a full store answers 106 and is counted.
//! Connections already open are not cut (documented): the check runs when a token is shown.

mod common;

use common::*;
use serde_json::{json, Value};

/// Close code of a refused connect (0: connected).
fn connect(server: &Server, token: &str) -> u16 {
    let mut c = Client::open(server);
    c.send_text(&json!({"id": 1, "connect": { "token": token }}).to_string());
    match c.recv() {
        Ok(r) if r.get("connect").is_some() => 0,
        Ok(_) => c.wait_close().0,
        Err(Ended::Closed(code, _)) => code,
        Err(Ended::Eof) => 1,
    }
}

fn ok(r: (u16, Value)) {
    assert_eq!(r, (200, json!({"result": {}})));
}

#[test]
fn a_revoked_token_id_is_refused_on_connect_and_refresh() {
    let server = Server::start();
    let revoked = token_with("alice", 600, json!({"jti": "token-1"}));
    let other = token_with("alice", 600, json!({"jti": "token-2"}));
    // an open connection that will refresh with the revoked token
    let mut open = Client::open(&server);
    let r = open.call("connect", json!({ "token": revoked }));
    assert!(r.get("connect").is_some(), "{r}");

    ok(server.api("revoke_token", json!({"uid": "token-1"})));
    assert_eq!(connect(&server, &revoked), 3500);
    assert_eq!(connect(&server, &other), 0);
    open.send_text(&json!({"id": 9, "refresh": { "token": revoked }}).to_string());
    assert_eq!(open.wait_close().0, 3500);
    // `jti` is accepted as the field name too; a past expire_at makes an inert entry
    ok(server.api(
        "revoke_token",
        json!({"jti": "token-2", "expire_at": now_s() - 1}),
    ));
    assert_eq!(connect(&server, &other), 0);
    ok(server.api(
        "revoke_token",
        json!({"jti": "token-2", "expire_at": now_s() + 60}),
    ));
    assert_eq!(connect(&server, &other), 3500);
    let m = server.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "wiresocket_auth_tokens_refused_total",
            &["reason=\"revoked\""]
        ),
        3.0,
        "{m}"
    );
}

#[test]
fn invalidated_user_tokens_issued_before_are_refused() {
    let server = Server::start();
    let older = token_with("alice", 600, json!({"iat": now_s() - 30}));
    let bob = token_with("bob", 600, json!({"iat": now_s() - 30}));
    assert_eq!(connect(&server, &older), 0);
    ok(server.api("invalidate_user_tokens", json!({"user": "alice"})));
    assert_eq!(connect(&server, &older), 3500);
    assert_eq!(connect(&server, &bob), 0, "other users are untouched");
    let fresh = token_with("alice", 600, json!({}));
    assert_eq!(connect(&server, &fresh), 0, "issued after the call");
    // an explicit cut in the future refuses the fresh one too
    ok(server.api(
        "invalidate_user_tokens",
        json!({"user": "alice", "issued_before": now_s() + 30, "expire_at": now_s() + 600}),
    ));
    assert_eq!(connect(&server, &fresh), 3500);
}

#[test]
fn bad_revocation_calls_are_400_and_a_full_store_is_106() {
    let server = Server::start_with(&Overrides {
        auth: "max_revocations = 2\n".into(),
        ..Default::default()
    });
    for (method, body) in [
        ("revoke_token", json!({})),
        ("revoke_token", json!({"uid": ""})),
        ("revoke_token", json!({"uid": 5})),
        ("revoke_token", json!({"uid": "a", "expire_at": "soon"})),
        ("revoke_token", json!({"uid": "a", "expire_at": -1})),
        ("invalidate_user_tokens", json!({})),
        (
            "invalidate_user_tokens",
            json!({"user": "u", "issued_before": 1.5}),
        ),
    ] {
        let (status, v) = server.api(method, body.clone());
        assert_eq!(
            (status, v["error"]["code"].as_u64()),
            (400, Some(107)),
            "{body}"
        );
    }
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/revoke_token",
        &[("X-API-Key", API_KEY)],
        "not json",
    );
    assert_eq!(status, 400);
    ok(server.api("revoke_token", json!({"uid": "a"})));
    ok(server.api("invalidate_user_tokens", json!({"user": "u"})));
    ok(server.api("revoke_token", json!({"uid": "a"}))); // an update needs no room
    let (status, v) = server.api("revoke_token", json!({"uid": "b"}));
    assert_eq!((status, v["error"]["code"].as_u64()), (200, Some(106)));
    let m = server.metrics();
    assert_eq!(
        metric_sum(&m, "wiresocket_auth_revocations_refused_total", &[]),
        1.0
    );
    assert_eq!(metric_sum(&m, "wiresocket_auth_revoked_tokens", &[]), 1.0);
    assert_eq!(
        metric_sum(&m, "wiresocket_auth_invalidated_users", &[]),
        1.0
    );
    // without the API key nothing changes
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/revoke_token",
        &[],
        r#"{"uid":"c"}"#,
    );
    assert_eq!(status, 401);
}
