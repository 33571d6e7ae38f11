//! `GET /discovery?documentName=<url-encoded document>` with `Authorization: Bearer <connection
//! JWT>`: where a client should connect to work on a document, before it connects.
//!
//! The token is checked by the same verifier as `connect` (signature, expiry, audience,
//! issuer, revocation); its `dbCode` picks the pin Redis and its `regionCode` the region of a
//! free document. Answers (`Cache-Control: no-store`, JSON):
//! - 200 `{"url": "<region url>/<encoded document>", "region": "<region>"}`: the pinned
//!   region; for a document not pinned, the `regionCode` region when `[regions] urls` knows
//!   it, else this node's region. Discovery never pins: the first connection does.
//! - 401 (error 101): no bearer token, or one the verifier refuses.
//! - 400 (error 107): `documentName` missing, not percent-encoded UTF-8, or not a channel of a
//!   `pinned` namespace (unknown namespace, bad characters, longer than the namespace's
//!   `max_channel_length`).
//! - 403 (error 103): the token's `dbCode` names no configured pin Redis.
//! - 503 (error 100, temporary): the pin Redis did not answer.
//!
//! Each answer is counted in `wiresocket_region_discovery_total{result}`.

use super::{document, pin, Answered, RegionStats, Regions};
use crate::net::http::Response;
use crate::protocol::ErrorCode;
use crate::session::Env;

/// Answers a discovery request (`path` with its query string).
pub async fn answer(env: &Env, path: &str, bearer: Option<&str>) -> Response {
    let Some(pins) = &env.pins else {
        return Response::status_only(404);
    };
    let regions = pins.regions();
    let (result, resp) = decide(env, regions, path, bearer).await;
    RegionStats::inc(&regions.stats.discovery[result as usize]);
    resp.with_header("Cache-Control", "no-store".into())
}

async fn decide(
    env: &Env,
    regions: &Regions,
    path: &str,
    bearer: Option<&str>,
) -> (Answered, Response) {
    let claims = match bearer.map(|t| env.verifier.verify_connect(t)) {
        Some(Ok(c)) => c,
        _ => {
            return (
                Answered::Unauthorized,
                Response::error(401, ErrorCode::UNAUTHORIZED),
            )
        }
    };
    let bad = || {
        (
            Answered::BadRequest,
            Response::error(400, ErrorCode::BAD_REQUEST),
        )
    };
    let Some(Some(doc)) = document::from_query(path) else {
        return bad();
    };
    match env.policy.resolve(&doc) {
        Ok(r) if r.options.pinned => {}
        _ => return bad(),
    }
    let Some((_, node)) = regions.store(claims.db_code.as_deref()) else {
        return (
            Answered::Forbidden,
            Response::error(403, ErrorCode::PERMISSION_DENIED),
        );
    };
    let cfg = &regions.cfg;
    let (region, base) = match pin::read(&node, &cfg.key_prefix, &doc).await {
        Err(e) => {
            RegionStats::inc(&regions.stats.errors);
            tracing::warn!(document = %doc, error = %e, "discovery: pin read failed");
            return (
                Answered::Unavailable,
                Response::error(503, ErrorCode::INTERNAL),
            );
        }
        Ok(Some(owner)) => (owner.region, owner.url),
        Ok(None) => match claims
            .region_code
            .as_deref()
            .and_then(|r| cfg.url_of(r).map(|u| (r, u)))
        {
            Some((r, u)) => (r.to_owned(), u.to_owned()),
            None => (cfg.name.clone(), cfg.url.clone()),
        },
    };
    let body = serde_json::json!({
        "url": Regions::document_url(&base, &doc),
        "region": region,
    });
    (Answered::Ok, Response::json(200, body.to_string()))
}
