//! Unit tests of key handling: every allowed algorithm with its own key type (test keys in
//! `tests/keys/`), `kid` selection, several HMAC secrets, algorithm confusion (RS256 header
//! with an HMAC signature, HS256 signed with the public key, `alg: none`, empty keys),
//! `nbf`/`iat` leeway and revocation. JWKS tests are in `tests_jwks.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

pub(super) const SECRET: &str = "unit-test-secret";
const ALL: [&str; 10] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

pub(super) fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Signs `claims` with the private key `tests/keys/<name>.key.pem` (or `SECRET` for HS*).
pub(super) fn sign(alg: Algorithm, name: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg.family() {
        jsonwebtoken::AlgorithmFamily::Hmac => EncodingKey::from_secret(name.as_bytes()),
        family => {
            let pem = std::fs::read(key_path(&format!("{name}.key.pem"))).unwrap();
            match family {
                jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
                _ => EncodingKey::from_ed_pem(&pem),
            }
            .unwrap()
        }
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A token assembled by hand: any header, the payload, and an HMAC-SHA256 of both with `key`.
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

fn cfg_with(algs: &[&str], pubs: &[&str]) -> AuthConfig {
    AuthConfig {
        hmac_secret: SECRET.into(),
        algorithms: algs.iter().map(|a| a.to_string()).collect(),
        public_keys: pubs
            .iter()
            .map(|n| key_path(&format!("{n}.pub.pem")))
            .collect(),
        ..AuthConfig::default()
    }
}

fn all_keys() -> Verifier {
    let pubs = ["rsa-a", "rsa-b", "ec256", "ec384", "ed-a"];
    Verifier::new(&cfg_with(&ALL, &pubs)).unwrap()
}

fn reason(r: Result<impl std::fmt::Debug, AuthError>) -> (Refusal, String) {
    match r {
        Err(AuthError::Invalid(why, text)) => (why, text),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now() + 600, "iat": now()})
}

#[test]
fn every_allowed_algorithm_verifies_with_its_own_key_type() {
    let v = all_keys();
    let cases = [
        (Algorithm::HS256, SECRET),
        (Algorithm::HS384, SECRET),
        (Algorithm::HS512, SECRET),
        (Algorithm::RS256, "rsa-a"),
        (Algorithm::RS384, "rsa-b"),
        (Algorithm::RS512, "rsa-a"),
        (Algorithm::PS256, "rsa-b"),
        (Algorithm::ES256, "ec256"),
        (Algorithm::ES384, "ec384"),
        (Algorithm::EdDSA, "ed-a"),
    ];
    for (alg, key) in cases {
        let token = sign(alg, key, None, &claims("u"));
        assert_eq!(v.verify_connect(&token).unwrap().user, "u", "{alg:?}");
    }
    // a key of the right type that is not configured: bad signature
    let stranger = sign(Algorithm::EdDSA, "ed-b", None, &claims("u"));
    assert_eq!(reason(v.verify_connect(&stranger)).0, Refusal::Signature);
    let stranger = sign(Algorithm::HS256, "other-secret", None, &claims("u"));
    assert_eq!(reason(v.verify_connect(&stranger)).0, Refusal::Signature);
}

#[test]
fn an_algorithm_outside_the_allow_list_is_refused_even_with_a_valid_key() {
    let v = Verifier::new(&cfg_with(&["RS256"], &["rsa-a"])).unwrap();
    for (alg, key) in [(Algorithm::PS256, "rsa-a"), (Algorithm::HS256, SECRET)] {
        let token = sign(alg, key, None, &claims("u"));
        assert_eq!(
            reason(v.verify_connect(&token)).0,
            Refusal::Algorithm,
            "{alg:?}"
        );
    }
    assert!(v
        .verify_connect(&sign(Algorithm::RS256, "rsa-a", None, &claims("u")))
        .is_ok());
}

#[test]
fn kid_selects_the_public_key_named_after_its_file() {
    let v = all_keys();
    let signed_a = |kid| sign(Algorithm::RS256, "rsa-a", kid, &claims("u"));
    assert!(v.verify_connect(&signed_a(Some("rsa-a"))).is_ok());
    // named key is rsa-b: rsa-a's signature is not tried against other keys
    assert_eq!(
        reason(v.verify_connect(&signed_a(Some("rsa-b")))).0,
        Refusal::Signature
    );
    let (why, text) = reason(v.verify_connect(&signed_a(Some("nope"))));
    assert_eq!(
        (why, text.as_str()),
        (Refusal::UnknownKey, "unknown key id \"nope\"")
    );
    // without kid every RSA key is tried
    assert!(v.verify_connect(&signed_a(None)).is_ok());
    // HMAC secrets have no id: a kid in an HS256 header does not hide them
    let hs = sign(Algorithm::HS256, SECRET, Some("v1"), &claims("u"));
    assert!(v.verify_connect(&hs).is_ok());
}

#[test]
fn several_hmac_secrets_are_valid_at_once() {
    let cfg = AuthConfig {
        hmac_secret: "old-secret".into(),
        hmac_secrets: vec!["new-secret".into(), "newer-secret".into()],
        ..AuthConfig::default()
    };
    let v = Verifier::new(&cfg).unwrap();
    for secret in ["old-secret", "new-secret", "newer-secret"] {
        let token = sign(Algorithm::HS256, secret, None, &claims(secret));
        assert_eq!(v.verify_connect(&token).unwrap().user, secret);
    }
    let retired = sign(Algorithm::HS256, "retired-secret", None, &claims("u"));
    assert_eq!(reason(v.verify_connect(&retired)).0, Refusal::Signature);
    // the old secret dropped from config: its tokens stop verifying
    let rotated = AuthConfig {
        hmac_secret: String::new(),
        ..cfg
    };
    let v = Verifier::new(&rotated).unwrap();
    let old = sign(Algorithm::HS256, "old-secret", None, &claims("u"));
    assert_eq!(reason(v.verify_connect(&old)).0, Refusal::Signature);
}

#[test]
fn rs256_header_with_an_hmac_signature_is_refused() {
    // the attacker knows no secret here: the HMAC secret is the server's (worst case)
    let v = Verifier::new(&cfg_with(&["RS256", "HS256"], &["rsa-a"])).unwrap();
    let token = forged(
        json!({"alg": "RS256", "typ": "JWT"}),
        &claims("evil"),
        SECRET.as_bytes(),
    );
    assert_eq!(reason(v.verify_connect(&token)).0, Refusal::Signature);
    let only_rs = Verifier::new(&cfg_with(&["RS256"], &["rsa-a"])).unwrap();
    assert_eq!(reason(only_rs.verify_connect(&token)).0, Refusal::Signature);
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // the classic confusion: the public key (PEM text, or its DER) used as an HMAC secret
    let v = Verifier::new(&cfg_with(&["RS256", "HS256"], &["rsa-a"])).unwrap();
    let pem = std::fs::read(key_path("rsa-a.pub.pem")).unwrap();
    let body: String = String::from_utf8(pem.clone())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    for key in [pem, der] {
        let token = forged(json!({"alg": "HS256"}), &claims("evil"), &key);
        assert_eq!(reason(v.verify_connect(&token)).0, Refusal::Signature);
        let with_kid = forged(
            json!({"alg": "HS256", "kid": "rsa-a"}),
            &claims("evil"),
            &key,
        );
        assert_eq!(reason(v.verify_connect(&with_kid)).0, Refusal::Signature);
    }
}

#[test]
fn alg_none_is_always_refused() {
    let v = all_keys();
    let payload = B64.encode(claims("evil").to_string());
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        for sig in ["", "AAAA"] {
            let token = format!("{}.{payload}.{sig}", B64.encode(header));
            let (why, text) = reason(v.verify_connect(&token));
            assert_eq!(why, Refusal::Algorithm, "{header}");
            assert!(text.contains("not accepted"), "{text}");
        }
    }
    // no header algorithm at all
    let token = format!("{}.{payload}.", B64.encode(r#"{"typ":"JWT"}"#));
    assert_eq!(reason(v.verify_connect(&token)).0, Refusal::Malformed);
}

#[test]
fn empty_keys_never_verify() {
    // a token signed with an empty HMAC key
    let token = forged(json!({"alg": "HS256"}), &claims("evil"), b"");
    assert_eq!(
        reason(all_keys().verify_connect(&token)).0,
        Refusal::Signature
    );
    // an empty hmac_secret configures no key at all
    let cfg = AuthConfig {
        hmac_secret: String::new(),
        ..AuthConfig::default()
    };
    assert_eq!(
        Verifier::new(&cfg).unwrap().verify_connect(&token),
        Err(AuthError::NotConfigured)
    );
    // and an empty entry in hmac_secrets is a config error
    let mut config = crate::config::Config::default();
    config.auth.hmac_secrets = vec!["ok".into(), String::new()];
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("auth.hmac_secrets[1]"), "{err}");
    // an empty or missing key file stops the start
    let missing = AuthConfig {
        public_keys: vec!["/nonexistent/k.pem".into()],
        ..AuthConfig::default()
    };
    assert!(matches!(Verifier::new(&missing), Err(AuthError::Config(_))));
    let empty = std::env::temp_dir().join(format!("ws-empty-{}.pem", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let bad = AuthConfig {
        public_keys: vec![empty.to_string_lossy().into_owned()],
        ..AuthConfig::default()
    };
    let err = Verifier::new(&bad).unwrap_err().to_string();
    let _ = std::fs::remove_file(&empty);
    assert!(err.contains("is not an RSA"), "{err}");
}

#[test]
fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
    let strict = all_keys();
    let lenient = Verifier::new(&AuthConfig {
        leeway_s: 60,
        ..cfg_with(&ALL, &["ed-a"])
    })
    .unwrap();
    let nbf = sign(
        Algorithm::EdDSA,
        "ed-a",
        None,
        &json!({"sub": "u", "nbf": now() + 30}),
    );
    let iat = sign(
        Algorithm::EdDSA,
        "ed-a",
        None,
        &json!({"sub": "u", "iat": now() + 30}),
    );
    assert_eq!(
        reason(strict.verify_connect(&nbf)).1,
        "token not valid yet (nbf)"
    );
    assert_eq!(
        reason(strict.verify_connect(&iat)).1,
        "token issued in the future (iat)"
    );
    assert_eq!(
        reason(strict.verify_subscription(&sign(
            Algorithm::EdDSA,
            "ed-a",
            None,
            &json!({"sub": "u", "channel": "c", "iat": now() + 30}),
        )))
        .0,
        Refusal::Claims
    );
    assert!(lenient.verify_connect(&nbf).is_ok());
    assert!(lenient.verify_connect(&iat).is_ok());
    let past = sign(
        Algorithm::EdDSA,
        "ed-a",
        None,
        &json!({"sub": "u", "nbf": now() - 5, "iat": now() - 5}),
    );
    assert!(strict.verify_connect(&past).is_ok());
}

#[test]
fn audience_and_issuer_apply_to_public_key_tokens() {
    let v = Verifier::new(&AuthConfig {
        audience: Some("app".into()),
        issuer: Some("idp".into()),
        ..cfg_with(&["ES256"], &["ec256"])
    })
    .unwrap();
    let token = |c: Value| sign(Algorithm::ES256, "ec256", None, &c);
    assert!(v
        .verify_connect(&token(json!({"sub": "u", "aud": "app", "iss": "idp"})))
        .is_ok());
    assert_eq!(
        reason(v.verify_connect(&token(json!({"sub": "u", "aud": "x", "iss": "idp"})))).1,
        "audience mismatch"
    );
    assert_eq!(
        reason(v.verify_connect(&token(json!({"sub": "u", "aud": "app", "iss": "x"})))).1,
        "issuer mismatch"
    );
}

#[test]
fn revoked_tokens_and_invalidated_users_are_refused_and_counted() {
    let v = all_keys();
    let t = now();
    let with = |jti: &str, iat: u64| {
        sign(
            Algorithm::RS256,
            "rsa-a",
            None,
            &json!({"sub": "alice", "jti": jti, "iat": iat}),
        )
    };
    assert!(v.verify_connect(&with("j1", t)).is_ok());
    v.revoke_token("j1", None).unwrap();
    assert_eq!(
        reason(v.verify_connect(&with("j1", t))),
        (Refusal::Revoked, "token revoked".into())
    );
    assert!(v.verify_connect(&with("j2", t)).is_ok());
    let sub = sign(
        Algorithm::RS256,
        "rsa-a",
        None,
        &json!({"sub": "alice", "channel": "c", "jti": "j1"}),
    );
    assert_eq!(reason(v.verify_subscription(&sub)).0, Refusal::Revoked);

    v.invalidate_user_tokens("alice", Some(t), None).unwrap();
    assert_eq!(
        reason(v.verify_connect(&with("j3", t - 10))).0,
        Refusal::Revoked
    );
    let no_iat = sign(Algorithm::RS256, "rsa-a", None, &json!({"sub": "alice"}));
    assert_eq!(reason(v.verify_connect(&no_iat)).0, Refusal::Revoked);
    assert!(
        v.verify_connect(&with("j4", t)).is_ok(),
        "issued at the cut"
    );
    let bob = sign(
        Algorithm::RS256,
        "rsa-a",
        None,
        &json!({"sub": "bob", "iat": t - 10}),
    );
    assert!(v.verify_connect(&bob).is_ok());
    assert_eq!(v.stats().refused_count(Refusal::Revoked), 4);
    let mut text = String::new();
    v.stats().render(&mut text);
    assert!(
        text.contains("wiresocket_auth_tokens_refused_total{reason=\"revoked\"} 4"),
        "{text}"
    );
    assert!(text.contains("wiresocket_auth_revoked_tokens 1"), "{text}");
    assert!(
        text.contains("wiresocket_auth_invalidated_users 1"),
        "{text}"
    );
}
