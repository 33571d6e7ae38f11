//! Document pinning across WebSocket regions: pins with leases in the license-region Redis,
//! the 4009 redirect, and `GET /discovery` (user guide: docs/REGIONS.md).
//!
//! # Model
//! A deployment has *WebSocket regions* (`[regions] name`, e.g. `eu-central-1`: a cluster of
//! nodes behind one public URL, `[regions] url`) and *license regions* (the token's `dbCode`:
//! the Redis holding an app's document pins, `[regions] pin_redis`). A channel of a namespace
//! with `pinned = true` is a *document*: it is served by one region at a time, so all its
//! editors meet on one cluster (one Redis engine, low latency), wherever they come from.
//!
//! # Where a document is opened
//! - a client `subscribe` to a document channel;
//! - the connection URL `/connection/websocket/<url-encoded document>`: `connect` opens the
//!   document and subscribes the connection server-side (the reply's `subs`), which is the URL
//!   form discovery and redirects give;
//! - a document among the token's `channels` (server-side subscriptions).
//!
//! Each open runs one atomic script on the pin Redis ([`pin`]): pinned to another region →
//! the connection is closed with **4009** and reason `REDIRECT:<pinned region url>/<encoded
//! document>` (the full reason is in the `disconnect` push; the close frame carries it when
//! it fits the 123 bytes a close frame allows); free or ours → this core becomes a holder and
//! the pin's lease is (re)set. Any node of the pinned region serves the document. The pin
//! Redis unreachable (or slower than `timeout_ms`) → subscribe error 100 (temporary), or, on
//! connect, close 3004 (reconnect): never an unchecked open.
//!
//! # Leases and grace
//! Holds are per core ([`core::CorePins`] counts the core's connections per document): each
//! core renews all its documents every `renew_interval_ms` in one pipeline per pin Redis (no
//! timer per connection), and releases a document when its last connection on the core
//! leaves. The last release in the region starts the grace (`pin_grace_ms`): if nobody
//! returns, the pin expires and the next connection may pin the document anywhere. A node that
//! dies stops renewing; its holds lapse and the pin expires within one `pin_lease_ms`.
//!
//! # Discovery
//! [`discovery`]: `GET /discovery?documentName=<doc>` with the connection JWT as a bearer
//! token answers the URL (with the document) and region to connect to: the pinned region, or,
//! for a free document, the token's `regionCode` region when `urls` knows it, else this one.
//!
//! # Runtime
//! [`Regions`] is node-wide (built before the cores start): one Redis I/O thread per distinct
//! pin Redis, reusing the engine's Redis layer (`engine::redis::RedisNode`: connect, TLS, ACL,
//! health checks, reconnects), started with `connect_retry` so an unreachable pin Redis does
//! not stop the node (opens fail with the temporary error until it is back). The dbCode Redis
//! is independent of the engine, so pins work with the memory engine too. Metrics are
//! node-wide atomics ([`RegionStats`]).
//!
//! # Conflicts
//! A document pinned elsewhere *after* connections opened it here (possible only when the pin
//! was lost, e.g. the pin Redis failed over without the key and another region pinned it) is
//! found by the next renewal: counted (`wiresocket_region_pin_conflicts_total`), logged, and
//! its connections on the core are closed with 4009 to the new owner (the runtime installs
//! [`core::CorePins::on_conflict`], which asks `session::Env` to close them), so a split heals
//! within one `renew_interval_ms`.
//!
//! # Health
//! A pin Redis that is down is not a `/health` failure, on purpose: every node of the region
//! shares it, so taking nodes out of rotation would not help, and they still serve everything
//! but opening documents. `wiresocket_region_pin_redis_up{redis}` shows it for alerting.

pub mod core;
pub mod discovery;
pub mod document;
pub mod pin;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::config::{Config, RedisConfig, RegionsConfig};
use crate::engine::redis::{Link, RedisNode};
use crate::metrics::Histogram;

/// The node's regions state, shared by the cores.
pub struct Regions {
    pub cfg: RegionsConfig,
    /// Pin Redis I/O threads by URL (two dbCodes on one Redis share one).
    stores: HashMap<String, Arc<RedisNode>>,
    /// A random id of this node process, the prefix of its cores' holder ids.
    pub node_id: String,
    pub stats: RegionStats,
}

/// A pin Redis: its URL (the key its holds are grouped by) and its I/O thread.
pub type Store = (Arc<str>, Arc<RedisNode>);

