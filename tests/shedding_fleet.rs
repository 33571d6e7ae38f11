//! Load shedding behind a real load balancer: HAProxy (active `GET /health` checks) in front
//! of three nodes. One node is driven over its connection high-water mark: HAProxy takes it
//! out of rotation and new clients land on the other two, while every session it already
//! holds keeps working; once it is back below the low-water mark for the dwell time, HAProxy
//! puts it back and it gets new clients again. Then a reconnect storm against the shedding
//! node shows the jittered `Retry-After` spread (printed as a histogram, run with
//! `--nocapture`).
//!
//! Memory: node A watches its RSS against `shedding.memory_limit_bytes`. The test measures
//! A's idle RSS, sets the limit (config file + SIGHUP) so that the high-water mark lies
//! 4 MiB above it, and connects subscribed clients until A refuses them: A sheds on memory,
//! HAProxy takes it out, new clients land on the others and A's sessions all stay. RSS does
//! not fall when the clients leave (the allocator keeps the freed pages for reuse; measured:
//! not a KiB back after 300 clients left), so the re-entry is driven the way an operator
//! would: the limit is raised (SIGHUP re-reads it) and A, now below the low-water mark,
//! re-enters after the dwell time; HAProxy puts it back. The timeline (limit set, clients
//! connected, crossing, `/health` 503, HAProxy DOWN, limit raised, `/health` 200, HAProxy
//! UP) is printed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Client, Overrides, Server};
use serde_json::json;
use wiresocket_testkit::HaProxy;

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

