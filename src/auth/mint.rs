//! Token minting for tools and tests: `gen-token`, the dev hint printed by `serve` on built-in
//! defaults, and the unit tests. HMAC only (the server never holds private keys).
//!
//! Invariant: never signs with an empty secret ([`AuthError::NotConfigured`]).

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::{now, parse_algorithm, AuthError, Refusal};

/// Signs `claims` with HS256 and `secret`. Fails with `NotConfigured` on an empty secret.
pub fn mint(secret: &str, claims: &Value) -> Result<String, AuthError> {
    mint_with("HS256", secret, claims)
}

/// Signs `claims` with the named HMAC algorithm (`HS256`, `HS384` or `HS512`) and `secret`.
pub fn mint_with(algorithm: &str, secret: &str, claims: &Value) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::NotConfigured);
    }
    let alg = parse_algorithm(algorithm)?;
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(alg), claims, &key)
        .map_err(|e| AuthError::invalid(Refusal::Algorithm, format!("cannot sign: {e}")))
}

/// Connection-token claims: `sub`, `iat`, `exp` = now + `ttl_s` (omitted when `ttl_s` is 0, so
/// the token never expires), `info` when given, `channels` when non-empty.
pub fn connect_claims_json(
    user: &str,
    ttl_s: u64,
    info: Option<Value>,
    channels: &[String],
) -> Value {
    let now = now();
    let mut claims = json!({ "sub": user, "iat": now });
    if ttl_s > 0 {
        claims["exp"] = json!(now.saturating_add(ttl_s));
    }
    if let Some(info) = info {
        claims["info"] = info;
    }
    if !channels.is_empty() {
        claims["channels"] = json!(channels);
    }
    claims
}
