//! The pin scripts and their lease logic against a real `redis-server`: first open pins,
//! another region sees the owner, holds of several cores keep the pin until the last
//! release, the grace then frees it, a holder that stops renewing (a dead node) lets the pin
//! expire by its lease, renewal re-pins a lapsed document, and an unreachable Redis is an
//! error (never a pin).

use std::time::Duration;

use super::pin::{self, Opened, Owner, PinCtx};
use crate::engine::redis::testing::{config, run, RedisServer};
use crate::engine::redis::RedisNode;

fn ctx(region: &str, holder: &str, lease_ms: u64, grace_ms: u64) -> PinCtx {
    PinCtx {
        prefix: format!("t{}:pin:", fastrand::u32(..)),
        me: Owner {
            region: region.into(),
            url: format!("ws://{region}.test/connection/websocket"),
        },
        holder: holder.into(),
        lease_ms,
        grace_ms,
    }
}

/// The same store seen from another region / holder.
fn other(c: &PinCtx, region: &str, holder: &str) -> PinCtx {
    PinCtx {
        me: Owner {
            region: region.into(),
            url: format!("ws://{region}.test/connection/websocket"),
        },
        holder: holder.into(),
        ..c.clone()
    }
}

fn node(server: &RedisServer) -> std::sync::Arc<RedisNode> {
    RedisNode::start(&config(server)).expect("redis")
}

const HERE_NEW: Opened = Opened::Here { acquired: true };
const HERE: Opened = Opened::Here { acquired: false };

#[test]
fn first_open_pins_and_other_regions_see_the_owner() {
    let server = RedisServer::start();
    let n = node(&server);
    run(async move {
        let a1 = ctx("a", "n1:0", 30_000, 10_000);
        let a2 = other(&a1, "a", "n2:0");
        let b = other(&a1, "b", "n3:0");
        assert_eq!(pin::open(&n, &a1, "doc").await.unwrap(), HERE_NEW);
        assert_eq!(
            pin::open(&n, &a2, "doc").await.unwrap(),
            HERE,
            "same region serves it"
        );
        assert_eq!(
            pin::open(&n, &b, "doc").await.unwrap(),
            Opened::Elsewhere(a1.me.clone())
        );
        assert_eq!(
            pin::read(&n, &a1.prefix, "doc").await.unwrap(),
            Some(a1.me.clone())
        );
        assert_eq!(pin::read(&n, &a1.prefix, "free").await.unwrap(), None);
        // another document is independent
        assert_eq!(pin::open(&n, &b, "doc2").await.unwrap(), HERE_NEW);
    });
}

#[test]
fn the_last_release_starts_the_grace_then_the_document_is_free() {
    let server = RedisServer::start();
    let n = node(&server);
    run(async move {
        let a1 = ctx("a", "n1:0", 30_000, 300);
        let a2 = other(&a1, "a", "n1:1");
        let b = other(&a1, "b", "n3:0");
        pin::open(&n, &a1, "doc").await.unwrap();
        pin::open(&n, &a2, "doc").await.unwrap();
        assert!(
            !pin::release(&n, &a1, "doc").await.unwrap(),
            "a2 still holds it"
        );
        crate::exec::sleep(Duration::from_millis(500)).await;
        assert!(
            matches!(
                pin::open(&n, &b, "doc").await.unwrap(),
                Opened::Elsewhere(_)
            ),
            "still pinned while a2 holds it, beyond the grace"
        );
        assert!(pin::release(&n, &a2, "doc").await.unwrap(), "last holder");
        assert!(
            matches!(
                pin::open(&n, &b, "doc").await.unwrap(),
                Opened::Elsewhere(_)
            ),
            "pinned during the grace"
        );
        // a return within the grace keeps it (and ends the grace)
        pin::open(&n, &a1, "doc").await.unwrap();
        crate::exec::sleep(Duration::from_millis(500)).await;
        assert!(matches!(
            pin::open(&n, &b, "doc").await.unwrap(),
            Opened::Elsewhere(_)
        ));
        assert!(pin::release(&n, &a1, "doc").await.unwrap());
        crate::exec::sleep(Duration::from_millis(500)).await;
        assert_eq!(pin::read(&n, &a1.prefix, "doc").await.unwrap(), None);
        assert_eq!(
            pin::open(&n, &b, "doc").await.unwrap(),
            HERE_NEW,
            "free after the grace"
        );
    });
}

#[test]
fn a_holder_that_stops_renewing_lets_the_pin_expire_by_its_lease() {
    let server = RedisServer::start();
    let n = node(&server);
    run(async move {
        let dead = ctx("a", "dead:0", 600, 10_000);
        let live = other(&dead, "a", "live:0");
        let b = other(&dead, "b", "n3:0");
        pin::open(&n, &dead, "doc").await.unwrap();
        pin::open(&n, &live, "doc2").await.unwrap();
        // the live holder renews its document past the lease; the dead one never does
        for _ in 0..4 {
            crate::exec::sleep(Duration::from_millis(250)).await;
            assert_eq!(
                pin::renew(&n, &live, vec!["doc2".into()]).await.unwrap(),
                vec![HERE]
            );
        }
        assert_eq!(pin::read(&n, &dead.prefix, "doc").await.unwrap(), None);
        assert_eq!(pin::open(&n, &b, "doc").await.unwrap(), HERE_NEW);
        assert!(matches!(
            pin::open(&n, &b, "doc2").await.unwrap(),
            Opened::Elsewhere(_)
        ));
        // a dead holder still listed does not let a live one's release start the grace
        let c = ctx("a", "dead:1", 5_000, 100);
        let c2 = other(&c, "a", "live:1");
        pin::open(&n, &c, "doc").await.unwrap();
        pin::open(&n, &c2, "doc").await.unwrap();
        assert!(!pin::release(&n, &c2, "doc").await.unwrap());
    });
}

#[test]
fn renewal_repins_a_lapsed_document_and_reports_conflicts() {
    let server = RedisServer::start();
    let n = node(&server);
    run(async move {
        let a = ctx("a", "n1:0", 30_000, 1_000);
        let b = other(&a, "b", "n3:0");
        pin::open(&n, &a, "x").await.unwrap();
        pin::open(&n, &b, "y").await.unwrap();
        server.cli(&["DEL", &format!("{}{{x}}", a.prefix)]);
        let got = pin::renew(&n, &a, vec!["x".into(), "y".into()])
            .await
            .unwrap();
        assert_eq!(got, vec![HERE_NEW, Opened::Elsewhere(b.me.clone())]);
        let ttl: i64 = server
            .cli(&["PTTL", &format!("{}{{x}}", a.prefix)])
            .parse()
            .unwrap();
        assert!(ttl > 25_000, "renewal sets the lease: {ttl}");
    });
}

#[test]
fn an_unreachable_pin_redis_is_an_error_not_a_pin() {
    let server = RedisServer::start();
    let mut cfg = config(&server);
    cfg.connect_retry = true;
    cfg.timeout_ms = 300;
    drop(server); // nothing listens there any more
    let n = RedisNode::start(&cfg).expect("starts with connect_retry");
    run(async move {
        let a = ctx("a", "n1:0", 30_000, 1_000);
        assert!(pin::open(&n, &a, "doc").await.is_err());
        assert!(pin::read(&n, &a.prefix, "doc").await.is_err());
    });
}
