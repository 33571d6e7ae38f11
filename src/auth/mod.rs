//! JWT verification of connection and subscription tokens, token revocation, and token minting
//! for tools.
//!
//! Owns the token rules of PROTOCOL.md ("JWT claims"). Built once per node from `[auth]`
//! ([`Verifier::new`], which loads the PEM keys and starts the JWKS thread) and cloned into
//! each core (clones share everything). Session code calls [`Verifier::verify_connect`] on
//! `connect`/`refresh` and [`Verifier::verify_subscription`] on `subscribe`/`sub_refresh`; the
//! server API calls [`Verifier::revoke_token`] / [`Verifier::invalidate_user_tokens`]. The CLI
//! (`gen-token`, dev hints) and tests use [`mint`].
//!
//! Invariant: a token is accepted only if its header algorithm is in the configured allow-list,
//! its signature verifies with a configured key *of that algorithm's type* (see `keys`: an HMAC
//! secret never verifies RS256, an RSA key never HS256, `none` and empty keys never verify),
//! selected by `kid` when the header names one; `exp`/`nbf`/`iat`/`expire_at` (when present)
//! are within `leeway_s` of now; `aud`/`iss` match when configured (then they are required);
//! and the revocation store does not refuse its `jti` or its user's `iat`. Verifying reads
//! shared state lock-free (JWKS set, revocation maps) and never blocks.
//!
//! Submodules: `claims` (wire shapes), `mint` (signing for tools and tests), `keys` (key sets), `jwks` (the refresh thread),
//! `revocation` (the store), `stats` (node-wide metrics).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{AuthConfig, SUPPORTED_ALGORITHMS};

mod claims;
mod jwks;
pub mod keys;
mod mint;
pub mod revocation;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_jwks;
#[cfg(test)]
mod tests_keys;

pub use claims::{ConnectClaims, SubscriptionClaims};
pub use mint::{connect_claims_json, mint, mint_with};
pub use revocation::{RevocationError, Revocations, Revoked};
pub use stats::{AuthStats, Refusal};

/// Why a token was refused, or the verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `exp` (or `expire_at`) has passed, beyond the configured leeway.
    #[error("token expired")]
    Expired,
    /// Malformed token, bad signature, disallowed algorithm, unknown key, claim mismatch,
    /// revoked; the kind is the metric's reason, the text says which.
    #[error("invalid token: {1}")]
    Invalid(Refusal, String),
    /// No key is configured to verify (or sign) tokens with.
    #[error("token verification is not configured (no key)")]
    NotConfigured,
    /// The token names a `kid` the JWKS set lacks while fetching the set fails: it may be
    /// valid, so the client is told to retry (error 100) rather than given up on (3500).
    #[error("token keys unavailable (JWKS fetch failing)")]
    Unavailable,
    /// `[auth]` names key material that cannot be loaded (start-up only).
    #[error("{0}")]
    Config(String),
}

impl AuthError {
    fn invalid(why: Refusal, reason: impl Into<String>) -> AuthError {
        AuthError::Invalid(why, reason.into())
    }

    /// The metric reason of a refusal.
    pub fn refusal(&self) -> Refusal {
        match self {
            AuthError::Expired => Refusal::Expired,
            AuthError::Invalid(why, _) => *why,
            AuthError::NotConfigured | AuthError::Config(_) => Refusal::UnknownKey,
            AuthError::Unavailable => Refusal::KeysUnavailable,
        }
    }
}

