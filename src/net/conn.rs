//! Entry point of every accepted TCP connection: reads HTTP request heads and
//! routes them. Upgrades to `/connection/websocket` (and `/echo` when
//! `conformance_echo` is on) become sessions; other requests go to `api`.
//! Plain HTTP connections are kept alive between requests (HTTP/1.1 default).
//!
//! Called by the accept loop (`runtime::drain::accept`) in a task of its own.
//! Invariants:
//! - The connection holds a pending slot ([`admit::Pending`]) from accept until
//!   it closes or its session takes the slot over; beyond the per-core cap the
//!   accept is answered 503 without reading anything.
//! - Every head has one deadline (`header_timeout_ms`, counted from when the
//!   server starts waiting, so it bounds keep-alive idle time too) and every
//!   body its own (`body_timeout_ms`).
//! - A body is read only for an authorised API call (`api::route` decides
//!   from the head). A request that announces a body and is answered without
//!   reading it gets `Connection: close`, and the connection is closed
//!   ([`http::linger`]): the unread bytes make it unusable for another request.
//!
//! Edge ([`super::edge`]): a connection from an untrusted peer is counted under its
//! address before anything is read (429/503 + Retry-After when a per-client limit
//! refuses); a trusted proxy's connection may start with a PROXY v2 header naming the
//! client, else each upgrade is counted under its `X-Forwarded-For` client. An upgrade
//! from a browser origin that is not allowed gets 403. On the internal listener upgrades
//! are 404; on the public one, `/metrics` and `/api/*` are 404 when the internal listener
//! exists.
//!
//! Every answer with an error status (plain request or upgrade) is counted in
//! `wiresocket_http_errors_total{status}` where it is written; a refused WebSocket
//! handshake (400) also in `wiresocket_http_rejected_total`.
//!
//! Admission: while the node drains or holds `max_connections` connected
//! sessions, upgrades are answered 503 with a jittered `Retry-After`, so
//! reconnecting clients spread out instead of stampeding.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::admit::{self, Pending};
use super::edge::{self, Edge, Peer};
use super::http::{self, ReadError, Response};
use super::request::{self, Parsed, Request, UpgradeMeta};
use super::stream::Stream;
use crate::api::Routed;
use crate::limits::ConnLease;
use crate::metrics::CoreMetrics;
use crate::runtime::core::Core;
use crate::session::driver::{self, Handler};
use crate::ws::handshake;

pub async fn serve(core: Rc<Core>, edge: Rc<Edge>, mut tcp: TcpStream) {
    let _ = tcp.set_nodelay(true); // explicit: not every kernel copies it from the listener
    let Some(pending) = Pending::enter(&core) else {
        refuse_early(&core, &edge, &mut tcp, &shed_response(&core)).await;
        return;
    };
    let peer = tcp.peer_addr().ok().map(|a| a.ip());
    let (mut lease, proxy) = match edge.accept(peer) {
        Ok(Peer::Client(lease)) => (lease, false),
        Ok(Peer::Proxy(lease)) => (lease, true),
        Err(r) => {
            let resp = edge::refusal(r, &core.metrics, &core.cfg.server);
            refuse_early(&core, &edge, &mut tcp, &resp).await;
            return;
        }
    };
    let header_timeout = Duration::from_millis(core.cfg.server.header_timeout_ms);
    let mut buf = Vec::new();
    // a trusted proxy's connection may name its client in a PROXY v2 header
    let mut named = false;
    if proxy {
        match proxied_client(&core, &edge, &mut tcp, &mut buf, header_timeout).await {
            Ok(Some(l)) => (lease, named) = (l, true),
            Ok(None) => {}
            Err(()) => return,
        }
    }
    let mut stream = match &edge.tls {
        None => Stream::Plain(tcp),
        // bytes read past a PROXY header belong to the handshake
        Some(tls) => match tls.accept(tcp, std::mem::take(&mut buf)).await {
            Some(stream) => stream,
            None => return,
        },
    };
    loop {
        let deadline = Instant::now() + header_timeout;
        let max = core.cfg.server.max_header_bytes;
        let head_len = match http::read_head(&mut stream, &mut buf, max, deadline).await {
            Ok(n) => n,
            Err(e) => return fail(&core, &mut stream, e).await,
        };
        let echo = core.cfg.server.conformance_echo;
        let req = match request::parse(&buf[..head_len], echo) {
            Parsed::Http(req) => req,
            Parsed::Upgrade(..) if edge.internal => {
                CoreMetrics::inc(&core.metrics.http_requests);
                core.metrics.http_error(404);
                let _ = http::write(&mut stream, &Response::status_only(404), false).await;
                return;
            }
            Parsed::Upgrade(accepted, handler, meta) => {
                let early = buf[head_len..].to_vec();
                let up = Upgrade {
                    accepted,
                    meta,
                    early,
                    handler,
                    lease: (!proxy || named).then_some(lease),
                };
                return upgrade(core, &edge, stream, pending, up).await;
            }
            Parsed::Refuse(status) => {
                if status != 404 {
                    CoreMetrics::inc(&core.metrics.http_rejected);
                }
                CoreMetrics::inc(&core.metrics.http_requests);
                core.metrics.http_error(status);
                let _ = http::write(&mut stream, &Response::status_only(status), false).await;
                return http::linger(&mut stream).await;
            }
            Parsed::Fail(e) => return fail(&core, &mut stream, e).await,
        };
        CoreMetrics::inc(&core.metrics.http_requests);
        buf.drain(..head_len);
        match answer(&core, &edge, &mut stream, &req, &mut buf).await {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::Linger => return http::linger(&mut stream).await,
        }
    }
}

