//! Black-box tests of token keys through the real server: RS256 (and ES256, EdDSA) tokens
//! verified with PEM public keys from `auth.public_keys`, two HMAC secrets valid at once, and
//! the algorithm-confusion cases (RS256 header with an HMAC signature, HS256 signed with the
//! public key, `alg: none`, an empty key) refused with 3500 and counted by reason.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sign(alg: Algorithm, name: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(key_path(&format!("{name}.key.pem"))).unwrap();
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn hmac(secret: &[u8], claims: &Value) -> String {
    forged(json!({"alg": "HS256", "typ": "JWT"}), claims, secret)
}

/// Any header over `claims`, signed HMAC-SHA256 with `key`.
fn forged(header: Value, claims: &Value, key: &[u8]) -> String {
    let msg = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{msg}.{sig}")
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now_s() + 600, "iat": now_s()})
}

/// Connects with `token`: Ok(user's client id reply) or Err(close code).
fn connect(server: &Server, token: &str) -> Result<Value, u16> {
    let mut c = Client::open(server);
    c.send_text(&json!({"id": 1, "connect": { "token": token }}).to_string());
    match c.recv() {
        Ok(r) if r.get("connect").is_some() => Ok(r["connect"].clone()),
        Ok(_) => Err(c.wait_close().0),
        Err(Ended::Closed(code, _)) => Err(code),
        Err(Ended::Eof) => Err(0),
    }
}

fn server_with_keys() -> Server {
    Server::start_with(&Overrides {
        auth: format!(
            "algorithms = [\"HS256\", \"RS256\", \"ES256\", \"EdDSA\"]\n\
             hmac_secrets = [\"second-secret-for-rotation\"]\n\
             public_keys = [\"{}\", \"{}\", \"{}\"]\n",
            key_path("rsa-a.pub.pem"),
            key_path("ec256.pub.pem"),
            key_path("ed-a.pub.pem"),
        ),
        ..Default::default()
    })
}

#[test]
fn public_key_tokens_from_pem_files_connect() {
    let server = server_with_keys();
    for (alg, key, kid) in [
        (Algorithm::RS256, "rsa-a", None),
        (Algorithm::RS256, "rsa-a", Some("rsa-a")),
        (Algorithm::ES256, "ec256", None),
        (Algorithm::EdDSA, "ed-a", Some("ed-a")),
    ] {
        let token = sign(alg, key, kid, &claims("pk-user"));
        assert!(connect(&server, &token).is_ok(), "{alg:?} {kid:?}");
    }
    // right type, wrong key; a kid naming no configured key; an algorithm not allowed
    let cases = [
        sign(Algorithm::RS256, "rsa-b", None, &claims("u")),
        sign(Algorithm::RS256, "rsa-a", Some("rsa-b"), &claims("u")),
        sign(Algorithm::PS256, "rsa-a", None, &claims("u")),
    ];
    for token in cases {
        assert_eq!(connect(&server, &token), Err(3500));
    }
    let m = server.metrics();
    let refused = |r: &str| metric_sum(&m, "wiresocket_auth_tokens_refused_total", &[r]);
    assert_eq!(refused("reason=\"signature\""), 1.0, "{m}");
    assert_eq!(refused("reason=\"unknown_key\""), 1.0, "{m}");
    assert_eq!(refused("reason=\"algorithm\""), 1.0, "{m}");
}

#[test]
fn two_hmac_secrets_are_valid_at_once() {
    let server = server_with_keys();
    let first = hmac(SECRET.as_bytes(), &claims("old"));
    let second = hmac(b"second-secret-for-rotation", &claims("new"));
    assert!(connect(&server, &first).is_ok());
    assert!(connect(&server, &second).is_ok());
    let retired = hmac(b"a-secret-no-longer-configured", &claims("u"));
    assert_eq!(connect(&server, &retired), Err(3500));
}

