//! Unit tests of the channel policy: name parsing, namespace lookup, name rules, and every
//! operation's decision for clients (named, anonymous, subscribed, with token) and the API.

use super::*;
use crate::config::{ChannelsConfig, NamespaceConfig};

fn ns(name: &str, options: ChannelOptions) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        options,
    }
}

fn policy(cfg: ChannelsConfig) -> Policy {
    Policy::from_config(&cfg).unwrap()
}

/// default: history and presence on; `chat`: publish for subscribers, user-limited channels;
/// `open`: everything for clients; `ids`: digits only, short names.
fn sample() -> Policy {
    let mut cfg = ChannelsConfig::default();
    cfg.default.history_size = 10;
    cfg.default.presence = true;
    cfg.namespaces = vec![
        ns(
            "chat",
            ChannelOptions {
                allow_publish_for_subscriber: true,
                allow_user_limited_channels: true,
                ..Default::default()
            },
        ),
        ns(
            "open",
            ChannelOptions {
                history_size: 5,
                allow_publish_for_client: true,
                allow_history_for_client: true,
                allow_subscribe_for_anonymous: true,
                ..Default::default()
            },
        ),
        ns(
            "ids",
            ChannelOptions {
                channel_regex: "^[0-9]+$".into(),
                max_channel_length: 8,
                ..Default::default()
            },
        ),
    ];
    policy(cfg)
}

fn code(r: Result<&ChannelOptions, ChannelError>) -> u32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code().code,
    }
}

#[test]
fn parses_namespace_private_and_users() {
    let m = Markers::from_config(&ChannelsConfig::default());
    let p = |c| m.parse(c);
    assert_eq!(
        p("news"),
        ChannelName {
            namespace: "",
            name: "news",
            private: false,
            users: None
        }
    );
    assert_eq!(
        p("chat:room:1"),
        ChannelName {
            namespace: "chat",
            name: "room:1",
            private: false,
            users: None
        }
    );
    assert_eq!(
        (p("$chat:x").namespace, p("$chat:x").private),
        ("chat", true)
    );
    assert_eq!((p("chat:$x").name, p("chat:$x").private), ("x", true));
    assert_eq!((p("$secret").namespace, p("$secret").name), ("", "secret"));
    assert_eq!(p("chat:dialog#42,43").users, Some("42,43"));
    assert_eq!(p("a#b#c").users, Some("c"));
    assert!(m.lists_user("42,43", "43"));
    assert!(!m.lists_user("42,43", "4"));
    assert!(!m.lists_user("42,,43", ""), "anonymous is never listed");
}

#[test]
fn name_rules_and_unknown_namespace() {
    let p = sample();
    let who = Who::client("u", false);
    let sub = |c: &str| -> u32 { code(p.can(&who, c, Op::Subscribe)) };
    assert_eq!(sub(""), 107);
    assert_eq!(sub("chat:"), 107);
    assert_eq!(sub("nope:x"), 102);
    assert_eq!(sub("$nope:x"), 102);
    assert_eq!(sub(&"x".repeat(256)), 107);
    assert_eq!(sub(&"x".repeat(255)), 0);
    assert_eq!(sub("caf\u{e9}"), 107, "non-ASCII without a regex");
    assert_eq!(sub("a\tb"), 107);
    assert_eq!(sub("ids:123"), 0);
    assert_eq!(sub("ids:12a"), 107, "regex");
    assert_eq!(
        sub("ids:123456"),
        107,
        "max_channel_length counts the namespace"
    );
    assert_eq!(
        code(p.can(&Who::API, "nope:x", Op::Publish)),
        102,
        "the API is bound by namespaces too"
    );
}

