//! Unit tests of the JWKS key set against a local HTTP server (a std `TcpListener` thread)
//! whose document the test rotates: `kid` selection, early refresh on an unknown `kid` (once,
//! rate-limited), periodic refresh, failed fetches keeping the last good set, and which JWKs
//! are never loaded (symmetric, encryption, `alg` of another key type).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::tests_keys::{key_path, sign};
use super::*;

/// Serves `doc` with `status` to every request until dropped; counts requests.
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
        let server = JwksServer {
            addr: listener.local_addr().unwrap(),
            doc: Arc::new(ArcSwap::from_pointee(doc)),
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (doc, status, hits, stop) = (
            server.doc.clone(),
            server.status.clone(),
            server.hits.clone(),
            server.stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
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
        server
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

/// The public JWK of `tests/keys/<name>.key.pem` with `kid`.
fn jwk(alg: Algorithm, name: &str, kid: &str) -> Value {
    let pem = std::fs::read(key_path(&format!("{name}.key.pem"))).unwrap();
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn doc(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn jwks_cfg(url: String, refresh_s: u64, early_s: u64) -> AuthConfig {
    AuthConfig {
        algorithms: vec!["RS256".into(), "EdDSA".into(), "HS256".into()],
        hmac_secret: "static-secret".into(),
        jwks_url: Some(url),
        jwks_refresh_s: refresh_s,
        jwks_unknown_kid_refresh_s: early_s,
        jwks_timeout_ms: 2_000,
        ..AuthConfig::default()
    }
}

fn token(alg: Algorithm, key: &str, kid: &str) -> String {
    sign(
        alg,
        key,
        Some(kid),
        &json!({"sub": "u", "exp": now() + 600}),
    )
}

fn refusal(v: &Verifier, token: &str) -> Refusal {
    v.verify_connect(token).unwrap_err().refusal()
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "not reached in 10 s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rotation_is_picked_up_by_one_early_refresh_per_window() {
    let server = JwksServer::start(doc(&[jwk(Algorithm::RS256, "rsa-a", "k1")]));
    let v = Verifier::new(&jwks_cfg(server.url(), 3600, 3600)).unwrap();
    assert_eq!(server.hits(), 1, "fetched once at start");
    assert!(v
        .verify_connect(&token(Algorithm::RS256, "rsa-a", "k1"))
        .is_ok());
    // kid selection: rsa-a's signature under another kid is not accepted
    assert_eq!(
        refusal(&v, &token(Algorithm::RS256, "rsa-a", "k9")),
        Refusal::UnknownKey
    );
    wait_until("the early fetch asked by k9", || server.hits() == 2);

    // the provider rotates to k2 (Ed25519); the window for early refreshes is spent
    server
        .doc
        .store(Arc::new(doc(&[jwk(Algorithm::EdDSA, "ed-a", "k2")])));
    let k2 = token(Algorithm::EdDSA, "ed-a", "k2");
    for _ in 0..200 {
        assert_eq!(refusal(&v, &k2), Refusal::UnknownKey);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.hits(), 2, "no fetch per token");
    assert_eq!(v.stats().jwks_early_refreshes.load(SeqCst), 1);
}

#[test]
fn an_unknown_kid_fetches_the_rotated_set_early() {
    let server = JwksServer::start(doc(&[jwk(Algorithm::RS256, "rsa-a", "k1")]));
    let v = Verifier::new(&jwks_cfg(server.url(), 3600, 3600)).unwrap();
    let k1 = token(Algorithm::RS256, "rsa-a", "k1");
    assert!(v.verify_connect(&k1).is_ok());
    server.doc.store(Arc::new(doc(&[
        jwk(Algorithm::EdDSA, "ed-a", "k2"),
        jwk(Algorithm::RS256, "rsa-b", "k3"),
    ])));
    let k2 = token(Algorithm::EdDSA, "ed-a", "k2");
    assert_eq!(refusal(&v, &k2), Refusal::UnknownKey);
    wait_until("k2 verifies after the early fetch", || {
        v.verify_connect(&k2).is_ok()
    });
    assert_eq!(server.hits(), 2);
    assert!(v
        .verify_connect(&token(Algorithm::RS256, "rsa-b", "k3"))
        .is_ok());
    assert_eq!(refusal(&v, &k1), Refusal::UnknownKey, "k1 was rotated out");
    // static HMAC secrets keep working beside the JWKS
    assert!(v
        .verify_connect(&sign(
            Algorithm::HS256,
            "static-secret",
            None,
            &json!({"sub": "s"})
        ))
        .is_ok());
}

#[test]
fn periodic_refresh_and_failed_fetches_keep_the_last_good_set() {
    let server = JwksServer::start(doc(&[jwk(Algorithm::RS256, "rsa-a", "k1")]));
    let v = Verifier::new(&jwks_cfg(server.url(), 1, 3600)).unwrap();
    let k1 = token(Algorithm::RS256, "rsa-a", "k1");
    assert!(v.verify_connect(&k1).is_ok());
    let stats = v.stats();
    server.status.store(500, SeqCst);
    wait_until("a failed fetch (500)", || {
        stats.jwks_fetches_failed.load(SeqCst) >= 1
    });
    assert!(v.verify_connect(&k1).is_ok(), "kept after a 500");
    server.status.store(200, SeqCst);
    server.doc.store(Arc::new("<html>not json</html>".into()));
    let failed = stats.jwks_fetches_failed.load(SeqCst);
    wait_until("a failed fetch (not JSON)", || {
        stats.jwks_fetches_failed.load(SeqCst) > failed
    });
    assert!(v.verify_connect(&k1).is_ok(), "kept after a bad document");
    // rotation picked up by the periodic fetch alone (no token asked for it)
    server
        .doc
        .store(Arc::new(doc(&[jwk(Algorithm::EdDSA, "ed-b", "k2")])));
    let ok = stats.jwks_fetches_ok.load(SeqCst);
    wait_until("a periodic fetch", || {
        stats.jwks_fetches_ok.load(SeqCst) > ok
    });
    assert!(v
        .verify_connect(&token(Algorithm::EdDSA, "ed-b", "k2"))
        .is_ok());
    assert_eq!(stats.jwks_early_refreshes.load(SeqCst), 0);
    assert_eq!(refusal(&v, &k1), Refusal::UnknownKey);
}

#[test]
fn symmetric_encryption_and_mismatched_jwks_are_never_loaded() {
    let secret = "jwks-oct-secret";
    let oct = json!({"kty": "oct", "kid": "o", "alg": "HS256",
        "k": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret)});
    let empty_oct = json!({"kty": "oct", "kid": "e", "k": ""});
    let mut enc = jwk(Algorithm::RS256, "rsa-b", "enc");
    enc["use"] = json!("enc");
    let mut rs_only = jwk(Algorithm::RS256, "rsa-a", "r");
    rs_only["alg"] = json!("RS256");
    let mut wrong_type = jwk(Algorithm::EdDSA, "ed-a", "w");
    wrong_type["alg"] = json!("RS256");
    let unknown = json!({"kty": "XYZ", "kid": "x"});
    let list = [oct, empty_oct, enc, rs_only, wrong_type, unknown];
    let (set, skipped) = keys::from_jwks(doc(&list).as_bytes()).unwrap();
    assert_eq!((set.len(), skipped), (1, 5));
    assert!(keys::from_jwks(b"{\"nokeys\":1}").is_err());

    let server = JwksServer::start(doc(&list));
    let mut cfg = jwks_cfg(server.url(), 3600, 3600);
    cfg.algorithms.push("PS256".into());
    let v = Verifier::new(&cfg).unwrap();
    let hs = sign(Algorithm::HS256, secret, Some("o"), &json!({"sub": "u"}));
    assert_eq!(refusal(&v, &hs), Refusal::Signature, "oct JWK is no key");
    assert!(v
        .verify_connect(&token(Algorithm::RS256, "rsa-a", "r"))
        .is_ok());
    // the JWK says RS256: a PS256 token under its kid has no key
    assert_eq!(
        refusal(&v, &token(Algorithm::PS256, "rsa-a", "r")),
        Refusal::UnknownKey
    );
    assert_eq!(
        refusal(&v, &token(Algorithm::RS256, "rsa-b", "enc")),
        Refusal::UnknownKey
    );
}

#[test]
fn an_unknown_kid_while_fetches_fail_is_temporary_not_invalid() {
    let server = JwksServer::start(doc(&[jwk(Algorithm::EdDSA, "ed-a", "k1")]));
    server.status.store(503, SeqCst);
    let v = Verifier::new(&jwks_cfg(server.url(), 3600, 1)).unwrap();
    let k1 = token(Algorithm::EdDSA, "ed-a", "k1");
    assert_eq!(v.verify_connect(&k1), Err(AuthError::Unavailable));
    assert_eq!(v.stats().refused_count(Refusal::KeysUnavailable), 1);
    // the provider recovers: a retry after the early-refresh window verifies
    server.status.store(200, SeqCst);
    wait_until("k1 verifies once the set is fetched", || {
        v.verify_connect(&k1).is_ok()
    });
    // with a healthy set, an unknown kid is invalid again
    assert_eq!(
        refusal(&v, &token(Algorithm::EdDSA, "ed-a", "k9")),
        Refusal::UnknownKey
    );
}
