//! Per-client limits of the node, shared by all cores without a lock: connections per
//! client address and per network prefix, connection attempts per second per address and
//! per node, connections per user, and publications per second per user and per channel.
//!
//! Called by `net::conn` when a connection's client address is known ([`Limits::admit`]:
//! at accept, or after the PROXY header or the upgrade's `X-Forwarded-For` for a trusted
//! proxy's connection), by the session's `connect` (the user count, through the
//! connection's [`ConnLease`]) and by the client `publish` command ([`Limits::publish`]).
//! All state is fixed-size atomics ([`sketch`], [`bucket`]): a few MiB whatever the number
//! of connections or of addresses an attacker rotates through, cheap for 500K connections
//! (the per-connection part is the [`ConnLease`] its socket holds).
//!
//! Answers (each counted in `wiresocket_limit_refused_total{reason}`, see [`Refusal`]):
//! - connections per address / per prefix, attempts per address: HTTP **429** with
//!   Retry-After (this client is asking too much: a 503 would tell a load balancer the
//!   node is unwell), sent before anything is read;
//! - attempts per node: HTTP **503** with Retry-After (the node is busy, not the client);
//! - connections per user: disconnect **3504** "connection limit", as Centrifugo: it is of
//!   the terminal class, so the SDK stops instead of reconnecting into the same refusal;
//! - publications per user or channel: error **111** (temporary), then disconnect **3013**
//!   after `publish_burst_per_user` refusals in a row of the same user;
//! - publication larger than its namespace's `max_publication_bytes`: error **106**.
//!
//! Addresses in `server.limits_exempt` (loopback by default: local tools, and a local proxy
//! whose clients would otherwise all share one address) are not counted.
//!
//! Invariant: whatever a [`ConnLease`] counted is uncounted exactly once, when it drops.

pub mod addr;
pub mod bucket;
pub mod sketch;
pub mod users;

use ipnet::IpNet;
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use crate::config::ServerConfig;
use bucket::{BucketTable, Rate};
use sketch::CountSketch;
use users::{LocalUsers, UserConnections};

/// Why a limit refused; `reason()` is the metric label (`metrics::LIMIT_REASONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections from this address")]
    IpConnections,
    #[error("too many connections from this network prefix")]
    PrefixConnections,
    #[error("too many connection attempts from this address")]
    IpRate,
    #[error("too many connection attempts to this node")]
    NodeRate,
    #[error("origin not allowed")]
    Origin,
    #[error("too many connections of this user")]
    UserConnections,
    #[error("too many publications by this user")]
    PublishUser,
    #[error("too many publications into this channel")]
    PublishChannel,
    #[error("publication larger than the namespace allows")]
    PublicationSize,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::IpConnections,
        Refusal::PrefixConnections,
        Refusal::IpRate,
        Refusal::NodeRate,
        Refusal::Origin,
        Refusal::UserConnections,
        Refusal::PublishUser,
        Refusal::PublishChannel,
        Refusal::PublicationSize,
    ];

    /// Index into `CoreMetrics::limit_refused` (the order of `metrics::LIMIT_REASONS`).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Counts this refusal in `metrics`.
    pub fn counted(self, metrics: &crate::metrics::CoreMetrics) -> Self {
        crate::metrics::CoreMetrics::inc(&metrics.limit_refused[self.index()]);
        self
    }

    /// The HTTP status of a refused connection.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NodeRate => 503,
            Refusal::Origin => 403,
            _ => 429,
        }
    }
}

/// What a client `publish` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVerdict {
    Allow,
    /// Error 111, counted under this reason.
    Refuse(Refusal),
    /// Disconnect 3013 (refused `publish_burst_per_user` times in a row).
    Disconnect(Refusal),
}

