//! Node-wide counters of token verification, JWKS refreshes and revocations.
//!
//! One [`AuthStats`] per node, shared (an `Arc` of atomics) by the verifier on every core, the
//! JWKS thread and the revocation API; `GET /metrics` appends [`AuthStats::render`] to the
//! per-core metrics. They carry no `core` label: the JWKS thread and the revocation store belong
//! to no core. Invariant: counters only grow; gauges are set by their single writer.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a token was refused: the `reason` label of `wiresocket_auth_tokens_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token and anonymous connections are not allowed.
    Missing,
    /// Not three base64url parts of JSON, or claims of the wrong type.
    Malformed,
    /// Header algorithm outside the allow-list, `none`, or unknown.
    Algorithm,
    /// No configured key may verify it (unknown `kid`, no key of the algorithm's type).
    UnknownKey,
    /// No candidate key verified the signature.
    Signature,
    /// `exp`/`expire_at` passed.
    Expired,
    /// `nbf`/`iat` in the future, `aud`/`iss` mismatch or missing, wrong token kind.
    Claims,
    /// Revoked by `jti` or invalidated for its user.
    Revoked,
    /// Unknown `kid` while the JWKS fetch is failing (a temporary refusal).
    KeysUnavailable,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 9] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::Algorithm,
        Refusal::UnknownKey,
        Refusal::Signature,
        Refusal::Expired,
        Refusal::Claims,
        Refusal::Revoked,
        Refusal::KeysUnavailable,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Algorithm => "algorithm",
            Refusal::UnknownKey => "unknown_key",
            Refusal::Signature => "signature",
            Refusal::Expired => "expired",
            Refusal::Claims => "claims",
            Refusal::Revoked => "revoked",
            Refusal::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct AuthStats {
    refused: [AtomicU64; Refusal::ALL.len()],
    pub jwks_fetches_ok: AtomicU64,
    pub jwks_fetches_failed: AtomicU64,
    pub jwks_early_refreshes: AtomicU64,
    pub jwks_keys: AtomicU64,
    pub revocations_refused: AtomicU64,
    pub revocation_tokens: AtomicU64,
    pub revocation_users: AtomicU64,
}

impl AuthStats {
    /// Counts one refused token.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Tokens refused for `why` so far.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    /// Appends the Prometheus text of these metrics.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP wiresocket_auth_tokens_refused_total Connection and subscription tokens refused, by reason.\n\
             # TYPE wiresocket_auth_tokens_refused_total counter"
        );
        for why in Refusal::ALL {
            let _ = writeln!(
                out,
                "wiresocket_auth_tokens_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                self.refused_count(why)
            );
        }
        let simple: [(&str, &str, &str, &AtomicU64); 7] = [
            ("wiresocket_auth_jwks_fetches_total", "counter", "JWKS documents fetched and loaded.", &self.jwks_fetches_ok),
            ("wiresocket_auth_jwks_fetch_errors_total", "counter", "JWKS fetches that failed (the last good key set stays).", &self.jwks_fetches_failed),
            ("wiresocket_auth_jwks_early_refreshes_total", "counter", "Early JWKS fetches asked for by a token with an unknown kid (rate-limited).", &self.jwks_early_refreshes),
            ("wiresocket_auth_jwks_keys", "gauge", "Keys in the current JWKS key set.", &self.jwks_keys),
            ("wiresocket_auth_revocations_refused_total", "counter", "revoke_token/invalidate_user_tokens calls refused because the store was full (error 106).", &self.revocations_refused),
            ("wiresocket_auth_revoked_tokens", "gauge", "Token ids held as revoked (as of the last revocation call).", &self.revocation_tokens),
            ("wiresocket_auth_invalidated_users", "gauge", "Users whose older tokens are invalidated (as of the last revocation call).", &self.revocation_users),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}
