//! Two wiresocket nodes on a Redis Cluster (`engine.redis.cluster`, three masters):
//! publications cross nodes for channels on every master's slots (sharded PUB/SUB),
//! clients recover across nodes, presence, node commands (control channel), `info`
//! (node registry) and surveys work; and while one channel's slot moves to another
//! master (or its master fails over to its replica) during steady publishing, every
//! acknowledged publication reaches the subscriber, live or by recovery after the
//! 2500 reset, and the nodes keep working. With `engine.redis.wait_replicas = 1` a
//! master that crashes (SIGKILL) loses no acknowledged publication either, and with
//! `connect_retry` a node starts before its cluster and serves once it is up. A
//! cluster of TLS-only nodes is reached through `rediss://` seeds (`engine.redis.tls_ca`).

mod common;
mod redis_support;

use common::{Client, Overrides, Server};
use redis_support::NodeOverrides;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiresocket_testkit::cluster::seeds;
use wiresocket_testkit::{command_calls, RedisCluster};

fn publish(node: &Server, channel: &str, data: Value) -> (u16, Value) {
    node.api("publish", json!({"channel": channel, "data": data}))
}

/// One channel name per master, each hashing to a slot that master serves.
fn channel_per_master(cluster: &RedisCluster) -> Vec<String> {
    let masters = cluster.masters();
    let mut found: Vec<Option<String>> = vec![None; masters.len()];
    for i in 0.. {
        let name = format!("doc-{i}");
        let owner = cluster.owner(cluster.channel_slot(&name));
        let at = masters.iter().position(|&m| m == owner).unwrap();
        found[at].get_or_insert(name);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}

fn node_names(server: &Server) -> Vec<String> {
    let (status, v) = server.api("info", json!({}));
    assert_eq!(status, 200, "{v}");
    let mut names: Vec<String> = v["result"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn channels_on_every_master_cross_nodes_recover_and_share_presence() {
    let cluster = RedisCluster::start(3, 0);
    let mut o = cluster.node_overrides(10);
    o.channels =
        "\n[[channels.namespaces]]\nname = \"room\"\npresence = true\njoin_leave = true\n".into();
    o.server = "node_name = \"a\"\n".into();
    let a = Server::start_with(&o);
    o.server = "node_name = \"b\"\n".into();
    let b = Server::start_with(&o);

    let channels = channel_per_master(&cluster);
    let (mut on_a, _) = Client::connect(&a, "alice");
    let mut epochs = Vec::new();
    for ch in &channels {
        let r = on_a.subscribe(ch);
        epochs.push(r["subscribe"]["epoch"].as_str().unwrap().to_owned());
    }
    for ch in &channels {
        let (status, res) = publish(&b, ch, json!({"on": ch}));
        assert_eq!(
            (status, &res["result"]["offset"]),
            (200, &json!(1)),
            "{res}"
        );
        let (got, p) = on_a.next_pub();
        assert_eq!(
            (&got, &p["data"], &p["offset"]),
            (ch, &json!({"on": ch}), &json!(1))
        );
    }

    // the client leaves; two more publications per channel, one through each node;
    // it comes back on the other node and recovers them
    drop(on_a);
    for ch in &channels {
        for (node, n) in [(&a, 2), (&b, 3)] {
            let (status, res) = publish(node, ch, json!({"n": n}));
            assert_eq!(
                (status, &res["result"]["offset"]),
                (200, &json!(n)),
                "{res}"
            );
        }
    }
    let (mut on_b, _) = Client::connect(&b, "alice");
    for (ch, epoch) in channels.iter().zip(&epochs) {
        let r = on_b.call(
            "subscribe",
            json!({"channel": ch, "recover": true, "epoch": epoch, "offset": 1}),
        );
        assert_eq!(r["subscribe"]["recovered"], true, "{r}");
        let offsets: Vec<u64> = r["subscribe"]["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, vec![2, 3], "{ch}: {r}");
    }

    // presence and join/leave: one for the cluster
    let (mut alice, _) = Client::connect(&a, "alice");
    alice.subscribe("room:1");
    let (mut bob, _) = Client::connect(&b, "bob");
    bob.subscribe("room:1");
    loop {
        let v = alice.recv().expect("bob's join");
        if v["push"]["join"]["info"]["user"] == "bob" {
            break;
        }
    }
    let r = alice.call("presence_stats", json!({"channel": "room:1"}));
    assert_eq!(
        r["presence_stats"],
        json!({"num_clients": 2, "num_users": 2}),
        "{r}"
    );

    // node registry, surveys and node commands over the control channel
    common::wait_for(|| node_names(&a) == ["a", "b"] && node_names(&b) == ["a", "b"]);
    let (status, v) = b.api("channels", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["channels"]["room:1"],
        json!({"num_clients": 2}),
        "{v}"
    );
    let (status, _) = a.api("unsubscribe", json!({"user": "bob", "channel": "room:1"}));
    assert_eq!(status, 200);
    loop {
        let v = bob.recv().expect("the unsubscribe push");
        if v["push"]["unsubscribe"].is_object() {
            assert_eq!(v["push"]["channel"], "room:1", "{v}");
            break;
        }
    }
}

/// What the subscriber saw: every offset, live or recovered.
struct Seen {
    offsets: BTreeSet<u64>,
    resets: usize,
}

/// Reads `channel`'s publications until every offset in `acked` has been seen; on a
/// 2500 reset resubscribes with recovery from the last offset seen.
fn follow(
    c: &mut Client,
    channel: &str,
    mut epoch: String,
    acked: &Mutex<BTreeSet<u64>>,
    done: &AtomicBool,
) -> Seen {
    let mut seen = Seen {
        offsets: BTreeSet::new(),
        resets: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    c.set_timeout(Duration::from_millis(500));
    loop {
        let complete = done.load(Ordering::SeqCst)
            && acked
                .lock()
                .unwrap()
                .iter()
                .all(|o| seen.offsets.contains(o));
        if complete {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged publications never arrived: {:?}",
            acked
                .lock()
                .unwrap()
                .difference(&seen.offsets)
                .collect::<Vec<_>>()
        );
        let v = match c.recv() {
            Ok(v) => v,
            Err(common::Ended::Closed(0, _)) => continue, // read timeout
            Err(e) => panic!("the connection ended: {e:?}"),
        };
        if v == json!({}) {
            c.send_text("{}"); // heartbeat
            continue;
        }
        let Some(p) = v.get("push") else { continue };
        if let Some(publication) = p.get("pub") {
            seen.offsets.insert(publication["offset"].as_u64().unwrap());
        } else if p["unsubscribe"]["code"] == 2500 {
            seen.resets += 1;
            let last = seen.offsets.iter().next_back().copied().unwrap_or(0);
            let r = c.call(
                "subscribe",
                json!({"channel": channel, "recover": true, "epoch": epoch, "offset": last}),
            );
            let s = &r["subscribe"];
            assert_eq!(s["recovered"], true, "{r}");
            epoch = s["epoch"].as_str().unwrap().to_owned();
            for p in s["publications"].as_array().unwrap() {
                seen.offsets.insert(p["offset"].as_u64().unwrap());
            }
        }
    }
}

/// Publishes through `node` until `done`, recording the acknowledged offsets; a
/// publish that failed (a temporary error during the move) is not acknowledged.
fn publisher(
    node: std::net::SocketAddr,
    channel: String,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut failed = 0;
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let (status, text) = common::http(
                node,
                "POST",
                "/api/publish",
                &[("X-API-Key", common::API_KEY)],
                &json!({"channel": channel, "data": {"n": n}}).to_string(),
            );
            let res: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == 200 {
                acked
                    .lock()
                    .unwrap()
                    .insert(res["result"]["offset"].as_u64().unwrap());
            } else {
                failed += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        failed
    })
}

/// Runs steady publishing on one channel through node B to a subscriber on node A while
/// `disrupt` changes the cluster; checks nothing acknowledged was lost and both nodes
/// still work. Returns what the subscriber saw.
fn publish_through(cluster: &RedisCluster, disrupt: impl FnOnce(&RedisCluster, u16)) -> Seen {
    publish_through_with(cluster, cluster.node_overrides(10_000), disrupt)
}

fn publish_through_with(
    cluster: &RedisCluster,
    o: Overrides,
    disrupt: impl FnOnce(&RedisCluster, u16),
) -> Seen {
    let a = Server::start_with(&o);
    let b = Server::start_with(&o);
    let channel = "moving".to_owned();
    let slot = cluster.channel_slot(&channel);
    let (mut c, _) = Client::connect(&a, "alice");
    let r = c.subscribe(&channel);
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let pubs = publisher(b.addr, channel.clone(), acked.clone(), stop.clone());
    common::wait_for(|| acked.lock().unwrap().len() >= 50);
    disrupt(cluster, slot);
    let before = acked.lock().unwrap().len();
    common::wait_for(|| acked.lock().unwrap().len() >= before + 50);
    stop.store(true, Ordering::SeqCst);
    let failed = pubs.join().unwrap();
    let seen = follow(&mut c, &channel, epoch, &acked, &stop);
    eprintln!(
        "acknowledged {}, failed {failed}, seen {}, resets {}",
        acked.lock().unwrap().len(),
        seen.offsets.len(),
        seen.resets
    );

    // both nodes keep working: a publication through A reaches the subscriber live
    let (status, res) = publish(&a, &channel, json!({"after": true}));
    assert_eq!(status, 200, "{res}");
    let offset = res["result"]["offset"].as_u64().unwrap();
    c.set_timeout(Duration::from_secs(10));
    loop {
        let v = c.recv().unwrap_or_else(|e| {
            panic!("the publication at {offset} never arrived live (subscription lost?): {e:?}")
        });
        if v["push"]["pub"]["offset"] == offset {
            break;
        }
    }
    seen
}

#[test]
fn a_slot_moving_to_another_master_loses_no_acknowledged_publication() {
    let cluster = RedisCluster::start(3, 0);
    let seen = publish_through(&cluster, |cluster, slot| {
        let from = cluster.owner(slot);
        let to = cluster.masters().into_iter().find(|&m| m != from).unwrap();
        cluster.migrate_slot(slot, to);
    });
    assert!(
        seen.resets >= 1,
        "the moved subscription is reset (subscribers recover), never silently gone"
    );
}

#[test]
fn a_master_failover_loses_no_acknowledged_publication() {
    let cluster = RedisCluster::start(3, 1);
    publish_through(&cluster, |cluster, slot| {
        let master = cluster.owner(slot);
        cluster.failover(master);
    });
}

#[test]
fn a_crashed_master_loses_no_acknowledged_publication_with_wait_replicas() {
    let cluster = RedisCluster::start(3, 1);
    let mut o = cluster.node_overrides(10_000);
    o.env
        .push(("WIRESOCKET_ENGINE__REDIS__WAIT_REPLICAS".into(), "1".into()));
    publish_through_with(&cluster, o, |cluster, slot| {
        let master = cluster.owner(slot);
        // the WAIT goes to the channel's master, where its publish script ran
        assert!(command_calls(master, "wait") >= 50);
        for other in cluster.masters().into_iter().filter(|&m| m != master) {
            assert_eq!(command_calls(other, "wait"), 0, "WAIT sent to {other}");
        }
        let promoted = cluster.crash_and_return(master);
        eprintln!("master {master} crashed; {promoted} took over, {master} is its replica");
    });
}

#[test]
fn with_connect_retry_a_node_starts_before_its_cluster_and_serves_once_it_is_up() {
    let ports = RedisCluster::free_ports(3);
    let o = Overrides {
        env: vec![
            ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
            ("WIRESOCKET_ENGINE__REDIS__CLUSTER".into(), seeds(&ports)),
            (
                "WIRESOCKET_ENGINE__REDIS__CONNECT_RETRY".into(),
                "true".into(),
            ),
            (
                "WIRESOCKET_ENGINE__REDIS__RECONNECT_MAX_DELAY_MS".into(),
                "200".into(),
            ),
            ("WIRESOCKET_ENGINE__REDIS__TIMEOUT_MS".into(), "500".into()),
            common::history_env(10),
        ],
        ..Default::default()
    };
    let mut node = Server::start_with(&o);
    assert!(
        node.wait_log("starting anyway", Duration::from_secs(5))
            .is_some(),
        "the start-up warning names connect_retry"
    );
    let health = |node: &Server| common::http(node.addr, "GET", "/health", &[], "");
    assert_eq!(
        health(&node),
        (
            503,
            r#"{"status":"unavailable","reason":"redis"}"#.to_string()
        )
    );
    let (status, res) = publish(&node, "doc", json!({"n": 0}));
    assert_eq!((status, &res["error"]["code"]), (503, &json!(100)), "{res}");

    let _cluster = RedisCluster::start_on(ports, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(&node).0 != 200 {
        assert!(Instant::now() < deadline, "/health never answered 200");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut c, _) = Client::connect(&node, "alice");
    let r = c.subscribe("doc");
    assert!(r["subscribe"]["epoch"].is_string(), "{r}");
    let (status, res) = publish(&node, "doc", json!({"n": 1}));
    assert_eq!(
        (status, &res["result"]["offset"]),
        (200, &json!(1)),
        "{res}"
    );
    let (channel, p) = c.next_pub();
    assert_eq!((channel.as_str(), &p["data"]), ("doc", &json!({"n": 1})));
}

#[test]
fn rediss_seeds_reach_a_tls_only_cluster() {
    let dir = std::env::temp_dir().join(format!("ws-cluster-ca-{}", std::process::id()));
    let (cluster, ca) = RedisCluster::start_tls(3, 0, &dir);
    let mut o = cluster.node_overrides(10);
    o.env.push((
        "WIRESOCKET_ENGINE__REDIS__TLS_CA".into(),
        ca.display().to_string(),
    ));
    assert!(cluster.seeds().starts_with("rediss://"));
    let a = Server::start_with(&o);
    let b = Server::start_with(&o);
    // a channel on every master: every node connection and its sharded PUB/SUB use TLS
    for channel in channel_per_master(&cluster) {
        let (mut c, _) = Client::connect(&a, "alice");
        let r = c.subscribe(&channel);
        assert!(r["subscribe"]["epoch"].is_string(), "{r}");
        let (status, res) = publish(&b, &channel, json!({"on": channel}));
        assert_eq!(
            (status, &res["result"]["offset"]),
            (200, &json!(1)),
            "{res}"
        );
        let (got, p) = c.next_pub();
        assert_eq!(
            (got.as_str(), &p["data"]),
            (channel.as_str(), &json!({"on": channel}))
        );
    }
    // an untrusted CA stops the start with a clear message
    let mut bad = cluster.node_overrides(10);
    bad.env.push((
        "WIRESOCKET_ENGINE__REDIS__TLS_CA".into(),
        format!(
            "{}/tests/keys/redis-other-ca.crt.pem",
            env!("CARGO_MANIFEST_DIR")
        ),
    ));
    let err = Server::try_start(&bad)
        .err()
        .expect("an untrusted cluster must not start");
    assert!(err.contains("cannot connect to Redis"), "{err}");
}
