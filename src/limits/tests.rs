//! Unit tests of [`super::Limits`]: the order of checks, exemption, leases.

use super::*;

fn cfg(edit: impl FnOnce(&mut ServerConfig)) -> Arc<Limits> {
    let mut c = ServerConfig {
        limits_exempt: vec![],
        limits_table_size: 1024,
        ..Default::default()
    };
    edit(&mut c);
    Limits::new(&c)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn per_address_and_per_prefix_caps_are_released_by_the_lease() {
    let l = cfg(|c| {
        c.max_connections_per_ip = 2;
        c.max_connections_per_prefix = 3;
    });
    let a = l.admit(ip("198.51.100.1")).unwrap();
    let b = l.admit(ip("198.51.100.1")).unwrap();
    assert!(a.is_counted());
    assert_eq!(
        l.admit(ip("198.51.100.1")).unwrap_err(),
        Refusal::IpConnections
    );
    let c = l.admit(ip("198.51.100.2")).unwrap();
    assert_eq!(
        l.admit(ip("198.51.100.3")).unwrap_err(),
        Refusal::PrefixConnections
    );
    assert!(l.admit(ip("198.51.101.3")).is_ok(), "another /24");
    drop(a);
    assert!(l.admit(ip("198.51.100.1")).is_ok());
    drop((b, c));
}

#[test]
fn attempts_per_address_then_per_node() {
    let l = cfg(|c| {
        c.connect_rate_per_ip = 1;
        c.connect_burst_per_ip = 3;
        c.connect_rate_per_node = 1;
        c.connect_burst_per_node = 5;
    });
    for _ in 0..3 {
        drop(l.admit(ip("203.0.113.9")).unwrap());
    }
    assert_eq!(l.admit(ip("203.0.113.9")).unwrap_err(), Refusal::IpRate);
    drop(l.admit(ip("203.0.113.10")).unwrap());
    drop(l.admit(ip("203.0.113.11")).unwrap());
    assert_eq!(l.admit(ip("203.0.113.12")).unwrap_err(), Refusal::NodeRate);
}

#[test]
fn exempt_addresses_are_not_counted() {
    let l = cfg(|c| {
        c.limits_exempt = vec!["127.0.0.0/8".into()];
        c.max_connections_per_ip = 1;
    });
    let held: Vec<_> = (0..5).map(|_| l.admit(ip("127.0.0.1")).unwrap()).collect();
    assert!(held.iter().all(|h| !h.is_counted()));
}

#[test]
fn users_are_counted_once_per_connection_and_released() {
    let l = cfg(|c| c.max_connections_per_user = 1);
    let a = l.uncounted();
    a.acquire_user("alice").unwrap();
    a.acquire_user("alice").unwrap();
    let b = l.uncounted();
    assert_eq!(
        b.acquire_user("alice").unwrap_err(),
        Refusal::UserConnections
    );
    b.acquire_user("").unwrap();
    drop(a);
    b.acquire_user("alice").unwrap();
}

#[test]
fn publishes_are_refused_then_disconnected_and_allowed_resets() {
    let l = cfg(|c| {
        c.publish_rate_per_user = 1;
        c.publish_burst_per_user = 3;
    });
    for _ in 0..3 {
        assert_eq!(l.publish("u", "ch"), PublishVerdict::Allow);
    }
    assert_eq!(
        l.publish("u", "ch"),
        PublishVerdict::Refuse(Refusal::PublishUser)
    );
    assert_eq!(
        l.publish("u", "ch"),
        PublishVerdict::Refuse(Refusal::PublishUser)
    );
    assert_eq!(
        l.publish("u", "ch"),
        PublishVerdict::Disconnect(Refusal::PublishUser)
    );
    assert_eq!(l.publish("v", "ch"), PublishVerdict::Allow);
    let ch = cfg(|c| {
        c.publish_rate_per_channel = 1;
        c.publish_burst_per_channel = 2;
    });
    assert_eq!(ch.publish("a", "room"), PublishVerdict::Allow);
    assert_eq!(ch.publish("b", "room"), PublishVerdict::Allow);
    assert_eq!(
        ch.publish("c", "room"),
        PublishVerdict::Refuse(Refusal::PublishChannel)
    );
    assert_eq!(ch.publish("c", "other"), PublishVerdict::Allow);
}

#[test]
fn reasons_match_the_metric_labels() {
    let labels: Vec<&str> = Refusal::ALL
        .iter()
        .map(|r| crate::metrics::LIMIT_REASONS[r.index()])
        .collect();
    assert_eq!(labels, crate::metrics::LIMIT_REASONS);
    assert_eq!(Refusal::ALL.len(), crate::metrics::LIMIT_REASONS.len());
}
