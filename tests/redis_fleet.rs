//! Stateless nodes, proven (issue 8 item 6): three wiresocket nodes on one Redis
//! (`engine.kind = "redis"`), clients spread over them, a publisher publishing steadily
//! through the HTTP API of alternating nodes, and one node killed with SIGKILL mid-stream.
//!
//! - `sigkilled_node_clients_recover_elsewhere_without_loss` (our test client): the
//!   killed node's subscribers reconnect to the other nodes and recover with
//!   `recover`/`epoch`/`offset`; every subscriber must have received every acknowledged
//!   publication exactly once, in offset order (an unacknowledged one may be absent, never
//!   an acknowledged one). Presence then lists each live client exactly once, and the dead
//!   node's entries expire (`engine.redis.presence_ttl_s = 3`, polled with a deadline).
//! - `js_sdk_through_haproxy_recovers_after_a_sigkill` (the official JS SDK, `tests/js/fleet.mjs`,
//!   behind HAProxy): the SDK reconnects through the load balancer to a live node and
//!   recovers by itself, half the clients with a client-side subscription (`subscribe` with
//!   `recover`), half with a server-side one (token `channels`, `connect.subs`): 0 lost
//!   acknowledged publications, none twice, in order.
//! - `js_sdk_with_several_endpoints_recovers_after_a_sigkill`: the same with the node URLs
//!   given to the client directly. centrifuge-js 5.7.4 takes an array of transport
//!   endpoints only as a *transport fallback* for the first connect (once one transport
//!   opened it reconnects to that one forever), so the script rotates over the URLs with
//!   its `websocket` constructor option; the SDK stays unmodified.
//!
//! Measured, not asserted (printed; run with `--nocapture`): the time from the kill to the
//! last client recovered, and how many publications came back from history.

mod common;
mod redis_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::delivery::{check_received, expand};
use common::node::run_script;
use common::{parse_http_response, token_with, Client, Ended, Overrides, Server, API_KEY};
use redis_support::NodeOverrides;
use serde_json::{json, Value};
use wiresocket_testkit::{HaProxy, RedisServer};

/// The history channel every test uses (namespace `fleet`: history and presence on).
const CHANNEL: &str = "fleet:feed";
/// Subscribers per node in the Rust test.
const PER_NODE: usize = 4;
/// The node the Rust test kills (node 2).
const KILLED: usize = 1;
/// Acknowledged publications before the kill, and again after every client recovered.
const BEFORE_KILL: usize = 150;
const AFTER_RECOVERY: usize = 150;
/// Bound for every wait of these tests (never reached when the fleet works).
const DEADLINE: Duration = Duration::from_secs(30);

/// A Redis and three nodes on it (`None` once killed).
struct Fleet {
    _redis: RedisServer,
    nodes: Vec<Option<Server>>,
}

impl Fleet {
    fn start() -> Fleet {
        let redis = RedisServer::start();
        let mut o: Overrides = redis.node_overrides(0);
        o.channels = "\n[[channels.namespaces]]\nname = \"fleet\"\nhistory_size = 100000\n\
                      history_ttl_s = 600\npresence = true\n"
            .into();
        o.env.push((
            "WIRESOCKET_ENGINE__REDIS__PRESENCE_TTL_S".into(),
            "3".into(),
        ));
        let nodes = (0..3).map(|_| Some(Server::start_with(&o))).collect();
        Fleet {
            _redis: redis,
            nodes,
        }
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("a live node")
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        (0..3).map(|i| self.node(i).addr).collect()
    }

    /// SIGKILL (no drain, no goodbye): the process dies with its sockets.
    fn kill(&mut self, i: usize) -> Instant {
        let mut node = self.nodes[i].take().expect("a live node");
        node.child.kill().expect("SIGKILL");
        let at = Instant::now();
        node.child.wait().expect("reap the killed node");
        at
    }
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/connection/websocket")
}

/// One `POST /api/publish` of `{"n": n}`: `Some((offset, epoch))` only when acknowledged.
/// Connection failures (a dead node) and error answers are unacknowledged, never panics.
fn try_publish(addr: SocketAddr, n: u64) -> Option<(u64, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = json!({"channel": CHANNEL, "data": {"n": n}}).to_string();
    let req = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         X-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let (status, text) = parse_http_response(&raw);
    let v: Value = serde_json::from_str(&text).ok()?;
    let r = &v["result"];
    (status == 200).then_some(())?;
    Some((r["offset"].as_u64()?, r["epoch"].as_str()?.to_owned()))
}

