//! The HTTP endpoints beside the WebSocket: `GET /health`, `GET /metrics`, and
//! the server API `POST /api/<method>` (key in `X-API-Key` or
//! `Authorization: apikey <key>`; a wrong or missing key is 401 and changes
//! nothing; an empty configured key disables the API).
//!
//! Routing and authorisation come before any body is read: `net::conn` calls
//! [`route`] with the head only, and reads a body only when the answer is
//! [`Routed::Body`] (an authorised call of a known API method), then runs it
//! with [`call`]. Every other answer is given without reading a body.
//!
//! `/health` is 200 `{"status":"ok"}`, or 503 with `draining`, `shedding`, or
//! `{"status":"unavailable","reason":"redis"}` while a Redis engine's connection
//! (command or PUB/SUB) is down.
//! `HEAD /health` answers like `GET` without the body. While the node drains,
//! API calls get 503 `{"error":{"code":100,"message":"internal server error",
//! "temporary":true}}` and Retry-After: the publication would die with the
//! process, so it is not acknowledged. 100 is the table's temporary error that
//! does not ask the backend to slow down (111 would).
//!
//! Methods: `publish` (`publish.rs`), `revoke_token` and `invalidate_user_tokens`
//! (`revoke.rs`). `/metrics` is the per-core registry plus the node-wide auth metrics.
//!
//! Answers follow PROTOCOL.md: `{"result":{...}}` or
//! `{"error":{"code","message"}}`.

mod publish;
mod revoke;

use std::rc::Rc;

use crate::metrics::CoreMetrics;
use crate::net::http::Response;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

/// An authorised API method that needs the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCall {
    Publish,
    RevokeToken,
    InvalidateUserTokens,
}

/// What a request head is answered with.
#[derive(Debug)]
pub enum Routed {
    /// The answer; no body is read.
    Done(Response),
    /// Read the body (within the limits) and pass it to [`call`].
    Body(ApiCall),
}

/// Routes and authorises a request from its head alone.
pub fn route(core: &Rc<Core>, method: &str, path: &str, api_key: Option<&str>) -> Routed {
    let path = path.split('?').next().unwrap_or(path);
    let done = Routed::Done;
    match (method, path) {
        ("GET" | "HEAD", "/health") => done(health(core)),
        ("GET" | "HEAD", "/metrics") => {
            let mut text = core.registry.render();
            core.verifier.stats().render(&mut text);
            if let Some(redis) = &core.redis {
                redis.stats().render(&mut text);
            }
            done(Response::text(200, text).with_header("Cache-Control", "no-store".into()))
        }
        (_, "/health" | "/metrics") => {
            done(Response::status_only(405).with_header("Allow", "GET, HEAD".into()))
        }
        ("POST", p) if p.starts_with("/api/") => {
            CoreMetrics::inc(&core.metrics.api_requests);
            if !authorized(core, api_key) {
                return done(Response::error(401, ErrorCode::UNAUTHORIZED));
            }
            let call = match &p["/api/".len()..] {
                "publish" => ApiCall::Publish,
                "revoke_token" => ApiCall::RevokeToken,
                "invalidate_user_tokens" => ApiCall::InvalidateUserTokens,
                _ => return done(Response::error(404, ErrorCode::METHOD_NOT_FOUND)),
            };
            if core.node.stopping() {
                CoreMetrics::inc(&core.metrics.api_refused_draining);
                return done(
                    Response::error(503, ErrorCode::INTERNAL).with_retry_after(&core.cfg.server),
                );
            }
            Routed::Body(call)
        }
        (_, p) if p.starts_with("/api/") => {
            done(Response::status_only(405).with_header("Allow", "POST".into()))
        }
        (_, "/connection/websocket") => {
            done(Response::status_only(426).with_header("Upgrade", "websocket".into()))
        }
        _ => done(Response::status_only(404)),
    }
}

/// Runs an authorised API call with its body.
pub async fn call(core: &Rc<Core>, call: ApiCall, body: Vec<u8>) -> Response {
    match call {
        ApiCall::Publish => publish::publish(core, body).await,
        ApiCall::RevokeToken => revoke::revoke_token(core, body),
        ApiCall::InvalidateUserTokens => revoke::invalidate_user_tokens(core, body),
    }
}

fn health(core: &Core) -> Response {
    if core.node.stopping() {
        Response::json(503, r#"{"status":"draining"}"#)
    } else if core.node.shedding() {
        Response::json(503, r#"{"status":"shedding"}"#)
    } else if core.redis.as_ref().is_some_and(|r| !r.is_up()) {
        Response::json(503, r#"{"status":"unavailable","reason":"redis"}"#)
    } else {
        Response::json(200, r#"{"status":"ok"}"#)
    }
}

/// Constant-time comparison against the configured key.
fn authorized(core: &Core, given: Option<&str>) -> bool {
    let want = core.cfg.api.key.as_bytes();
    let Some(given) = given else { return false };
    let given = given.as_bytes();
    if want.is_empty() || given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}
