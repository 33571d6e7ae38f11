//! What a listener knows beyond the core: whether it is the public or the internal
//! listener, the node's per-client limits, and the browser origin policy; and the
//! decisions `net::conn` takes with them (who the client is, which paths are served here).
//!
//! One [`Edge`] per listener per core, built by the runtime and handed to the accept loop.
//!
//! - Public listener: upgrades, `/health`, and (unless an internal listener is set)
//!   `/metrics` and `/api/*`. With `server.internal_listen` set, `/metrics` and `/api/*`
//!   answer 404 here.
//! - TLS (`[server.tls]`) is terminated on the public listener only.
//! - Internal listener: `/metrics`, `/api/*`, `/health`, `/livez` (200 while the process
//!   serves, even when draining or shedding: a liveness, not a readiness, check); no
//!   upgrades (404), no per-client limits, no origin check.
//!
//! Who the client is ([`Edge::accept`], [`Edge::upgrade_client`]): the socket's peer, or,
//! when the peer is a trusted proxy, the address of its PROXY v2 header, else the
//! `X-Forwarded-For` of each upgrade. A trusted proxy's connection that names no client is
//! not counted (it carries many clients).

use std::net::IpAddr;
use std::sync::Arc;

use super::http::Response;
use super::origin::OriginPolicy;
use crate::limits::{addr, ConnLease, Limits, Refusal};
use crate::metrics::CoreMetrics;

pub struct Edge {
    pub limits: Arc<Limits>,
    pub origins: OriginPolicy,
    /// This is the internal listener.
    pub internal: bool,
    /// An internal listener exists (the public one hides `/metrics` and `/api/*`).
    pub split: bool,
    /// TLS terminated on this listener (`[server.tls]`, public listener only).
    pub tls: Option<Arc<super::tls::Tls>>,
}

/// Who a new connection is, as far as the socket tells.
pub enum Peer {
    /// Counted under its address (or exempt).
    Client(ConnLease),
    /// A trusted proxy: the client is named by a PROXY header or by each upgrade.
    Proxy(ConnLease),
}

impl Edge {
    pub fn new(
        cfg: &crate::config::ServerConfig,
        limits: Arc<Limits>,
        internal: bool,
        tls: Option<Arc<super::tls::Tls>>,
    ) -> Self {
        Edge {
            limits,
            origins: OriginPolicy::new(&cfg.allowed_origins),
            internal,
            split: cfg.internal_listen.is_some(),
            tls: tls.filter(|_| !internal),
        }
    }

    /// A connection accepted from `peer`: its lease, or the refusal to answer at once.
    pub fn accept(&self, peer: Option<IpAddr>) -> Result<Peer, Refusal> {
        match peer {
            _ if self.internal => Ok(Peer::Client(self.limits.uncounted())),
            None => Ok(Peer::Client(self.limits.uncounted())),
            Some(ip) if self.limits.is_trusted_proxy(ip) => {
                Ok(Peer::Proxy(self.limits.uncounted()))
            }
            Some(ip) => self.limits.admit(ip).map(Peer::Client),
        }
    }

    /// The lease of an upgrade on a trusted proxy's connection naming no client in a PROXY
    /// header: counted under the client of `X-Forwarded-For`, if it names one.
    pub fn upgrade_client(&self, forwarded_for: &[String]) -> Result<ConnLease, Refusal> {
        let values: Vec<&str> = forwarded_for.iter().map(String::as_str).collect();
        match addr::forwarded_client(&values, self.limits.trusted()) {
            Some(ip) => self.limits.admit(ip),
            None => Ok(self.limits.uncounted()),
        }
    }

    /// Whether `path` is not served on this listener (answer 404 without routing).
    pub fn hides(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        let internal_only = path == "/metrics" || path.starts_with("/api/");
        (self.split && !self.internal && internal_only) || (!self.internal && path == "/livez")
    }

    /// The answer to a liveness check on the internal listener, if `path` is one.
    pub fn liveness(&self, path: &str) -> Option<Response> {
        (self.internal && path.split('?').next() == Some("/livez"))
            .then(|| Response::text(200, "ok\n"))
    }
}

/// The HTTP answer to a refused connection, counted: 403 (origin), 429 or 503 with
/// Retry-After (limits).
pub fn refusal(
    r: Refusal,
    metrics: &CoreMetrics,
    server: &crate::config::ServerConfig,
) -> Response {
    r.counted(metrics);
    let resp = Response::status_only(r.status());
    if r == Refusal::Origin {
        resp
    } else {
        resp.with_retry_after(server)
    }
}
