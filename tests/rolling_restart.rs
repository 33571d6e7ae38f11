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
//! `rolling_restart_js.rs` runs the same restart under the official JS SDK. The fleet, the
//! publisher and the checks are in `rolling_support`.
//!
//! Printed (run with `--nocapture`): the timeline per restart: SIGTERM, the registry shows
//! the node draining, HAProxy marks it DOWN, first and last 3001 received, process exit, back
//! UP in HAProxy.

mod common;
mod redis_support;
mod rolling_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{token_with, Client, Ended};
use rolling_support::{check_received, Fleet, Publisher, BETWEEN, CHANNEL, DEADLINE};
use serde_json::json;

const SUBSCRIBERS: usize = 12;

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
