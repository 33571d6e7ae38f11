//! TEMPORARY stand-in for JWT verification (replaced by the real module).
use serde::Deserialize;
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("expired")]
    Expired,
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("not configured")]
    NotConfigured,
}
pub struct Verifier {
    key: jsonwebtoken::DecodingKey,
}
#[derive(Debug, Default)]
pub struct ConnectClaims {
    pub user: String,
    pub exp: Option<u64>,
    pub expire_at: Option<u64>,
    pub info: Option<String>,
    pub channels: Vec<String>,
    pub db_code: Option<String>,
    pub region_code: Option<String>,
}
#[derive(Debug, Default)]
pub struct SubscriptionClaims {
    pub user: String,
    pub channel: String,
    pub info: Option<String>,
    pub exp: Option<u64>,
    pub expire_at: Option<u64>,
}
#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    sub: String,
    exp: Option<u64>,
    #[serde(default)]
    channels: Vec<String>,
    info: Option<serde_json::Value>,
    #[serde(default)]
    channel: String,
}
impl Verifier {
    pub fn new(cfg: &crate::config::AuthConfig) -> Result<Verifier, AuthError> {
        Ok(Verifier {
            key: jsonwebtoken::DecodingKey::from_secret(cfg.hmac_secret.as_bytes()),
        })
    }
    fn raw(&self, token: &str) -> Result<Raw, AuthError> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims.clear();
        v.leeway = 0;
        jsonwebtoken::decode::<Raw>(token, &self.key, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })
    }
    pub fn verify_connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        let r = self.raw(token)?;
        Ok(ConnectClaims {
            user: r.sub,
            exp: r.exp,
            channels: r.channels,
            info: r.info.map(|v| v.to_string()),
            ..Default::default()
        })
    }
    pub fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, AuthError> {
        let r = self.raw(token)?;
        Ok(SubscriptionClaims {
            user: r.sub,
            channel: r.channel,
            exp: r.exp,
            ..Default::default()
        })
    }
}
