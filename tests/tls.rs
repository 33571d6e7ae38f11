//! TLS on the public listener (`[server.tls]`), black-box: WebSocket over TLS end to end
//! with large publications (rustls write path under back-pressure), TLS 1.2 and 1.3 with
//! ALPN `http/1.1` (rustls and `openssl s_client`), expired and wrong-host certificates
//! refused by verifying clients, certificate reload on SIGHUP without dropping connections
//! (a bad new pair keeps the old one), and the handshake deadline.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{call, recv, server_tls, tls_connect, wss_connect, ClientConfigOf};
use common::{metric_sum, Overrides, Server};
use serde_json::json;
use wiresocket_testkit::ca::{Ca, Kind};

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn tls_server(cert: &std::path::Path, key: &std::path::Path, extra: &str) -> Server {
    Server::start_with(&Overrides {
        server: format!("{}{extra}", server_tls(cert, key)),
        // room for the whole burst of the large-publication test while its reader waits
        websocket: "outbound_queue_bytes = 16_777_216\ncommand_rate_per_s = 0\n".into(),
        ..Overrides::default()
    })
}

/// `GET path` over TLS; the body.
fn https_get(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, path: &str) -> String {
    let mut s = tls_connect(addr, cfg).expect("TLS handshake");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    // the server closes without close_notify after `Connection: close`: keep what arrived
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// The leaf certificate a new client (no session to resume) is shown.
fn peer_cert(addr: SocketAddr, ca: &Ca) -> Vec<u8> {
    let s = tls_connect(addr, ca.client_config(BOTH)).expect("TLS handshake");
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn websocket_over_tls_delivers_large_publications_in_order() {
    let ca = Ca::new(&std::env::temp_dir().join(format!("ws-tls-e2e-{}", std::process::id())));
    let (cert, key, _) = ca.issue("server", Kind::Valid);
    let s = tls_server(&cert, &key, "");
    let cfg = ca.client_config(BOTH);
    let mut sub = wss_connect(s.addr, cfg.clone(), &s.token("reader", 3600));
    let r = call(&mut sub, 2, "subscribe", json!({"channel": "news"}));
    assert!(r.get("subscribe").is_some(), "{r}");
    let mut publisher = wss_connect(s.addr, cfg.clone(), &s.token("writer", 3600));
    let filler = "x".repeat(20_000);
    const N: u64 = 300;
    for n in 0..N {
        let r = call(
            &mut publisher,
            10 + n as u32,
            "publish",
            json!({"channel": "news", "data": {"n": n, "pad": filler}}),
        );
        assert!(r.get("error").is_none(), "{r}");
    }
    let mut next = 0;
    while next < N {
        for v in recv(&mut sub) {
            let data = &v["push"]["pub"]["data"];
            assert_eq!(data["n"], next, "out of order or lost: {v}");
            assert_eq!(data["pad"].as_str().unwrap().len(), 20_000);
            next += 1;
        }
    }
    let metrics = https_get(s.addr, cfg, "/metrics");
    assert!(
        metric_sum(&metrics, "wiresocket_tls_handshakes_total", &[]) >= 3.0,
        "{metrics}"
    );
}

#[test]
fn tls_1_2_and_1_3_negotiate_alpn_http_1_1() {
    let ca = Ca::new(&std::env::temp_dir().join(format!("ws-tls-ver-{}", std::process::id())));
    let (cert, key, _) = ca.issue("server", Kind::Valid);
    let s = tls_server(&cert, &key, "");
    for (version, expect) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let c = tls_connect(s.addr, ca.client_config(&[version])).expect("handshake");
        assert_eq!(c.conn.protocol_version(), Some(expect));
        assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &s.addr.to_string(),
                "-servername",
                "localhost",
            ])
            .args(["-alpn", "http/1.1", flag, "-CAfile"])
            .arg(ca.ca_path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is needed by this test (scripts/test.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn expired_and_wrong_host_certificates_fail_verification() {
    let ca = Ca::new(&std::env::temp_dir().join(format!("ws-tls-bad-{}", std::process::id())));
    for (kind, name) in [(Kind::Expired, "expired"), (Kind::WrongHost, "wronghost")] {
        let (cert, key, _) = ca.issue(name, kind);
        let s = tls_server(&cert, &key, "");
        let Err(err) = tls_connect(s.addr, ca.client_config(BOTH)) else {
            panic!("{name}: a verifying client must refuse this certificate");
        };
        let text = format!("{err:?}");
        let wanted = if name == "expired" {
            "Expired"
        } else {
            "NotValidForName"
        };
        assert!(text.contains(wanted), "{name}: {text}");
    }
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections() {
    let ca = Ca::new(&std::env::temp_dir().join(format!("ws-tls-reload-{}", std::process::id())));
    let (cert, key, first) = ca.issue("server", Kind::Valid);
    let mut s = tls_server(&cert, &key, "");
    let cfg = ca.client_config(BOTH);
    assert_eq!(peer_cert(s.addr, &ca), first.to_vec());
    let mut old = wss_connect(s.addr, cfg.clone(), &s.token("old", 3600));
    let r = call(&mut old, 2, "subscribe", json!({"channel": "room"}));
    assert!(r.get("subscribe").is_some(), "{r}");

    // a new pair at the same paths (what an ACME client's renewal does), then SIGHUP
    let (_, _, second) = ca.issue("server", Kind::Valid);
    assert_ne!(first, second);
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    assert!(
        s.wait_log("TLS certificate and key reloaded", Duration::from_secs(10))
            .is_some(),
        "{:#?}",
        s.log
    );
    assert_eq!(peer_cert(s.addr, &ca), second.to_vec());

    // the connection made before the reload still works both ways
    let mut new = wss_connect(s.addr, cfg.clone(), &s.token("new", 3600));
    let r = call(
        &mut new,
        2,
        "publish",
        json!({"channel": "room", "data": {"after": "reload"}}),
    );
    assert!(r.get("error").is_none(), "{r}");
    let got = recv(&mut old);
    assert_eq!(got[0]["push"]["pub"]["data"]["after"], "reload", "{got:?}");

    // a broken key file: the reload fails, the second pair keeps serving
    std::fs::write(&key, "not a key").unwrap();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    assert!(
        s.wait_log("TLS reload failed", Duration::from_secs(10))
            .is_some(),
        "{:#?}",
        s.log
    );
    assert_eq!(peer_cert(s.addr, &ca), second.to_vec());
    let metrics = https_get(s.addr, cfg, "/metrics");
    assert_eq!(
        metric_sum(&metrics, "wiresocket_tls_reloads_total", &["result=\"ok\""]),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "wiresocket_tls_reloads_total",
            &["result=\"failed\""]
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn handshake_deadline_and_plain_http_on_the_tls_port() {
    let ca = Ca::new(&std::env::temp_dir().join(format!("ws-tls-dl-{}", std::process::id())));
    let (cert, key, _) = ca.issue("server", Kind::Valid);
    let s = tls_server(&cert, &key, "tls.handshake_timeout_ms = 300\n");
    // silent: closed at the deadline (the read returns EOF long before its own 10 s timeout)
    let mut silent = TcpStream::connect(s.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 64];
    assert_eq!(silent.read(&mut b).unwrap(), 0);
    // plain HTTP is not a ClientHello: a TLS alert at most, never an HTTP answer
    let mut plain = TcpStream::connect(s.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let metrics = https_get(s.addr, ca.client_config(BOTH), "/metrics");
    let failures = |r: &str| metric_sum(&metrics, "wiresocket_tls_handshake_failures_total", &[r]);
    assert_eq!(failures("reason=\"timeout\""), 1.0, "{metrics}");
    assert_eq!(failures("reason=\"error\""), 1.0, "{metrics}");
}
