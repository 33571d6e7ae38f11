//! Unit tests of token verification: signatures, algorithms, expiry, audience/issuer, claims.

use serde_json::json;

use super::*;

const SECRET: &str = "test-secret";

fn cfg() -> AuthConfig {
    AuthConfig {
        hmac_secret: SECRET.into(),
        ..AuthConfig::default()
    }
}

fn verifier(cfg: &AuthConfig) -> Verifier {
    Verifier::new(cfg).unwrap()
}

fn invalid(result: Result<impl std::fmt::Debug, AuthError>) -> String {
    match result {
        Err(AuthError::Invalid(_, reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn valid_connect_token_yields_all_claims() {
    let exp = now() + 600;
    let token = mint(
        SECRET,
        &json!({
            "sub": "alice", "exp": exp, "iat": now(),
            "info": {"name": "Alice", "tags": [1, 2]},
            "channels": ["news", "chat:1"],
            "dbCode": "eu", "regionCode": "eu-west",
            "custom_claim": {"anything": true}
        }),
    )
    .unwrap();
    let claims = verifier(&cfg()).verify_connect(&token).unwrap();
    assert_eq!(claims.user, "alice");
    assert_eq!(claims.exp, Some(exp));
    assert_eq!(claims.expire_at, None);
    assert_eq!(claims.expires_at(), Some(exp));
    let info: Value = serde_json::from_str(claims.info.as_deref().unwrap()).unwrap();
    assert_eq!(info, json!({"name": "Alice", "tags": [1, 2]}));
    assert!(!claims.info.unwrap().contains(' '), "compact JSON");
    assert_eq!(claims.channels, ["news", "chat:1"]);
    assert_eq!(claims.db_code.as_deref(), Some("eu"));
    assert_eq!(claims.region_code.as_deref(), Some("eu-west"));
}

#[test]
fn info_of_any_json_type_round_trips() {
    let v = verifier(&cfg());
    for info in [
        json!("text"),
        json!(42),
        json!([1, "a"]),
        json!({"k": {"n": null}}),
    ] {
        let token = mint(SECRET, &json!({"sub": "u", "info": info})).unwrap();
        let text = v.verify_connect(&token).unwrap().info.unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), info);
    }
    let token = mint(SECRET, &json!({"sub": "u", "info": null})).unwrap();
    assert_eq!(v.verify_connect(&token).unwrap().info, None);
}

#[test]
fn token_without_exp_never_expires() {
    let token = mint(SECRET, &json!({"sub": "bob"})).unwrap();
    let claims = verifier(&cfg()).verify_connect(&token).unwrap();
    assert_eq!((claims.exp, claims.expires_at()), (None, None));
    assert!(claims.channels.is_empty());
}

#[test]
fn expired_token_is_refused_unless_within_leeway() {
    let token = mint(SECRET, &json!({"sub": "u", "exp": now() - 100})).unwrap();
    assert_eq!(
        verifier(&cfg()).verify_connect(&token),
        Err(AuthError::Expired)
    );
    let lenient = AuthConfig {
        leeway_s: 200,
        ..cfg()
    };
    assert!(verifier(&lenient).verify_connect(&token).is_ok());
}

#[test]
fn expire_at_overrides_exp() {
    let v = verifier(&cfg());
    let past = mint(
        SECRET,
        &json!({"sub": "u", "exp": now() + 60, "expire_at": now() - 10}),
    );
    assert_eq!(v.verify_connect(&past.unwrap()), Err(AuthError::Expired));
    let never = mint(
        SECRET,
        &json!({"sub": "u", "exp": now() + 60, "expire_at": 0}),
    )
    .unwrap();
    assert_eq!(v.verify_connect(&never).unwrap().expires_at(), None);
    let later = now() + 3600;
    let token = mint(
        SECRET,
        &json!({"sub": "u", "exp": now() + 60, "expire_at": later}),
    )
    .unwrap();
    assert_eq!(v.verify_connect(&token).unwrap().expires_at(), Some(later));
}

#[test]
fn float_dates_are_accepted() {
    let exp = (now() + 60) as f64 + 0.5;
    let token = mint(SECRET, &json!({"sub": "u", "exp": exp})).unwrap();
    assert_eq!(
        verifier(&cfg()).verify_connect(&token).unwrap().exp,
        Some(exp as u64)
    );
}

#[test]
fn bad_signature_is_invalid() {
    let token = mint("another-secret", &json!({"sub": "u"})).unwrap();
    assert_eq!(
        invalid(verifier(&cfg()).verify_connect(&token)),
        "invalid signature"
    );
    let mut tampered = mint(SECRET, &json!({"sub": "u"})).unwrap();
    tampered.pop();
    assert!(matches!(
        verifier(&cfg()).verify_connect(&tampered),
        Err(AuthError::Invalid(..))
    ));
}

#[test]
fn algorithm_outside_the_allow_list_is_refused() {
    let token = mint_with("HS512", SECRET, &json!({"sub": "u"})).unwrap();
    assert_eq!(
        invalid(verifier(&cfg()).verify_connect(&token)),
        "algorithm not allowed"
    );
    let both = AuthConfig {
        algorithms: vec!["HS256".into(), "HS512".into()],
        ..cfg()
    };
    assert_eq!(verifier(&both).verify_connect(&token).unwrap().user, "u");
    // {"alg":"none","typ":"JWT"} . {"sub":"x"} . (no signature)
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
    assert!(matches!(
        verifier(&cfg()).verify_connect(none),
        Err(AuthError::Invalid(..))
    ));
}

#[test]
fn audience_is_checked_only_when_configured() {
    let with_aud = |aud: Value| mint(SECRET, &json!({"sub": "u", "aud": aud})).unwrap();
    let plain = mint(SECRET, &json!({"sub": "u"})).unwrap();
    assert!(verifier(&cfg())
        .verify_connect(&with_aud(json!("whatever")))
        .is_ok());
    let strict = verifier(&AuthConfig {
        audience: Some("app".into()),
        ..cfg()
    });
    assert!(strict.verify_connect(&with_aud(json!("app"))).is_ok());
    assert!(strict
        .verify_connect(&with_aud(json!(["x", "app"])))
        .is_ok());
    assert_eq!(
        invalid(strict.verify_connect(&with_aud(json!("other")))),
        "audience mismatch"
    );
    assert_eq!(invalid(strict.verify_connect(&plain)), "missing claim aud");
}

#[test]
fn issuer_is_checked_only_when_configured() {
    let with_iss = |iss: &str| mint(SECRET, &json!({"sub": "u", "iss": iss})).unwrap();
    assert!(verifier(&cfg()).verify_connect(&with_iss("anyone")).is_ok());
    let strict = verifier(&AuthConfig {
        issuer: Some("backend".into()),
        ..cfg()
    });
    assert!(strict.verify_connect(&with_iss("backend")).is_ok());
    assert_eq!(
        invalid(strict.verify_connect(&with_iss("evil"))),
        "issuer mismatch"
    );
    let plain = mint(SECRET, &json!({"sub": "u"})).unwrap();
    assert_eq!(invalid(strict.verify_connect(&plain)), "missing claim iss");
}

#[test]
fn subscription_token_needs_a_channel() {
    let v = verifier(&cfg());
    let exp = now() + 60;
    let token = mint(
        SECRET,
        &json!({"sub": "u", "channel": "$room", "info": {"r": 1}, "exp": exp}),
    );
    let claims = v.verify_subscription(&token.unwrap()).unwrap();
    let expected = SubscriptionClaims {
        user: "u".into(),
        channel: "$room".into(),
        info: Some(r#"{"r":1}"#.into()),
        exp: Some(exp),
        expire_at: None,
        jti: None,
        iat: None,
    };
    assert_eq!(claims, expected);
    let missing = mint(SECRET, &json!({"sub": "u"})).unwrap();
    assert_eq!(
        invalid(v.verify_subscription(&missing)),
        "missing channel claim"
    );
    let expired = mint(
        SECRET,
        &json!({"sub": "u", "channel": "c", "exp": now() - 10}),
    )
    .unwrap();
    assert_eq!(v.verify_subscription(&expired), Err(AuthError::Expired));
}

#[test]
fn subscription_token_is_not_a_connection_token() {
    let v = verifier(&cfg());
    let sub = mint(SECRET, &json!({"sub": "u", "channel": "$room"})).unwrap();
    assert!(v.verify_subscription(&sub).is_ok());
    assert_eq!(
        invalid(v.verify_connect(&sub)),
        "subscription token (channel claim) used as a connection token"
    );
    let empty = mint(SECRET, &json!({"sub": "u", "channel": ""})).unwrap();
    assert_eq!(v.verify_connect(&empty).unwrap().user, "u");
}

#[test]
fn anonymous_and_unconfigured() {
    let token = mint(SECRET, &json!({"sub": "u"})).unwrap();
    let anonymous_only = AuthConfig {
        hmac_secret: String::new(),
        allow_anonymous: true,
        ..cfg()
    };
    let v = verifier(&anonymous_only);
    assert_eq!(v.verify_connect(""), Ok(ConnectClaims::default()));
    assert_eq!(v.verify_connect(&token), Err(AuthError::NotConfigured));
    assert_eq!(v.verify_subscription(&token), Err(AuthError::NotConfigured));
    assert_eq!(
        invalid(verifier(&cfg()).verify_connect("")),
        "token required"
    );
    assert_eq!(mint("", &json!({})), Err(AuthError::NotConfigured));
}

#[test]
fn malformed_inputs_are_invalid() {
    let v = verifier(&cfg());
    for token in ["abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.!!!.sig"] {
        assert!(
            matches!(v.verify_connect(token), Err(AuthError::Invalid(..))),
            "{token}"
        );
    }
    let odd = mint(SECRET, &json!({"sub": "u", "channels": "not-a-list"})).unwrap();
    assert!(invalid(v.verify_connect(&odd)).starts_with("malformed claims"));
}

#[test]
fn unsupported_algorithms_are_rejected_at_build_time() {
    for alg in ["none", "XS256", "PS384x", "ES512"] {
        let odd = AuthConfig {
            algorithms: vec![alg.into()],
            ..cfg()
        };
        assert!(
            matches!(Verifier::new(&odd), Err(AuthError::Invalid(..))),
            "{alg}"
        );
    }
    let none = AuthConfig {
        algorithms: vec![],
        ..cfg()
    };
    assert!(matches!(Verifier::new(&none), Err(AuthError::Invalid(..))));
}

#[test]
fn connect_claims_json_shape() {
    let claims = connect_claims_json("demo", 60, Some(json!({"a": 1})), &["news".into()]);
    assert_eq!(claims["sub"], "demo");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    assert_eq!(claims["info"], json!({"a": 1}));
    assert_eq!(claims["channels"], json!(["news"]));
    let bare = connect_claims_json("demo", 0, None, &[]);
    assert!(
        bare.get("exp").is_none() && bare.get("info").is_none() && bare.get("channels").is_none()
    );
    let token = mint(SECRET, &claims).unwrap();
    let verified = verifier(&cfg()).verify_connect(&token).unwrap();
    assert_eq!(
        (verified.user.as_str(), verified.channels.len()),
        ("demo", 1)
    );
}
