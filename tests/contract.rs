//! Client-contract details the official SDKs rely on, checked with the raw Rust client
//! (Centrifugo semantics): the connect result names the node, a recovery position ahead of
//! the stream (including `u64::MAX`) is never "recovered", and a subscription whose token
//! expires without `sub_refresh` is ended by an `unsubscribe` push 2501 after which no more
//! publications arrive. The SDK-level counterparts are in `tests/interop_js.rs`.

mod common;

use std::time::Duration;

use common::{now_s, token_with, Client, Overrides, Server, SECRET};
use serde_json::{json, Value};

#[test]
fn connect_result_names_the_node() {
    let server = Server::start();
    let (_c, result) = Client::connect(&server, "nadia");
    let node = result["node"].as_str().unwrap_or_default();
    assert!(
        !node.is_empty(),
        "connect result without a node name: {result}"
    );
}

/// Subscribes `user` to `channel` recovering from (`epoch`, `offset`); returns the result.
fn recover_from(server: &Server, user: &str, channel: &str, epoch: &str, offset: u64) -> Value {
    let (mut c, _) = Client::connect(server, user);
    let r = c.call(
        "subscribe",
        json!({"channel": channel, "recover": true, "epoch": epoch, "offset": offset}),
    );
    assert!(r.get("subscribe").is_some(), "subscribe failed: {r}");
    r["subscribe"].clone()
}

#[test]
fn recovery_from_ahead_of_the_stream_is_not_recovered() {
    let server = Server::start_with(&Overrides::with_history(100));
    let mut last = Value::Null;
    for n in 1..=4 {
        let (status, body) = server.api("publish", json!({"channel": "ahead", "data": n}));
        assert_eq!(status, 200, "{body}");
        last = body["result"].clone();
    }
    assert_eq!(last["offset"], 4, "{last}");
    let epoch = last["epoch"].as_str().expect("epoch").to_string();
    // the position a client claims must exist in this stream: 99 was never published
    for (user, offset) in [("ahead99", 99), ("ahead-max", u64::MAX)] {
        let s = recover_from(&server, user, "ahead", &epoch, offset);
        assert_eq!(s["was_recovering"], true, "offset {offset}: {s}");
        assert_eq!(
            s["recovered"], false,
            "offset {offset} is ahead of the stream (at 4): {s}"
        );
        assert!(
            s.get("publications")
                .and_then(Value::as_array)
                .is_none_or(|p| p.is_empty()),
            "offset {offset}: {s}"
        );
        assert_eq!(s["offset"], 4, "offset {offset}: the current position: {s}");
        assert_eq!(s["epoch"], epoch.as_str());
    }
    // the current position itself is recovered (nothing missed)
    let s = recover_from(&server, "current", "ahead", &epoch, 4);
    assert_eq!(s["recovered"], true, "{s}");
}

#[test]
fn subscription_token_expiry_without_refresh_unsubscribes_2501() {
    let server = Server::start();
    let (mut c, _) = Client::connect(&server, "hugo");
    let exp = now_s() + 2;
    let sub_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "hugo", "channel": "$doc", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = c.call("subscribe", json!({"channel": "$doc", "token": sub_token}));
    assert_eq!(r["subscribe"]["expires"], true, "{r}");
    let ttl = r["subscribe"]["ttl"].as_u64().expect("ttl");
    assert!(
        (1..=2).contains(&ttl),
        "ttl of a token expiring in 2 s: {r}"
    );

    server.api("publish", json!({"channel": "$doc", "data": "before"}));
    assert_eq!(c.next_pub().1["data"], "before");

    // no sub_refresh: the server ends the subscription after exp plus its refresh grace (the
    // wait allows ~13 s of grace: keep the test server's grace below that)
    c.set_timeout(Duration::from_secs(15));
    let push = loop {
        let v = c
            .recv()
            .unwrap_or_else(|e| panic!("no unsubscribe push after the token expired: {e:?}"));
        if v["push"]["unsubscribe"].is_object() {
            break v;
        }
    };
    assert!(now_s() >= exp, "unsubscribed before exp: {push}");
    assert_eq!(push["push"]["channel"], "$doc", "{push}");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2501, "{push}");
    assert_eq!(
        push["push"]["unsubscribe"]["reason"], "subscription expired",
        "{push}"
    );

    // nothing more arrives on $doc for it, while a subscriber with a valid token gets it;
    // the connection itself stays usable
    let (mut d, _) = Client::connect(&server, "hugo");
    let valid = token_with("hugo", 600, json!({"channel": "$doc"}));
    let r = d.call("subscribe", json!({"channel": "$doc", "token": valid}));
    assert!(r.get("subscribe").is_some(), "{r}");
    server.api("publish", json!({"channel": "$doc", "data": "after"}));
    assert_eq!(d.next_pub().1["data"], "after");
    c.set_timeout(Duration::from_secs(2));
    let r = c.call("subscribe", json!({"channel": "other"}));
    assert!(r.get("subscribe").is_some(), "{r}");
    assert!(
        c.pending.iter().all(|v| v["push"]["pub"].is_null()),
        "publication after the subscription expired: {:?}",
        c.pending
    );
    // resubscribing with the expired token is refused as expired
    let stale = token_with("hugo", -10, json!({"channel": "$doc"}));
    let r = c.call("subscribe", json!({"channel": "$doc", "token": stale}));
    assert_eq!(r["error"]["code"], 109, "{r}");
}
