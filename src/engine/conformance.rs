//! The engine conformance suite: behaviour every engine must show, written
//! against the [`Engine`] trait and a recording sink. [`run_all`] runs it on any
//! engine: the memory engine here, the Redis engine below as well, against a private
//! standalone `redis-server`, a Redis Cluster and a Sentinel group (master, replica,
//! three sentinels; plain and with TLS to the Redis nodes) from the `wiresocket-testkit`
//! dev crate.
//!
//! Delivery may be asynchronous (Redis PUB/SUB): the suite waits, with a
//! deadline, for the events it expects ([`Recorder::wait_for`]) and checks their
//! order, so a duplicate delivery is still caught. Events are only expected for
//! channels the engine was told to `subscribe_node`.

use super::*;
use bytes::Bytes;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Records what the engine delivered.
#[derive(Default)]
pub(crate) struct Recorder {
    pub events: RefCell<Vec<(String, ChannelEvent)>>,
    pub resets: RefCell<Vec<String>>,
}

impl Recorder {
    /// Waits (at most 5 s) until at least `n` events were delivered; returns how many.
    pub async fn wait_for(&self, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.events.borrow().len() < n && Instant::now() < deadline {
            crate::exec::sleep(Duration::from_millis(2)).await;
        }
        self.events.borrow().len()
    }
}

impl PublicationSink for Recorder {
    fn deliver(&self, channel: &str, event: &ChannelEvent, _: Instant) {
        self.events
            .borrow_mut()
            .push((channel.into(), event.clone()));
    }
    fn reset(&self, channel: &str) {
        self.resets.borrow_mut().push(channel.into());
    }
}

const H: HistoryOptions = HistoryOptions {
    size: 3,
    ttl: Duration::from_secs(60),
};

fn opts() -> PublishOptions {
    PublishOptions {
        history: H,
        ..Default::default()
    }
}

fn data(i: u64) -> Bytes {
    Bytes::from(format!("{{\"i\":{i}}}"))
}

fn at(offset: u64, epoch: &Arc<str>) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: epoch.clone(),
    }
}

async fn since(e: &dyn Engine, ch: &str, s: StreamPosition) -> Result<Vec<u64>, EngineError> {
    let q = HistoryQuery {
        limit: usize::MAX,
        since: Some(s),
        reverse: false,
    };
    Ok(e.history(ch, q, H)
        .await?
        .publications
        .iter()
        .map(|p| p.offset)
        .collect())
}

