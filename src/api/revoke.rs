//! Token revocation through the server API, as Centrifugo's methods of the same names:
//!
//! - `POST /api/revoke_token {uid|jti, expire_at?}`: the token with that id (`jti` claim) is
//!   refused from now on, on connect, refresh and subscribe (3500);
//! - `POST /api/invalidate_user_tokens {user, issued_before?, expire_at?}`: `user`'s tokens
//!   issued before `issued_before` (unix seconds, default now; tokens without `iat` too) are
//!   refused likewise.
//!
//! `expire_at` (unix seconds) is when the entry may be forgotten, default now +
//! `auth.revocation_ttl_s`: set it to the token's `exp`. Both answer `{"result":{}}`; a missing
//! or mistyped field is 400 (107); a store at `auth.max_revocations` answers error 106 (HTTP
//! 200, counted in `wiresocket_auth_revocations_refused_total`). Connections already open with
//! such a token are not cut now: the check runs when a token is presented.

use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::rc::Rc;

use crate::net::http::Response;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

pub fn revoke_token(core: &Rc<Core>, mut body: Vec<u8>) -> Response {
    let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
        return bad_request();
    };
    let id = v
        .get("uid")
        .or_else(|| v.get("jti"))
        .and_then(|s| s.as_str());
    let (Some(id), Ok(expire_at)) = (id.filter(|s| !s.is_empty()), time(&v, "expire_at")) else {
        return bad_request();
    };
    answer(core.verifier.revoke_token(id, expire_at))
}

pub fn invalidate_user_tokens(core: &Rc<Core>, mut body: Vec<u8>) -> Response {
    let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
        return bad_request();
    };
    let user = v
        .get("user")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty());
    let (Some(user), Ok(before), Ok(expire_at)) =
        (user, time(&v, "issued_before"), time(&v, "expire_at"))
    else {
        return bad_request();
    };
    answer(
        core.verifier
            .invalidate_user_tokens(user, before, expire_at),
    )
}

/// An optional unix time: absent, null or 0 is `None`; anything but a non-negative integer is
/// an error.
fn time(v: &BorrowedValue<'_>, key: &str) -> Result<Option<u64>, ()> {
    match v.get(key) {
        None => Ok(None),
        Some(t) if t.is_null() => Ok(None),
        Some(t) => t.as_u64().map(|t| (t > 0).then_some(t)).ok_or(()),
    }
}

fn answer(r: Result<(), crate::auth::RevocationError>) -> Response {
    match r {
        Ok(()) => Response::json(200, r#"{"result":{}}"#),
        Err(_) => Response::error(200, ErrorCode::LIMIT_EXCEEDED),
    }
}

fn bad_request() -> Response {
    Response::error(400, ErrorCode::BAD_REQUEST)
}