impl Regions {
    /// Starts the pin Redis I/O threads when `[regions]` is enabled.
    pub fn start(cfg: &Config) -> anyhow::Result<Option<Arc<Regions>>> {
        let rc = &cfg.regions;
        if !rc.enabled {
            return Ok(None);
        }
        let mut stores = HashMap::new();
        let urls = rc
            .pin_redis
            .values()
            .chain(Some(&rc.default_pin_redis).filter(|u| !u.is_empty()));
        for url in urls {
            if stores.contains_key(url) {
                continue;
            }
            let redis = RedisConfig {
                url: url.clone(),
                tls_ca: rc.tls_ca.clone(),
                timeout_ms: rc.timeout_ms,
                connect_retry: true,
                ..Default::default()
            };
            stores.insert(url.clone(), RedisNode::start(&redis)?);
        }
        Ok(Some(Arc::new(Regions {
            cfg: rc.clone(),
            stores,
            node_id: format!("{:016x}", fastrand::u64(..)),
            stats: RegionStats::default(),
        })))
    }

    /// The pin Redis of a token's `dbCode` (`None`: the default), if configured.
    pub fn store(&self, db_code: Option<&str>) -> Option<Store> {
        let url = match db_code {
            Some(code) => self.cfg.pin_redis.get(code)?,
            None if self.cfg.default_pin_redis.is_empty() => return None,
            None => &self.cfg.default_pin_redis,
        };
        let node = self.stores.get(url)?;
        Some((Arc::from(url.as_str()), node.clone()))
    }

    /// The pin Redis I/O thread for `url` (a [`Store`]'s key).
    pub fn store_by_url(&self, url: &str) -> Option<Arc<RedisNode>> {
        self.stores.get(url).cloned()
    }

    /// `<url of region>/<encoded document>`.
    pub fn document_url(base: &str, document: &str) -> String {
        format!("{base}/{}", document::encode(document))
    }

    /// Appends the regions metrics, with the state of each pin Redis connection.
    pub fn render(&self, out: &mut String) {
        self.stats.render(out);
        let name = "wiresocket_region_pin_redis_up";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while the connection to a pin Redis is up (opens of documents whose dbCode uses it succeed), else 0.\n# TYPE {name} gauge"
        );
        let mut stores: Vec<_> = self.stores.iter().collect();
        stores.sort_by(|a, b| a.0.cmp(b.0));
        for (url, node) in stores {
            let shown = crate::engine::redis::redacted(url).replace('"', "'");
            let _ = writeln!(
                out,
                "{name}{{redis=\"{shown}\"}} {}",
                u8::from(node.stats().is_up(Link::Command))
            );
        }
    }
}

/// Node-wide regions counters.
#[derive(Default)]
pub struct RegionStats {
    pub acquired: AtomicU64,
    pub renewed: AtomicU64,
    pub released: AtomicU64,
    pub redirects: AtomicU64,
    pub errors: AtomicU64,
    pub conflicts: AtomicU64,
    pub discovery: [AtomicU64; 5],
    pub check_latency: Histogram,
}

/// What a discovery request was answered (the index of its counter in
/// [`RegionStats::discovery`] and of its label in [`DISCOVERY_LABELS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Ok = 0,
    Unauthorized = 1,
    BadRequest = 2,
    Forbidden = 3,
    Unavailable = 4,
}

/// Discovery answers, the label of `wiresocket_region_discovery_total`.
pub const DISCOVERY_LABELS: [&str; 5] = [
    "ok",
    "unauthorized",
    "bad_request",
    "forbidden",
    "unavailable",
];

impl RegionStats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 6] = [
            ("wiresocket_region_pins_acquired_total", "Documents this node pinned to its region (they were free).", &self.acquired),
            ("wiresocket_region_pins_renewed_total", "Pin holds renewed (one per document per core per renewal).", &self.renewed),
            ("wiresocket_region_pins_released_total", "Last holds released in the region: the pin's grace started.", &self.released),
            ("wiresocket_region_redirects_total", "Connections closed with 4009: their document is pinned to another region.", &self.redirects),
            ("wiresocket_region_pin_errors_total", "Pin commands that failed (pin Redis unreachable or slow): opens refused with a temporary error.", &self.errors),
            ("wiresocket_region_pin_conflicts_total", "Renewals that found a document this node serves pinned to another region (its connections were redirected).", &self.conflicts),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", c.load(Relaxed));
        }
        let name = "wiresocket_region_discovery_total";
        let _ = writeln!(
            out,
            "# HELP {name} GET /discovery answers by result.\n# TYPE {name} counter"
        );
        for (label, c) in DISCOVERY_LABELS.iter().zip(&self.discovery) {
            let _ = writeln!(out, "{name}{{result=\"{label}\"}} {}", c.load(Relaxed));
        }
        let name = "wiresocket_region_pin_check_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to check and hold a document's pin when it is opened (one pin Redis round trip).\n# TYPE {name} histogram"
        );
        self.check_latency.write_samples(out, name, "");
    }
}
