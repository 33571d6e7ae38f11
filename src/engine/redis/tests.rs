//! The Redis engine's own behaviour beyond the shared conformance suite: a lost
//! meta starts a new epoch, a dropped PUB/SUB connection resubscribes and resets,
//! Redis going away answers temporary errors (never an acknowledged loss), and the
//! cost of the hop to the I/O thread (printed, never asserted). On a Redis Cluster:
//! dropped sharded PUB/SUB connections resubscribe and reset, the node's own
//! `SUNSUBSCRIBE` is not taken for a moved slot, pipelined presence and
//! user refreshes spanning slots work, and the publish round trip (printed) against
//! a standalone Redis.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::testing::{cluster_config, config, run, RedisCluster, RedisServer};
use super::*;
use crate::engine::conformance::Recorder;

const H: HistoryOptions = HistoryOptions {
    size: 10,
    ttl: Duration::from_secs(60),
};

fn opts() -> PublishOptions {
    PublishOptions {
        history: H,
        ..Default::default()
    }
}

struct Fixture {
    engine: RedisEngine,
    sink: Rc<Recorder>,
    metrics: Arc<CoreMetrics>,
    node: Arc<RedisNode>,
}

fn fixture(cfg: &crate::config::RedisConfig) -> Fixture {
    let node = RedisNode::start(cfg).expect("connect to the test redis-server");
    let sink = Rc::new(Recorder::default());
    let metrics = Arc::new(CoreMetrics::new(0));
    let engine = RedisEngine::new(0, node.clone(), sink.clone(), metrics.clone(), 60).unwrap();
    Fixture {
        engine,
        sink,
        metrics,
        node,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        crate::exec::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_lost_meta_starts_a_new_epoch_and_resets_live_subscribers() {
    let server = RedisServer::start();
    let cfg = config(&server);
    let meta = format!("{}:meta:{{c}}", cfg.prefix);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        e.subscribe_node("c").await.unwrap();
        let old = e.position("c", H).await.unwrap();
        for _ in 0..3 {
            e.publish("c", Bytes::from_static(b"1"), opts())
                .await
                .unwrap();
        }
        assert_eq!(f.sink.wait_for(3).await, 3);
        assert_eq!(server.cli(&["DEL", &meta]), "1"); // as an eviction would
        let p = e
            .publish("c", Bytes::from_static(b"2"), opts())
            .await
            .unwrap();
        assert_ne!(p.epoch, old.epoch, "a new epoch");
        assert_eq!(p.offset, 1, "offsets restart");
        let h = e.history(
            "c",
            HistoryQuery {
                limit: 10,
                ..Default::default()
            },
            H,
        );
        assert_eq!(
            h.await.unwrap().publications.len(),
            1,
            "the old stream is gone"
        );
        let q = HistoryQuery {
            limit: 10,
            since: Some(StreamPosition {
                offset: 3,
                epoch: old.epoch,
            }),
            reverse: false,
        };
        assert_eq!(
            e.history("c", q, H).await.unwrap_err(),
            EngineError::Unrecoverable
        );
        // the live stream jumped to a new epoch: subscribers are told to resubscribe
        wait_until("the reset", || {
            f.sink.resets.borrow().contains(&"c".to_owned())
        })
        .await;
    });
}

/// Calls of one command since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_publish_without_history_or_idempotency_key_is_one_plain_publish() {
    let server = RedisServer::start();
    let cfg = config(&server);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        e.subscribe_node("n").await.unwrap();
        assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");
        let plain = PublishOptions::default(); // no history
        for i in 0..5 {
            let data = Bytes::from(format!("{{\"i\":{i}}}"));
            let p = e.publish("n", data, plain.clone()).await.unwrap();
            assert_eq!((p.offset, &p.epoch[..]), (0, ""));
        }
        assert_eq!(command_calls(&server, "publish"), 5);
        assert_eq!(
            command_calls(&server, "evalsha") + command_calls(&server, "eval"),
            0
        );
        // a repeat must be recognised, so a publish with a key still runs the script
        let keyed = PublishOptions {
            idempotency_key: Some("k".into()),
            ..Default::default()
        };
        e.publish("n", Bytes::from_static(b"{}"), keyed)
            .await
            .unwrap();
        // (two calls on a fresh server: EVALSHA answered NOSCRIPT, then the script itself)
        assert!(command_calls(&server, "evalsha") + command_calls(&server, "eval") >= 1);
        assert_eq!(f.sink.wait_for(6).await, 6);
        let events = f.sink.events.borrow();
        for (i, (channel, event)) in events.iter().take(5).enumerate() {
            assert_eq!(channel, "n");
            match event {
                ChannelEvent::Publication(p) => {
                    assert_eq!(p.offset, 0);
                    assert_eq!(p.data, Bytes::from(format!("{{\"i\":{i}}}")));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(f.sink.resets.borrow().is_empty(), "no gap is seen");
    });
}

