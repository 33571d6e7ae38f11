//! Redis Sentinel failover under two wiresocket nodes (black box: real
//! `redis-server` master and replica, three `redis-sentinel`s, all on loopback).
//!
//! Subscribers with history on both nodes; publications through both nodes; the
//! master is killed with SIGKILL and the sentinels promote the replica. The nodes
//! find the new master through the sentinels: publishes fail with the temporary
//! error 100 (503) while there is none and succeed again after the failover,
//! `/health` goes 503 and back to 200, and every acknowledged publication reaches
//! every subscriber, live or recovered from history after the resubscribe (2500)
//! that follows the PUB/SUB reconnect. No node dies. Redis replication is
//! asynchronous, so the test waits (`WAIT`) for the replica to hold what was
//! acknowledged before the kill, as a deployment would need `WAIT` for that
//! guarantee too; everything acknowledged after the kill comes from the new master.
//! The same over TLS to master and replica (`sentinel.tls`, test CA). Without
//! reachable sentinels a node refuses to start, naming them (passwords hidden).

mod common;
mod redis_support;

use common::{http, Client, Server};
use redis_support::NodeOverrides;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wiresocket_testkit::{free_port, wait_until, SentinelGroup};

const CHANNEL: &str = "feed";

/// One subscriber: what it has received, by offset.
struct Subscriber {
    client: Client,
    epoch: String,
    got: BTreeMap<u64, Value>,
    resubscribes: u32,
}

impl Subscriber {
    fn new(node: &Server, user: &str) -> Subscriber {
        let (mut client, _) = Client::connect(node, user);
        let r = client.subscribe(CHANNEL);
        let epoch = r["subscribe"]["epoch"].as_str().expect("epoch").to_owned();
        client.set_timeout(Duration::from_secs(2));
        Subscriber {
            client,
            epoch,
            got: BTreeMap::new(),
            resubscribes: 0,
        }
    }

    fn last_offset(&self) -> u64 {
        self.got.keys().next_back().copied().unwrap_or(0)
    }

    /// Reads pushes until it holds every offset of `want`, resubscribing with
    /// recovery when told to (2500); fails after `limit`.
    fn collect(&mut self, want: &BTreeMap<u64, Value>, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !want.keys().all(|o| self.got.contains_key(o)) {
            assert!(
                Instant::now() < deadline,
                "missing publications: acknowledged {:?}, received {:?}",
                want.keys().collect::<Vec<_>>(),
                self.got.keys().collect::<Vec<_>>()
            );
            let Ok(v) = self.client.recv() else { continue }; // read timeout: wait more
            let Some(push) = v.get("push") else { continue };
            if let Some(p) = push.get("pub") {
                let offset = p["offset"].as_u64().expect("offset");
                self.got.insert(offset, p["data"].clone());
            } else if let Some(u) = push.get("unsubscribe") {
                assert_eq!(u["code"], 2500, "only told to resubscribe: {push}");
                self.resubscribe(deadline);
            }
        }
    }

