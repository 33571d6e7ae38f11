//! Load shedding with hysteresis (`[shedding]`), black-box: at the high-water mark of
//! connections the node leaves the pool (`/health` 503 "shedding", upgrades 503 with a
//! jittered Retry-After) while its connected sessions keep working; it re-enters only after
//! the load stayed at or below the low-water mark for the dwell time. A memory limit below
//! the process's RSS sheds at once. Transitions are counted in `/metrics`.

mod common;

use std::time::{Duration, Instant};

use common::{http, Client, Overrides, Server};
use serde_json::json;

const UPGRADE: &[u8] = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Polls `/health` until it answers `status` (bounded; panics with the last answer).
fn wait_health(s: &Server, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, body) = http(s.addr, "GET", "/health", &[], "");
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health stayed {got} {body}, wanted {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sheds_at_the_connection_high_water_mark_and_recovers_below_the_low_one() {
    let s = Server::start_with(&Overrides {
        server: "max_connections = 10".into(),
        shedding: Some(
            "high_water = 0.8\nlow_water = 0.5\nmin_dwell_ms = 1500\ncheck_interval_ms = 100\n"
                .into(),
        ),
        ..Overrides::default()
    });
    let mut clients: Vec<Client> = (0..7)
        .map(|i| Client::connect(&s, &format!("u{i}")).0)
        .collect();
    // 7 of 10: below the mark
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(http(s.addr, "GET", "/health", &[], "").0, 200);
    clients.push(Client::connect(&s, "u7").0); // 8 of 10 = the high-water mark
    let body = wait_health(&s, 503);
    assert!(body.contains("shedding"), "{body}");
    assert_eq!(s.metric_sum("wiresocket_shedding", &[]), 1.0);
    assert_eq!(
        s.metric_sum("wiresocket_shedding_transitions_total", &["to=\"on\""]),
        1.0
    );

    // new upgrades are refused with a Retry-After, below the hard cap of 10
    let r = common::raw_http(s.addr, UPGRADE);
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("Retry-After: "), "{r}");

    // connected sessions are untouched
    let r = clients[0].subscribe("news");
    assert!(r.get("error").is_none(), "{r}");
    let r = clients[1].call(
        "publish",
        json!({"channel": "news", "data": {"still": "served"}}),
    );
    assert!(r.get("error").is_none(), "{r}");
    let (_, p) = clients[0].next_pub();
    assert_eq!(p["data"]["still"], "served");

    // 6 of 10: between the marks, still out of the pool (hysteresis)
    clients.truncate(6);
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(http(s.addr, "GET", "/health", &[], "").0, 503);
    // 5 of 10: at the low mark; back after the dwell
    clients.truncate(5);
    wait_health(&s, 200);
    assert_eq!(
        s.metric_sum("wiresocket_shedding_transitions_total", &["to=\"off\""]),
        1.0
    );
    let (mut again, _) = Client::connect(&s, "back");
    assert!(again.subscribe("news").get("error").is_none());
}

#[test]
fn a_memory_limit_below_the_rss_sheds_at_once() {
    let s = Server::start_with(&Overrides {
        shedding: Some("memory_limit_bytes = 1048576\ncheck_interval_ms = 100\n".into()),
        ..Overrides::default()
    });
    wait_health(&s, 503);
    assert!(s.metric_sum("wiresocket_load_ratio", &["resource=\"memory\""]) > 1.0);
    // the node registry (API `info`) says so, for discovery and the other nodes
    let (status, v) = s.api("info", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["nodes"][0]["shedding"], true, "{v}");
    let r = common::raw_http(s.addr, UPGRADE);
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
}

#[test]
fn shedding_off_refuses_only_at_max_connections() {
    let s = Server::start_with(&Overrides {
        server: "max_connections = 10".into(),
        shedding: Some("enabled = false\nmemory_limit_bytes = 1048576\n".into()),
        ..Overrides::default()
    });
    let _clients: Vec<Client> = (0..9)
        .map(|i| Client::connect(&s, &format!("u{i}")).0)
        .collect();
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(http(s.addr, "GET", "/health", &[], "").0, 200);
}
