//! Session records against a private `redis-server`: written, read per user and across the
//! registry's nodes, deleted, expired with their TTL, also on a Redis Cluster (keys of many
//! slots); and the Redis cost per record (memory,
//! CPU per refresh), printed by the ignored `session_record_costs`, never asserted.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::testing::{cluster_config, config, run, RedisCluster, RedisServer};
use super::*;
use crate::engine::cluster::{NodeInfo, RecordPosition, SessionRecord};
use crate::engine::conformance::Recorder;

fn engine(cfg: &crate::config::RedisConfig) -> RedisEngine {
    let node = RedisNode::start(cfg).expect("connect to the test redis-server");
    let sink = Rc::new(Recorder::default());
    let metrics = Arc::new(CoreMetrics::new(0));
    RedisEngine::new(0, node, sink, metrics, 60).unwrap()
}

fn record(node: &str, user: &str, client: &str) -> SessionRecord {
    let mut channels = BTreeMap::new();
    channels.insert(
        "news".to_owned(),
        RecordPosition {
            offset: 7,
            epoch: "abcd1234".into(),
        },
    );
    channels.insert(
        "chat:lobby".to_owned(),
        RecordPosition {
            offset: 0,
            epoch: String::new(),
        },
    );
    SessionRecord {
        client: client.to_owned(),
        user: user.to_owned(),
        node: node.to_owned(),
        node_name: "a".into(),
        connected_at: 1_700_000_000,
        expire_at: 0,
        name: "centrifuge-js".into(),
        version: "5.0.0".into(),
        channels,
    }
}

fn node_info(uid: &str) -> NodeInfo {
    NodeInfo {
        uid: uid.into(),
        name: uid.into(),
        version: "x".into(),
        num_clients: 0,
        num_users: 0,
        num_subs: 0,
        num_channels: 0,
        uptime: 0,
        updated_at: crate::exec::unix_now(),
        shedding: false,
        draining: false,
    }
}

fn clients(mut v: Vec<SessionRecord>) -> Vec<String> {
    v.sort_by(|a, b| a.client.cmp(&b.client));
    v.into_iter().map(|r| r.client).collect()
}

#[test]
fn records_are_read_per_user_and_per_node_and_deleted() {
    let server = RedisServer::start();
    let cfg = config(&server);
    run(async move {
        let e = engine(&cfg);
        for n in ["n1", "n2"] {
            e.announce(&node_info(n)).await.unwrap();
        }
        let written = vec![
            record("n1", "alice", "c1"),
            record("n2", "alice", "c2"),
            record("n1", "bob", "c3"),
            record("n2", "", "c4"),
        ];
        assert_eq!(e.write_sessions(written.clone()).await.unwrap(), 1);
        let alice = e.connections(Some("alice"), 100).await.unwrap().unwrap();
        assert_eq!(clients(alice.clone()), ["c1", "c2"]);
        assert!(
            alice.contains(&written[0]),
            "the record as written: {alice:?}"
        );
        let all = e.connections(None, 100).await.unwrap().unwrap();
        assert_eq!(clients(all), ["c1", "c2", "c3", "c4"]);
        assert_eq!(e.connections(None, 3).await.unwrap().unwrap().len(), 3);

        e.remove_sessions("n1", vec![("alice".into(), "c1".into())])
            .await
            .unwrap();
        let alice = e.connections(Some("alice"), 100).await.unwrap().unwrap();
        assert_eq!(clients(alice), ["c2"]);
        let all = e.connections(None, 100).await.unwrap().unwrap();
        assert_eq!(clients(all), ["c2", "c3", "c4"]);
    });
}

#[test]
fn records_expire_unless_written_again() {
    let server = RedisServer::start();
    let mut cfg = config(&server);
    cfg.session_ttl_s = 2;
    let key = format!("{}:session:{{c1}}", cfg.prefix);
    let srv = Rc::new(server);
    run(async move {
        let e = engine(&cfg);
        e.announce(&node_info("n1")).await.unwrap();
        e.write_sessions(vec![record("n1", "alice", "c1"), record("n1", "bob", "c2")])
            .await
            .unwrap();
        // c1 is written again within its TTL, c2 is not
        for _ in 0..3 {
            crate::exec::sleep(Duration::from_millis(1_000)).await;
            e.write_sessions(vec![record("n1", "alice", "c1")])
                .await
                .unwrap();
        }
        let all = e.connections(None, 100).await.unwrap().unwrap();
        assert_eq!(clients(all), ["c1"]);
        assert!(e
            .connections(Some("bob"), 10)
            .await
            .unwrap()
            .unwrap()
            .is_empty());
        assert_eq!(srv.cli(&["EXISTS", &key]), "1");
        crate::exec::sleep(Duration::from_millis(3_100)).await;
        assert_eq!(srv.cli(&["EXISTS", &key]), "0", "expired");
        assert!(e
            .connections(Some("alice"), 10)
            .await
            .unwrap()
            .unwrap()
            .is_empty());
    });
}

