//! The Redis engine's own behaviour beyond the shared conformance suite: a lost
//! meta starts a new epoch, a dropped PUB/SUB connection resubscribes and resets,
//! Redis going away answers temporary errors (never an acknowledged loss), a publish
//! without history is one plain `PUBLISH`, and `wait_replicas` acknowledges only what a
//! replica has. On a Redis Cluster: dropped sharded PUB/SUB connections resubscribe and
//! reset, the node's own `SUNSUBSCRIBE` is not taken for a moved slot, and pipelined
//! presence and user refreshes spanning slots work. Costs, printed and never asserted,
//! are in [`super::tests_costs`].

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::testing::{cluster_config, config, run, RedisCluster, RedisServer};
use super::*;
use crate::engine::conformance::Recorder;
use wiresocket_testkit::command_calls;

pub(super) const H: HistoryOptions = HistoryOptions {
    size: 10,
    ttl: Duration::from_secs(60),
};

pub(super) fn opts() -> PublishOptions {
    PublishOptions {
        history: H,
        ..Default::default()
    }
}

pub(super) struct Fixture {
    pub(super) engine: RedisEngine,
    pub(super) sink: Rc<Recorder>,
    pub(super) metrics: Arc<CoreMetrics>,
    pub(super) node: Arc<RedisNode>,
}

pub(super) fn fixture(cfg: &crate::config::RedisConfig) -> Fixture {
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

/// A master and a replica that has synced with it.
pub(super) fn master_and_replica() -> (RedisServer, RedisServer) {
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
    (master, replica)
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
        assert_eq!(command_calls(server.port, "publish"), 5);
        assert_eq!(
            command_calls(server.port, "evalsha") + command_calls(server.port, "eval"),
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
        assert!(command_calls(server.port, "evalsha") + command_calls(server.port, "eval") >= 1);
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
    let (master, replica) = master_and_replica();
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