/// Offsets, epochs, history paging and every recovery edge.
pub async fn streams_and_recovery(e: &dyn Engine, sink: &Recorder) {
    e.subscribe_node("c").await.unwrap();
    let p0 = e.position("c", H).await.unwrap();
    assert_eq!(p0.offset, 0);
    let epoch = p0.epoch.clone();
    for i in 1..=5 {
        let p = e.publish("c", data(i), opts()).await.unwrap();
        assert_eq!(p, at(i, &epoch), "offsets +1 per publication, same epoch");
    }
    assert_eq!(sink.wait_for(5).await, 5, "every publication delivered");
    let delivered: Vec<u64> = sink
        .events
        .borrow()
        .iter()
        .map(|(_, e)| match e {
            ChannelEvent::Publication(p) => p.offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(delivered, vec![1, 2, 3, 4, 5], "once each, in order");
    // paging: 3 kept (3, 4, 5)
    let all = e
        .history(
            "c",
            HistoryQuery {
                limit: 10,
                since: None,
                reverse: false,
            },
            H,
        )
        .await
        .unwrap();
    assert_eq!(
        all.publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let rev = e
        .history(
            "c",
            HistoryQuery {
                limit: 2,
                since: None,
                reverse: true,
            },
            H,
        )
        .await
        .unwrap();
    assert_eq!(
        rev.publications
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![5, 4]
    );
    // recovery
    assert_eq!(since(e, "c", at(2, &epoch)).await.unwrap(), vec![3, 4, 5]);
    assert_eq!(
        since(e, "c", at(5, &epoch)).await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        since(e, "c", at(1, &epoch)).await,
        Err(EngineError::Unrecoverable),
        "gap"
    );
    assert_eq!(
        since(e, "c", at(99, &epoch)).await,
        Err(EngineError::Unrecoverable),
        "ahead"
    );
    assert_eq!(
        since(e, "c", at(u64::MAX, &epoch)).await,
        Err(EngineError::Unrecoverable),
        "no wrap"
    );
    assert_eq!(
        since(e, "c", at(4, &"other".into())).await,
        Err(EngineError::Unrecoverable),
        "epoch"
    );
    // history removal keeps epoch and offset; recovery into the removed range fails
    e.remove_history("c").await.unwrap();
    assert_eq!(
        since(e, "c", at(4, &epoch)).await,
        Err(EngineError::Unrecoverable)
    );
    assert_eq!(
        since(e, "c", at(5, &epoch)).await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        e.publish("c", data(6), opts()).await.unwrap(),
        at(6, &epoch)
    );
}

/// Reads never create streams; history off is "not available"; no-history publishes have no offset.
pub async fn reads_create_nothing(e: &dyn Engine) {
    let h = e
        .history(
            "never",
            HistoryQuery {
                limit: 10,
                since: None,
                reverse: false,
            },
            H,
        )
        .await
        .unwrap();
    assert!(h.publications.is_empty() && h.position.offset == 0);
    assert_eq!(
        e.history("x", HistoryQuery::default(), HistoryOptions::NONE)
            .await
            .unwrap_err(),
        EngineError::NotAvailable
    );
    let p = e
        .publish("nohist", data(1), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(p.offset, 0);
}

/// Idempotency keys, tags and skip_history.
pub async fn publish_options(e: &dyn Engine, sink: &Recorder) {
    e.subscribe_node("idem").await.unwrap();
    let before = sink.events.borrow().len();
    let keyed = PublishOptions {
        idempotency_key: Some("k1".into()),
        tags: Some(Bytes::from_static(br#"{"t":"v"}"#)),
        ..opts()
    };
    let a = e.publish("idem", data(1), keyed.clone()).await.unwrap();
    let b = e.publish("idem", data(1), keyed).await.unwrap();
    assert_eq!(a, b, "the repeat answers the first result");
    let skipped = PublishOptions {
        skip_history: true,
        ..opts()
    };
    assert_eq!(e.publish("idem", data(2), skipped).await.unwrap().offset, 0);
    // the repeat is not delivered again: the next event is the skip_history publication
    assert_eq!(sink.wait_for(before + 2).await, before + 2);
    match &sink.events.borrow()[before].1 {
        ChannelEvent::Publication(p) => {
            assert_eq!(p.tags.as_deref(), Some(&br#"{"t":"v"}"#[..]));
            assert_eq!((p.offset, &p.data), (a.offset, &data(1)));
        }
        other => panic!("{other:?}"),
    }
    match &sink.events.borrow()[before + 1].1 {
        ChannelEvent::Publication(p) => assert_eq!((p.offset, &p.data), (0, &data(2))),
        other => panic!("{other:?}"),
    }
    let h = e
        .history(
            "idem",
            HistoryQuery {
                limit: 10,
                since: None,
                reverse: false,
            },
            H,
        )
        .await
        .unwrap();
    assert_eq!(h.publications.len(), 1, "skip_history is not stored");
}

/// Presence: entries, multi-device users counted once, join/leave events.
pub async fn presence_and_join_leave(e: &dyn Engine, sink: &Recorder) {
    let info = |user: &str, client: &str| ClientInfo {
        user: user.into(),
        client: client.into(),
        conn_info: None,
        chan_info: None,
    };
    e.subscribe_node("p").await.unwrap();
    e.presence_add("p", info("u1", "a")).await.unwrap();
    e.presence_add("p", info("u1", "b")).await.unwrap();
    e.presence_add("p", info("u2", "c")).await.unwrap();
    e.presence_add("p", info("u2", "c")).await.unwrap(); // refresh, not a new entry
    assert_eq!(
        e.presence_stats("p").await.unwrap(),
        PresenceStats {
            num_clients: 3,
            num_users: 2
        }
    );
    e.presence_remove("p", "a").await.unwrap();
    let mut clients: Vec<String> = e
        .presence("p")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client)
        .collect();
    clients.sort();
    assert_eq!(clients, vec!["b", "c"]);
    assert_eq!(e.presence_stats("p").await.unwrap().num_users, 2);
    assert_eq!(e.presence_stats("p").await.unwrap().num_clients, 2);
    assert_eq!(
        e.presence_stats("empty").await.unwrap(),
        PresenceStats {
            num_clients: 0,
            num_users: 0
        }
    );
    let before = sink.events.borrow().len();
    let mut with_info = info("u3", "d");
    with_info.conn_info = Some(Bytes::from_static(br#"{"name":"x:y"}"#));
    e.publish_join_leave("p", ChannelEvent::Join(with_info.clone()))
        .await
        .unwrap();
    e.publish_join_leave("p", ChannelEvent::Leave(info("u3", "d")))
        .await
        .unwrap();
    assert_eq!(sink.wait_for(before + 2).await, before + 2);
    assert!(matches!(sink.events.borrow()[before].1, ChannelEvent::Join(ref i) if *i == with_info));
    assert!(
        matches!(sink.events.borrow()[before + 1].1, ChannelEvent::Leave(ref i) if i.client == "d")
    );
}

/// Runs the whole suite on a fresh engine from `make`.
pub async fn run_all<E: Engine>(make: impl Fn(Rc<Recorder>) -> E) {
    let sink = Rc::new(Recorder::default());
    let e = make(sink.clone());
    streams_and_recovery(&e, &sink).await;
    reads_create_nothing(&e).await;
    publish_options(&e, &sink).await;
    presence_and_join_leave(&e, &sink).await;
}

#[test]
fn memory_engine_conforms() {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .make()
        .expect("executor (needs RLIMIT_MEMLOCK >= 512 KiB)")
        .run(run_all(|sink| {
            let metrics = Arc::new(crate::metrics::CoreMetrics::new(0));
            let cfg = crate::config::EngineConfig::default();
            memory::MemoryEngine::new(
                crate::mesh::Mesh::single(metrics.clone()),
                sink,
                memory::Limits::new(&cfg),
                metrics,
            )
        }));
}

#[test]
fn memory_engine_caps_channels_and_never_creates_on_read() {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .make()
        .expect("executor")
        .run(async {
            let metrics = Arc::new(crate::metrics::CoreMetrics::new(0));
            let cfg = crate::config::EngineConfig {
                max_channels: 2,
                ..Default::default()
            };
            let e = memory::MemoryEngine::new(
                crate::mesh::Mesh::single(metrics.clone()),
                Rc::new(Recorder::default()),
                memory::Limits::new(&cfg),
                metrics.clone(),
            );
            for i in 0..100 {
                let q = HistoryQuery {
                    limit: 1,
                    since: None,
                    reverse: false,
                };
                e.history(&format!("read{i}"), q, H).await.unwrap();
            }
            e.publish("a", data(1), opts()).await.unwrap();
            e.position("b", H).await.unwrap();
            assert_eq!(
                e.publish("c", data(1), opts()).await.unwrap_err(),
                EngineError::LimitExceeded
            );
            assert_eq!(
                e.position("d", H).await.unwrap_err(),
                EngineError::LimitExceeded
            );
            assert_eq!(
                metrics
                    .engine_channel_refusals
                    .load(std::sync::atomic::Ordering::Relaxed),
                2
            );
            e.publish("a", data(2), opts()).await.unwrap(); // existing streams still work
        });
}

/// Runs the suite on Redis engines connected with `cfg` (`what`: the Redis it names).
fn redis_engine_conforms_with(cfg: crate::config::RedisConfig, what: &'static str) {
    redis::testing::run(async move {
        let node =
            redis::RedisNode::start(&cfg).unwrap_or_else(|e| panic!("connect to {what}: {e}"));
        run_all(|sink| {
            let metrics = Arc::new(crate::metrics::CoreMetrics::new(0));
            redis::RedisEngine::new(0, node.clone(), sink, metrics, 60).expect("register")
        })
        .await;
    });
}

#[test]
fn redis_engine_conforms() {
    let server = redis::testing::RedisServer::start();
    redis_engine_conforms_with(redis::testing::config(&server), "the test redis-server");
}

#[test]
fn redis_engine_conforms_on_a_redis_cluster() {
    let cluster = redis::testing::RedisCluster::start(3, 0);
    redis_engine_conforms_with(
        redis::testing::cluster_config(&cluster),
        "the test Redis Cluster",
    );
}

/// `engine.redis.sentinel`: the master (with a replica) found through three sentinels.
#[test]
fn redis_engine_conforms_through_sentinel() {
    let group = redis::testing::SentinelGroup::start();
    redis_engine_conforms_with(
        redis::testing::sentinel_config(&group, wiresocket_testkit::MASTER_NAME),
        "the test Sentinel group",
    );
}

/// The same with TLS to master and replica (`sentinel.tls`, `tls_ca`: the test CA).
#[test]
fn redis_engine_conforms_through_sentinel_over_tls() {
    let group = redis::testing::SentinelGroup::start_tls();
    redis_engine_conforms_with(
        redis::testing::sentinel_config(&group, wiresocket_testkit::MASTER_NAME),
        "the test Sentinel group over TLS",
    );
}
