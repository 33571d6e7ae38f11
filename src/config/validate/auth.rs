//! Checks of `[auth]` (algorithms, keys, leeway) and `[api]` (the API key).

use super::positive;
use crate::config::{ApiConfig, AuthConfig, ConfigError};

/// Token algorithms the verifier accepts in `auth.algorithms` (issue 9's allow-list).
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// Largest accepted `auth.leeway_s` (one day): more would make `exp` meaningless.
const MAX_LEEWAY_S: u64 = 86_400;

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid("auth.algorithms", "list is empty"));
        }
        if let Some(alg) = self
            .algorithms
            .iter()
            .find(|a| !SUPPORTED_ALGORITHMS.contains(&a.as_str()))
        {
            return Err(ConfigError::invalid(
                "auth.algorithms",
                format!("unsupported algorithm {alg:?} (supported: {SUPPORTED_ALGORITHMS:?})"),
            ));
        }
        if let Some(i) = self.hmac_secrets.iter().position(|s| s.is_empty()) {
            return Err(ConfigError::invalid(
                format!("auth.hmac_secrets[{i}]"),
                "empty: an empty HMAC key would let anyone sign tokens",
            ));
        }
        if let Some(i) = self.public_keys.iter().position(|p| p.trim().is_empty()) {
            return Err(ConfigError::invalid(
                format!("auth.public_keys[{i}]"),
                "empty path",
            ));
        }
        let has_secret = !self.hmac_secret.is_empty() || !self.hmac_secrets.is_empty();
        let needs_secret = self.algorithms.iter().any(|a| a.starts_with("HS"));
        if needs_secret && !has_secret && !self.allow_anonymous {
            return Err(ConfigError::invalid(
                "auth.hmac_secret",
                "empty, but HS* algorithms are allowed and allow_anonymous is false: no client could connect",
            ));
        }
        let has_public = !self.public_keys.is_empty() || self.jwks_url.is_some();
        if let Some(alg) = self.algorithms.iter().find(|a| !a.starts_with("HS")) {
            if !has_public {
                return Err(ConfigError::invalid(
                    "auth.algorithms",
                    format!("{alg} is allowed but neither auth.public_keys nor auth.jwks_url is set: no key could verify it"),
                ));
            }
        }
        if let Some(url) = &self.jwks_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "auth.jwks_url",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            positive("auth.jwks_refresh_s", self.jwks_refresh_s)?;
            positive("auth.jwks_timeout_ms", self.jwks_timeout_ms)?;
            positive("auth.jwks_max_bytes", self.jwks_max_bytes as u64)?;
        }
        if self.audience.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "auth.audience",
                "empty string (omit it to disable the check)",
            ));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "auth.issuer",
                "empty string (omit it to disable the check)",
            ));
        }
        if self.leeway_s > MAX_LEEWAY_S {
            return Err(ConfigError::invalid(
                "auth.leeway_s",
                format!("{} exceeds the maximum of {MAX_LEEWAY_S}", self.leeway_s),
            ));
        }
        positive("auth.max_revocations", self.max_revocations as u64)?;
        positive("auth.revocation_ttl_s", self.revocation_ttl_s)
    }
}

impl ApiConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.key.trim() != self.key {
            return Err(ConfigError::invalid(
                "api.key",
                "has leading or trailing whitespace",
            ));
        }
        positive(
            "api.max_broadcast_channels",
            self.max_broadcast_channels as u64,
        )?;
        Ok(())
    }
}