/// Publishes `{"n": 1}`, `{"n": 2}`, … round-robin through the nodes' HTTP API until
/// stopped, recording every acknowledged publication.
struct Publisher {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    thread: JoinHandle<Published>,
}

#[derive(Default)]
struct Published {
    /// offset -> n of every acknowledged publication.
    acked: BTreeMap<u64, u64>,
    epochs: BTreeSet<String>,
    unacknowledged: usize,
}

impl Publisher {
    fn start(addrs: Vec<SocketAddr>) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut out = Published::default();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                match try_publish(addrs[n as usize % addrs.len()], n) {
                    Some((offset, epoch)) => {
                        assert!(
                            out.acked.insert(offset, n).is_none(),
                            "offset {offset} acknowledged twice"
                        );
                        out.epochs.insert(epoch);
                        acked2.fetch_add(1, Ordering::Relaxed);
                    }
                    None => out.unacknowledged += 1,
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            out
        });
        Publisher {
            stop,
            acked,
            thread,
        }
    }

    fn wait_acked(&self, at_least: usize) {
        let until = Instant::now() + DEADLINE;
        while self.acked.load(Ordering::Relaxed) < at_least {
            assert!(
                Instant::now() < until,
                "only {} publications acknowledged, waiting for {at_least}",
                self.acked.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> Published {
        self.stop.store(true, Ordering::Relaxed);
        let p = self.thread.join().expect("publisher thread");
        assert_eq!(p.epochs.len(), 1, "one stream epoch: {:?}", p.epochs);
        p
    }
}

/// What a subscriber thread reports when it ends.
struct SubReport {
    name: String,
    received: Vec<(u64, u64)>,
}

/// A recovery done by a subscriber of the killed node.
struct Recovered {
    at: Instant,
    publications: usize,
}

/// Shared with the subscriber threads.
struct SubShared {
    /// Stop once this offset is received (0: not yet known).
    stop_at: AtomicU64,
    /// Each subscriber's current client id (for the presence check).
    client_ids: Mutex<Vec<String>>,
}

/// How long subscriber `i` waits before reconnecting (spread like the SDKs' jittered backoff).
fn reconnect_backoff(i: usize) -> Duration {
    Duration::from_millis(100 + 50 * (i / 3) as u64)
}

/// One subscriber on `home`, reconnecting to `fallback` (once) when `home` dies; `None` for
/// a subscriber of a node that stays up, which must never lose its connection. It stops
/// at `stop_at`, or 10 s after `stop_at` was set without reaching it (the check reports).
fn subscriber(
    i: usize,
    home: SocketAddr,
    fallback: Option<SocketAddr>,
    shared: Arc<SubShared>,
    ready: mpsc::Sender<()>,
    recovered: mpsc::Sender<Recovered>,
) -> SubReport {
    let name = format!("sub{i}@{}", home.port());
    let user = format!("sub{i}");
    let token = token_with(&user, 3600, json!({}));
    let connect = |addr: SocketAddr| {
        let mut c = Client::open_url(addr, &ws_url(addr));
        let r = c.call("connect", json!({"token": token}));
        let id = r["connect"]["client"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: connect to {addr} failed: {r}"))
            .to_owned();
        shared.client_ids.lock().unwrap()[i] = id;
        c
    };
    let mut c = connect(home);
    let r = c.subscribe(CHANNEL);
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    ready.send(()).unwrap();
    let mut received: Vec<(u64, u64)> = Vec::new();
    let mut moved = false;
    c.set_timeout(Duration::from_millis(300));
    let mut stop_seen: Option<Instant> = None;
    loop {
        let stop_at = shared.stop_at.load(Ordering::Relaxed);
        if stop_at > 0 {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if received.last().is_some_and(|l| l.0 >= stop_at)
                || since.elapsed() > Duration::from_secs(10)
            {
                break;
            }
        }
        match c.recv() {
            Ok(v) if v == json!({}) => c.send_text("{}"), // heartbeat
            Ok(v) => {
                if let Some(p) = v["push"].get("pub") {
                    assert_eq!(v["push"]["channel"], CHANNEL, "{name}: {v}");
                    received.push((
                        p["offset"].as_u64().unwrap(),
                        p["data"]["n"].as_u64().unwrap(),
                    ));
                } else if v.get("push").is_some() {
                    panic!("{name}: unexpected push {v}");
                }
            }
            Err(Ended::Closed(0, reason)) if reason == "timeout" => {}
            Err(end) => {
                let Some(fallback) = fallback.filter(|_| !moved) else {
                    panic!("{name}: lost a connection to a node that is up ({end:?})");
                };
                moved = true;
                // its node died: after a backoff (the SDKs wait too, so publications made
                // meanwhile must come back from history), reconnect elsewhere and recover
                // from the last offset seen
                std::thread::sleep(reconnect_backoff(i));
                let offset = received.last().map_or(0, |l| l.0);
                c = connect(fallback);
                let r = c.call(
                    "subscribe",
                    json!({"channel": CHANNEL, "recover": true, "epoch": epoch, "offset": offset}),
                );
                let s = &r["subscribe"];
                assert_eq!(
                    (&s["recovered"], &s["epoch"]),
                    (&json!(true), &json!(epoch)),
                    "{name}: recovery from offset {offset} on {fallback} after {end:?}: {r}"
                );
                let pubs = s["publications"].as_array().cloned().unwrap_or_default();
                for p in &pubs {
                    received.push((
                        p["offset"].as_u64().unwrap(),
                        p["data"]["n"].as_u64().unwrap(),
                    ));
                }
                recovered
                    .send(Recovered {
                        at: Instant::now(),
                        publications: pubs.len(),
                    })
                    .unwrap();
                c.set_timeout(Duration::from_millis(300));
            }
        }
    }
    SubReport { name, received }
}

/// The presence map of CHANNEL seen by `c` (a subscriber): client id -> user.
fn presence(c: &mut Client) -> BTreeMap<String, String> {
    let r = c.call("presence", json!({"channel": CHANNEL}));
    r["presence"]["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("presence failed: {r}"))
        .iter()
        .map(|(id, e)| (id.clone(), e["user"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[test]
fn sigkilled_node_clients_recover_elsewhere_without_loss() {
    let mut fleet = Fleet::start();
    let addrs = fleet.addrs();
    let shared = Arc::new(SubShared {
        stop_at: AtomicU64::new(0),
        client_ids: Mutex::new(vec![String::new(); 3 * PER_NODE]),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let (rec_tx, rec_rx) = mpsc::channel();
    let mut subs = Vec::new();
    for i in 0..3 * PER_NODE {
        let home = i % 3;
        // node 2's subscribers move alternately to node 1 and node 3
        let fallback = if (i / 3) % 2 == 0 { 0 } else { 2 };
        let (shared, ready, rec) = (shared.clone(), ready_tx.clone(), rec_tx.clone());
        let (h, f) = (addrs[home], (home == KILLED).then_some(addrs[fallback]));
        subs.push(std::thread::spawn(move || {
            subscriber(i, h, f, shared, ready, rec)
        }));
    }
    for _ in 0..subs.len() {
        ready_rx
            .recv_timeout(DEADLINE)
            .expect("every subscriber subscribed");
    }

    let publisher = Publisher::start(addrs.clone());
    publisher.wait_acked(BEFORE_KILL);
    let killed_at = fleet.kill(KILLED);
    let mut recoveries = Vec::new();
    for _ in 0..PER_NODE {
        let r = rec_rx
            .recv_timeout(DEADLINE)
            .expect("every subscriber of the killed node recovered on another node");
        recoveries.push(r);
    }
    let acked_now = publisher.acked.load(Ordering::Relaxed);
    publisher.wait_acked(acked_now + AFTER_RECOVERY);
    let published = publisher.finish();
    let last = *published.acked.keys().last().unwrap();

    // presence: each live client exactly once; the dead node's entries expire with the TTL
    let (mut observer, hello) = Client::connect(fleet.node(0), "observer");
    let observer_id = hello["client"].as_str().unwrap().to_owned();
    observer.subscribe(CHANNEL);
    let until = Instant::now() + DEADLINE;
    let mut stale_seen = 0;
    let entries = loop {
        let mut want: BTreeSet<String> =
            shared.client_ids.lock().unwrap().iter().cloned().collect();
        want.insert(observer_id.clone());
        let got = presence(&mut observer);
        let ids: BTreeSet<String> = got.keys().cloned().collect();
        stale_seen = stale_seen.max(ids.difference(&want).count());
        if ids == want {
            break got;
        }
        assert!(
            Instant::now() < until,
            "presence never settled to the live clients: want {want:?}, got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let settled_after = killed_at.elapsed();
    let mut users: Vec<&String> = entries.values().collect();
    users.sort();
    users.dedup();
    assert_eq!(
        users.len(),
        3 * PER_NODE + 1,
        "each client once: {entries:?}"
    );
    let stats = observer.call("presence_stats", json!({"channel": CHANNEL}));
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 3 * PER_NODE + 1, "num_users": 3 * PER_NODE + 1}),
        "{stats}"
    );

    shared.stop_at.store(last, Ordering::Relaxed);
    for s in subs {
        let report = s.join().expect("subscriber thread");
        check_received(&report.name, &report.received, &published.acked);
    }

    let all_recovered = recoveries.iter().map(|r| r.at).max().unwrap() - killed_at;
    let from_history: usize = recoveries.iter().map(|r| r.publications).sum();
    assert!(
        from_history > 0,
        "no publication was made while the killed node's clients were away: the test did not exercise recovery"
    );
    println!(
        "fleet (rust client): {} acknowledged publications (last offset {last}), {} unacknowledged; \
         kill -9 to all {PER_NODE} clients of the killed node recovered: {all_recovered:?} \
         (reconnect backoffs {:?}..{:?}); \
         publications recovered from history: {from_history}; \
         stale presence entries seen: {stale_seen}, presence settled {settled_after:?} after the kill",
        published.acked.len(),
        published.unacknowledged,
        reconnect_backoff(1),
        reconnect_backoff(3 * PER_NODE - 2),
    );
}

/// JS SDK clients of `fleet.mjs`.
const JS_CLIENTS: usize = 6;
/// Upper bound for the Node script (its own global timeout is 90 s).
const NODE_DEADLINE: Duration = Duration::from_secs(120);

/// What the JS run produced, as collected by [`drive_js_fleet`].
struct JsOutcome {
    /// Kept alive until the script ended.
    _fleet: Fleet,
    published: Published,
    /// client -> node index at the start.
    homes: BTreeMap<String, usize>,
    victim: usize,
    /// (client, node name after the move, publications recovered from history).
    recovered: Vec<(String, String, usize)>,
    all_recovered: Duration,
    offsets: BTreeMap<String, Vec<(u64, u64)>>,
}

/// The index of the node named `name` (`hostname:port`, the port is the node's).
fn node_index(addrs: &[SocketAddr], name: &str) -> Option<usize> {
    addrs
        .iter()
        .position(|a| name.ends_with(&format!(":{}", a.port())))
}

/// Follows the script's lines (see `fleet.mjs`): publishes once all are subscribed, kills a
/// node that serves some of them (not node 1, which the script's harness names), waits for
/// their recoveries, publishes on, ends with `{n: 0}` and collects every client's offsets.
fn drive_js_fleet(
    mut fleet: Fleet,
    addrs: Vec<SocketAddr>,
    lines: mpsc::Receiver<String>,
) -> Result<JsOutcome, String> {
    let next = |what: &str| {
        lines
            .recv_timeout(DEADLINE)
            .map_err(|e| format!("no line from fleet.mjs while waiting for {what} ({e})"))
    };
    let ready = loop {
        if let Some(j) = next("READY")?.strip_prefix("READY ") {
            break serde_json::from_str::<BTreeMap<String, String>>(j)
                .map_err(|e| e.to_string())?;
        }
    };
    let mut homes = BTreeMap::new();
    for (client, node) in &ready {
        let i = node_index(&addrs, node).ok_or(format!("{client} is on unknown node {node}"))?;
        homes.insert(client.clone(), i);
    }
    let on = |i: usize| homes.values().filter(|&&h| h == i).count();
    let victim = if on(1) >= on(2) { 1 } else { 2 };
    if on(victim) == 0 || on(victim) == homes.len() {
        return Err(format!(
            "the clients are not spread over the nodes: {ready:?}"
        ));
    }
    let publisher = Publisher::start(addrs.clone());
    publisher.wait_acked(BEFORE_KILL);
    let killed_at = fleet.kill(victim);
    let mut recovered = Vec::new();
    while recovered.len() < on(victim) {
        let line = next("RECOVERED")?;
        if let Some(r) = line.strip_prefix("RECOVERED ") {
            let f: Vec<&str> = r.split(' ').collect();
            let n = f.get(2).and_then(|n| n.parse().ok()).ok_or(line.clone())?;
            recovered.push((f[0].to_owned(), f[1].to_owned(), n));
        }
    }
    let all_recovered = killed_at.elapsed();
    let acked_now = publisher.acked.load(Ordering::Relaxed);
    publisher.wait_acked(acked_now + AFTER_RECOVERY);
    let mut published = publisher.finish();
    let (offset, epoch) =
        try_publish(addrs[0], 0).ok_or("the last publication ({n: 0}) was not acknowledged")?;
    if !published.epochs.contains(&epoch) {
        return Err(format!(
            "the last publication has epoch {epoch}, want {:?}",
            published.epochs
        ));
    }
    published.acked.insert(offset, 0);
    let mut offsets = BTreeMap::new();
    loop {
        let line = next("OFFSETS")?;
        if line == "ok: done" {
            break;
        }
        if let Some(r) = line.strip_prefix("OFFSETS ") {
            let f: Vec<&str> = r.split(' ').collect();
            let (Some(offs), Some(ns)) = (f.get(1).map(|x| expand(x)), f.get(2).map(|x| expand(x)))
            else {
                return Err(format!("bad line {line}"));
            };
            let (offs, ns) = (offs?, ns?);
            if offs.len() != ns.len() {
                return Err(format!("offsets and data of different lengths: {line}"));
            }
            offsets.insert(f[0].to_owned(), offs.into_iter().zip(ns).collect());
        }
    }
    Ok(JsOutcome {
        _fleet: fleet,
        published,
        homes,
        victim,
        recovered,
        all_recovered,
        offsets,
    })
}

/// Runs `fleet.mjs` in `mode` (`haproxy` or `rotate`) against a fresh fleet and checks that
/// no acknowledged publication was lost by any SDK client.
fn js_fleet(mode: &str) {
    let mut fleet = Fleet::start();
    let addrs = fleet.addrs();
    let proxy = (mode == "haproxy").then(|| HaProxy::start(&addrs));
    // node 1 stays up: the harness gives its addresses to the script (unused in both modes)
    let node1 = fleet.nodes[0].take().unwrap();
    let mut env = vec![
        ("MODE", mode.to_owned()),
        ("CHANNEL", CHANNEL.to_owned()),
        ("CLIENTS", JS_CLIENTS.to_string()),
    ];
    match &proxy {
        Some(p) => env.push(("WS_URL", p.ws_url())),
        None => env.push((
            "WS_URLS",
            addrs
                .iter()
                .map(|a| ws_url(*a))
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
    let (tx, rx) = mpsc::channel::<String>();
    let driver = {
        let addrs = addrs.clone();
        std::thread::spawn(move || drive_js_fleet(fleet, addrs, rx))
    };
    let run = run_script(&node1, "fleet.mjs", &env, NODE_DEADLINE, |line| {
        let _ = tx.send(line.to_owned());
    });
    drop(tx);
    let outcome = driver.join();
    let o = match outcome {
        Ok(Ok(o)) if run.passed() => o,
        Ok(Err(e)) => panic!("fleet.mjs ({mode}): {e}\n{}", run.report(NODE_DEADLINE)),
        Err(_) => panic!(
            "fleet.mjs ({mode}): the driver panicked\n{}",
            run.report(NODE_DEADLINE)
        ),
        Ok(Ok(_)) => panic!("fleet.mjs ({mode}) failed\n{}", run.report(NODE_DEADLINE)),
    };
    let victim_port = format!(":{}", addrs[o.victim].port());
    for (client, node, _) in &o.recovered {
        assert_eq!(
            o.homes[client], o.victim,
            "{client} reconnected but its node lived"
        );
        assert!(
            !node.ends_with(&victim_port),
            "{client} recovered on the dead node {node}"
        );
    }
    assert_eq!(o.offsets.len(), JS_CLIENTS, "{:?}", o.offsets.keys());
    for (client, received) in &o.offsets {
        check_received(&format!("{mode} {client}"), received, &o.published.acked);
    }
    let from_history: usize = o.recovered.iter().map(|r| r.2).sum();
    println!(
        "fleet (JS SDK, {mode}): {} acknowledged publications, {} unacknowledged; kill -9 of node {} \
         ({} of {JS_CLIENTS} clients on it) to all of them recovered: {:?}; \
         publications recovered from history: {from_history}",
        o.published.acked.len(),
        o.published.unacknowledged,
        o.victim + 1,
        o.recovered.len(),
        o.all_recovered,
    );
    drop(proxy);
}

#[test]
fn js_sdk_through_haproxy_recovers_after_a_sigkill() {
    js_fleet("haproxy");
}

#[test]
fn js_sdk_with_several_endpoints_recovers_after_a_sigkill() {
    js_fleet("rotate");
}
