//! Document pinning across two WebSocket regions on loopback (issue 10, Deliver item 2):
//! region `a-1` = nodes A1, A2 on Redis A; region `b-1` = node B on Redis B; the license
//! region's (`dbCode = lic-1`) pin Redis is Redis A. Each node's engine is its region's Redis.
//! Namespace `docs` is `pinned = true`; grace 1 s, lease 3 s, renewal every 500 ms.
//!
//! `two_regions_pin_redirect_discovery_grace_and_lease` walks through, in order:
//! 1. a client on A1 subscribes `docs:plan`: pinned to `a-1` (the pin key says so), and
//!    renewed while the client stays, beyond its lease;
//! 2. a client with `regionCode = b-1` on B subscribing to it is closed with 4009 and
//!    `REDIRECT:<A's URL>/docs%3Aplan` (close frame and `disconnect` push), and so is a
//!    connection to B's `/connection/websocket/docs%3Aplan`; B counts the redirects;
//! 3. discovery from B and from A1 answers A's URL and region; a free document answers the
//!    caller's `regionCode` region, or this one for an unknown region code;
//! 4. within A, a client on A2 subscribes (no redirect) and receives what A1's client
//!    publishes (through Redis A);
//! 5. the official JS SDK (`tests/js/regions.mjs`): a client-side subscription on B gets 4009
//!    with A's URL; a client connecting to B with the document in the URL gets 4009, follows
//!    the reason's URL to A, is subscribed server-side (connect `subs`) and receives a
//!    publication made through A2's HTTP API;
//! 6. everyone leaves; the last release leaves the pin the grace (its TTL is at most 1 s, not
//!    the 3 s lease); after it the pin is gone and a client on B pins the document to `b-1`;
//! 7. the pin is retaken by A behind B's back (as after a pin Redis failover): B's renewal
//!    finds it and closes its client on the document with 4009 to A;
//! 8. a client on A1 pins `docs:crash`; A1 is killed with SIGKILL: B is still redirected
//!    while the lease runs, and once it lapsed B pins the document.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::node::run_script;
use common::{http, token_with, Client, Ended, Overrides, Server};
use serde_json::{json, Value};
use wiresocket_testkit::{free_port, RedisServer};

const NAMESPACE: &str = "
[[channels.namespaces]]
name = \"docs\"
pinned = true
history_size = 10
history_ttl_s = 60
allow_publish_for_subscriber = true
";

/// The pin lease and grace of every node (renewal every 500 ms).
const LEASE_MS: u64 = 3_000;
const GRACE_MS: u64 = 1_000;

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/connection/websocket")
}

struct Fleet {
    redis_a: RedisServer,
    _redis_b: RedisServer,
    a1: Server,
    a2: Server,
    b: Server,
    url_a: String,
    url_b: String,
}