/// Answers a connection refused before its TLS handshake: in plain HTTP, or, on a TLS
/// listener, by closing it (an answer would cost the handshake the refusal is saving).
async fn refuse_early(core: &Core, edge: &Edge, tcp: &mut TcpStream, resp: &Response) {
    if edge.tls.is_none() {
        core.metrics.http_error(resp.status);
        let _ = http::write(tcp, resp, false).await;
    }
}

/// Reads the PROXY v2 header a trusted proxy may send first, and counts the connection under
/// the client it names (`Ok(None)`: no header, or one naming no address). `Err`: answered
/// and done (bad header, timeout, refused by a limit).
async fn proxied_client(
    core: &Core,
    edge: &Edge,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Option<ConnLease>, ()> {
    let deadline = Instant::now() + timeout;
    let first = http::read_at_least(stream, buf, 1, deadline).await;
    let named = match first {
        Ok(()) if !super::proxy::maybe_header(buf) => return Ok(None),
        Ok(()) => super::proxy::read(stream, buf, deadline).await,
        Err(e) => Err(e),
    };
    match named {
        Ok(None) => Ok(None),
        Ok(Some(ip)) => match edge.limits.admit(ip) {
            Ok(lease) => Ok(Some(lease)),
            Err(r) => {
                let resp = edge::refusal(r, &core.metrics, &core.cfg.server);
                core.metrics.http_error(resp.status);
                let _ = http::write(stream, &resp, false).await;
                Err(())
            }
        },
        Err(e) => {
            if e.status().is_some() {
                CoreMetrics::inc(&core.metrics.http_requests);
            }
            count_failure(core, &e);
            if let (Some(status), None) = (e.status(), &edge.tls) {
                core.metrics.http_error(status);
                let _ = http::write(stream, &Response::status_only(status), false).await;
                if status != 408 {
                    http::linger(stream).await;
                }
            }
            Err(())
        }
    }
}

/// What happens to the connection after an answer.
enum Next {
    KeepAlive,
    Close,
    /// Close after discarding the unread body for a moment (see [`http::linger`]).
    Linger,
}

/// Answers one plain request whose head is consumed; `buf` holds bytes read past it.
async fn answer(
    core: &Rc<Core>,
    edge: &Edge,
    stream: &mut Stream,
    req: &Request,
    buf: &mut Vec<u8>,
) -> Next {
    let routed = if edge.hides(&req.path) {
        Routed::Done(Response::status_only(404))
    } else if let Some(resp) = edge.liveness(&req.path) {
        Routed::Done(resp)
    } else {
        crate::api::route(core, &req.method, &req.path, req.api_key.as_deref())
    };
    let (resp, body_read) = match routed {
        Routed::Done(resp) => (resp, !req.has_body()),
        Routed::Discovery => (
            Box::pin(crate::region::discovery::answer(
                core,
                &req.path,
                req.bearer.as_deref(),
            ))
            .await,
            !req.has_body(),
        ),
        Routed::Body(call) => match read_body(core, stream, req, buf).await {
            // boxed: API handling is large and most connections never get here
            Ok(body) => (Box::pin(crate::api::call(core, call, body)).await, true),
            Err(Some(refusal)) => (refusal, false),
            Err(None) => return Next::Close,
        },
    };
    if !body_read {
        CoreMetrics::inc(&core.metrics.http_unread_bodies);
    }
    core.metrics.http_error(resp.status);
    let keep = body_read && req.keep_alive && !core.draining.get() && !core.node.draining();
    if http::write_for(stream, &resp, keep, req.is_head())
        .await
        .is_err()
    {
        return Next::Close;
    }
    match (keep, body_read) {
        (true, _) => Next::KeepAlive,
        (false, true) => Next::Close,
        (false, false) => Next::Linger,
    }
}

/// Reads the body of an authorised API call and removes it from `buf`. `Err(Some)`: a
/// refusal to send before closing; `Err(None)`: close at once.
async fn read_body(
    core: &Core,
    stream: &mut Stream,
    req: &Request,
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, Option<Response>> {
    let len = match req.content_length {
        None => return Err(Some(rejected(core, 411))),
        Some(n) if n > core.cfg.server.max_body_bytes => return Err(Some(rejected(core, 413))),
        Some(n) => n,
    };
    if req.expect_continue && buf.len() < len {
        let go = b"HTTP/1.1 100 Continue\r\n\r\n";
        let sent = async {
            use futures_lite::AsyncWriteExt as _;
            stream.write_all(go).await?;
            stream.flush().await
        };
        if sent.await.is_err() {
            return Err(None);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(core.cfg.server.body_timeout_ms);
    match http::read_body(stream, buf, len, deadline).await {
        Ok(body) => {
            buf.drain(..len.min(buf.len()));
            Ok(body)
        }
        Err(ReadError::Timeout { .. }) => {
            CoreMetrics::inc(&core.metrics.http_timeouts);
            core.metrics.http_error(408);
            let _ = http::write(stream, &Response::status_only(408), false).await;
            Err(None)
        }
        Err(_) => Err(None),
    }
}

fn rejected(core: &Core, status: u16) -> Response {
    CoreMetrics::inc(&core.metrics.http_rejected);
    Response::status_only(status)
}

fn count_failure(core: &Core, e: &ReadError) {
    match e {
        ReadError::Timeout { .. } => CoreMetrics::inc(&core.metrics.http_timeouts),
        ReadError::TooLarge | ReadError::Malformed => CoreMetrics::inc(&core.metrics.http_rejected),
        ReadError::Closed => {}
    }
}

async fn fail(core: &Core, stream: &mut Stream, e: ReadError) {
    count_failure(core, &e);
    if let Some(status) = e.status() {
        CoreMetrics::inc(&core.metrics.http_requests);
        core.metrics.http_error(status);
        let _ = http::write(stream, &Response::status_only(status), false).await;
        if status != 408 {
            http::linger(stream).await;
        }
    }
}

/// An upgrade request, parsed; `lease`: `None` on a trusted proxy's connection that has
/// not named its client (then `X-Forwarded-For` does).
struct Upgrade {
    accepted: Result<Vec<u8>, handshake::HandshakeError>,
    meta: UpgradeMeta,
    early: Vec<u8>,
    handler: Handler,
    lease: Option<ConnLease>,
}

async fn upgrade(core: Rc<Core>, edge: &Edge, mut stream: Stream, pending: Pending, up: Upgrade) {
    let Upgrade {
        accepted,
        meta,
        early,
        handler,
        lease,
    } = up;
    let response = match accepted {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "bad upgrade");
            CoreMetrics::inc(&core.metrics.http_requests);
            CoreMetrics::inc(&core.metrics.http_rejected);
            core.metrics.http_error(400);
            let _ = http::write(&mut stream, &Response::text(400, format!("{e}\n")), false).await;
            return;
        }
    };
    let lease = if !edge
        .origins
        .allows(meta.origin.as_deref(), meta.host.as_deref())
    {
        Err(crate::limits::Refusal::Origin)
    } else {
        match lease {
            Some(lease) => Ok(lease),
            None => edge.upgrade_client(&meta.forwarded_for),
        }
    };
    let lease = match lease {
        Ok(lease) => lease,
        Err(r) => {
            tracing::debug!(refusal = %r, origin = ?meta.origin, "upgrade refused");
            let resp = edge::refusal(r, &core.metrics, &core.cfg.server);
            core.metrics.http_error(resp.status);
            let _ = http::write(&mut stream, &resp, false).await;
            return;
        }
    };
    if meta.document.is_some() && core.pins.is_none() {
        // `/connection/websocket/<document>` exists only with `[regions]`
        CoreMetrics::inc(&core.metrics.http_requests);
        core.metrics.http_error(404);
        let _ = http::write(&mut stream, &Response::status_only(404), false).await;
        return;
    }
    let admitted = admit::may_upgrade(&core)
        && (handler == Handler::Centrifugo || admit::admit_echo_upgrade(&core));
    if !admitted {
        CoreMetrics::inc(&core.metrics.refused);
        core.metrics.http_error(503);
        let _ = http::write(&mut stream, &shed_response(&core), false).await;
        return;
    }
    let sent = async {
        use futures_lite::AsyncWriteExt as _;
        stream.write_all(&response).await?;
        stream.flush().await // a TLS stream holds the record until flushed
    };
    if sent.await.is_err() {
        if handler == Handler::Echo {
            core.node.connected_closed();
        }
        return;
    }
    match handler {
        // the session keeps the pending slot until `connect` or close
        Handler::Centrifugo => pending.into_session(),
        Handler::Echo => drop(pending), // admitted as connected above
    }
    // A task of its own: this HTTP task (several KiB of parsing state) ends here,
    // and the session lives on in the small driver task.
    let fut = driver::run(
        core.env.clone(),
        crate::net::socket::Socket::new(stream, lease),
        early,
        handler,
        meta.document,
    );
    tracing::debug!(
        task = std::mem::size_of_val(&fut),
        session = std::mem::size_of::<crate::session::Session>(),
        stream = std::mem::size_of::<Stream>(),
        "per-connection sizes"
    );
    crate::exec::spawn(fut);
}

/// 503 with `Retry-After` drawn uniformly from the configured range.
pub fn shed_response(core: &Core) -> Response {
    Response::status_only(503).with_retry_after(&core.cfg.server)
}
