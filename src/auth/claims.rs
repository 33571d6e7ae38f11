//! The claims wiresocket reads from connection and subscription tokens, and their wire shapes.
//!
//! `Verifier` (in `auth/mod.rs`) decodes a verified payload into the private `Raw*` structs here
//! and converts them into the public [`ConnectClaims`] / [`SubscriptionClaims`] that session code
//! uses. Invariant: the public structs hold only checked, normalised values: numeric dates as
//! whole seconds, `info` as compact JSON text, a subscription claim always names a channel.
//! Unknown claims are ignored (issuers may add their own).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{AuthError, Refusal};

/// Claims of a verified connection token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectClaims {
    /// `sub`: the user id; `""` is the anonymous user.
    pub user: String,
    /// `exp`: token expiry, seconds since the Unix epoch; `None` = the token never expires.
    pub exp: Option<u64>,
    /// `expire_at`: connection expiry overriding `exp` when present; `Some(0)` means the
    /// connection never expires. See [`ConnectClaims::expires_at`].
    pub expire_at: Option<u64>,
    /// `info` claim re-serialised as compact JSON text (any JSON value; `null` = absent).
    pub info: Option<String>,
    /// `channels`: server-side subscriptions made on connect.
    pub channels: Vec<String>,
    /// `dbCode`: the license region whose Redis holds this app's metadata and pins.
    pub db_code: Option<String>,
    /// `regionCode`: the region nearest the user.
    pub region_code: Option<String>,
    /// `jti`: the token id, for revocation (`revoke_token`).
    pub jti: Option<String>,
    /// `iat`: when the token was issued, for `invalidate_user_tokens`.
    pub iat: Option<u64>,
}

impl ConnectClaims {
    /// When the connection expires (seconds since epoch): `expire_at` if present (0 = never),
    /// else `exp`; `None` = never.
    pub fn expires_at(&self) -> Option<u64> {
        effective_expiry(self.exp, self.expire_at)
    }
}

/// Claims of a verified subscription token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionClaims {
    /// `sub`: the user the token was issued to (`""` = anonymous); must match the connection.
    pub user: String,
    /// `channel`: the channel the token grants (always non-empty).
    pub channel: String,
    /// `info` claim as compact JSON text (channel info shown in presence).
    pub info: Option<String>,
    /// `exp`: token expiry, seconds since epoch; `None` = never.
    pub exp: Option<u64>,
    /// `expire_at`: subscription expiry overriding `exp` when present; `Some(0)` = never.
    pub expire_at: Option<u64>,
    /// `jti`: the token id, for revocation.
    pub jti: Option<String>,
    /// `iat`: when the token was issued.
    pub iat: Option<u64>,
}

impl SubscriptionClaims {
    /// When the subscription expires: `expire_at` if present (0 = never), else `exp`.
    pub fn expires_at(&self) -> Option<u64> {
        effective_expiry(self.exp, self.expire_at)
    }
}

fn effective_expiry(exp: Option<u64>, expire_at: Option<u64>) -> Option<u64> {
    match expire_at {
        Some(0) => None,
        Some(at) => Some(at),
        None => exp,
    }
}

/// Connection token payload as signed.
#[derive(Deserialize)]
pub(super) struct RawConnect {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    expire_at: Option<u64>,
    #[serde(default)]
    info: Option<Value>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default, rename = "dbCode")]
    db_code: Option<String>,
    #[serde(default, rename = "regionCode")]
    region_code: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
    /// `channel`: only subscription tokens carry it; read so a connection token that has one
    /// can be refused (as Centrifugo does), never used.
    #[serde(default)]
    channel: Option<Value>,
}

impl RawConnect {
    /// Refuses a subscription token presented as a connection token: one whose `channel`
    /// claim is a non-empty string (or any other non-null value).
    pub(super) fn into_claims(self) -> Result<ConnectClaims, AuthError> {
        match &self.channel {
            None | Some(Value::Null) => {}
            Some(Value::String(c)) if c.is_empty() => {}
            Some(_) => {
                return Err(AuthError::Invalid(
                    Refusal::Claims,
                    "subscription token (channel claim) used as a connection token".into(),
                ))
            }
        }
        Ok(ConnectClaims {
            user: self.sub.unwrap_or_default(),
            exp: self.exp,
            expire_at: self.expire_at,
            info: compact(self.info),
            channels: self.channels.unwrap_or_default(),
            db_code: self.db_code,
            region_code: self.region_code,
            jti: self.jti,
            iat: self.iat,
        })
    }
}

/// Subscription token payload as signed.
#[derive(Deserialize)]
pub(super) struct RawSubscription {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    info: Option<Value>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    expire_at: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
}

impl RawSubscription {
    pub(super) fn into_claims(self) -> Result<SubscriptionClaims, AuthError> {
        let channel = self
            .channel
            .filter(|c| !c.is_empty())
            .ok_or_else(|| AuthError::Invalid(Refusal::Claims, "missing channel claim".into()))?;
        Ok(SubscriptionClaims {
            user: self.sub.unwrap_or_default(),
            channel,
            info: compact(self.info),
            exp: self.exp,
            expire_at: self.expire_at,
            jti: self.jti,
            iat: self.iat,
        })
    }
}

fn compact(info: Option<Value>) -> Option<String> {
    info.filter(|v| !v.is_null()).map(|v| v.to_string())
}

/// A JWT NumericDate: non-negative integer or float seconds (floats are truncated); null = absent.
fn numeric_date<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| D::Error::custom("a date claim must be a non-negative number of seconds"))
}