/// Verifies tokens against one `[auth]` configuration. Cheap to clone; clones share keys,
/// the JWKS set, the revocation store and the metrics.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: keys::KeySet,
    jwks: Option<Arc<jwks::Jwks>>,
    /// One per allowed algorithm, each allowing just that one (jsonwebtoken refuses a key
    /// whose type differs from any listed algorithm).
    validations: Vec<Validation>,
    leeway: u64,
    allow_anonymous: bool,
    revocations: Arc<dyn Revocations>,
    revocation_ttl_s: u64,
    stats: Arc<AuthStats>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<Algorithm> = self
            .inner
            .validations
            .iter()
            .map(|v| v.algorithms[0])
            .collect();
        f.debug_struct("Verifier")
            .field("keys", &self.inner.keys.len())
            .field("jwks", &self.inner.jwks.is_some())
            .field("algorithms", &algs)
            .field("allow_anonymous", &self.inner.allow_anonymous)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier with a node-local revocation store: loads `public_keys` and, with a
    /// `jwks_url`, fetches the set once and starts its refresh thread. Fails on an empty or
    /// unsupported algorithm list or unloadable key files. No key at all is allowed
    /// (anonymous-only setups): verifying a token then fails with `NotConfigured`.
    pub fn new(cfg: &AuthConfig) -> Result<Verifier, AuthError> {
        let store = revocation::MemoryRevocations::new(cfg.max_revocations);
        Verifier::with_revocations(cfg, Arc::new(store))
    }

    /// As [`Verifier::new`], with the given revocation store (the Redis engine's, later).
    pub fn with_revocations(
        cfg: &AuthConfig,
        revocations: Arc<dyn Revocations>,
    ) -> Result<Verifier, AuthError> {
        let algorithms = parse_algorithms(&cfg.algorithms)?;
        let validations = algorithms.iter().map(|a| validation(cfg, *a)).collect();
        let keys = keys::static_keys(cfg).map_err(|e| AuthError::Config(e.to_string()))?;
        let stats = Arc::new(AuthStats::default());
        let jwks = jwks::Jwks::start(cfg, stats.clone());
        Ok(Verifier {
            inner: Arc::new(Inner {
                keys,
                jwks,
                validations,
                leeway: cfg.leeway_s,
                allow_anonymous: cfg.allow_anonymous,
                revocations,
                revocation_ttl_s: cfg.revocation_ttl_s,
                stats,
            }),
        })
    }

    /// Node-wide auth metrics.
    pub fn stats(&self) -> &AuthStats {
        &self.inner.stats
    }

    /// Verifies a connection token. An empty token yields the anonymous user when
    /// `allow_anonymous` is set, and `Invalid("token required")` otherwise. A subscription
    /// token (one with a `channel` claim) is `Invalid`: the session answers 3500.
    pub fn verify_connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        self.counted(self.connect(token))
    }

    /// Verifies a subscription token; its `channel` claim is required. Matching `user` and
    /// `channel` against the connection and the request is the caller's job.
    pub fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, AuthError> {
        self.counted(self.subscription(token))
    }

    fn counted<T>(&self, r: Result<T, AuthError>) -> Result<T, AuthError> {
        if let Err(e) = &r {
            self.inner.stats.refused(e.refusal());
        }
        r
    }

    fn connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        if token.is_empty() {
            return match self.inner.allow_anonymous {
                true => Ok(ConnectClaims::default()),
                false => Err(AuthError::invalid(Refusal::Missing, "token required")),
            };
        }
        let claims = self.decode::<claims::RawConnect>(token)?.into_claims()?;
        self.check(
            claims.expire_at,
            claims.iat,
            claims.jti.as_deref(),
            &claims.user,
        )?;
        Ok(claims)
    }

    fn subscription(&self, token: &str) -> Result<SubscriptionClaims, AuthError> {
        let claims = self
            .decode::<claims::RawSubscription>(token)?
            .into_claims()?;
        self.check(
            claims.expire_at,
            claims.iat,
            claims.jti.as_deref(),
            &claims.user,
        )?;
        Ok(claims)
    }

    fn decode<T: DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        let inner = &*self.inner;
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        let alg = header.alg;
        let validation = inner
            .validations
            .iter()
            .find(|v| v.algorithms[0] == alg)
            .ok_or_else(|| AuthError::invalid(Refusal::Algorithm, "algorithm not allowed"))?;
        let kid = header.kid.as_deref();
        let jwks = inner.jwks.as_ref().map(|j| j.current());
        let candidates = inner
            .keys
            .candidates(alg, kid)
            .chain(jwks.iter().flat_map(|set| set.candidates(alg, kid)));
        let mut tried = 0;
        for key in candidates {
            tried += 1;
            match jsonwebtoken::decode::<T>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                // this key did not sign it: try the next one
                Err(e) if is_key_mismatch(e.kind()) => continue,
                Err(e) => return Err(map_error(e.into_kind())),
            }
        }
        if tried > 0 {
            return Err(AuthError::invalid(Refusal::Signature, "invalid signature"));
        }
        if inner.keys.is_empty() && inner.jwks.is_none() {
            return Err(AuthError::NotConfigured);
        }
        match (kid, &inner.jwks) {
            (Some(kid), Some(jwks)) => {
                jwks.request_refresh();
                if !jwks.healthy() {
                    return Err(AuthError::Unavailable);
                }
                Err(AuthError::invalid(
                    Refusal::UnknownKey,
                    format!("unknown key id {kid:?}"),
                ))
            }
            (Some(kid), None) => Err(AuthError::invalid(
                Refusal::UnknownKey,
                format!("unknown key id {kid:?}"),
            )),
            (None, _) => Err(AuthError::invalid(
                Refusal::UnknownKey,
                format!("no key for algorithm {alg:?}"),
            )),
        }
    }

    /// The checks jsonwebtoken does not make: `expire_at`, `iat` in the future, revocation.
    fn check(
        &self,
        expire_at: Option<u64>,
        iat: Option<u64>,
        jti: Option<&str>,
        user: &str,
    ) -> Result<(), AuthError> {
        let now = now();
        let leeway = self.inner.leeway;
        if let Some(at) = expire_at.filter(|at| *at > 0) {
            if at.saturating_add(leeway) < now {
                return Err(AuthError::Expired);
            }
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(AuthError::invalid(
                Refusal::Claims,
                "token issued in the future (iat)",
            ));
        }
        match self.inner.revocations.check(jti, user, iat, now) {
            None => Ok(()),
            Some(Revoked::Token) => Err(AuthError::invalid(Refusal::Revoked, "token revoked")),
            Some(Revoked::User) => Err(AuthError::invalid(
                Refusal::Revoked,
                "token issued before the user's tokens were invalidated",
            )),
        }
    }

    /// Revokes the token `jti` until `expire_at` (default: now + `auth.revocation_ttl_s`).
    pub fn revoke_token(&self, jti: &str, expire_at: Option<u64>) -> Result<(), RevocationError> {
        let expire_at = expire_at.unwrap_or_else(|| now() + self.inner.revocation_ttl_s);
        let r = self.inner.revocations.revoke_token(jti, expire_at);
        self.after_revocation(&r);
        r
    }

    /// Invalidates `user`'s tokens issued before `issued_before` (default: now) until
    /// `expire_at` (default: now + `auth.revocation_ttl_s`).
    pub fn invalidate_user_tokens(
        &self,
        user: &str,
        issued_before: Option<u64>,
        expire_at: Option<u64>,
    ) -> Result<(), RevocationError> {
        let now = now();
        let expire_at = expire_at.unwrap_or(now + self.inner.revocation_ttl_s);
        let r = self.inner.revocations.invalidate_user_tokens(
            user,
            issued_before.unwrap_or(now),
            expire_at,
        );
        self.after_revocation(&r);
        r
    }

    fn after_revocation(&self, r: &Result<(), RevocationError>) {
        let stats = &self.inner.stats;
        if r.is_err() {
            stats.revocations_refused.fetch_add(1, Relaxed);
        }
        let (tokens, users) = self.inner.revocations.counts();
        stats.revocation_tokens.store(tokens as u64, Relaxed);
        stats.revocation_users.store(users as u64, Relaxed);
    }
}

