//! Session records across nodes on one private Redis (`engine.kind = "redis"`), through the
//! API `connections`: a record appears after `connect` with the SDK's name and version, shows
//! its subscriptions with the positions the client reached, is kept alive past its TTL while
//! the node lives, disappears when the client disconnects and expires after `kill -9` of its
//! node; any node lists every node's clients; a `disconnect`, `subscribe` or `unsubscribe` of
//! one client id sent to one node reaches that client on another; direct messages to a
//! user-limited channel (`dm#alice`) reach the user on another node; the memory engine answers
//! `connections` from its own sessions. The write-behind sync itself: `redis_sessions_sync.rs`.

mod common;
mod redis_support;
mod sessions_support;

use common::{Client, Overrides, Server};
use serde_json::{json, Value};
use sessions_support::*;
use std::time::{Duration, Instant};
use wiresocket_testkit::RedisServer;

#[test]
fn records_follow_connect_subscribe_publications_and_disconnect() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", 60);
    let b = node(&redis, "b", 60);
    let (mut alice, alice_id) = connect_named(&b, "alice");
    let (_bob, bob_id) = connect_named(&a, "bob");

    // on connect: the record, read on the other node
    wait_within(Duration::from_secs(5), "alice's record", || {
        connections(&a, Some("alice")).contains_key(&alice_id)
    });
    let rec = connections(&a, Some("alice"))[&alice_id].clone();
    assert_eq!(
        (
            &rec["user"],
            &rec["node_name"],
            &rec["name"],
            &rec["version"]
        ),
        (&json!("alice"), &json!("b"), &json!("js"), &json!("5.1.0")),
        "{rec}"
    );
    assert!(
        rec["connected_at"].as_u64().unwrap() > 1_700_000_000,
        "{rec}"
    );
    assert_eq!(rec["channels"], json!({}), "{rec}");

    // subscribe, then publications made through the other node: the position advances
    let r = alice.subscribe("news");
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        let (status, v) = a.api("publish", json!({"channel": "news", "data": {"n": n}}));
        assert_eq!(status, 200, "{v}");
        alice.next_pub();
    }
    wait_within(Duration::from_secs(5), "the position reached", || {
        connections(&a, Some("alice"))
            .get(&alice_id)
            .is_some_and(|r| r["channels"]["news"] == json!({"offset": 3, "epoch": epoch}))
    });

    // any node lists every node's clients
    for n in [&a, &b] {
        let all = connections(n, None);
        assert!(
            all.contains_key(&alice_id) && all.contains_key(&bob_id),
            "{all:?}"
        );
        assert_eq!(all[&bob_id]["node_name"], "a");
    }

    // unsubscribe: the channel leaves the record
    let r = alice.call("unsubscribe", json!({"channel": "news"}));
    assert!(r.get("unsubscribe").is_some(), "{r}");
    wait_within(Duration::from_secs(5), "the channel gone", || {
        connections(&a, Some("alice"))
            .get(&alice_id)
            .is_some_and(|r| r["channels"] == json!({}))
    });

    // disconnect: the record and its index entries go
    drop(alice);
    wait_within(Duration::from_secs(5), "alice's record deleted", || {
        !connections(&a, None).contains_key(&alice_id) && connections(&a, Some("alice")).is_empty()
    });
    let key = format!("wiresocket:session:{{{alice_id}}}");
    assert_eq!(redis.cli(&["EXISTS", &key]), "0");
    assert!(b.metric_sum("wiresocket_session_records_deleted_total", &[]) >= 1.0);
}

#[test]
fn records_outlive_their_ttl_while_the_node_lives_and_expire_after_kill_9() {
    const TTL_S: u64 = 2;
    let redis = RedisServer::start();
    let a = node(&redis, "a", TTL_S);
    let mut b = node(&redis, "b", TTL_S);
    let (_alice, alice_id) = connect_named(&b, "alice");
    let key = format!("wiresocket:session:{{{alice_id}}}");
    wait_within(Duration::from_secs(5), "alice's record", || {
        redis.cli(&["EXISTS", &key]) == "1"
    });

    // two and a half TTLs later the record is still there: it is written again
    std::thread::sleep(Duration::from_millis(TTL_S * 2500));
    assert_eq!(redis.cli(&["EXISTS", &key]), "1", "refreshed");
    assert!(connections(&a, Some("alice")).contains_key(&alice_id));

    let _ = b.child.kill(); // SIGKILL: nothing is deleted on the way out
    let _ = b.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    assert_eq!(redis.cli(&["EXISTS", &key]), "1", "lives until its TTL");
    wait_within(Duration::from_secs(TTL_S + 3), "expired", || {
        redis.cli(&["EXISTS", &key]) == "0"
    });
    assert!(killed.elapsed() >= Duration::from_millis(TTL_S * 1000 / 3));
    wait_within(Duration::from_secs(2), "out of the user's index", || {
        connections(&a, Some("alice")).is_empty()
    });
}

