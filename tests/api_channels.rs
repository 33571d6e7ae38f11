//! The server API's channel methods against a real node (memory engine, 2 cores):
//! `broadcast` (one result per channel, a refused channel does not stop the others),
//! `history` (limit, since, reverse, position only without limit, 112 for a lost position),
//! `history_remove`, `presence` and `presence_stats`, and their refusals (unknown
//! namespace 102, history or presence off 108, bad body 400).

mod common;

use common::{Client, Overrides, Server};
use serde_json::{json, Value};

fn node() -> Server {
    Server::start_with(&Overrides {
        channels: "\n[[channels.namespaces]]\nname = \"room\"\npresence = true\nhistory_size = 10\n\n[[channels.namespaces]]\nname = \"plain\"\n".into(),
        ..Default::default()
    })
}

fn code(v: &Value) -> Option<u64> {
    v["error"]["code"].as_u64()
}

#[test]
fn broadcast_publishes_to_each_channel_and_reports_each_result() {
    let server = node();
    let (mut a, _) = Client::connect(&server, "alice");
    a.subscribe("room:a");
    a.subscribe("plain:b");

    let (status, v) = server.api(
        "broadcast",
        json!({"channels": ["room:a", "nope:x", "plain:b"], "data": {"n": 1}}),
    );
    assert_eq!(status, 200, "{v}");
    let r = &v["result"]["responses"];
    assert_eq!(r.as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(r[0]["result"]["offset"], 1, "history channel: position {v}");
    assert_eq!(code(&r[1]), Some(102), "unknown namespace {v}");
    assert_eq!(r[2]["result"], json!({}), "no history: no position {v}");

    let mut got = [a.next_pub(), a.next_pub()];
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got[0].0, "plain:b");
    assert_eq!(got[1].0, "room:a");
    assert_eq!(got[1].1["data"], json!({"n": 1}));

    for bad in [
        json!({"channels": [], "data": 1}),
        json!({"channels": ["room:a"]}),
        json!({"channels": "room:a", "data": 1}),
    ] {
        let (status, v) = server.api("broadcast", bad.clone());
        assert_eq!((status, code(&v)), (400, Some(107)), "{bad} -> {v}");
    }
    assert_eq!(
        server.metric_sum("wiresocket_api_bad_requests_total", &[]),
        3.0,
        "each 400 counted"
    );
}

#[test]
fn history_reads_and_history_remove_empties_the_stream() {
    let server = node();
    for n in 1..=5 {
        let (status, v) = server.api("publish", json!({"channel": "room:h", "data": {"n": n}}));
        assert_eq!(status, 200, "{v}");
    }
    // without limit: the position only
    let (status, v) = server.api("history", json!({"channel": "room:h"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["publications"], json!([]), "{v}");
    assert_eq!(v["result"]["offset"], 5, "{v}");
    let epoch = v["result"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());

    let (_, v) = server.api("history", json!({"channel": "room:h", "limit": 2}));
    let ns: Vec<&Value> = v["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"]["n"])
        .collect();
    assert_eq!(ns, [&json!(1), &json!(2)], "{v}");

    let (_, v) = server.api(
        "history",
        json!({"channel": "room:h", "limit": -1, "since": {"offset": 3, "epoch": epoch}}),
    );
    let offsets: Vec<u64> = v["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5], "{v}");

    let (_, v) = server.api(
        "history",
        json!({"channel": "room:h", "limit": 2, "reverse": true}),
    );
    let offsets: Vec<u64> = v["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [5, 4], "{v}");

    let (status, v) = server.api(
        "history",
        json!({"channel": "room:h", "limit": 10, "since": {"offset": 3, "epoch": "other"}}),
    );
    assert_eq!(
        (status, code(&v)),
        (200, Some(112)),
        "another epoch: unrecoverable {v}"
    );

    let (status, v) = server.api("history_remove", json!({"channel": "room:h"}));
    assert_eq!((status, &v), (200, &json!({"result": {}})));
    let (_, v) = server.api("history", json!({"channel": "room:h", "limit": -1}));
    assert_eq!(v["result"]["publications"], json!([]), "{v}");

    let (status, v) = server.api("history", json!({"channel": "plain:x", "limit": 1}));
    assert_eq!(
        (status, code(&v)),
        (200, Some(108)),
        "no history in the namespace {v}"
    );
    let (status, v) = server.api("history", json!({"channel": "nope:x"}));
    assert_eq!((status, code(&v)), (200, Some(102)), "{v}");
    let (status, v) = server.api("history_remove", json!({}));
    assert_eq!((status, code(&v)), (400, Some(107)), "{v}");
}

#[test]
fn presence_and_presence_stats_list_subscribers() {
    let server = node();
    let (mut a1, ca1) = Client::connect(&server, "alice");
    let (mut a2, _) = Client::connect(&server, "alice");
    let (mut b, cb) = Client::connect(&server, "bob");
    for c in [&mut a1, &mut a2, &mut b] {
        c.subscribe("room:p");
    }
    let (status, v) = server.api("presence_stats", json!({"channel": "room:p"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], json!({"num_clients": 3, "num_users": 2}));

    let (status, v) = server.api("presence", json!({"channel": "room:p"}));
    assert_eq!(status, 200, "{v}");
    let p = v["result"]["presence"].as_object().unwrap();
    assert_eq!(p.len(), 3, "{v}");
    let a1_id = ca1["client"].as_str().unwrap();
    assert_eq!(p[a1_id]["user"], "alice");
    assert_eq!(p[a1_id]["client"], a1_id);
    assert_eq!(p[cb["client"].as_str().unwrap()]["user"], "bob");

    drop(b);
    common::wait_for(|| {
        let (_, v) = server.api("presence_stats", json!({"channel": "room:p"}));
        v["result"] == json!({"num_clients": 2, "num_users": 1})
    });

    let (status, v) = server.api("presence", json!({"channel": "plain:p"}));
    assert_eq!((status, code(&v)), (200, Some(108)), "presence off {v}");
    let (status, v) = server.api("presence_stats", json!({"channel": 5}));
    assert_eq!((status, code(&v)), (400, Some(107)), "{v}");
}