#[test]
fn subscribe_rules() {
    let p = sample();
    let named = Who::client("alice", false);
    let anon = Who::client("", false);
    assert_eq!(code(p.can(&named, "news", Op::Subscribe)), 0);
    assert_eq!(code(p.can(&anon, "news", Op::Subscribe)), 103);
    assert_eq!(code(p.can(&anon, "open:x", Op::Subscribe)), 0);
    // private: only with a verified token
    assert_eq!(code(p.can(&named, "$secret", Op::Subscribe)), 103);
    assert_eq!(code(p.can(&named, "chat:$x", Op::Subscribe)), 103);
    assert_eq!(
        code(p.can(&named.with_token(), "$secret", Op::Subscribe)),
        0
    );
    // user-limited where enabled: listed users only (or a token)
    assert_eq!(code(p.can(&named, "chat:d#alice,bob", Op::Subscribe)), 0);
    let eve = Who::client("eve", false);
    assert_eq!(code(p.can(&eve, "chat:d#alice,bob", Op::Subscribe)), 103);
    assert_eq!(
        code(p.can(&eve.with_token(), "chat:d#alice,bob", Op::Subscribe)),
        0
    );
    // where not enabled, '#' is an ordinary character
    assert_eq!(code(p.can(&eve, "d#alice", Op::Subscribe)), 0);
    // allow_subscribe_for_client = false: token required everywhere
    let mut cfg = ChannelsConfig::default();
    cfg.default.allow_subscribe_for_client = false;
    let strict = policy(cfg);
    assert_eq!(code(strict.can(&named, "news", Op::Subscribe)), 103);
    assert_eq!(
        code(strict.can(&named.with_token(), "news", Op::Subscribe)),
        0
    );
}

#[test]
fn publish_rules() {
    let p = sample();
    let named = Who::client("alice", false);
    let subscribed = Who::client("alice", true);
    assert_eq!(
        code(p.can(&subscribed, "news", Op::Publish)),
        103,
        "off by default"
    );
    assert_eq!(code(p.can(&named, "chat:r", Op::Publish)), 103);
    assert_eq!(code(p.can(&subscribed, "chat:r", Op::Publish)), 0);
    assert_eq!(
        code(p.can(&Who::client("", true), "chat:r", Op::Publish)),
        103,
        "anonymous subscribers need allow_publish_for_anonymous"
    );
    assert_eq!(code(p.can(&named, "open:r", Op::Publish)), 0);
    assert_eq!(
        code(p.can(&named, "open:$r", Op::Publish)),
        103,
        "client grants do not open private channels"
    );
    assert_eq!(code(p.can(&subscribed, "open:$r", Op::Publish)), 0);
    assert_eq!(code(p.can(&Who::API, "$anything", Op::Publish)), 0);
}

#[test]
fn history_and_presence_rules() {
    let p = sample();
    let named = Who::client("alice", false);
    let subscribed = Who::client("alice", true);
    // the leak of issue 7: a non-subscriber reads nothing, private or not
    assert_eq!(code(p.can(&named, "$secret", Op::History)), 103);
    assert_eq!(code(p.can(&named, "news", Op::History)), 103);
    assert_eq!(code(p.can(&subscribed, "news", Op::History)), 0);
    assert_eq!(code(p.can(&named, "news", Op::Presence)), 103);
    assert_eq!(code(p.can(&subscribed, "news", Op::Presence)), 0);
    // not available before permission
    assert_eq!(code(p.can(&named, "chat:r", Op::History)), 108);
    assert_eq!(code(p.can(&subscribed, "chat:r", Op::Presence)), 108);
    assert_eq!(code(p.can(&Who::API, "chat:r", Op::History)), 108);
    assert_eq!(code(p.can(&Who::API, "news", Op::History)), 0);
    // allow_history_for_client: named clients, open channels only
    assert_eq!(code(p.can(&named, "open:r", Op::History)), 0);
    assert_eq!(
        code(p.can(&Who::client("", false), "open:r", Op::History)),
        103
    );
    assert_eq!(code(p.can(&named, "open:$r", Op::History)), 103);
}

#[test]
fn recovery_rules() {
    let p = sample();
    let named = Who::client("alice", false);
    assert_eq!(code(p.can(&named, "news", Op::Recover)), 0);
    assert_eq!(code(p.can(&named, "chat:r", Op::Recover)), 108);
    let mut cfg = ChannelsConfig::default();
    cfg.default.history_size = 3;
    cfg.default.allow_recovery = false;
    cfg.default.allow_history_for_subscriber = false;
    assert_eq!(code(policy(cfg).can(&named, "news", Op::Recover)), 103);
}

#[test]
fn bad_regex_fails_the_build() {
    let cfg = ChannelsConfig {
        namespaces: vec![ns(
            "x",
            ChannelOptions {
                channel_regex: "(".into(),
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let err = Policy::from_config(&cfg).unwrap_err();
    assert!(matches!(err, ChannelError::Regex { ref namespace, .. } if namespace == "x"));
}