#[test]
fn a_disconnect_of_one_client_sent_to_one_node_closes_it_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", 60);
    let b = node(&redis, "b", 60);
    let (mut first, first_id) = connect_named(&b, "alice");
    let (mut second, second_id) = connect_named(&b, "alice");
    wait_within(Duration::from_secs(5), "both records", || {
        connections(&a, Some("alice")).len() == 2
    });

    let (status, v) = a.api("disconnect", json!({"user": "alice", "client": first_id}));
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    assert_eq!(first.wait_close().0, 3503);
    let r = second.call("presence_stats", json!({"channel": "x"}));
    assert!(r.get("id").is_some(), "the other connection stays: {r}");
    wait_within(Duration::from_secs(5), "one record left", || {
        connections(&a, Some("alice"))
            .keys()
            .eq(std::iter::once(&second_id))
    });
}

#[test]
fn direct_messages_reach_the_user_on_another_node() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", 60);
    let b = node(&redis, "b", 60);
    let (mut alice, _) = connect_named(&b, "alice");
    alice.subscribe("dm#alice");
    let (mut bob, _) = connect_named(&a, "bob");
    let r = bob.call("subscribe", json!({"channel": "dm#alice"}));
    assert_eq!(r["error"]["code"], 103, "only alice may: {r}");

    let (status, v) = a.api(
        "publish",
        json!({"channel": "dm#alice", "data": {"text": "hi"}}),
    );
    assert_eq!(status, 200, "{v}");
    let (channel, p) = alice.next_pub();
    assert_eq!(
        (channel.as_str(), &p["data"]),
        ("dm#alice", &json!({"text": "hi"}))
    );
}

#[test]
fn the_memory_engine_answers_connections_from_its_own_sessions() {
    let mut o = Overrides::with_history(10);
    o.cores = Some(2);
    let a = Server::start_with(&o);
    let (mut alice, alice_id) = connect_named(&a, "alice");
    let clients: Vec<(Client, String)> = (0..4).map(|_| connect_named(&a, "bob")).collect();
    let r = alice.subscribe("news");
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for n in 0..2 {
        let (status, v) = a.api("publish", json!({"channel": "news", "data": n}));
        assert_eq!(status, 200, "{v}");
        alice.next_pub();
    }

    let all = connections(&a, None);
    assert_eq!(all.len(), 5, "{all:?}");
    let bobs = connections(&a, Some("bob"));
    let mut ids: Vec<&String> = bobs.keys().collect();
    ids.sort();
    let mut want: Vec<&String> = clients.iter().map(|(_, id)| id).collect();
    want.sort();
    assert_eq!(ids, want);
    let rec = &connections(&a, Some("alice"))[&alice_id];
    assert_eq!(
        (&rec["user"], &rec["name"], &rec["version"]),
        (&json!("alice"), &json!("js"), &json!("5.1.0"))
    );
    assert_eq!(
        rec["channels"],
        json!({"news": {"offset": 2, "epoch": epoch}}),
        "{rec}"
    );
    let (status, v) = a.api("connections", json!({"limit": 2}));
    assert_eq!(status, 200);
    assert_eq!(v["result"]["connections"].as_object().unwrap().len(), 2);
}

#[test]
fn a_subscribe_of_one_client_sent_to_one_node_shows_in_its_record_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis, "a", 60);
    let b = node(&redis, "b", 60);
    let (mut first, first_id) = connect_named(&b, "alice");
    let (_second, second_id) = connect_named(&b, "alice");
    let channels_of = |id: &str| -> Option<Value> {
        connections(&a, Some("alice"))
            .get(id)
            .map(|r| r["channels"].clone())
    };
    wait_within(Duration::from_secs(5), "both records", || {
        channels_of(&first_id).is_some() && channels_of(&second_id).is_some()
    });

    let (status, v) = a.api(
        "subscribe",
        json!({"user": "alice", "channel": "news", "client": first_id}),
    );
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    loop {
        let m = first.recv().expect("the subscribe push");
        if m["push"].get("subscribe").is_some() {
            break;
        }
    }
    wait_within(Duration::from_secs(5), "news in the first record", || {
        channels_of(&first_id).is_some_and(|c| c.get("news").is_some())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(channels_of(&second_id), Some(json!({})), "only that client");

    let (status, _) = a.api(
        "unsubscribe",
        json!({"user": "alice", "channel": "news", "client": first_id}),
    );
    assert_eq!(status, 200);
    wait_within(Duration::from_secs(5), "news gone from the record", || {
        channels_of(&first_id) == Some(json!({}))
    });
}