#[test]
fn with_wait_replicas_a_publish_is_acknowledged_only_once_replicated() {
    let master = RedisServer::start();
    let replica = RedisServer::start();
    let port = master.port.to_string();
    assert_eq!(replica.cli(&["REPLICAOF", "127.0.0.1", &port]), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cfg = config(&master);
    cfg.wait_replicas = 1;
    cfg.wait_timeout_ms = 300;
    let stream = format!("{}:stream:{{w}}", cfg.prefix);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        let p = e
            .publish("w", Bytes::from_static(b"{}"), opts())
            .await
            .unwrap();
        assert_eq!(p.offset, 1);
        // acknowledged means the replica has it already
        assert_eq!(replica.cli(&["XLEN", &stream]), "1");
        assert_eq!(f.metrics.engine_redis_wait_shortfalls.load(Relaxed), 0);
        drop(replica); // killed: nobody confirms any more
        let started = Instant::now();
        let err = e
            .publish("w", Bytes::from_static(b"{}"), opts())
            .await
            .unwrap_err();
        assert!(
            matches!(err, EngineError::Internal(ref m) if m.contains("0 of 1 replicas")),
            "{err:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
        assert_eq!(f.metrics.engine_redis_wait_shortfalls.load(Relaxed), 1);
        // stored on the master all the same (a retry should carry an idempotency key)
        assert_eq!(master.cli(&["XLEN", &stream]), "2");
        // channels without history do not wait
        e.publish("w2", Bytes::from_static(b"{}"), PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(f.metrics.engine_redis_wait_shortfalls.load(Relaxed), 1);
    });
}

#[test]
fn a_dropped_pubsub_connection_resubscribes_and_resets() {
    let server = RedisServer::start();
    let cfg = config(&server);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        e.subscribe_node("a").await.unwrap();
        e.subscribe_node("b").await.unwrap();
        e.publish("a", Bytes::from_static(b"1"), opts())
            .await
            .unwrap();
        assert_eq!(f.sink.wait_for(1).await, 1);
        assert_eq!(server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]), "1");
        wait_until("resets of both channels", || {
            let r = f.sink.resets.borrow();
            r.contains(&"a".to_owned()) && r.contains(&"b".to_owned())
        })
        .await;
        // a, b and the node's control channel (`control.rs`)
        assert_eq!(f.metrics.engine_redis_resubscribes.load(Relaxed), 3);
        e.publish("b", Bytes::from_static(b"2"), opts())
            .await
            .unwrap();
        assert_eq!(f.sink.wait_for(2).await, 2, "subscribed again");
    });
}

#[test]
fn redis_away_is_a_temporary_error_and_its_return_resets() {
    let mut server = Some(RedisServer::start());
    let port = server.as_ref().unwrap().port;
    let cfg = config(server.as_ref().unwrap());
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        e.subscribe_node("x").await.unwrap();
        let first = e
            .publish("x", Bytes::from_static(b"1"), opts())
            .await
            .unwrap();
        drop(server.take()); // killed
        let err = e
            .publish("x", Bytes::from_static(b"2"), opts())
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Internal(_)), "{err:?}");
        assert!(err.code().temporary, "the client may retry");
        assert!(f.metrics.engine_redis_errors.load(Relaxed) >= 1);
        let _back = RedisServer::on_port(port); // empty: the data is gone
        wait_until("the reset after Redis returned", || {
            f.sink.resets.borrow().contains(&"x".to_owned())
        })
        .await;
        let mut again = Err(EngineError::Overloaded);
        for _ in 0..100 {
            again = e.publish("x", Bytes::from_static(b"3"), opts()).await;
            if again.is_ok() {
                break;
            }
            crate::exec::sleep(Duration::from_millis(50)).await;
        }
        let again = again.expect("publishes work again");
        assert_ne!(
            again.epoch, first.epoch,
            "a new stream, never a silent continuation"
        );
    });
}

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
    let master = RedisServer::start();
    let replica = RedisServer::start();
    assert_eq!(
        replica.cli(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]),
        "OK"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }
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

