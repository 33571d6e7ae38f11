//! Per-core counters and the Prometheus text exposition.
//!
//! Each core owns one [`CoreMetrics`] and is its only writer (relaxed atomics,
//! so no cache line is shared between writers); `/metrics` on any core reads all
//! of them through the node-wide [`Registry`]. Every sample carries a
//! `core="N"` label. We do not use the `prometheus`/`prometheus-client` crates:
//! their labelled families take a lock per lookup, and this path runs per
//! message; a fixed struct of atomics costs one uncontended add.

mod histogram;
mod render;

pub use histogram::Histogram;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::protocol::ErrorCode;
use crate::ws::close::Disconnect;

/// Label values of `wiresocket_channel_denied_total{reason}` (the channel policy's refusals).
pub const CHANNEL_DENIED_REASONS: [&str; 4] = [
    "bad_name",
    "unknown_namespace",
    "not_available",
    "permission_denied",
];

/// Label values of `wiresocket_limit_refused_total{reason}`, in the order of
/// `limits::Refusal::ALL`.
pub const LIMIT_REASONS: [&str; 9] = [
    "ip_connections",
    "prefix_connections",
    "ip_rate",
    "node_rate",
    "origin",
    "user_connections",
    "publish_user",
    "publish_channel",
    "publication_size",
];

/// The `status` labels of `wiresocket_http_errors_total`: every error status the HTTP side
/// writes; any other status counts as the last slot, `other`.
pub const HTTP_ERROR_STATUSES: [u16; 14] = [
    400, 401, 403, 404, 405, 408, 411, 413, 426, 429, 431, 500, 501, 503,
];

/// Counters of one core. Gauges are `AtomicI64` (inc/dec), counters `AtomicU64`.
#[derive(Debug)]
pub struct CoreMetrics {
    pub core: usize,
    pub connections: AtomicI64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Closes by code, indexed like [`Disconnect::ALL`].
    pub closes: Vec<AtomicU64>,
    pub subscriptions: AtomicI64,
    pub channels: AtomicI64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub publishes: AtomicU64,
    pub deliveries: AtomicU64,
    /// Command replies with an error, indexed like `protocol::ErrorCode::ALL`.
    pub command_errors: Vec<AtomicU64>,
    pub http_requests: AtomicU64,
    pub api_requests: AtomicU64,
    /// Server API calls answered 400 (a body that is not the method's JSON, a bad name).
    pub api_bad_requests: AtomicU64,
    pub mesh_pending: AtomicI64,
    pub publish_rejected: AtomicU64,
    pub mesh_refused: AtomicU64,
    pub mesh_call_timeouts: AtomicU64,
    pub engine_channel_refusals: AtomicU64,
    pub stream_resets: AtomicU64,
    pub engine_subscribe_errors: AtomicU64,
    /// Redis engine operations that failed (connection, timeout, script error).
    pub engine_redis_errors: AtomicU64,
    /// Publishes whose `WAIT` for replicas fell short (`engine.redis.wait_replicas`).
    pub engine_redis_wait_shortfalls: AtomicU64,
    /// Channels subscribed again (and reset) after the Redis PUB/SUB connection came back.
    pub engine_redis_resubscribes: AtomicU64,
    /// Redis events dropped at a full core queue (the channel was reset).
    pub engine_redis_dropped: AtomicU64,
    pub session_panics: AtomicU64,
    pub commands_rate_limited: AtomicU64,
    /// Channel streams held by this core's engine shard.
    pub engine_streams: AtomicI64,
    /// Connections accepted but not yet past `connect` (net::admit).
    pub pending: AtomicI64,
    /// Accepts refused because the core held `max_pending_connections_per_core`.
    pub pending_refused: AtomicU64,
    /// HTTP heads or bodies that missed their deadline.
    pub http_timeouts: AtomicU64,
    /// HTTP requests refused for framing or size (400, 411, 413, 431, 501).
    pub http_rejected: AtomicU64,
    /// Requests answered without reading the body they announced (then closed).
    pub http_unread_bodies: AtomicU64,
    /// API calls refused with 503 because the node is draining.
    pub api_refused_draining: AtomicU64,
    /// Plain HTTP answers with an error status, indexed like [`HTTP_ERROR_STATUSES`] plus `other`.
    pub http_errors: [AtomicU64; HTTP_ERROR_STATUSES.len() + 1],
    /// Channel operations refused by the policy, indexed like [`ChannelError::REASONS`].
    /// Channel-policy refusals, indexed like [`CHANNEL_DENIED_REASONS`].
    pub channel_denied: [AtomicU64; CHANNEL_DENIED_REASONS.len()],
    /// Refusals by the per-client limits (`limits`), indexed like [`LIMIT_REASONS`].
    pub limit_refused: [AtomicU64; LIMIT_REASONS.len()],
    /// Publish accepted -> frame queued for a subscriber, in microseconds.
    pub deliver_latency: Histogram,
    /// Session records (`cluster::sessions`): the write-behind cache found the record
    /// unchanged (nothing to write) / changed or unknown (written).
    pub session_cache_hits: AtomicU64,
    pub session_cache_misses: AtomicU64,
    /// API `connections {user}` answered from / not from the core's lookup cache.
    pub session_lookup_hits: AtomicU64,
    pub session_lookup_misses: AtomicU64,
    /// Session records written (new, changed, or rewritten to extend their TTL), deleted,
    /// and the pipelines (round trips) that carried the writes.
    pub session_records_written: AtomicU64,
    pub session_records_deleted: AtomicU64,
    pub session_record_batches: AtomicU64,
}