/// Rewrites `memory_limit_bytes` in the node's config file and sends SIGHUP; waits for the
/// node to log the reload.
fn reload_memory_limit(s: &mut Server, bytes: u64) {
    let path = s.dir.join("wiresocket.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let cfg: String = cfg
        .lines()
        .map(|l| {
            if l.starts_with("memory_limit_bytes") {
                format!("memory_limit_bytes = {bytes}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&path, cfg).unwrap();
    let st = std::process::Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let reloaded = s.wait_log(
        &format!("memory_limit_bytes={bytes}"),
        Duration::from_secs(10),
    );
    assert!(reloaded.is_some(), "no reload of {bytes} logged");
}

#[test]
fn haproxy_takes_a_node_over_its_memory_limit_out_and_back() {
    // node A watches memory against a limit (reloadable with SIGHUP); at start a huge one
    let mut a = Server::start_with(&Overrides {
        cores: Some(1),
        server: "max_connections = 10000\nretry_after_min_s = 1\nretry_after_max_s = 10".into(),
        shedding: Some(
            "high_water = 0.8\nlow_water = 0.5\nmin_dwell_ms = 1500\ncheck_interval_ms = 100\n\
             memory_limit_bytes = 100000000000\n"
                .into(),
        ),
        ..Overrides::default()
    });
    let others: Vec<Server> = (0..2).map(|_| node()).collect();
    let name_a = name(&a);
    let mut addrs = vec![a.addr];
    addrs.extend(others.iter().map(|n| n.addr));
    let proxy = HaProxy::start(&addrs);
    let watch = proxy.watch();
    for i in 1..=3 {
        proxy.wait_state(&format!("node{i}"), "UP", Duration::from_secs(20));
    }
    let t0 = Instant::now();
    let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();

    // the limit is set so that A's idle RSS is below the high-water mark and connected
    // clients (about 25 KiB each in a debug build) take it over: high water at idle RSS +
    // 4 MiB, idle measured after a first round of clients came and went (first-use memory)
    let warm: Vec<Client> = (0..50)
        .map(|i| {
            let (mut c, _) = Client::connect(&a, &format!("w{i}"));
            c.subscribe(&format!("warm{i}"));
            c
        })
        .collect();
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let idle = a.rss_kib() * 1024;
    let limit = ((idle + (4 << 20)) as f64 / 0.8) as u64;
    reload_memory_limit(&mut a, limit);
    let t_limit = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        common::http(a.addr, "GET", "/health", &[], "").0,
        200,
        "idle A already over the mark (RSS {} KiB, limit {limit})",
        a.rss_kib()
    );

    // clients connect until A refuses them (it crossed the mark) or 1000 are in
    let mut held: Vec<Client> = Vec::new();
    while held.len() < 1000 {
        let Ok(mut c) = Client::try_open_url(a.addr, &a.ws_url()) else {
            break;
        };
        let r = c.call(
            "connect",
            json!({"token": a.token(&format!("m{}", held.len()), 3600)}),
        );
        assert!(r.get("connect").is_some(), "{r}");
        c.subscribe(&format!("mem{}", held.len()));
        held.push(c);
    }
    let connected = held.len();
    assert!(
        connected >= 10,
        "A refused clients almost at once: {connected}"
    );
    let t_loaded = Instant::now();
    let loaded_rss = a.rss_kib();
    // crossing: the watcher's reading reaches the mark; then /health turns 503
    let (mut t_cross, mut t_503) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while t_503.is_none() {
        assert!(
            Instant::now() < deadline,
            "node A never shed (RSS {} KiB, limit {limit} B)",
            a.rss_kib()
        );
        let m = a.metrics();
        if t_cross.is_none()
            && common::metric_sum(&m, "wiresocket_load_ratio", &["resource=\"memory\""]) >= 0.8
        {
            t_cross = Some(Instant::now());
        }
        let (status, body) = common::http(a.addr, "GET", "/health", &[], "");
        if status == 503 {
            assert_eq!(body, r#"{"status":"shedding"}"#);
            t_503 = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        a.wait_log("resource=\"memory\"", Duration::from_secs(5))
            .or_else(|| a.wait_log("resource=memory", Duration::from_secs(1)))
            .is_some(),
        "the shedding log line names memory"
    );
    let t_down = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = watch.first("node1", "DOWN", t_limit) {
                break t;
            }
            assert!(Instant::now() < until, "HAProxy never took A out");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // new clients through the balancer land on the other two only
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let mut new_clients = Vec::new();
    for i in 0..8 {
        let (c, n) = via(&proxy, &a, &format!("n{i}"));
        *landed.entry(n).or_default() += 1;
        new_clients.push(c);
    }
    assert!(!landed.contains_key(&name_a), "{landed:?}");
    // A's sessions are untouched: they subscribe, publish and receive
    let r = held[1].call("publish", json!({"channel": "mem0", "data": {"on": "A"}}));
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(held[0].next_pub().1["data"]["on"], "A");
    assert_eq!(
        a.metric_sum("wiresocket_connections", &[]),
        connected as f64,
        "A still holds every session"
    );

    // clients leave; RSS stays (the allocator keeps the pages), so the operator raises the
    // limit (SIGHUP): below the low-water mark, A re-enters after the dwell time
    held.truncate(2);
    std::thread::sleep(Duration::from_millis(300));
    let left_rss = a.rss_kib();
    let raised = a.rss_kib() * 1024 * 4;
    reload_memory_limit(&mut a, raised);
    let t_raise = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::http(a.addr, "GET", "/health", &[], "").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "node A never re-entered the pool"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t_200 = Instant::now();
    let t_up = proxy.wait_state("node1", "UP", Duration::from_secs(10));
    let mut back = false;
    for i in 0..6 {
        let (c, n) = via(&proxy, &a, &format!("r{i}"));
        back |= n == name_a;
        new_clients.push(c);
    }
    assert!(back, "no new client reached A after it re-entered");
    println!(
        "memory shedding timeline (ms): limit lowered to {limit} B (idle RSS {idle} B) at {}, \
         {connected} clients connected, the next upgrade refused (shedding) at {} (RSS {loaded_rss} KiB), memory ratio >= 0.8 read on /metrics at {:?}, \
         /health 503 at {:?}, HAProxy DOWN at {}, all but 2 clients left: RSS {left_rss} KiB, \
         limit raised to {raised} B at {}, /health 200 at {}, HAProxy UP at {}",
        ms(t_limit),
        ms(t_loaded),
        t_cross.map(ms),
        t_503.map(ms),
        ms(t_down),
        ms(t_raise),
        ms(t_200),
        ms(t_up),
    );
}
