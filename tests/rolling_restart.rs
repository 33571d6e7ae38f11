//! A rolling restart behind a load balancer loses nothing (issue 10 item 4): HAProxy with
//! active `GET /health` checks (every second, out at the first failure, back after two
//! successes) in front of three nodes on one real `redis-server`, a history channel, and a
//! publisher publishing steadily through the nodes' HTTP API (round-robin over the nodes
//! that are up, a refused or failed publish retried on the next node; only acknowledged
//! publications count). Subscribers (our test client) connect through HAProxy; on a 3001
//! they reconnect through HAProxy after a short backoff and recover from their last offset,
//! as the SDKs do. Nodes 1, 2 and 3 are restarted in turn: SIGTERM, wait for the exit, start
//! again on the same port, wait until HAProxy has it UP again.
//!
//! Asserted:
//! - every subscriber received every acknowledged publication exactly once and in order;
//! - every close any subscriber saw was 3001 "shutdown" (each saw at least one);
//! - the node registry (API `info` on another node) showed each node `draining` during its
//!   drain;
//! - HAProxy marked each node DOWN before the node sent its first 3001, and
//! - no upgrade through HAProxy was refused: the draining node left the pool
//!   (`server.drain_leave_pool_ms`, 2.5 s here: 2.5 check intervals) before it disconnected
//!   anyone, so no reconnect was sent to it. With `drain_leave_pool_ms = 0` the clients of
//!   the first batches reconnect (after 10–60 ms) before HAProxy's next check, round-robin
//!   sends some back to the draining node, and its 503s fail this check.
//! - the publications made while clients were away came back from history (the test
//!   exercised recovery).
//!
//! `js_sdk_through_haproxy_recovers_across_a_rolling_restart` runs the same restart under the
//! official JS SDK (`tests/js/fleet.mjs` with `ONLY_CODE=3001`): every client reconnects and
//! recovers by itself, every lost connection is a 3001, 0 lost acknowledged publications.
//!
//! Printed (run with `--nocapture`): the timeline per restart: SIGTERM, the registry shows
//! the node draining, HAProxy marks it DOWN, first and last 3001 received, process exit, back
//! UP in HAProxy.

mod common;
mod redis_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::node::run_script;
use common::{parse_http_response, token_with, Client, Ended, Overrides, Server, API_KEY};
use redis_support::haproxy::{HaProxy, StateWatch};
use redis_support::RedisServer;
use serde_json::{json, Value};

/// The history channel (namespace `fleet`: history on).
const CHANNEL: &str = "fleet:feed";
const SUBSCRIBERS: usize = 12;
/// Acknowledged publications before the first restart, between restarts, and at the end.
const BETWEEN: usize = 60;
/// Bound for every wait (never reached when the fleet works).
const DEADLINE: Duration = Duration::from_secs(40);
/// HAProxy's check interval: a draining node is out of the pool within about this long.
const CHECK_EVERY: Duration = Duration::from_millis(1000);
/// `server.drain_leave_pool_ms`: 2.5 check intervals.
const LEAVE_POOL_MS: u64 = 2500;

fn overrides(redis: &RedisServer) -> Overrides {
    let mut o: Overrides = redis.node_overrides(0);
    o.cores = Some(1);
    o.channels = "\n[[channels.namespaces]]\nname = \"fleet\"\nhistory_size = 100000\n\
                  history_ttl_s = 600\n"
        .into();
    o.drain_leave_pool_ms = Some(LEAVE_POOL_MS);
    o.drain_window_ms = Some(1500);
    // two batches: with no leave-pool wait both would fall inside HAProxy's next check
    o.server = "drain_batches = 2".into();
    o
}

/// One `POST /api/publish` of `{"n": n}`: `Some((offset, epoch))` only when acknowledged.
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

/// Publishes `{"n": 1}`, `{"n": 2}`, … round-robin over the nodes marked up; a publish that
/// fails (a draining node answers 503, a stopped one refuses the connection) is retried on
/// the next node.
struct Publisher {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    thread: JoinHandle<Published>,
}

