//! Shared by the rolling-restart tests (`rolling_restart.rs`, `rolling_restart_js.rs`): a
//! Redis, three nodes on it with a history namespace and HAProxy in front ([`Fleet`], which
//! also restarts the nodes in turn and prints the timeline), a publisher through the nodes'
//! API that counts only acknowledged publications ([`Publisher`]), and the check of what a
//! subscriber received against them ([`check_received`]).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{parse_http_response, Overrides, Server, API_KEY};
use crate::redis_support::NodeOverrides;
use serde_json::{json, Value};
use wiresocket_testkit::{HaProxy, RedisServer, StateWatch};

/// The history channel (namespace `fleet`: history on).
pub const CHANNEL: &str = "fleet:feed";
/// Acknowledged publications before the first restart, between restarts, and at the end.
pub const BETWEEN: usize = 60;
/// Bound for every wait (never reached when the fleet works).
pub const DEADLINE: Duration = Duration::from_secs(40);
/// HAProxy's check interval: a draining node is out of the pool within about this long.
pub const CHECK_EVERY: Duration = Duration::from_millis(1000);
/// `server.drain_leave_pool_ms`: 2.5 check intervals.
pub const LEAVE_POOL_MS: u64 = 2500;

pub fn overrides(redis: &RedisServer) -> Overrides {
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
pub fn try_publish(addr: SocketAddr, n: u64) -> Option<(u64, String)> {
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
pub struct Publisher {
    pub stop: Arc<AtomicBool>,
    pub acked: Arc<AtomicUsize>,
    pub thread: JoinHandle<Published>,
}

#[derive(Default)]
pub struct Published {
    /// offset -> n of every acknowledged publication.
    pub acked: BTreeMap<u64, u64>,
    pub epochs: Vec<String>,
    pub failed_attempts: usize,
}

impl Publisher {
    pub fn start(addrs: Vec<SocketAddr>, up: Arc<Vec<AtomicBool>>) -> Publisher {
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

    pub fn wait_more(&self, more: usize) {
        let want = self.acked.load(Ordering::Relaxed) + more;
        let until = Instant::now() + DEADLINE;
        while self.acked.load(Ordering::Relaxed) < want {
            assert!(Instant::now() < until, "publications stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn finish(self) -> Published {
        self.stop.store(true, Ordering::Relaxed);
        let p = self.thread.join().expect("publisher thread");
        assert_eq!(p.epochs.len(), 1, "one stream epoch: {:?}", p.epochs);
        p
    }
}

/// Checks one subscriber against the acknowledged publications (`common::delivery`).
pub fn check_received(who: &str, received: &[(u64, u64)], published: &Published) {
    crate::common::delivery::check_received(who, received, &published.acked);
}

/// Waits until nothing listens on `addr`. The kernel may close an exited process's listener
/// a little after the exit (glommio's io_uring holds the socket until the ring is torn
/// down, asynchronously), and `serve` refuses to share a port it sees in use.
pub fn wait_port_free(addr: SocketAddr) {
    let until = Instant::now() + DEADLINE;
    // std binds with SO_REUSEADDR and no SO_REUSEPORT: only a listener makes this fail
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(Instant::now() < until, "{addr} still in use after the exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `observer`'s API `info` (the Redis node registry) shows the node on `addr`
/// as draining; returns when it saw it.
pub fn wait_registry_draining(observer: &Server, addr: SocketAddr) -> Instant {
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
pub struct Restart {
    pub sigterm: Instant,
    /// Another node's API `info` lists the node as draining.
    pub registry_draining: Instant,
    pub exited: Instant,
    pub back_up: Instant,
}

/// A Redis, three nodes on it and HAProxy in front, watched.
pub struct Fleet {
    _redis: RedisServer,
    pub o: Overrides,
    pub nodes: Vec<Server>,
    pub addrs: Vec<SocketAddr>,
    pub proxy: HaProxy,
    pub watch: StateWatch,
    /// Which nodes the publisher may use.
    pub up: Arc<Vec<AtomicBool>>,
}

impl Fleet {
    pub fn start() -> Fleet {
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
    pub fn roll(&mut self, publisher: &Publisher) -> Vec<Restart> {
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
    pub fn print_timeline(&self, t0: Instant, restarts: &[Restart], closes: &[Instant]) {
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
    pub fn assert_out_before_first_close(&self, restarts: &[Restart], closes: &[Instant]) {
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
