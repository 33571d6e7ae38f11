//! JWT verification of connection and subscription tokens, and token minting for tools.
//!
//! Owns the token rules of PROTOCOL.md ("JWT claims"). Built once from `[auth]` config
//! ([`Verifier::new`]) and cloned into each core; session code calls
//! [`Verifier::verify_connect`] on `connect`/`refresh` and [`Verifier::verify_subscription`] on
//! `subscribe`/`sub_refresh`. The CLI (`gen-token`, dev hints) and tests use [`mint`].
//! Invariant: a token is accepted only if its header algorithm is in the configured allow-list,
//! its signature verifies with the configured key, `exp`/`nbf`/`expire_at` (when present) are
//! within `leeway_s` of now, and `aud`/`iss` match when configured (then they are required).
//! The verifier holds no mutable state, so verifying never blocks or allocates shared state.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::config::{AuthConfig, SUPPORTED_ALGORITHMS};

mod claims;
#[cfg(test)]
mod tests;

pub use claims::{ConnectClaims, SubscriptionClaims};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `exp` (or `expire_at`) has passed, beyond the configured leeway.
    #[error("token expired")]
    Expired,
    /// Malformed token, bad signature, disallowed algorithm, claim mismatch; the text says which.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// No key is configured to verify (or sign) tokens with.
    #[error("token verification is not configured (no HMAC secret)")]
    NotConfigured,
}

/// Verifies tokens against one `[auth]` configuration. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    key: Option<DecodingKey>,
    validation: Validation,
    allow_anonymous: bool,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("algorithms", &self.validation.algorithms)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier. Fails on an empty or unsupported algorithm list. An empty secret is
    /// allowed (anonymous-only setups): verifying a token then fails with `NotConfigured`.
    pub fn new(cfg: &AuthConfig) -> Result<Verifier, AuthError> {
        let algorithms = parse_algorithms(&cfg.algorithms)?;
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.required_spec_claims = HashSet::new();
        validation.leeway = cfg.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        match &cfg.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        let key = (!cfg.hmac_secret.is_empty())
            .then(|| DecodingKey::from_secret(cfg.hmac_secret.as_bytes()));
        Ok(Verifier {
            key,
            validation,
            allow_anonymous: cfg.allow_anonymous,
        })
    }

    /// Verifies a connection token. An empty token yields the anonymous user when
    /// `allow_anonymous` is set, and `Invalid("token required")` otherwise. A subscription
    /// token (one with a `channel` claim) is `Invalid`: the session answers 3500.
    pub fn verify_connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        if token.is_empty() {
            return match self.allow_anonymous {
                true => Ok(ConnectClaims::default()),
                false => Err(AuthError::Invalid("token required".into())),
            };
        }
        let claims = self.decode::<claims::RawConnect>(token)?.into_claims()?;
        self.check_expire_at(claims.expire_at)?;
        Ok(claims)
    }

    /// Verifies a subscription token; its `channel` claim is required. Matching `user` and
    /// `channel` against the connection and the request is the caller's job.
    pub fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, AuthError> {
        let claims = self
            .decode::<claims::RawSubscription>(token)?
            .into_claims()?;
        self.check_expire_at(claims.expire_at)?;
        Ok(claims)
    }

    fn decode<T: DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        let key = self.key.as_ref().ok_or(AuthError::NotConfigured)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token header".into()))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid("algorithm not allowed".into()));
        }
        jsonwebtoken::decode::<T>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| map_error(e.into_kind()))
    }

    fn check_expire_at(&self, expire_at: Option<u64>) -> Result<(), AuthError> {
        match expire_at {
            Some(at) if at > 0 && at.saturating_add(self.validation.leeway) < now() => {
                Err(AuthError::Expired)
            }
            _ => Ok(()),
        }
    }
}

fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, AuthError> {
    if names.is_empty() {
        return Err(AuthError::Invalid("no token algorithm allowed".into()));
    }
    names.iter().map(|name| parse_algorithm(name)).collect()
}

fn parse_algorithm(name: &str) -> Result<Algorithm, AuthError> {
    if !SUPPORTED_ALGORITHMS.contains(&name) {
        return Err(AuthError::Invalid(format!(
            "unsupported algorithm {name:?}"
        )));
    }
    Algorithm::from_str(name).map_err(|e| AuthError::Invalid(e.to_string()))
}

fn map_error(kind: ErrorKind) -> AuthError {
    let reason = match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::InvalidSignature => "invalid signature".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "algorithm not allowed".to_owned()
        }
        ErrorKind::InvalidAudience => "audience mismatch".to_owned(),
        ErrorKind::InvalidIssuer => "issuer mismatch".to_owned(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim {claim}"),
        ErrorKind::Json(e) => format!("malformed claims: {e}"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "malformed token".to_owned()
        }
        other => format!("{other:?}"),
    };
    AuthError::Invalid(reason)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

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
        .map_err(|e| AuthError::Invalid(format!("cannot sign: {e}")))
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