/// The node's limits; one per process, shared by every core as `Arc<Limits>`.
#[derive(Debug)]
pub struct Limits {
    exempt: Vec<IpNet>,
    trusted: Vec<IpNet>,
    hasher: ahash::RandomState,
    per_ip: CountSketch,
    per_prefix: CountSketch,
    cap_ip: u32,
    cap_prefix: u32,
    ip_attempts: BucketTable,
    ip_rate: Rate,
    node_attempts: bucket::AtomicBucket,
    node_rate: Rate,
    users: Box<dyn UserConnections>,
    max_per_user: u32,
    publish_user: BucketTable,
    publish_channel: BucketTable,
    /// Refusals in a row per user (hashed like `publish_user`'s first row).
    strikes: Box<[AtomicU32]>,
    user_rate: Rate,
    channel_rate: Rate,
}

pub use crate::config::parse_nets;

impl Limits {
    pub fn new(cfg: &ServerConfig) -> Arc<Self> {
        let width = cfg.limits_table_size;
        let sized = |on: bool| if on { width } else { 2 };
        let user_rate = Rate {
            per_s: cfg.publish_rate_per_user,
            burst: cfg.publish_burst_per_user,
        };
        let channel_rate = Rate {
            per_s: cfg.publish_rate_per_channel,
            burst: cfg.publish_burst_per_channel,
        };
        let publishing = user_rate.enabled() || channel_rate.enabled();
        Arc::new(Limits {
            exempt: parse_nets(&cfg.limits_exempt).unwrap_or_default(),
            trusted: parse_nets(&cfg.trusted_proxies).unwrap_or_default(),
            hasher: ahash::RandomState::new(),
            per_ip: CountSketch::new(sized(cfg.max_connections_per_ip > 0)),
            per_prefix: CountSketch::new(sized(cfg.max_connections_per_prefix > 0)),
            cap_ip: cfg.max_connections_per_ip,
            cap_prefix: cfg.max_connections_per_prefix,
            ip_attempts: BucketTable::new(sized(cfg.connect_rate_per_ip > 0)),
            ip_rate: Rate {
                per_s: cfg.connect_rate_per_ip,
                burst: cfg.connect_burst_per_ip,
            },
            node_attempts: Default::default(),
            node_rate: Rate {
                per_s: cfg.connect_rate_per_node,
                burst: cfg.connect_burst_per_node,
            },
            users: Box::new(LocalUsers::new(sized(cfg.max_connections_per_user > 0))),
            max_per_user: cfg.max_connections_per_user,
            publish_user: BucketTable::new(sized(user_rate.enabled())),
            publish_channel: BucketTable::new(sized(channel_rate.enabled())),
            strikes: (0..sized(publishing).next_power_of_two())
                .map(|_| AtomicU32::new(0))
                .collect(),
            user_rate,
            channel_rate,
        })
    }

