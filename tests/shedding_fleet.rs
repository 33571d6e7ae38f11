//! Load shedding behind a real load balancer: HAProxy (active `GET /health` checks) in front
//! of three nodes. One node is driven over its connection high-water mark: HAProxy takes it
//! out of rotation and new clients land on the other two, while every session it already
//! holds keeps working; once it is back below the low-water mark for the dwell time, HAProxy
//! puts it back and it gets new clients again. Then a reconnect storm against the shedding
//! node shows the jittered `Retry-After` spread (printed as a histogram, run with
//! `--nocapture`).

mod common;
#[allow(dead_code)] // only its HAProxy is used here
mod redis_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Client, Overrides, Server};
use redis_support::haproxy::HaProxy;
use serde_json::json;

const UPGRADE: &[u8] = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn node() -> Server {
    Server::start_with(&Overrides {
        server: "max_connections = 10\nretry_after_min_s = 1\nretry_after_max_s = 10".into(),
        shedding: Some(
            "high_water = 0.8\nlow_water = 0.5\nmin_dwell_ms = 1500\ncheck_interval_ms = 100\n"
                .into(),
        ),
        ..Overrides::default()
    })
}

/// Connects through the proxy; returns the client and the node that took it.
fn via(proxy: &HaProxy, s: &Server, user: &str) -> (Client, String) {
    let mut c = Client::open_url(proxy.addr, &proxy.ws_url());
    let r = c.call("connect", json!({"token": s.token(user, 3600)}));
    let node = r["connect"]["node"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    (c, node)
}

/// The node's name, as the connect result gives it.
fn name(s: &Server) -> String {
    let (_, connected) = Client::connect(s, "probe");
    connected["node"].as_str().unwrap().to_owned()
}

#[test]
fn haproxy_takes_a_shedding_node_out_and_back_without_dropping_its_sessions() {
    let nodes: Vec<Server> = (0..3).map(|_| node()).collect();
    let names: Vec<String> = nodes.iter().map(name).collect();
    let proxy = HaProxy::start(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>());
    let a = &nodes[0];

    // node A at its high-water mark (8 of 10), directly
    let mut held: Vec<Client> = (0..8)
        .map(|i| Client::connect(a, &format!("a{i}")).0)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::http(a.addr, "GET", "/health", &[], "").0 != 503 {
        assert!(Instant::now() < deadline, "node A never started shedding");
        std::thread::sleep(Duration::from_millis(50));
    }
    // HAProxy checks every 200 ms and takes a node out at the first failed check
    std::thread::sleep(Duration::from_millis(800));

    // new clients through the balancer land on B and C only
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let mut new_clients = Vec::new();
    for i in 0..8 {
        let (c, n) = via(&proxy, a, &format!("n{i}"));
        *landed.entry(n).or_default() += 1;
        new_clients.push(c);
    }
    assert!(
        !landed.contains_key(&names[0]),
        "a client landed on the shedding node: {landed:?}"
    );
    assert_eq!(landed.values().sum::<usize>(), 8);

    // A's own sessions were never dropped: they still subscribe, publish and receive
    assert!(held[0].subscribe("room").get("error").is_none());
    let r = held[1].call("publish", json!({"channel": "room", "data": {"on": "A"}}));
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(held[0].next_pub().1["data"]["on"], "A");

    // back to 5 of 10 (the low-water mark): A re-enters after the dwell, HAProxy after 2 checks
    held.truncate(5);
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::http(a.addr, "GET", "/health", &[], "").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "node A never re-entered the pool"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(800));
    let mut back = false;
    for i in 0..6 {
        let (c, n) = via(&proxy, a, &format!("r{i}"));
        back |= n == names[0];
        new_clients.push(c);
    }
    assert!(back, "no new client reached node A after it re-entered");
}

#[test]
fn a_reconnect_storm_against_a_shedding_node_is_spread_by_retry_after() {
    let a = node();
    let _held: Vec<Client> = (0..8)
        .map(|i| Client::connect(&a, &format!("a{i}")).0)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::http(a.addr, "GET", "/health", &[], "").0 != 503 {
        assert!(Instant::now() < deadline, "never started shedding");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 300 clients reconnecting at once: every one is told when to come back
    let mut histogram: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..300 {
        let r = common::raw_http(a.addr, UPGRADE);
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        let secs: u32 = r
            .lines()
            .find_map(|l| l.strip_prefix("Retry-After: "))
            .expect("Retry-After")
            .trim()
            .parse()
            .unwrap();
        *histogram.entry(secs).or_default() += 1;
    }
    println!("Retry-After (s) -> refused upgrades, of 300: {histogram:?}");
    assert!(
        histogram.keys().all(|s| (1..=10).contains(s)),
        "{histogram:?}"
    );
    // spread over the range: no second gets more than a third of the storm
    assert!(histogram.len() >= 5, "{histogram:?}");
    assert!(histogram.values().all(|&n| n <= 100), "{histogram:?}");
}
