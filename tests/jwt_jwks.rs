//! Black-box test of a JWKS URL through the real server: a local HTTP server (a std
//! `TcpListener` thread) serves a key set that the test rotates; tokens select keys by `kid`;
//! an unknown `kid` fetches the set early once per window, never once per token.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Serves the current document with the current status to every request until dropped;
/// counts requests.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<ArcSwap<String>>,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl JwksServer {
    fn start(doc: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = JwksServer {
            addr: listener.local_addr().unwrap(),
            doc: Arc::new(ArcSwap::from_pointee(doc)),
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (doc, hits, stop) = (s.doc.clone(), s.hits.clone(), s.stop.clone());
        let status = s.status.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, SeqCst);
                let body = doc.load();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    status.load(SeqCst),
                    body.len(),
                    body
                );
            }
        });
        s
    }

    fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn private_key(alg: Algorithm, name: &str) -> EncodingKey {
    let path = format!("{}/tests/keys/{name}.key.pem", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read(path).unwrap();
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap()
}

fn jwks(keys: &[(Algorithm, &str, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(alg, name, kid)| {
            let mut jwk = Jwk::from_encoding_key(&private_key(*alg, name), *alg).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token(alg: Algorithm, name: &str, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = json!({"sub": "jwks-user", "exp": now_s() + 600});
    jsonwebtoken::encode(&header, &claims, &private_key(alg, name)).unwrap()
}

/// Close code of a refused connect, 0 when it succeeded, or 1000 + the error code of an
/// error reply (the connection stays open).
fn connect(server: &Server, token: &str) -> u16 {
    let mut c = Client::open(server);
    c.send_text(&json!({"id": 1, "connect": { "token": token }}).to_string());
    match c.recv() {
        Ok(r) if r.get("connect").is_some() => 0,
        Ok(r) if r["error"]["code"].is_u64() => 1000 + r["error"]["code"].as_u64().unwrap() as u16,
        Ok(_) => c.wait_close().0,
        Err(Ended::Closed(code, _)) => code,
        Err(Ended::Eof) => 1,
    }
}

#[test]
fn jwks_rotation_is_followed_with_one_early_fetch_per_window() {
    let idp = JwksServer::start(jwks(&[(Algorithm::RS256, "rsa-a", "2026-a")]));
    let server = Server::start_with(&Overrides {
        auth: format!(
            "algorithms = [\"RS256\", \"EdDSA\"]\n\
             jwks_url = \"http://{}/jwks.json\"\n\
             jwks_refresh_s = 3600\n\
             jwks_unknown_kid_refresh_s = 3600\n",
            idp.addr
        ),
        ..Default::default()
    });
    assert_eq!(idp.hits(), 1, "fetched once at start");
    let old = token(Algorithm::RS256, "rsa-a", "2026-a");
    assert_eq!(connect(&server, &old), 0);

    // the provider rotates: a new Ed25519 key, the RSA key withdrawn
    idp.doc
        .store(Arc::new(jwks(&[(Algorithm::EdDSA, "ed-a", "2026-b")])));
    let new = token(Algorithm::EdDSA, "ed-a", "2026-b");
    let until = Instant::now() + Duration::from_secs(10);
    let mut first = None;
    loop {
        let code = connect(&server, &new);
        first.get_or_insert(code);
        if code == 0 {
            break;
        }
        assert_eq!(code, 3500);
        assert!(Instant::now() < until, "the rotated key was never fetched");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(first, Some(3500), "unknown until fetched");
    assert_eq!(idp.hits(), 2, "one early fetch");
    assert_eq!(connect(&server, &old), 3500, "withdrawn key");

    // unknown kids within the window: refused, and no fetch per token
    for i in 0..30 {
        let stray = token(Algorithm::EdDSA, "ed-a", &format!("stray-{i}"));
        assert_eq!(connect(&server, &stray), 3500);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(idp.hits(), 2);
    let m = server.metrics();
    assert_eq!(
        metric_sum(&m, "wiresocket_auth_jwks_fetches_total", &[]),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "wiresocket_auth_jwks_early_refreshes_total", &[]),
        1.0
    );
    assert_eq!(metric_sum(&m, "wiresocket_auth_jwks_keys", &[]), 1.0);
    // the new key before its fetch (at least once), the withdrawn key, the 30 strays
    let unknown = metric_sum(
        &m,
        "wiresocket_auth_tokens_refused_total",
        &["reason=\"unknown_key\""],
    );
    assert!(unknown >= 32.0, "{m}");
}

#[test]
fn while_the_jwks_cannot_be_fetched_an_unknown_kid_is_a_temporary_error() {
    let idp = JwksServer::start(jwks(&[(Algorithm::EdDSA, "ed-a", "k1")]));
    idp.status.store(503, SeqCst);
    let server = Server::start_with(&Overrides {
        auth: format!(
            "algorithms = [\"EdDSA\"]\n\
             jwks_url = \"http://{}/jwks.json\"\n\
             jwks_unknown_kid_refresh_s = 1\n",
            idp.addr
        ),
        ..Default::default()
    });
    let k1 = token(Algorithm::EdDSA, "ed-a", "k1");
    // error 100 (temporary, the SDK reconnects), not the terminal 3500
    assert_eq!(connect(&server, &k1), 1100);
    idp.status.store(200, SeqCst);
    let until = Instant::now() + Duration::from_secs(10);
    while connect(&server, &k1) != 0 {
        assert!(Instant::now() < until, "never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = server.metrics();
    assert!(
        metric_sum(
            &m,
            "wiresocket_auth_tokens_refused_total",
            &["reason=\"keys_unavailable\""]
        ) >= 1.0,
        "{m}"
    );
    assert!(metric_sum(&m, "wiresocket_auth_jwks_fetch_errors_total", &[]) >= 1.0);
}
