//! `POST /api/batch` against a real server: commands run in order, each as its own
//! `/api/<method>` would, with one reply per command (`{"<method>": result}` or
//! `{"error": ...}`), and a malformed batch runs nothing.

mod common;

use common::{Client, Overrides, Server};
use serde_json::json;

#[test]
fn a_batch_runs_each_command_in_order_and_replies_to_each() {
    let server = Server::start_with(&Overrides::with_history(10));
    let (mut c, _) = Client::connect(&server, "alice");
    c.subscribe("news");
    let (status, res) = server.api(
        "batch",
        json!({"commands": [
            {"publish": {"channel": "news", "data": {"n": 1}}},
            {"publish": {"channel": "nope:x", "data": {"n": 0}}},
            {"broadcast": {"channels": ["news"], "data": {"n": 2}}},
            {"history": {"channel": "news", "limit": 10}},
            {"presence_stats": {"channel": "news"}}
        ], "parallel": true}),
    );
    assert_eq!(status, 200, "{res}");
    let replies = res["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 5, "{res}");
    assert_eq!(replies[0]["publish"]["offset"], 1, "{res}");
    assert_eq!(replies[1]["error"]["code"], 102, "unknown namespace: {res}");
    assert!(replies[2]["broadcast"]["responses"].is_array(), "{res}");
    let history = replies[3]["history"]["publications"].as_array().unwrap();
    assert_eq!(history.len(), 2, "both publications, in order: {res}");
    assert_eq!(history[0]["data"], json!({"n": 1}));
    assert_eq!(history[1]["data"], json!({"n": 2}));
    assert!(
        replies[4]["error"]["code"] == 108 || replies[4]["presence_stats"].is_object(),
        "{res}"
    );
    for n in [1, 2] {
        let (channel, p) = c.next_pub();
        assert_eq!((channel.as_str(), &p["data"]), ("news", &json!({"n": n})));
    }
}

#[test]
fn a_malformed_batch_runs_nothing() {
    let server = Server::start_with(&Overrides::with_history(10));
    for (body, code) in [
        (
            json!({"commands": [{"publish": {"channel": "news", "data": 1}}, {"info": {}, "channels": {}}]}),
            107,
        ),
        (
            json!({"commands": [{"publish": {"channel": "news", "data": 1}}, {"frobnicate": {}}]}),
            104,
        ),
        (
            json!({"commands": [{"publish": {"channel": "news", "data": 1}}, {"batch": {"commands": []}}]}),
            104,
        ),
        (json!({"commands": {"publish": {}}}), 107),
    ] {
        let (status, res) = server.api("batch", body.clone());
        assert_eq!(
            (status, &res["error"]["code"]),
            (400, &json!(code)),
            "{body} -> {res}"
        );
    }
    let (_, res) = server.api("history", json!({"channel": "news", "limit": 10}));
    assert_eq!(
        res["result"]["publications"],
        json!([]),
        "a refused batch published nothing: {res}"
    );
}
