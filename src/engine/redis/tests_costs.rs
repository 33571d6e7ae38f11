//! What the Redis engine costs, printed and never asserted (the machine is shared; run
//! them by hand with `--nocapture`, the ignored ones with `--ignored`): Redis CPU and memory
//! per operation, the latency `WAIT` adds, the hop to the I/O thread, and the publish
//! round trip on a Redis Cluster against a standalone Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::testing::{cluster_config, config, run, RedisCluster, RedisServer};
use super::tests::{fixture, master_and_replica, opts};
use super::*;

/// Redis CPU (µs, every command's `usec` in `INFO commandstats`) since `CONFIG RESETSTAT`.
fn redis_cpu_us(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| l.split("usec=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

fn used_memory(server: &RedisServer) -> i64 {
    let info = server.cli(&["INFO", "memory"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("used_memory:"))
        .unwrap();
    line["used_memory:".len()..].trim().parse().unwrap()
}

/// What the engine's operations cost Redis, printed (never asserted): CPU per plain
/// publish, per publish into history, per presence add and per refreshed entry, per
/// recovery read of 10 publications; memory per history entry and per presence entry.
/// `cargo test --lib redis_cost_per_operation -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand"]
fn redis_cost_per_operation() {
    const N: u64 = 2_000;
    let server = RedisServer::start();
    let cfg = config(&server);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        let data = || Bytes::from(format!("{{\"text\":\"{}\"}}", "x".repeat(180)));
        let phase = |what: &str, ops: u64, before_mem: i64| {
            let cpu = redis_cpu_us(&server) as f64 / ops as f64;
            let mem = (used_memory(&server) - before_mem) as f64 / ops as f64;
            println!("{what}: {cpu:.2} µs Redis CPU per operation, {mem:.0} B Redis memory per operation");
            assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");
        };
        e.subscribe_node("plain").await.unwrap();
        assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");
        let m = used_memory(&server);
        for _ in 0..N {
            e.publish("plain", data(), PublishOptions::default())
                .await
                .unwrap();
        }
        phase("publish without history (PUBLISH, 1 node subscribed)", N, m);
        let hist = PublishOptions {
            history: HistoryOptions {
                size: 100,
                ttl: Duration::from_secs(300),
            },
            ..Default::default()
        };
        let m = used_memory(&server);
        for i in 0..N {
            let channel = format!("h{}", i % 20);
            e.publish(&channel, data(), hist.clone()).await.unwrap();
        }
        phase(
            "publish into history (script, 20 channels x 100 kept)",
            N,
            m,
        );
        let m = used_memory(&server);
        for i in 0..N {
            let q = HistoryQuery {
                limit: 100,
                since: None,
                reverse: false,
            };
            let q = HistoryQuery {
                since: Some(StreamPosition {
                    offset: 90,
                    epoch: e
                        .position(&format!("h{}", i % 20), hist.history)
                        .await
                        .unwrap()
                        .epoch,
                }),
                ..q
            };
            let got = e
                .history(&format!("h{}", i % 20), q, hist.history)
                .await
                .unwrap();
            assert_eq!(got.publications.len(), 10);
        }
        phase(
            "recovery read of 10 publications (position + history scripts)",
            N,
            m,
        );
        let info = |i: u64| ClientInfo {
            user: format!("user-{i}"),
            client: format!("client-{i:08}"),
            conn_info: None,
            chan_info: None,
        };
        let m = used_memory(&server);
        for i in 0..N {
            e.presence_add(&format!("p{}", i % 20), info(i))
                .await
                .unwrap();
        }
        phase("presence add (script, 20 channels)", N, m);
        let entries = (0..N)
            .map(|i| (Arc::<str>::from(format!("p{}", i % 20)), info(i)))
            .collect();
        let m = used_memory(&server);
        e.presence_refresh(entries).await.unwrap();
        phase("presence refresh per entry (pipelined)", N, m);
    });
}

/// The latency a `WAIT` for one replica adds to a publish into history, printed:
/// `cargo test --lib wait_replicas_publish_latency -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand"]
fn wait_replicas_publish_latency() {
    const N: u32 = 2_000;
    let (master, _replica) = master_and_replica();
    for wait in [0, 1] {
        let mut cfg = config(&master);
        cfg.wait_replicas = wait;
        run(async move {
            let f = fixture(&cfg);
            for _ in 0..100 {
                f.engine
                    .publish("w", Bytes::from_static(b"{}"), opts())
                    .await
                    .unwrap();
            }
            let t = Instant::now();
            for _ in 0..N {
                f.engine
                    .publish("w", Bytes::from_static(b"{}"), opts())
                    .await
                    .unwrap();
            }
            println!(
                "publish into history, wait_replicas = {wait}: {:?} per publish (sequential)",
                t.elapsed() / N
            );
        });
    }
}

#[test]
fn redis_round_trip_cost() {
    const N: u32 = 2_000;
    let server = RedisServer::start();
    let cfg = config(&server);
    run(async move {
        let f = fixture(&cfg);
        let ping = || async {
            f.node
                .run(
                    |mut c| async move { ::redis::cmd("PING").query_async::<String>(&mut c).await },
                )
                .await
        };
        for _ in 0..100 {
            assert_eq!(ping().await.unwrap(), "PONG"); // warm-up
        }
        let t = Instant::now();
        for _ in 0..N {
            assert_eq!(ping().await.unwrap(), "PONG");
        }
        let hop = t.elapsed() / N;
        let direct = f
            .node
            .run(|mut c| async move {
                let t = Instant::now();
                for _ in 0..N {
                    ::redis::cmd("PING").query_async::<String>(&mut c).await?;
                }
                Ok(t.elapsed() / N)
            })
            .await
            .unwrap();
        println!(
            "redis PING round trip: {hop:?} from a glommio core through the I/O thread, \
             {direct:?} on the I/O thread itself (hop cost ~{:?})",
            hop.saturating_sub(direct)
        );
    });
}

/// Sequential publish round trips (history on) from a glommio core: printed, never asserted.
async fn publish_round_trip(cfg: &crate::config::RedisConfig) -> Duration {
    const N: u32 = 1_000;
    let f = fixture(cfg);
    for _ in 0..100 {
        f.engine
            .publish("rt", Bytes::from_static(b"x"), opts())
            .await
            .unwrap(); // warm-up
    }
    let t = Instant::now();
    for _ in 0..N {
        f.engine
            .publish("rt", Bytes::from_static(b"x"), opts())
            .await
            .unwrap();
    }
    t.elapsed() / N
}

#[test]
fn publish_round_trip_cluster_vs_standalone() {
    let server = RedisServer::start();
    let cluster = RedisCluster::start(3, 0);
    let (single, many) = (config(&server), cluster_config(&cluster));
    run(async move {
        let standalone = publish_round_trip(&single).await;
        let on_cluster = publish_round_trip(&many).await;
        println!("redis publish round trip: {standalone:?} standalone, {on_cluster:?} on a 3-master cluster");
    });
}
