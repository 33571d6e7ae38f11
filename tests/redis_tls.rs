//! TLS and ACL authentication to Redis (black box, real `redis-server` with
//! `--tls-port` and an ACL user): a node on `rediss://user:password@…` trusting the
//! test CA (`engine.redis.tls_ca`, fixtures in tests/keys/) publishes and delivers
//! across two nodes; a wrong password or an untrusted server certificate stops the
//! start with a clear message that never shows the password.

mod common;

use common::{Client, Overrides, Server};
use serde_json::json;
use wiresocket_testkit::keys::{key, tls_server_args};
use wiresocket_testkit::{free_port, RedisProcess};

const PASSWORD: &str = "s3cret-Pw-42";

/// A TLS-only Redis whose `default` user is disabled and whose user `app` has `PASSWORD`.
fn tls_redis() -> RedisProcess {
    let port = free_port();
    let password = format!(">{PASSWORD}");
    let mut args = tls_server_args(port);
    let acl = [
        "--user",
        "default",
        "off",
        "--user",
        "app",
        "on",
        password.as_str(),
    ];
    args.extend(
        acl.into_iter()
            .chain(["~*", "&*", "+@all"])
            .map(str::to_owned),
    );
    RedisProcess::server(port, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn overrides(url: String, ca: &str) -> Overrides {
    Overrides {
        env: vec![
            ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
            ("WIRESOCKET_ENGINE__REDIS__URL".into(), url),
            ("WIRESOCKET_ENGINE__REDIS__TLS_CA".into(), key(ca)),
            common::history_env(10),
        ],
        ..Default::default()
    }
}

#[test]
fn nodes_talk_to_redis_over_tls_with_an_acl_user() {
    let redis = tls_redis();
    let url = format!("rediss://app:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let a = Server::start_with(&overrides(url.clone(), "redis-ca.crt.pem"));
    let b = Server::start_with(&overrides(url, "redis-ca.crt.pem"));
    let (mut c, _) = Client::connect(&a, "alice");
    let r = c.subscribe("doc");
    assert!(r["subscribe"]["epoch"].is_string(), "{r}");
    let (status, res) = b.api("publish", json!({"channel": "doc", "data": {"n": 1}}));
    assert_eq!(
        (status, &res["result"]["offset"]),
        (200, &json!(1)),
        "{res}"
    );
    let (channel, p) = c.next_pub();
    assert_eq!(
        (channel.as_str(), &p["data"], &p["offset"]),
        ("doc", &json!({"n": 1}), &json!(1))
    );
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_stops_the_start_clearly() {
    let redis = tls_redis();
    let wrong = format!("rediss://app:wrong-{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let err = match Server::try_start(&overrides(wrong, "redis-ca.crt.pem")) {
        Ok(_) => panic!("a node started with a wrong Redis password"),
        Err(report) => report,
    };
    assert!(
        err.contains(&format!(
            "cannot connect to Redis at rediss://app:***@127.0.0.1:{}",
            redis.port
        )),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("authentication failed"),
        "the reason is named: {err}"
    );
    assert!(!err.contains(PASSWORD), "the password is shown: {err}");

    let good = format!("rediss://app:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let err = match Server::try_start(&overrides(good, "redis-other-ca.crt.pem")) {
        Ok(_) => panic!("a node trusted a certificate its CA did not sign"),
        Err(report) => report,
    };
    assert!(
        err.contains("cannot connect to Redis at rediss://"),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("certificate"),
        "the reason is named: {err}"
    );
    assert!(!err.contains(PASSWORD), "the password is shown: {err}");
}