    fn resubscribe(&mut self, deadline: Instant) {
        self.resubscribes += 1;
        loop {
            let r = self.client.call(
                "subscribe",
                json!({"channel": CHANNEL, "recover": true, "epoch": self.epoch,
                       "offset": self.last_offset()}),
            );
            if let Some(s) = r.get("subscribe") {
                assert_eq!(s["recovered"], true, "history survived the failover: {r}");
                assert_eq!(s["epoch"], self.epoch.as_str(), "{r}");
                for p in s["publications"].as_array().into_iter().flatten() {
                    let offset = p["offset"].as_u64().expect("offset");
                    self.got.insert(offset, p["data"].clone());
                }
                return;
            }
            assert_eq!(r["error"]["code"], 100, "only temporary errors: {r}");
            assert!(Instant::now() < deadline, "could not resubscribe: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn nodes_follow_a_sentinel_failover_without_losing_acknowledged_publications() {
    failover_scenario(SentinelGroup::start());
}

#[test]
fn nodes_follow_a_failover_over_tls_to_the_masters() {
    failover_scenario(SentinelGroup::start_tls());
}

fn failover_scenario(mut group: SentinelGroup) {
    let old_master = group.master.port;
    let mut a = Server::start_with(&group.node_overrides(1000));
    let mut b = Server::start_with(&group.node_overrides(1000));
    let nodes = [&a, &b];
    let mut subs = vec![Subscriber::new(&a, "alice"), Subscriber::new(&b, "bob")];
    let mut acked: BTreeMap<u64, Value> = BTreeMap::new();
    let mut n = 0u64;
    let mut publish = |node: &Server, acked: &mut BTreeMap<u64, Value>| {
        n += 1;
        let data = json!({ "n": n });
        let (status, res) = node.api("publish", json!({"channel": CHANNEL, "data": data}));
        if status == 200 {
            let offset = res["result"]["offset"].as_u64().expect("offset");
            assert!(
                acked.insert(offset, data).is_none(),
                "offset {offset} twice"
            );
            true
        } else {
            assert_eq!(
                (status, &res["error"]["code"], &res["error"]["temporary"]),
                (503, &json!(100), &json!(true)),
                "a failed publish is a temporary error: {res}"
            );
            false
        }
    };

    for i in 0..20 {
        assert!(
            publish(nodes[i % 2], &mut acked),
            "publish before the failover"
        );
    }
    group.wait_replicated();
    group.master.kill9();
    let outage_started = Instant::now();

    // publish through both nodes until 20 more are acknowledged after the failover
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut refused, mut after, mut saw_503) = (0, 0, false);
    let mut i = 0;
    while after < 20 {
        assert!(
            Instant::now() < deadline,
            "publishes did not succeed again within 60 s ({refused} refused)"
        );
        if publish(nodes[i % 2], &mut acked) {
            after += 1;
        } else {
            refused += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        saw_503 |= http(nodes[i % 2].addr, "GET", "/health", &[], "").0 == 503;
        i += 1;
    }
    eprintln!(
        "failover: {refused} publishes refused over {:?}, {} acknowledged in all",
        outage_started.elapsed(),
        acked.len()
    );
    assert!(refused > 0, "the outage was seen by publishers");
    assert!(saw_503, "/health reported the outage");
    let new_master = group.current_master_port().expect("a master");
    assert_ne!(new_master, old_master, "the sentinels failed over");
    assert_eq!(new_master, group.replica.port);

    for s in &mut subs {
        s.collect(&acked, Duration::from_secs(30));
        assert!(
            s.resubscribes >= 1,
            "subscribers were reset after the PUB/SUB reconnect"
        );
        for (offset, data) in &acked {
            assert_eq!(&s.got[offset], data, "publication {offset} intact");
        }
    }
    for node in nodes {
        wait_until(Duration::from_secs(10), "/health 200", || {
            http(node.addr, "GET", "/health", &[], "").0 == 200
        });
        for connection in ["command", "pubsub"] {
            let label = format!("connection=\"{connection}\"");
            assert!(
                node.metric_sum("wiresocket_engine_redis_reconnects_total", &[&label]) >= 1.0,
                "{connection} reconnected"
            );
        }
        assert!(node.metric_sum("wiresocket_engine_redis_resubscribes_total", &[]) >= 1.0);
        assert!(node.metric_sum("wiresocket_engine_redis_errors_total", &[]) >= 1.0);
    }
    for node in [&mut a, &mut b] {
        assert!(
            node.child.try_wait().expect("status").is_none(),
            "the node is still running"
        );
    }
}

#[test]
fn a_node_without_reachable_sentinels_refuses_to_start_naming_them() {
    let port = free_port();
    let overrides = common::Overrides {
        env: vec![
            ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
            (
                "WIRESOCKET_ENGINE__REDIS__SENTINEL__MASTER".into(),
                "mymaster".into(),
            ),
            (
                "WIRESOCKET_ENGINE__REDIS__SENTINEL__URLS".into(),
                format!("redis://:hidden-pw@127.0.0.1:{port}"),
            ),
        ],
        ..Default::default()
    };
    let err = match Server::try_start(&overrides) {
        Ok(_) => panic!("a node started without its sentinels"),
        Err(report) => report,
    };
    assert!(
        err.contains(&format!(
            "cannot connect to Redis at master \"mymaster\" of sentinels redis://:***@127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!err.contains("hidden-pw"), "{err}");
}
