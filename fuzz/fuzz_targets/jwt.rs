//! JWT header and claims handling. The input is split at its first 0xFF byte into a header
//! and a claims document; both are base64url-encoded and signed with the configured HMAC
//! secret, so the verifier gets past the signature and reads whatever the fuzzer wrote
//! (any `alg`, `typ`, `kid`, `exp`, `nbf`, `aud`, `channel`, `info`, …). Inputs without 0xFF
//! are tried as raw tokens. Connection and subscription verification must accept or refuse,
//! never panic, and must refuse a token whose header asks for another algorithm family.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wiresocket::auth::Verifier;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut cfg = wiresocket::config::AuthConfig::default();
        cfg.hmac_secret = SECRET.into();
        Verifier::new(&cfg).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let v = verifier();
    let token = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => {
            let (header, claims) = (&data[..at], &data[at + 1..]);
            let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).expect("sign");
            format!("{signing_input}.{sig}")
        }
        None => String::from_utf8_lossy(data).into_owned(),
    };
    let connect = v.verify_connect(&token);
    let _ = v.verify_subscription(&token);
    if connect.is_ok() {
        // only HMAC tokens can verify here: a header naming RS/ES/PS/EdDSA/none must not
        let header = token.split('.').next().unwrap_or("");
        if let Ok(h) = URL_SAFE_NO_PAD.decode(header) {
            let h = String::from_utf8_lossy(&h);
            for foreign in ["\"none\"", "\"RS256\"", "\"ES256\"", "\"PS256\"", "\"EdDSA\""] {
                assert!(!h.contains(&format!("\"alg\":{foreign}")), "accepted {h}");
            }
        }
    }
});
