//! Key material of the token verifier: HMAC secrets, PEM public keys, JWKS documents.
//!
//! [`static_keys`] turns `[auth]` (`hmac_secret`, `hmac_secrets`, `public_keys`) into a
//! [`KeySet`] once, at start-up; `jwks` parses fetched documents with [`from_jwks`]. The
//! verifier asks a set for the [`KeySet::candidates`] of one token.
//!
//! Invariant (algorithm confusion): a key verifies only the algorithms of its own type — the
//! type comes from how the key was loaded (a secret is HMAC, a PEM or JWK says RSA/EC/Ed25519),
//! never from the token — and, when a JWK names an `alg`, that algorithm only. Empty secrets,
//! symmetric (`oct`) JWKs and encryption (`use: enc`) JWKs are never loaded.

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::AuthConfig;

/// Why key material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A `public_keys` file could not be read.
    #[error("auth.public_keys: cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    /// A `public_keys` file holds no RSA, EC or Ed25519 public key in PEM form.
    #[error(
        "auth.public_keys: {path} is not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM"
    )]
    Pem { path: String },
    /// A JWKS document is not `{"keys":[...]}` JSON.
    #[error("JWKS document: {0}")]
    Jwks(String),
}

/// One verification key.
pub struct Key {
    /// Key id: a JWK's `kid`, a PEM file's name up to its first dot; `None` for secrets.
    pub kid: Option<Box<str>>,
    /// The key; its family (HMAC/RSA/EC/Ed) is fixed by how it was loaded.
    pub key: DecodingKey,
    /// A JWK's `alg`: the only algorithm this key may verify. `None`: any of its family.
    pub alg: Option<Algorithm>,
}

impl Key {
    /// True if this key may verify a token signed with `alg`.
    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// An immutable list of keys (replaced whole on a JWKS refresh).
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Keys that may verify a token with header `alg` and `kid`: those of the algorithm's type;
    /// with a `kid`, only the key of that id or keys that have no id (secrets).
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.verifies(alg)
                && match (kid, k.kid.as_deref()) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        })
    }

    /// Keys in the set.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The keys named in `[auth]`: every non-empty HMAC secret, then every PEM public key file.
pub fn static_keys(cfg: &AuthConfig) -> Result<KeySet, KeyError> {
    let mut keys: Vec<Key> = std::iter::once(&cfg.hmac_secret)
        .chain(&cfg.hmac_secrets)
        .filter(|s| !s.is_empty())
        .map(|s| Key {
            kid: None,
            key: DecodingKey::from_secret(s.as_bytes()),
            alg: None,
        })
        .collect();
    for path in &cfg.public_keys {
        keys.push(load_pem(path)?);
    }
    Ok(KeySet { keys })
}

/// Reads one PEM public key; its kid is the file name up to the first dot.
fn load_pem(path: &str) -> Result<Key, KeyError> {
    let pem = std::fs::read(path).map_err(|error| KeyError::Read {
        path: path.to_owned(),
        error,
    })?;
    let key = DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|_| KeyError::Pem {
            path: path.to_owned(),
        })?;
    let kid = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .filter(|k| !k.is_empty())
        .map(Into::into);
    Ok(Key {
        kid,
        key,
        alg: None,
    })
}

/// Parses a JWKS document. Keys that cannot verify signatures (symmetric, encryption-only,
/// unknown type or algorithm, malformed) are skipped and counted in the second value.
pub fn from_jwks(doc: &[u8]) -> Result<(KeySet, usize), KeyError> {
    let v: Value = serde_json::from_slice(doc).map_err(|e| KeyError::Jwks(e.to_string()))?;
    let Some(list) = v.get("keys").and_then(Value::as_array) else {
        return Err(KeyError::Jwks("no \"keys\" array".into()));
    };
    let mut keys = Vec::with_capacity(list.len());
    let mut skipped = 0;
    for item in list {
        match jwk_key(item) {
            Some(k) => keys.push(k),
            None => skipped += 1,
        }
    }
    Ok((KeySet { keys }, skipped))
}

fn jwk_key(item: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(item.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::from_str(&a.to_string()).ok()?),
        None => None,
    };
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) if !p.n.is_empty() && !p.e.is_empty() => {}
        AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => {}
        // symmetric keys have no place in a published key set; others cannot verify
        _ => return None,
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let key = Key {
        kid: jwk.common.key_id.filter(|k| !k.is_empty()).map(Into::into),
        key,
        alg,
    };
    // a JWK whose `alg` is not of its own key type would verify nothing: skip it
    match key.alg {
        Some(a) if !key.verifies(a) => None,
        _ => Some(key),
    }
}
