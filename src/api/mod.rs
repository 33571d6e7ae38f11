//! The HTTP endpoints beside the WebSocket: `GET /health`, `GET /metrics`, and
//! the server API `POST /api/<method>` (key in `X-API-Key` or
//! `Authorization: apikey <key>`; a wrong or missing key is 401 and changes
//! nothing; an empty configured key disables the API).
//!
//! Answers follow PROTOCOL.md: `{"result":{...}}` or
//! `{"error":{"code","message"}}`.

mod publish;

use std::rc::Rc;

use crate::net::http::Response;
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;

pub async fn route(
    core: &Rc<Core>,
    method: &str,
    path: &str,
    api_key: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET" | "HEAD", "/health") => health(core),
        ("GET", "/metrics") => Response::text(200, core.registry.render())
            .with_header("Cache-Control", "no-store".into()),
        (_, "/health" | "/metrics") => {
            Response::status_only(405).with_header("Allow", "GET".into())
        }
        ("POST", p) if p.starts_with("/api/") => {
            crate::metrics::CoreMetrics::inc(&core.metrics.api_requests);
            if !authorized(core, api_key) {
                return Response::error(401, ErrorCode::UNAUTHORIZED);
            }
            match &p["/api/".len()..] {
                "publish" => publish::publish(core, body).await,
                _ => Response::error(404, ErrorCode::METHOD_NOT_FOUND),
            }
        }
        (_, p) if p.starts_with("/api/") => {
            Response::status_only(405).with_header("Allow", "POST".into())
        }
        (_, "/connection/websocket") => {
            Response::status_only(426).with_header("Upgrade", "websocket".into())
        }
        _ => Response::status_only(404),
    }
}

fn health(core: &Core) -> Response {
    if core.node.draining() {
        Response::json(503, r#"{"status":"draining"}"#)
    } else if core.node.shedding() {
        Response::json(503, r#"{"status":"shedding"}"#)
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
