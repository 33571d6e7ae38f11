//! Entry point of every accepted TCP connection: reads HTTP request heads and
//! routes them. Upgrades to `/connection/websocket` (and `/echo` when
//! `conformance_echo` is on) become sessions; other requests go to `api`.
//! Plain HTTP connections are kept alive between requests (HTTP/1.1 default).
//!
//! Admission happens here: while the node drains or holds
//! `max_connections` sessions, upgrades are answered 503 with a jittered
//! `Retry-After`, so reconnecting clients spread out instead of stampeding.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;

use super::http::{self, ReadError, Response, MAX_HEADERS};
use crate::metrics::CoreMetrics;
use crate::runtime::core::Core;
use crate::session::driver::{self, Handler};
use crate::ws::handshake;

/// What the request head asked for, extracted so the head buffer can be reused.
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    content_length: Option<usize>,
    api_key: Option<String>,
    head_len: usize,
}

/// What a complete request head asks for. Decided synchronously, so the parser's
/// header array never lives across an await (it would sit in every connection's task).
enum Route {
    Upgrade(Result<Vec<u8>, handshake::HandshakeError>, Handler),
    Http(Request),
    Refuse(u16),
    Fail(ReadError),
}

fn route(core: &Core, head: &[u8]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Route::Fail(ReadError::TooLarge),
        _ => return Route::Fail(ReadError::Malformed),
    }
    if !handshake::is_upgrade(&parsed) {
        return Route::Http(extract(&parsed, head.len()));
    }
    match parsed.path {
        Some("/connection/websocket") => {
            Route::Upgrade(handshake::accept(&parsed), Handler::Centrifugo)
        }
        Some("/echo") if core.cfg.server.conformance_echo => {
            Route::Upgrade(handshake::accept(&parsed), Handler::Echo)
        }
        _ => Route::Refuse(404),
    }
}

pub async fn serve(core: Rc<Core>, mut stream: TcpStream) {
    let header_timeout = Duration::from_millis(core.cfg.server.header_timeout_ms);
    let _ = stream.set_read_timeout(Some(header_timeout));
    let _ = stream.set_nodelay(true); // explicit: not every kernel copies it from the listener
    let mut buf = Vec::new();
    loop {
        let head_len =
            match http::read_head(&mut stream, &mut buf, core.cfg.server.max_header_bytes).await {
                Ok(n) => n,
                Err(e) => return fail(&core, &mut stream, e).await,
            };
        let req = match route(&core, &buf[..head_len]) {
            Route::Http(req) => req,
            Route::Upgrade(accepted, handler) => {
                let early = buf[head_len..].to_vec();
                return upgrade(core, stream, accepted, early, handler).await;
            }
            Route::Refuse(status) => {
                let _ = http::write(&mut stream, &Response::status_only(status), false).await;
                return;
            }
            Route::Fail(e) => return fail(&core, &mut stream, e).await,
        };
        CoreMetrics::inc(&core.metrics.http_requests);
        let body = match req.content_length {
            Some(n) if n > core.cfg.server.max_body_bytes => {
                let _ = http::write(&mut stream, &Response::status_only(413), false).await;
                return;
            }
            Some(n) => match http::read_body(&mut stream, &buf[head_len..], n).await {
                Ok(b) => b,
                Err(_) => return,
            },
            None if req.method == "POST" => {
                let _ = http::write(&mut stream, &Response::status_only(411), false).await;
                return;
            }
            None => Vec::new(),
        };
        // boxed: API handling is large and most connections never get here
        let resp = Box::pin(crate::api::route(
            &core,
            &req.method,
            &req.path,
            req.api_key.as_deref(),
            body,
        ))
        .await;
        let keep = req.keep_alive && !core.draining.get();
        if http::write(&mut stream, &resp, keep).await.is_err() || !keep {
            return;
        }
        let consumed = (req.head_len + req.content_length.unwrap_or(0)).min(buf.len());
        buf.drain(..consumed);
    }
}

fn extract(p: &httparse::Request<'_, '_>, head_len: usize) -> Request {
    let header = |name: &str| {
        p.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let connection = header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let keep_alive = if p.version == Some(0) {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let api_key = header("x-api-key").or_else(|| {
        header("authorization")
            .and_then(|v| v.strip_prefix("apikey ").map(|k| k.trim().to_string()))
    });
    Request {
        method: p.method.unwrap_or("").to_string(),
        path: p.path.unwrap_or("/").to_string(),
        keep_alive,
        content_length: header("content-length").and_then(|v| v.parse().ok()),
        api_key,
        head_len,
    }
}

async fn fail(core: &Core, stream: &mut TcpStream, e: ReadError) {
    if let Some(status) = e.status() {
        CoreMetrics::inc(&core.metrics.http_requests);
        let _ = http::write(stream, &Response::status_only(status), false).await;
    }
}

async fn upgrade(
    core: Rc<Core>,
    mut stream: TcpStream,
    accepted: Result<Vec<u8>, handshake::HandshakeError>,
    early: Vec<u8>,
    handler: Handler,
) {
    let response = match accepted {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "bad upgrade");
            let _ = http::write(&mut stream, &Response::text(400, format!("{e}\n")), false).await;
            return;
        }
    };
    if core.draining.get() || core.node.draining() || !core.node.try_admit() {
        CoreMetrics::inc(&core.metrics.refused);
        let _ = http::write(&mut stream, &shed_response(&core), false).await;
        return;
    }
    if futures_lite::AsyncWriteExt::write_all(&mut stream, &response)
        .await
        .is_err()
    {
        core.node.connection_closed();
        return;
    }
    let _ = stream.set_read_timeout(None);
    // A task of its own: this HTTP task (several KiB of parsing state) ends here,
    // and the session lives on in the small driver task.
    let fut = driver::run(
        core.env.clone(),
        crate::net::socket::Socket::new(stream),
        early,
        handler,
    );
    tracing::debug!(
        task = std::mem::size_of_val(&fut),
        session = std::mem::size_of::<crate::session::Session>(),
        stream = std::mem::size_of::<TcpStream>(),
        "per-connection sizes"
    );
    crate::runtime::spawn(fut);
}

/// 503 with `Retry-After` drawn uniformly from the configured range.
pub fn shed_response(core: &Core) -> Response {
    let lo = core.cfg.server.retry_after_min_s;
    let hi = core.cfg.server.retry_after_max_s.max(lo);
    let secs = fastrand::u32(lo..=hi);
    Response::status_only(503).with_header("Retry-After", secs.to_string())
}