#[test]
fn on_a_cluster_records_span_slots() {
    let cluster = RedisCluster::start(3, 0);
    let cfg = cluster_config(&cluster);
    run(async move {
        let e = engine(&cfg);
        e.announce(&node_info("n1")).await.unwrap();
        let written: Vec<SessionRecord> = (0..40)
            .map(|i| record("n1", &format!("u{}", i % 10), &format!("c{i:02}")))
            .collect();
        e.write_sessions(written.clone()).await.unwrap();
        let u3 = e.connections(Some("u3"), 100).await.unwrap().unwrap();
        assert_eq!(clients(u3), ["c03", "c13", "c23", "c33"]);
        assert_eq!(e.connections(None, 100).await.unwrap().unwrap().len(), 40);
        let closed = (0..20).map(|i| (format!("u{}", i % 10), format!("c{i:02}")));
        e.remove_sessions("n1", closed.collect()).await.unwrap();
        let u3 = e.connections(Some("u3"), 100).await.unwrap().unwrap();
        assert_eq!(clients(u3), ["c23", "c33"]);
        assert_eq!(e.connections(None, 100).await.unwrap().unwrap().len(), 20);
    });
}

/// Redis memory per record and CPU per record refresh (printed):
/// `cargo test --lib session_record_costs -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn session_record_costs() {
    const N: usize = 5_000;
    const REFRESHES: usize = 20;
    let server = RedisServer::start();
    let cfg = config(&server);
    let srv = Rc::new(server);
    let srv2 = srv.clone();
    let srv3 = srv.clone();
    let info = move |section: &str, field: &str| -> f64 {
        let text = srv3.cli(&["INFO", section]);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in INFO {section}"))
    };
    let cpu = move || info("cpu", "used_cpu_user") + info("cpu", "used_cpu_sys");
    let info = move |field: &str| {
        let text = srv.cli(&["INFO", "memory"]);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{field} in INFO memory"))
    };
    run(async move {
        let srv = srv2;
        let e = engine(&cfg);
        e.announce(&node_info("n1")).await.unwrap();
        let records: Vec<SessionRecord> = (0..N)
            .map(|i| {
                record(
                    "n1",
                    &format!("user{i}"),
                    &format!("{:016x}", i as u64 * 7919),
                )
            })
            .collect();
        let json = serde_json::to_vec(&records[0]).unwrap().len();
        let before = info("used_memory");
        let trips = e.write_sessions(records.clone()).await.unwrap();
        let after = info("used_memory");
        println!(
            "{N} records ({json}-byte JSON, 2 channels each) in {trips} round trips: \
             used_memory +{:.0} bytes per record",
            (after - before) / N as f64
        );
        let key = format!("{}:session:{{{}}}", cfg.prefix, records[0].client);
        let user_key = format!("{}:sessions:user:{{user0}}", cfg.prefix);
        let node_key = format!("{}:sessions:node:{{n1}}", cfg.prefix);
        let usage = |k: &str| {
            srv.cli(&["MEMORY", "USAGE", k])
                .parse::<f64>()
                .unwrap_or(0.0)
        };
        println!(
            "MEMORY USAGE: one record {} bytes, one user's index (one client) {} bytes, \
             the node's index {:.0} bytes per client",
            usage(&key),
            usage(&user_key),
            usage(&node_key) / N as f64
        );
        let cpu0 = cpu();
        for _ in 0..REFRESHES {
            e.write_sessions(records.clone()).await.unwrap();
        }
        let spent = cpu() - cpu0;
        println!(
            "{REFRESHES} refreshes of {N} records: Redis CPU {:.2} s, {:.2} µs per record refresh",
            spent,
            spent * 1e6 / (N * REFRESHES) as f64
        );
    });
}