#[test]
fn on_a_cluster_dropped_sharded_pubsub_connections_resubscribe_and_reset() {
    let cluster = RedisCluster::start(3, 0);
    let cfg = cluster_config(&cluster);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        let channels: Vec<String> = (0..12).map(|i| format!("ch{i}")).collect();
        for c in &channels {
            e.subscribe_node(c).await.unwrap();
            e.publish(c, Bytes::from_static(b"1"), opts())
                .await
                .unwrap();
        }
        assert_eq!(f.sink.wait_for(12).await, 12);
        for port in &cluster.ports {
            let killed =
                wiresocket_testkit::cluster::cli(*port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
            assert!(killed.parse::<u32>().is_ok(), "CLIENT KILL: {killed}");
        }
        wait_until("resets of every channel", || {
            let r = f.sink.resets.borrow();
            channels.iter().all(|c| r.contains(c))
        })
        .await;
        assert!(f.metrics.engine_redis_resubscribes.load(Relaxed) >= 12);
        for c in &channels {
            e.publish(c, Bytes::from_static(b"2"), opts())
                .await
                .unwrap();
        }
        let got = f.sink.wait_for(24).await;
        assert_eq!(got, 24, "subscribed again");
    });
}

#[test]
fn on_a_cluster_an_own_unsubscribe_is_not_taken_for_a_moved_slot() {
    let cluster = RedisCluster::start(3, 0);
    let cfg = cluster_config(&cluster);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        for round in 0..20 {
            e.subscribe_node("c").await.unwrap();
            // sent back to back: the SUNSUBSCRIBE confirmation arrives after "c" is
            // subscribed again, so only counting our own SUNSUBSCRIBEs tells it apart
            let (off, on) =
                futures_lite::future::zip(e.unsubscribe_node("c"), e.subscribe_node("c")).await;
            off.unwrap();
            on.unwrap();
            e.publish("c", Bytes::from_static(b"1"), opts())
                .await
                .unwrap();
            assert_eq!(f.sink.wait_for(round + 1).await, round + 1);
        }
        crate::exec::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            *f.sink.resets.borrow(),
            Vec::<String>::new(),
            "no reset: the SUNSUBSCRIBE confirmations were our own"
        );
    });
}

#[test]
fn on_a_cluster_refreshes_span_slots() {
    let cluster = RedisCluster::start(3, 0);
    let cfg = cluster_config(&cluster);
    run(async move {
        let f = fixture(&cfg);
        let e = &f.engine;
        let entries: Vec<(Arc<str>, ClientInfo)> = (0..40)
            .map(|i| {
                let info = ClientInfo {
                    user: format!("u{i}"),
                    client: format!("c{i}"),
                    conn_info: None,
                    chan_info: None,
                };
                (Arc::from(format!("room{i}").as_str()), info)
            })
            .collect();
        e.presence_refresh(entries.clone()).await.unwrap();
        for (channel, info) in &entries {
            let present = e.presence(channel).await.unwrap();
            assert_eq!(present.len(), 1, "{channel}");
            assert_eq!(present[0].client, info.client);
        }
        let users: Vec<(String, String)> = (0..40)
            .map(|i| (format!("u{i}"), format!("c{i}")))
            .collect();
        for (user, client) in &users {
            assert!(e.add_user_connection(user, client, 1).await.unwrap());
        }
        e.refresh_user_connections(users.clone()).await.unwrap();
        assert!(
            !e.add_user_connection("u7", "other", 1).await.unwrap(),
            "u7 still holds its one connection"
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
