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
//! Methods: `publish` and `broadcast` (`publish.rs`); `history`, `history_remove`,
//! `presence`, `presence_stats` (`channel.rs`); `disconnect`, `subscribe`, `unsubscribe`,
//! `refresh` on a user's connections on every node (`users.rs`, through `crate::cluster`);
//! `info` and `channels` (`info.rs`); `connections` (`connections.rs`, session records); `revoke_token` and `invalidate_user_tokens`
//! (`revoke.rs`); `batch` of any of these (`batch.rs`). `/metrics` is the per-core registry plus the node-wide auth metrics.
//!
//! Status codes: a body that is not the method's JSON, or a bad channel name, is 400 (107);
//! a method-level refusal (unknown namespace 102, not available 108, limit 106,
//! unrecoverable position 112) is HTTP 200 with the error in the body; an engine failure is
//! 503 when temporary (100, 111), else 500.
//!
//! Answers follow PROTOCOL.md: `{"result":{...}}` or
//! `{"error":{"code","message"}}`.

mod batch;
mod channel;
mod connections;
mod info;
mod publish;
mod revoke;
mod users;

use std::rc::Rc;

use crate::metrics::CoreMetrics;
use crate::net::http::Response;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

/// An authorised API method that needs the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCall {
    Publish,
    Broadcast,
    History,
    HistoryRemove,
    Presence,
    PresenceStats,
    User(users::Kind),
    Info,
    Channels,
    Connections,
    RevokeToken,
    InvalidateUserTokens,
    Batch,
}

/// What a request head is answered with.
#[derive(Debug)]
pub enum Routed {
    /// The answer; no body is read.
    Done(Response),
    /// Read the body (within the limits) and pass it to [`call`].
    Body(ApiCall),
    /// `GET /discovery` (`[regions]`): answered by `region::discovery` (no body read).
    Discovery,
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
            crate::load::render(&core.node, &mut text);
            crate::runtime::render_drain(&core.node, &mut text);
            if let Some(tls) = &core.tls {
                tls.render(&mut text);
            }
            if let Some(redis) = &core.redis {
                redis.stats().render(&mut text);
            }
            if let Some(pins) = &core.pins {
                pins.regions().render(&mut text);
            }
            done(Response::text(200, text).with_header("Cache-Control", "no-store".into()))
        }
        ("GET", "/discovery") if core.pins.is_some() => Routed::Discovery,
        (_, "/health" | "/metrics") => {
            done(Response::status_only(405).with_header("Allow", "GET, HEAD".into()))
        }
        ("POST", p) if p.starts_with("/api/") => {
            CoreMetrics::inc(&core.metrics.api_requests);
            if !authorized(core, api_key) {
                return done(Response::error(401, ErrorCode::UNAUTHORIZED));
            }
            let Some(call) = api_method(&p["/api/".len()..]) else {
                return done(Response::error(404, ErrorCode::METHOD_NOT_FOUND));
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

/// The API method named `name` (the part after `/api/`).
fn api_method(name: &str) -> Option<ApiCall> {
    Some(match name {
        "publish" => ApiCall::Publish,
        "broadcast" => ApiCall::Broadcast,
        "history" => ApiCall::History,
        "history_remove" => ApiCall::HistoryRemove,
        "presence" => ApiCall::Presence,
        "presence_stats" => ApiCall::PresenceStats,
        "disconnect" => ApiCall::User(users::Kind::Disconnect),
        "subscribe" => ApiCall::User(users::Kind::Subscribe),
        "unsubscribe" => ApiCall::User(users::Kind::Unsubscribe),
        "refresh" => ApiCall::User(users::Kind::Refresh),
        "info" => ApiCall::Info,
        "channels" => ApiCall::Channels,
        "connections" => ApiCall::Connections,
        "revoke_token" => ApiCall::RevokeToken,
        "invalidate_user_tokens" => ApiCall::InvalidateUserTokens,
        "batch" => ApiCall::Batch,
        _ => return None,
    })
}

/// Runs an authorised API call with its body.
pub async fn call(core: &Rc<Core>, call: ApiCall, body: Vec<u8>) -> Response {
    let r = run(core, call, body).await;
    if r.status == 400 {
        CoreMetrics::inc(&core.metrics.api_bad_requests);
    }
    r
}

async fn run(core: &Rc<Core>, call: ApiCall, body: Vec<u8>) -> Response {
    match call {
        ApiCall::Publish => publish::publish(core, body).await,
        ApiCall::Broadcast => publish::broadcast(core, body).await,
        ApiCall::History => channel::history(core, body).await,
        ApiCall::HistoryRemove => channel::history_remove(core, body).await,
        ApiCall::Presence => channel::presence(core, body, false).await,
        ApiCall::PresenceStats => channel::presence(core, body, true).await,
        ApiCall::User(kind) => users::call(core, kind, body).await,
        ApiCall::Info => info::info(core).await,
        ApiCall::Channels => info::channels(core, body).await,
        ApiCall::Connections => connections::connections(core, body).await,
        ApiCall::RevokeToken => revoke::revoke_token(core, body),
        ApiCall::InvalidateUserTokens => revoke::invalidate_user_tokens(core, body),
        ApiCall::Batch => Box::pin(batch::batch(core, body)).await,
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

fn bad_request() -> Response {
    Response::error(400, ErrorCode::BAD_REQUEST)
}

/// A channel policy refusal: a missing or malformed name is a bad request (400); anything
/// else is a method-level error, HTTP 200 with the code in the body (PROTOCOL.md).
fn refused(core: &Core, e: crate::channel::ChannelError) -> Response {
    let (status, code) = policy_refusal(core, e);
    Response::error(status, code)
}

fn policy_refusal(core: &Core, e: crate::channel::ChannelError) -> (u16, ErrorCode) {
    let e = e.counted(&core.metrics);
    let status = if e.code() == ErrorCode::BAD_REQUEST {
        400
    } else {
        200
    };
    (status, e.code())
}

/// An engine failure: temporary ones 503, internal 500, method-level ones 200.
fn engine_failure(e: &crate::engine::EngineError) -> (u16, ErrorCode) {
    use crate::engine::EngineError as E;
    let status = match e {
        E::Overloaded => 503,
        _ if e.code().temporary => 503,
        E::Internal(_) => 500,
        E::NotAvailable | E::Unrecoverable | E::LimitExceeded => 200,
    };
    (status, e.code())
}

fn failed(e: &crate::engine::EngineError) -> Response {
    let (status, code) = engine_failure(e);
    Response::error(status, code)
}