fn node(region: &str, port: u16, engine: &RedisServer, pins: &RedisServer, urls: &str) -> Server {
    let env = [
        ("WIRESOCKET_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("WIRESOCKET_ENGINE__KIND", "redis".into()),
        ("WIRESOCKET_ENGINE__REDIS__URL", engine.url()),
        ("WIRESOCKET_REGIONS__ENABLED", "true".into()),
        ("WIRESOCKET_REGIONS__NAME", region.into()),
        ("WIRESOCKET_REGIONS__URL", urls_of(urls, region)),
        ("WIRESOCKET_REGIONS__URLS", urls.into()),
        (
            "WIRESOCKET_REGIONS__PIN_REDIS",
            format!("lic-1={}", pins.url()),
        ),
        ("WIRESOCKET_REGIONS__PIN_GRACE_MS", GRACE_MS.to_string()),
        ("WIRESOCKET_REGIONS__PIN_LEASE_MS", LEASE_MS.to_string()),
        ("WIRESOCKET_REGIONS__RENEW_INTERVAL_MS", "500".into()),
    ];
    Server::start_with(&Overrides {
        cores: Some(1),
        channels: NAMESPACE.into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    })
}

fn urls_of(urls: &str, region: &str) -> String {
    urls.split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{region}=")))
        .expect("region in urls")
        .to_owned()
}

fn fleet() -> Fleet {
    let (redis_a, redis_b) = (RedisServer::start(), RedisServer::start());
    let (pa1, pa2, pb) = (free_port(), free_port(), free_port());
    // region A's public URL is A1 (a load balancer in production)
    let (url_a, url_b) = (ws_url(pa1), ws_url(pb));
    let urls = format!("a-1={url_a},b-1={url_b}");
    let a1 = node("a-1", pa1, &redis_a, &redis_a, &urls);
    let a2 = node("a-1", pa2, &redis_a, &redis_a, &urls);
    let b = node("b-1", pb, &redis_b, &redis_a, &urls);
    Fleet {
        redis_a,
        _redis_b: redis_b,
        a1,
        a2,
        b,
        url_a,
        url_b,
    }
}

fn token(user: &str, region: &str) -> String {
    token_with(user, 3600, json!({"regionCode": region, "dbCode": "lic-1"}))
}

/// A connected client of `server` (plain URL) with a token for `region`.
fn connect(server: &Server, user: &str, region: &str) -> Client {
    let mut c = Client::open(server);
    let r = c.call("connect", json!({"token": token(user, region)}));
    assert!(r.get("connect").is_some(), "connect failed: {r}");
    c
}

/// The pin's value in the pin Redis (`region\nurl`), or "" when free.
fn pin_of(redis: &RedisServer, doc: &str) -> String {
    redis.cli(&["GET", &pin_key(doc)])
}

/// The pin Redis key of document `doc`.
fn pin_key(doc: &str) -> String {
    format!("wiresocket:pin:{{{doc}}}")
}

/// Deletes the pin (a test's reset).
fn server_del(redis: &RedisServer, doc: &str) {
    redis.cli(&["DEL", &pin_key(doc)]);
}

/// The pin's remaining TTL in ms (-2: no pin).
fn pttl(redis: &RedisServer, doc: &str) -> i64 {
    redis
        .cli(&["PTTL", &pin_key(doc)])
        .parse()
        .unwrap_or(i64::MAX)
}

/// Reads until the close; returns (code, close reason, `disconnect` push reason).
fn redirected(c: &mut Client) -> (u16, String, String) {
    let mut pushed = String::new();
    loop {
        match c.recv() {
            Ok(v) => {
                if let Some(d) = v.pointer("/push/disconnect") {
                    pushed = d["reason"].as_str().unwrap_or("").to_owned();
                }
            }
            Err(Ended::Closed(code, reason)) => return (code, reason, pushed),
            Err(Ended::Eof) => return (0, String::new(), pushed),
        }
    }
}

fn subscribe_expecting_redirect(server: &Server, doc: &str) -> (u16, String, String) {
    let mut c = connect(server, "bob", "b-1");
    c.send_text(&json!({"id": 9, "subscribe": {"channel": doc}}).to_string());
    redirected(&mut c)
}

fn discovery(addr: SocketAddr, doc: &str, token: Option<&str>) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    let (status, body) = http(
        addr,
        "GET",
        &format!("/discovery?documentName={doc}"),
        &headers,
        "",
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `cond` every 50 ms for up to `limit`.
fn within(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_regions_pin_redirect_discovery_grace_and_lease() {
    let mut f = fleet();
    let doc = "docs:plan";
    let expected = format!("REDIRECT:{}/docs%3Aplan", f.url_a);

    // 1. the first connection pins the document to its region
    within(
        Duration::from_secs(10),
        "B's pin Redis connection up",
        || f.b.metric_sum("wiresocket_region_pin_redis_up", &[]) == 1.0,
    );
    let mut alice = connect(&f.a1, "alice", "a-1");
    alice.subscribe(doc);
    assert_eq!(pin_of(&f.redis_a, doc), format!("a-1\n{}", f.url_a));
    // renewed while alice is on it: it outlives its lease
    std::thread::sleep(Duration::from_millis(LEASE_MS + 500));
    assert_eq!(
        pin_of(&f.redis_a, doc),
        format!("a-1\n{}", f.url_a),
        "renewed"
    );

    // 2. B redirects to A: on subscribe, and on a connection URL naming the document
    let (code, reason, pushed) = subscribe_expecting_redirect(&f.b, doc);
    assert_eq!((code, reason.as_str()), (4009, expected.as_str()));
    assert_eq!(pushed, expected, "the disconnect push carries the reason");
    let mut c = Client::open_url(f.b.addr, &format!("{}/docs%3Aplan", f.url_b));
    c.send_text(&json!({"id": 1, "connect": {"token": token("bob", "b-1")}}).to_string());
    let (code, reason, _) = redirected(&mut c);
    assert_eq!((code, reason.as_str()), (4009, expected.as_str()));
    assert_eq!(
        f.b.metric_sum("wiresocket_region_redirects_total", &[]),
        2.0
    );
    assert_eq!(
        pin_of(&f.redis_a, doc),
        format!("a-1\n{}", f.url_a),
        "B did not take it"
    );

    // 3. discovery, from both regions
    let tb = token("bob", "b-1");
    for server in [&f.b, &f.a1] {
        let (status, body) = discovery(server.addr, "docs%3Aplan", Some(&tb));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["region"], "a-1");
        assert_eq!(body["url"], format!("{}/docs%3Aplan", f.url_a));
    }
    let (_, body) = discovery(f.a1.addr, "docs%3Afree", Some(&tb));
    assert_eq!(
        (body["region"].as_str(), body["url"].as_str()),
        (
            Some("b-1"),
            Some(format!("{}/docs%3Afree", f.url_b).as_str())
        ),
        "a free document: the caller's regionCode"
    );
    let (_, body) = discovery(f.a2.addr, "docs%3Afree", Some(&token("x", "zz-9")));
    assert_eq!(body["region"], "a-1", "unknown regionCode: this region");
    assert_eq!(pin_of(&f.redis_a, "docs:free"), "", "discovery never pins");

    // 4. within A any node serves it
    let mut carol = connect(&f.a2, "carol", "b-1");
    carol.subscribe(doc);
    let r = alice.call("publish", json!({"channel": doc, "data": {"from": "a1"}}));
    assert!(r.get("publish").is_some(), "{r}");
    let (ch, p) = carol.next_pub();
    assert_eq!((ch.as_str(), &p["data"]), (doc, &json!({"from": "a1"})));

    // 5. the JS SDK follows the redirect and receives the document's publications in A
    let js = run_script(
        &f.b,
        "regions.mjs",
        &[
            ("DOCUMENT", doc.to_owned()),
            ("PLAIN_URL", f.url_b.clone()),
            ("FIRST_URL", format!("{}/docs%3Aplan", f.url_b)),
            ("EXPECT_URL", format!("{}/docs%3Aplan", f.url_a)),
            ("REGION_CODE", "b-1".into()),
            ("DB_CODE", "lic-1".into()),
            ("API_URL", f.a2.http_url()),
        ],
        Duration::from_secs(40),
        |_| {},
    );
    assert!(js.passed(), "{}", js.report(Duration::from_secs(40)));

    // measured, not asserted (`--nocapture`): the pin check's round trip to the pin Redis
    for (name, node) in [("A1", &f.a1), ("A2", &f.a2), ("B", &f.b)] {
        let n = node.metric_sum("wiresocket_region_pin_check_seconds_count", &[]);
        let sum = node.metric_sum("wiresocket_region_pin_check_seconds_sum", &[]);
        println!(
            "pin checks on {name}: {n} taking {:.0} µs on average",
            sum / n.max(1.0) * 1e6
        );
    }

    // 6. everyone leaves; after the grace the next connection pins it anywhere
    drop((alice, carol));
    let released = |f: &Fleet| {
        f.a1.metric_sum("wiresocket_region_pins_released_total", &[])
            + f.a2
                .metric_sum("wiresocket_region_pins_released_total", &[])
    };
    within(Duration::from_secs(10), "the last hold released", || {
        released(&f) >= 1.0
    });
    // the grace (1 s), not the lease (3 s), is what is left of the pin now
    let ttl = pttl(&f.redis_a, doc);
    assert!(
        ttl <= GRACE_MS as i64,
        "pin TTL {ttl} ms after the last release"
    );
    within(Duration::from_secs(10), "pin gone after the grace", || {
        pin_of(&f.redis_a, doc).is_empty()
    });
    let mut bob = connect(&f.b, "bob", "b-1");
    bob.subscribe(doc);
    assert_eq!(pin_of(&f.redis_a, doc), format!("b-1\n{}", f.url_b));
    assert!(f.a1.metric_sum("wiresocket_region_pins_acquired_total", &[]) >= 1.0);

    // 7. the pin lost and retaken by A (as after a pin Redis failover): B's next renewal finds
    //    it pinned elsewhere and redirects its connections there
    let pin = format!("a-1\n{}", f.url_a);
    let taken = f.redis_a.cli(&["SET", &pin_key(doc), &pin, "PX", "60000"]);
    assert_eq!(taken, "OK");
    let (code, reason, _) = redirected(&mut bob);
    assert_eq!((code, reason.as_str()), (4009, expected.as_str()));
    assert!(f.b.metric_sum("wiresocket_region_pin_conflicts_total", &[]) >= 1.0);
    server_del(&f.redis_a, doc);

    // 8. a killed node's pin expires by its lease
    let crash = "docs:crash";
    let mut dave = connect(&f.a1, "dave", "a-1");
    dave.subscribe(crash);
    assert!(pin_of(&f.redis_a, crash).starts_with("a-1\n"));
    f.a1.child.kill().expect("SIGKILL A1");
    let _ = f.a1.child.wait();
    let (code, _, _) = subscribe_expecting_redirect(&f.b, crash);
    assert_eq!(code, 4009, "the lease still holds right after the kill");
    within(Duration::from_secs(10), "lease expired", || {
        pin_of(&f.redis_a, crash).is_empty()
    });
    let mut erin = connect(&f.b, "erin", "b-1");
    erin.subscribe(crash);
    assert!(pin_of(&f.redis_a, crash).starts_with("b-1\n"));
}