fn validation(cfg: &AuthConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
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
    validation
}

/// Errors meaning "not this key": another candidate may still verify the token.
fn is_key_mismatch(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidAlgorithm
    )
}

/// Names the problem of a header jsonwebtoken could not read: an algorithm it does not know
/// (`none` included) or a malformed header.
fn header_error(token: &str) -> AuthError {
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(alg) => AuthError::invalid(
            Refusal::Algorithm,
            format!("algorithm {alg:?} is not accepted"),
        ),
        None => AuthError::invalid(Refusal::Malformed, "malformed token header"),
    }
}

fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, AuthError> {
    if names.is_empty() {
        return Err(AuthError::invalid(
            Refusal::Algorithm,
            "no token algorithm allowed",
        ));
    }
    names.iter().map(|name| parse_algorithm(name)).collect()
}

pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, AuthError> {
    if !SUPPORTED_ALGORITHMS.contains(&name) {
        return Err(AuthError::invalid(
            Refusal::Algorithm,
            format!("unsupported algorithm {name:?}"),
        ));
    }
    Algorithm::from_str(name).map_err(|e| AuthError::invalid(Refusal::Algorithm, e.to_string()))
}

fn map_error(kind: ErrorKind) -> AuthError {
    let (why, reason) = match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::InvalidSignature => (Refusal::Signature, "invalid signature".to_owned()),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            (Refusal::Algorithm, "algorithm not allowed".to_owned())
        }
        ErrorKind::InvalidAudience => (Refusal::Claims, "audience mismatch".to_owned()),
        ErrorKind::InvalidIssuer => (Refusal::Claims, "issuer mismatch".to_owned()),
        ErrorKind::ImmatureSignature => (Refusal::Claims, "token not valid yet (nbf)".to_owned()),
        ErrorKind::MissingRequiredClaim(claim) => {
            (Refusal::Claims, format!("missing claim {claim}"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            (Refusal::Malformed, format!("malformed claim {claim}"))
        }
        ErrorKind::Json(e) => (Refusal::Malformed, format!("malformed claims: {e}")),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            (Refusal::Malformed, "malformed token".to_owned())
        }
        other => (Refusal::Malformed, format!("{other:?}")),
    };
    AuthError::Invalid(why, reason)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}