#[test]
fn algorithm_confusion_is_always_refused() {
    let server = server_with_keys();
    let evil = claims("evil");
    let pem = std::fs::read(key_path("rsa-a.pub.pem")).unwrap();
    let payload = B64.encode(evil.to_string());
    let cases = [
        // RS256 header, HMAC signature with the server's own secret
        forged(json!({"alg": "RS256"}), &evil, SECRET.as_bytes()),
        forged(
            json!({"alg": "RS256", "kid": "rsa-a"}),
            &evil,
            SECRET.as_bytes(),
        ),
        // HS256 signed with the (public) RSA key as the secret
        forged(json!({"alg": "HS256"}), &evil, &pem),
        forged(json!({"alg": "HS256", "kid": "rsa-a"}), &evil, &pem),
        // EdDSA header, HMAC signature
        forged(json!({"alg": "EdDSA"}), &evil, SECRET.as_bytes()),
        // an empty HMAC key
        forged(json!({"alg": "HS256"}), &evil, b""),
        // alg none, with and without a signature part
        format!("{}.{payload}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#)),
        format!("{}.{payload}", B64.encode(r#"{"alg":"none"}"#)),
        format!("{}.{payload}.AAAA", B64.encode(r#"{"alg":"None"}"#)),
    ];
    for token in &cases {
        assert_eq!(connect(&server, token), Err(3500), "{token}");
    }
    let m = server.metrics();
    let total = metric_sum(&m, "wiresocket_auth_tokens_refused_total", &[]);
    assert_eq!(total, cases.len() as f64, "{m}");
    assert_eq!(
        metric_sum(
            &m,
            "wiresocket_auth_tokens_refused_total",
            &["reason=\"algorithm\""]
        ),
        3.0,
        "the three none headers: {m}"
    );
}

#[test]
fn nbf_and_iat_in_the_future_are_refused_unless_within_leeway() {
    let strict = server_with_keys();
    let nbf = sign(
        Algorithm::EdDSA,
        "ed-a",
        None,
        &json!({"sub": "u", "nbf": now_s() + 60}),
    );
    let iat = sign(
        Algorithm::EdDSA,
        "ed-a",
        None,
        &json!({"sub": "u", "iat": now_s() + 60}),
    );
    assert_eq!(connect(&strict, &nbf), Err(3500));
    assert_eq!(connect(&strict, &iat), Err(3500));
    let m = strict.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "wiresocket_auth_tokens_refused_total",
            &["reason=\"claims\""]
        ),
        2.0
    );
    let lenient = Server::start_with(&Overrides {
        auth: format!(
            "algorithms = [\"EdDSA\"]\npublic_keys = [\"{}\"]\nleeway_s = 120\n",
            key_path("ed-a.pub.pem")
        ),
        ..Default::default()
    });
    assert!(connect(&lenient, &nbf).is_ok());
    assert!(connect(&lenient, &iat).is_ok());
}

#[test]
fn an_unreadable_key_file_stops_the_start_naming_it() {
    let err = Server::try_start(&Overrides {
        auth: "algorithms = [\"RS256\"]\npublic_keys = [\"/nonexistent/key.pem\"]\n".into(),
        ..Default::default()
    })
    .err()
    .expect("must not start");
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
}

#[test]
fn check_config_loads_the_key_files() {
    let dir = std::env::temp_dir().join(format!("ws-jwt-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |keys: &str| {
        let path = dir.join("ws.toml");
        let toml = format!("[auth]\nalgorithms = [\"RS256\"]\npublic_keys = [\"{keys}\"]\n");
        std::fs::write(&path, toml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_wiresocket"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let good = run(&key_path("rsa-a.pub.pem"));
    assert!(good.status.success(), "{good:?}");
    let not_a_key = run(&key_path("README.md"));
    assert!(!not_a_key.status.success());
    let stderr = String::from_utf8_lossy(&not_a_key.stderr);
    assert!(stderr.contains("README.md is not an RSA"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