    /// Whether the socket peer `ip` may name the client (PROXY header, `X-Forwarded-For`).
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        addr::within(&self.trusted, ip)
    }

    /// The trusted proxies, for reading `X-Forwarded-For`.
    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
    }

    /// A connection from client address `ip` starts: checks the attempt rates, then counts
    /// it toward the per-address and per-prefix caps. The lease uncounts it when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnLease, Refusal> {
        let ip = addr::canonical(ip);
        if addr::within(&self.exempt, ip) {
            return Ok(ConnLease::new(self.clone(), None));
        }
        let now = crate::exec::now_ms();
        let ip_key = self.hasher.hash_one(ip);
        if !self.ip_attempts.take(ip_key, now, self.ip_rate) {
            return Err(Refusal::IpRate);
        }
        if !self.node_attempts.take(now, self.node_rate) {
            return Err(Refusal::NodeRate);
        }
        let prefix_key = self.hasher.hash_one(addr::prefix(ip));
        if self.cap_ip > 0 && !self.per_ip.try_inc(ip_key, self.cap_ip) {
            return Err(Refusal::IpConnections);
        }
        if self.cap_prefix > 0 && !self.per_prefix.try_inc(prefix_key, self.cap_prefix) {
            if self.cap_ip > 0 {
                self.per_ip.dec(ip_key);
            }
            return Err(Refusal::PrefixConnections);
        }
        Ok(ConnLease::new(self.clone(), Some((ip_key, prefix_key))))
    }

    /// A lease for a connection whose client is not counted (yet): the internal listener,
    /// or a trusted proxy's connection before its first upgrade names the client.
    pub fn uncounted(self: &Arc<Self>) -> ConnLease {
        ConnLease::new(self.clone(), None)
    }

    /// One client `publish` by `user` (a client id for anonymous clients) into `channel`.
    pub fn publish(&self, user: &str, channel: &str) -> PublishVerdict {
        if !self.user_rate.enabled() && !self.channel_rate.enabled() {
            return PublishVerdict::Allow;
        }
        let now = crate::exec::now_ms();
        let user_key = self.hasher.hash_one(user);
        let refusal = if !self.publish_user.take(user_key, now, self.user_rate) {
            Some(Refusal::PublishUser)
        } else if !self
            .publish_channel
            .take(self.hasher.hash_one(channel), now, self.channel_rate)
        {
            Some(Refusal::PublishChannel)
        } else {
            None
        };
        let strikes = &self.strikes[user_key as usize & (self.strikes.len() - 1)];
        let Some(refusal) = refusal else {
            if strikes.load(Relaxed) != 0 {
                strikes.store(0, Relaxed);
            }
            return PublishVerdict::Allow;
        };
        let burst = if self.user_rate.enabled() {
            self.user_rate.burst
        } else {
            self.channel_rate.burst
        };
        if strikes.fetch_add(1, Relaxed) + 1 >= burst.max(1) {
            strikes.store(0, Relaxed);
            PublishVerdict::Disconnect(refusal)
        } else {
            PublishVerdict::Refuse(refusal)
        }
    }
}

/// What one connection holds in the node's counters: its client address and prefix (when
/// counted) and, after `connect`, its user. Owned by the connection's HTTP task and then by
/// its socket; dropping it gives everything back.
pub struct ConnLease {
    limits: Arc<Limits>,
    /// Hashes of the client address and its prefix; `None`: not counted.
    ip: Cell<Option<(u64, u64)>>,
    user: Cell<Option<Box<str>>>,
}

impl std::fmt::Debug for ConnLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLease")
            .field("counted", &self.is_counted())
            .finish_non_exhaustive()
    }
}

impl ConnLease {
    fn new(limits: Arc<Limits>, ip: Option<(u64, u64)>) -> Self {
        ConnLease {
            limits,
            ip: Cell::new(ip),
            user: Cell::new(None),
        }
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// Whether the client address is counted (false: exempt, internal, or not known yet).
    pub fn is_counted(&self) -> bool {
        self.ip.get().is_some()
    }

    /// Counts this connection for `user` at `connect` (anonymous: not counted); refused
    /// when the user holds `max_connections_per_user` connections.
    pub fn acquire_user(&self, user: &str) -> Result<(), Refusal> {
        let max = self.limits.max_per_user;
        if max == 0 || user.is_empty() {
            return Ok(());
        }
        let held = self.user.take();
        if let Some(held) = held {
            self.user.set(Some(held)); // already counted (one connect per connection)
            return Ok(());
        }
        if !self.limits.users.acquire(user, max) {
            return Err(Refusal::UserConnections);
        }
        self.user.set(Some(user.into()));
        Ok(())
    }
}

impl Drop for ConnLease {
    fn drop(&mut self) {
        let l = &self.limits;
        if let Some((ip, prefix)) = self.ip.take() {
            if l.cap_ip > 0 {
                l.per_ip.dec(ip);
            }
            if l.cap_prefix > 0 {
                l.per_prefix.dec(prefix);
            }
        }
        if let Some(user) = self.user.take() {
            l.users.release(&user);
        }
    }
}

#[cfg(test)]
mod tests;