#[derive(Default)]
struct Published {
    /// offset -> n of every acknowledged publication.
    acked: BTreeMap<u64, u64>,
    epochs: Vec<String>,
    failed_attempts: usize,
}

impl Publisher {
    fn start(addrs: Vec<SocketAddr>, up: Arc<Vec<AtomicBool>>) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut out = Published::default();
            let (mut n, mut next) = (0u64, 0usize);
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let give_up = Instant::now() + DEADLINE;
                loop {
                    let i = next % addrs.len();
                    next += 1;
                    if !up[i].load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Some((offset, epoch)) = try_publish(addrs[i], n) {
                        assert!(
                            out.acked.insert(offset, n).is_none(),
                            "offset {offset} acknowledged twice"
                        );
                        if !out.epochs.contains(&epoch) {
                            out.epochs.push(epoch);
                        }
                        acked2.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    out.failed_attempts += 1;
                    assert!(Instant::now() < give_up, "no node acknowledged {n}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            out
        });
        Publisher {
            stop,
            acked,
            thread,
        }
    }

    fn wait_more(&self, more: usize) {
        let want = self.acked.load(Ordering::Relaxed) + more;
        let until = Instant::now() + DEADLINE;
        while self.acked.load(Ordering::Relaxed) < want {
            assert!(Instant::now() < until, "publications stalled");
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

/// What a subscriber saw.
#[derive(Default)]
struct SubReport {
    name: String,
    received: Vec<(u64, u64)>,
    /// (when, node, code, reason) of every close.
    closes: Vec<(Instant, String, u16, String)>,
    /// Refused or failed connection attempts through HAProxy.
    refused: Vec<String>,
    /// Publications that came back in recovering subscribes.
    recovered: usize,
}

/// A subscriber through HAProxy that reconnects and recovers after every close; it stops
/// once it received offset `stop_at`, or 10 s after `stop_at` was set (the checks report).
fn subscriber(
    i: usize,
    proxy: SocketAddr,
    stop_at: Arc<AtomicU64>,
    ready: mpsc::Sender<()>,
) -> SubReport {
    let url = format!("ws://{proxy}/connection/websocket");
    let mut me = SubReport {
        name: format!("sub{i}"),
        ..SubReport::default()
    };
    let token = token_with(&me.name, 3600, json!({}));
    let mut epoch: Option<String> = None;
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut stop_seen: Option<Instant> = None;
    'connections: loop {
        assert!(Instant::now() < give_up, "{}: never finished", me.name);
        let mut c = match Client::try_open_url(proxy, &url) {
            Ok(c) => c,
            Err(e) => {
                me.refused.push(e);
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let r = c.call("connect", json!({"token": token}));
        let node = r["connect"]["node"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: connect failed: {r}", me.name))
            .to_owned();
        match &epoch {
            None => {
                let r = c.subscribe(CHANNEL);
                epoch = Some(r["subscribe"]["epoch"].as_str().unwrap().to_owned());
                ready.send(()).unwrap();
            }
            Some(e) => {
                let offset = me.received.last().map_or(0, |l| l.0);
                let r = c.call(
                    "subscribe",
                    json!({"channel": CHANNEL, "recover": true, "epoch": e, "offset": offset}),
                );
                let s = &r["subscribe"];
                assert_eq!(
                    (&s["recovered"], &s["epoch"]),
                    (&json!(true), &json!(e)),
                    "{}: recovery from {offset} on {node}: {r}",
                    me.name
                );
                for p in s["publications"].as_array().into_iter().flatten() {
                    me.received.push((
                        p["offset"].as_u64().unwrap(),
                        p["data"]["n"].as_u64().unwrap(),
                    ));
                    me.recovered += 1;
                }
            }
        }
        c.set_timeout(Duration::from_millis(300));
        loop {
            let target = stop_at.load(Ordering::Relaxed);
            if target > 0 {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if me.received.last().is_some_and(|l| l.0 >= target)
                    || since.elapsed() > Duration::from_secs(10)
                {
                    break 'connections;
                }
            }
            match c.recv() {
                Ok(v) if v == json!({}) => c.send_text("{}"), // heartbeat
                Ok(v) => {
                    if let Some(p) = v["push"].get("pub") {
                        me.received.push((
                            p["offset"].as_u64().unwrap(),
                            p["data"]["n"].as_u64().unwrap(),
                        ));
                    }
                }
                Err(Ended::Closed(0, reason)) if reason == "timeout" => {}
                Err(end) => {
                    let (code, reason) = match end {
                        Ended::Closed(code, reason) => (code, reason),
                        Ended::Eof => (0, "eof".to_owned()),
                    };
                    me.closes.push((Instant::now(), node.clone(), code, reason));
                    // a short jittered backoff (shorter than the SDKs' so that, were the node
                    // still in the pool, the reconnect would reach HAProxy before its next check)
                    std::thread::sleep(Duration::from_millis(10 + 10 * (i as u64 % 6)));
                    continue 'connections;
                }
            }
        }
    }
    me
}

/// Checks one subscriber against the acknowledged publications: strictly increasing offsets
/// (in order, no duplicate), every acknowledged publication present with its data, and no
/// gap in the stream up to the last acknowledged offset.
fn check_received(who: &str, received: &[(u64, u64)], published: &Published) {
    for w in received.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "{who}: offset {} after {} (duplicate or out of order)",
            w[1].0,
            w[0].0
        );
    }
    let got: BTreeMap<u64, u64> = received.iter().copied().collect();
    let lost: Vec<u64> = published
        .acked
        .iter()
        .filter(|(o, n)| got.get(o) != Some(n))
        .map(|(o, _)| *o)
        .collect();
    assert!(
        lost.is_empty(),
        "{who}: {} acknowledged publications lost or altered, offsets {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let last = *published.acked.keys().last().unwrap();
    let gaps: Vec<u64> = (1..=last).filter(|o| !got.contains_key(o)).collect();
    assert!(
        gaps.is_empty(),
        "{who}: stream offsets missing {:?}",
        &gaps[..gaps.len().min(20)]
    );
}

/// Waits until nothing listens on `addr`. The kernel may close an exited process's listener
/// a little after the exit (glommio's io_uring holds the socket until the ring is torn
/// down, asynchronously), and `serve` refuses to share a port it sees in use.
fn wait_port_free(addr: SocketAddr) {
    let until = Instant::now() + DEADLINE;
    // std binds with SO_REUSEADDR and no SO_REUSEPORT: only a listener makes this fail
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(Instant::now() < until, "{addr} still in use after the exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `observer`'s API `info` (the Redis node registry) shows the node on `addr`
/// as draining; returns when it saw it.
fn wait_registry_draining(observer: &Server, addr: SocketAddr) -> Instant {
    let until = Instant::now() + Duration::from_secs(10);
    let port = format!(":{}", addr.port());
    loop {
        let (status, v) = observer.api("info", json!({}));
        assert_eq!(status, 200, "{v}");
        let entry = v["result"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"].as_str().unwrap_or("").ends_with(&port))
            .cloned();
        if entry.as_ref().is_some_and(|n| n["draining"] == true) {
            return Instant::now();
        }
        assert!(
            Instant::now() < until,
            "the registry never showed {addr} draining: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One restart's moments.
struct Restart {
    sigterm: Instant,
    /// Another node's API `info` lists the node as draining.
    registry_draining: Instant,
    exited: Instant,
    back_up: Instant,
}

/// A Redis, three nodes on it and HAProxy in front, watched.
struct Fleet {
    _redis: RedisServer,
    o: Overrides,
    nodes: Vec<Server>,
    addrs: Vec<SocketAddr>,
    proxy: HaProxy,
    watch: StateWatch,
    /// Which nodes the publisher may use.
    up: Arc<Vec<AtomicBool>>,
}

impl Fleet {
    fn start() -> Fleet {
        let redis = RedisServer::start();
        let o = overrides(&redis);
        let nodes: Vec<Server> = (0..3).map(|_| Server::start_with(&o)).collect();
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        let proxy = HaProxy::start_checking_every(&addrs, CHECK_EVERY);
        let watch = proxy.watch();
        for i in 0..3 {
            proxy.wait_state(&format!("node{}", i + 1), "UP", DEADLINE);
        }
        Fleet {
            _redis: redis,
            o,
            nodes,
            addrs,
            proxy,
            watch,
            up: Arc::new((0..3).map(|_| AtomicBool::new(true)).collect()),
        }
    }

    /// Restarts node 1, 2, 3 in turn (SIGTERM, exit, start on the same port, UP in HAProxy),
    /// with `BETWEEN` more acknowledged publications after each.
    fn roll(&mut self, publisher: &Publisher) -> Vec<Restart> {
        let mut restarts = Vec::new();
        for i in 0..3 {
            // the publisher keeps trying the draining node: it answers 503 (temporary), retried
            let sigterm = Instant::now();
            self.nodes[i].sigterm();
            let registry_draining = wait_registry_draining(&self.nodes[(i + 1) % 3], self.addrs[i]);
            let status = self.nodes[i]
                .wait_exit(DEADLINE)
                .expect("the node exits after its drain");
            let exited = Instant::now();
            self.up[i].store(false, Ordering::Relaxed);
            assert!(status.success(), "node {} exited with {status}", i + 1);
            wait_port_free(self.addrs[i]);
            let mut again = self.o.clone();
            again.env.push((
                "WIRESOCKET_SERVER__LISTEN".into(),
                self.addrs[i].to_string(),
            ));
            self.nodes[i] = Server::start_with(&again);
            assert_eq!(self.nodes[i].addr, self.addrs[i]);
            let back_up = self
                .proxy
                .wait_state(&format!("node{}", i + 1), "UP", DEADLINE);
            self.up[i].store(true, Ordering::Relaxed);
            restarts.push(Restart {
                sigterm,
                registry_draining,
                exited,
                back_up,
            });
            publisher.wait_more(BETWEEN);
        }
        restarts
    }

    /// Prints the timeline of each restart (ms since `t0`), with the close times given.
    fn print_timeline(&self, t0: Instant, restarts: &[Restart], closes: &[Instant]) {
        let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();
        for (i, r) in restarts.iter().enumerate() {
            let server = format!("node{}", i + 1);
            let down = self.watch.first(&server, "DOWN", r.sigterm).map(ms);
            let mine: Vec<Instant> = closes
                .iter()
                .copied()
                .filter(|&t| t >= r.sigterm && t <= r.exited)
                .collect();
            println!(
                "restart {server}: SIGTERM {} ms, registry draining {} ms, HAProxy DOWN {down:?} ms, \
                 3001s received {} (first {:?} ms, last {:?} ms), exit {} ms, HAProxy UP again {} ms",
                ms(r.sigterm),
                ms(r.registry_draining),
                mine.len(),
                mine.iter().min().copied().map(ms),
                mine.iter().max().copied().map(ms),
                ms(r.exited),
                ms(r.back_up),
            );
        }
    }

    /// HAProxy marked each node DOWN before the first of `closes` during its drain.
    fn assert_out_before_first_close(&self, restarts: &[Restart], closes: &[Instant]) {
        for (i, r) in restarts.iter().enumerate() {
            let server = format!("node{}", i + 1);
            let down = self.watch.first(&server, "DOWN", r.sigterm);
            let first_close = closes
                .iter()
                .copied()
                .filter(|&t| t >= r.sigterm && t <= r.exited)
                .min();
            assert!(
                matches!((down, first_close), (Some(d), Some(c)) if d <= c),
                "{server}: HAProxy DOWN at {down:?}, first 3001 at {first_close:?}"
            );
        }
    }
}

#[test]
fn rolling_restart_behind_haproxy_loses_no_publication() {
    let mut fleet = Fleet::start();
    let t0 = Instant::now();

    let stop_at = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = mpsc::channel();
    let subs: Vec<JoinHandle<SubReport>> = (0..SUBSCRIBERS)
        .map(|i| {
            let (stop_at, ready) = (stop_at.clone(), ready_tx.clone());
            let at = fleet.proxy.addr;
            std::thread::spawn(move || subscriber(i, at, stop_at, ready))
        })
        .collect();
    for _ in 0..SUBSCRIBERS {
        ready_rx
            .recv_timeout(DEADLINE)
            .expect("every subscriber subscribed");
    }

    let publisher = Publisher::start(fleet.addrs.clone(), fleet.up.clone());
    publisher.wait_more(BETWEEN);
    let restarts = fleet.roll(&publisher);
    let published = publisher.finish();
    stop_at.store(*published.acked.keys().last().unwrap(), Ordering::Relaxed);
    let reports: Vec<SubReport> = subs
        .into_iter()
        .map(|s| s.join().expect("subscriber thread"))
        .collect();

    // the timeline, printed before the checks so a failing run shows it too
    let closes: Vec<Instant> = reports
        .iter()
        .flat_map(|s| s.closes.iter().map(|c| c.0))
        .collect();
    fleet.print_timeline(t0, &restarts, &closes);
    // every node was out of HAProxy's pool before it disconnected its first client
    fleet.assert_out_before_first_close(&restarts, &closes);
    let recovered: usize = reports.iter().map(|r| r.recovered).sum();
    let refused: Vec<&String> = reports.iter().flat_map(|r| &r.refused).collect();
    println!(
        "rolling restart: {} acknowledged publications (last offset {}), {} failed publish attempts retried; \
         {} closes seen by {SUBSCRIBERS} subscribers, {recovered} publications recovered from history, \
         {} refused upgrades through HAProxy",
        published.acked.len(),
        published.acked.keys().last().unwrap(),
        published.failed_attempts,
        reports.iter().map(|r| r.closes.len()).sum::<usize>(),
        refused.len(),
    );

    for r in &reports {
        check_received(&r.name, &r.received, &published);
        assert!(
            !r.closes.is_empty(),
            "{}: its node was restarted but it saw no close",
            r.name
        );
        for (_, node, code, reason) in &r.closes {
            assert_eq!(
                (*code, reason.as_str()),
                (3001, "shutdown"),
                "{}: closed by {node} with {code} {reason}",
                r.name
            );
        }
    }
    assert!(
        refused.is_empty(),
        "upgrades refused through HAProxy: {refused:?}"
    );
    assert!(
        recovered > 0,
        "no publication came back from history: the test did not exercise recovery"
    );
}

/// JS SDK clients of `fleet.mjs`.
const JS_CLIENTS: usize = 6;
/// Upper bound for the Node script (its own global timeout is 90 s).
const NODE_DEADLINE: Duration = Duration::from_secs(120);

/// `1-3,5,0` (see `fleet.mjs`) as `[1, 2, 3, 5, 0]`; `-` is the empty list.
fn expand(ranges: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for r in ranges.split(',').filter(|r| *r != "-") {
        let num = |x: &str| x.parse::<u64>().map_err(|e| format!("{ranges}: {e}"));
        match r.split_once('-') {
            Some((a, b)) => out.extend(num(a)?..=num(b)?),
            None => out.push(num(r)?),
        }
    }
    Ok(out)
}

/// What the JS run produced.
struct JsOutcome {
    fleet: Fleet,
    t0: Instant,
    restarts: Vec<Restart>,
    published: Published,
    /// (when the line arrived, client, code) of every lost connection.
    lost: Vec<(Instant, String, u16)>,
    recovered: usize,
    offsets: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Follows `fleet.mjs`: once every client is subscribed, publishes and restarts the three
/// nodes in turn, ends with `{n: 0}` and collects what each client received.
fn drive_js(
    mut fleet: Fleet,
    lines: mpsc::Receiver<(Instant, String)>,
) -> Result<JsOutcome, String> {
    let next = |what: &str| {
        lines
            .recv_timeout(NODE_DEADLINE)
            .map_err(|e| format!("no line from fleet.mjs while waiting for {what} ({e})"))
    };
    while !next("READY")?.1.starts_with("READY ") {}
    let t0 = Instant::now();
    let publisher = Publisher::start(fleet.addrs.clone(), fleet.up.clone());
    publisher.wait_more(BETWEEN);
    let restarts = fleet.roll(&publisher);
    let mut published = publisher.finish();
    let (offset, _) = try_publish(fleet.addrs[0], 0)
        .ok_or("the last publication ({n: 0}) was not acknowledged")?;
    published.acked.insert(offset, 0);
    let (mut lost, mut recovered, mut offsets) = (Vec::new(), 0, BTreeMap::new());
    loop {
        let (at, line) = next("the script's end")?;
        if line == "ok: done" {
            break;
        }
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "LOST" => lost.push((at, f[1].to_owned(), f[2].parse().map_err(|_| line.clone())?)),
            "RECOVERED" => recovered += 1,
            "OFFSETS" => {
                let (o, n) = (expand(f[2])?, expand(f[3])?);
                offsets.insert(f[1].to_owned(), o.into_iter().zip(n).collect());
            }
            _ => {}
        }
    }
    Ok(JsOutcome {
        fleet,
        t0,
        restarts,
        published,
        lost,
        recovered,
        offsets,
    })
}

/// The official SDK through HAProxy across the same rolling restart (`tests/js/fleet.mjs`,
/// half the clients with a client-side subscription, half server-side): it reconnects on 3001
/// and recovers by itself; the script fails on any other disconnect code (`ONLY_CODE`) and
/// on a resubscribe that did not recover. 0 lost acknowledged publications, none twice, in
/// order.
#[test]
fn js_sdk_through_haproxy_recovers_across_a_rolling_restart() {
    // the Node harness names a server; this one stays up and serves nobody
    let anchor = Server::start_with(&Overrides {
        cores: Some(1),
        ..Overrides::default()
    });
    let fleet = Fleet::start();
    let env = vec![
        ("MODE", "haproxy".to_owned()),
        ("CHANNEL", CHANNEL.to_owned()),
        ("CLIENTS", JS_CLIENTS.to_string()),
        ("WS_URL", fleet.proxy.ws_url()),
        ("ONLY_CODE", "3001".to_owned()),
    ];
    let (tx, rx) = mpsc::channel();
    let driver = std::thread::spawn(move || drive_js(fleet, rx));
    let run = run_script(&anchor, "fleet.mjs", &env, NODE_DEADLINE, |line| {
        let _ = tx.send((Instant::now(), line.to_owned()));
    });
    drop(tx);
    let o = match driver.join() {
        Ok(Ok(o)) if run.passed() => o,
        Ok(Err(e)) => panic!("fleet.mjs: {e}\n{}", run.report(NODE_DEADLINE)),
        Err(_) => panic!(
            "fleet.mjs: the driver panicked\n{}",
            run.report(NODE_DEADLINE)
        ),
        Ok(Ok(_)) => panic!("fleet.mjs failed\n{}", run.report(NODE_DEADLINE)),
    };
    let closes: Vec<Instant> = o.lost.iter().map(|l| l.0).collect();
    o.fleet.print_timeline(o.t0, &o.restarts, &closes);
    println!(
        "rolling restart (JS SDK): {} acknowledged publications, {} lost connections (codes {:?}), {} recoveries",
        o.published.acked.len(),
        o.lost.len(),
        o.lost.iter().map(|l| l.2).collect::<std::collections::BTreeSet<_>>(),
        o.recovered,
    );
    assert_eq!(o.offsets.len(), JS_CLIENTS, "{:?}", o.offsets.keys());
    for (client, received) in &o.offsets {
        check_received(client, received, &o.published);
        assert!(
            o.lost.iter().any(|l| &l.1 == client),
            "{client}: its node was restarted but it lost no connection"
        );
    }
    assert!(o.lost.iter().all(|l| l.2 == 3001), "{:?}", o.lost);
    assert!(o.recovered >= JS_CLIENTS, "{} recoveries", o.recovered);
    o.fleet.assert_out_before_first_close(&o.restarts, &closes);
}