impl CoreMetrics {
    pub fn new(core: usize) -> Self {
        Self {
            core,
            connections: AtomicI64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closes: Disconnect::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            subscriptions: AtomicI64::new(0),
            channels: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            command_errors: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            http_requests: AtomicU64::new(0),
            api_requests: AtomicU64::new(0),
            api_bad_requests: AtomicU64::new(0),
            mesh_pending: AtomicI64::new(0),
            publish_rejected: AtomicU64::new(0),
            mesh_refused: AtomicU64::new(0),
            mesh_call_timeouts: AtomicU64::new(0),
            engine_channel_refusals: AtomicU64::new(0),
            stream_resets: AtomicU64::new(0),
            engine_subscribe_errors: AtomicU64::new(0),
            engine_redis_errors: AtomicU64::new(0),
            engine_redis_wait_shortfalls: AtomicU64::new(0),
            engine_redis_resubscribes: AtomicU64::new(0),
            engine_redis_dropped: AtomicU64::new(0),
            session_panics: AtomicU64::new(0),
            commands_rate_limited: AtomicU64::new(0),
            engine_streams: AtomicI64::new(0),
            pending: AtomicI64::new(0),
            pending_refused: AtomicU64::new(0),
            http_timeouts: AtomicU64::new(0),
            http_rejected: AtomicU64::new(0),
            http_unread_bodies: AtomicU64::new(0),
            api_refused_draining: AtomicU64::new(0),
            http_errors: Default::default(),
            channel_denied: Default::default(),
            limit_refused: Default::default(),
            deliver_latency: Histogram::new(),
            session_cache_hits: AtomicU64::new(0),
            session_cache_misses: AtomicU64::new(0),
            session_lookup_hits: AtomicU64::new(0),
            session_lookup_misses: AtomicU64::new(0),
            session_records_written: AtomicU64::new(0),
            session_records_deleted: AtomicU64::new(0),
            session_record_batches: AtomicU64::new(0),
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn gauge(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Relaxed);
    }

    /// Counts one plain HTTP answer with an error status (>= 400; others are ignored).
    pub fn http_error(&self, status: u16) {
        if status >= 400 {
            let i = HTTP_ERROR_STATUSES
                .iter()
                .position(|s| *s == status)
                .unwrap_or(HTTP_ERROR_STATUSES.len());
            self.http_errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts one command answered with error `code` (a code outside the table counts as 100).
    pub fn command_error(&self, code: u32) {
        let i = ErrorCode::ALL
            .iter()
            .position(|e| e.code == code)
            .unwrap_or(0);
        self.command_errors[i].fetch_add(1, Relaxed);
    }

    pub fn closed(&self, code: u16) {
        self.closes[Disconnect::index(code)].fetch_add(1, Relaxed);
    }
}

/// All cores' metrics, shared read-only by every core.
#[derive(Debug, Clone)]
pub struct Registry {
    cores: Arc<Vec<Arc<CoreMetrics>>>,
}

impl Registry {
    pub fn new(ncores: usize) -> Self {
        Self {
            cores: Arc::new((0..ncores).map(|i| Arc::new(CoreMetrics::new(i))).collect()),
        }
    }

    pub fn core(&self, i: usize) -> Arc<CoreMetrics> {
        self.cores[i].clone()
    }

    pub fn cores(&self) -> &[Arc<CoreMetrics>] {
        &self.cores
    }

    /// Node-wide open WebSocket connections.
    pub fn total_connections(&self) -> i64 {
        self.cores.iter().map(|c| c.connections.load(Relaxed)).sum()
    }

    /// The Prometheus text exposition of every core.
    pub fn render(&self) -> String {
        render::render(&self.cores)
    }
}
