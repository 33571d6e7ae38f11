//! The engine: where publications are stored (history, offsets, epochs) and how
//! a node hears about publications in channels it has subscribers for.
//!
//! Two implementations share one interface: [`memory`] (embedded single-node
//! default) and, in cluster mode, Redis. Nothing in `hub` or `session` knows
//! which one runs. Every method is async and fallible because the Redis engine
//! crosses the network; the memory engine answers from the owner core's shard.
//!
//! Delivery contract: after `publish` returns `Ok`, the publication has been
//! stored (if the channel keeps history) and handed to the node-level
//! [`PublicationSink`] of the channel's owner core on every node that called
//! `subscribe_node` for the channel. The sink encodes it once and fans it out.

pub mod memory;

use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::ErrorCode;

/// A stored publication.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Position in the channel stream (1-based; 0 when the engine keeps no stream).
    pub offset: u64,
    /// The publication payload, compact JSON.
    pub data: Bytes,
    /// Publisher's ClientInfo JSON when published by a client.
    pub info: Option<Bytes>,
}

/// Where a channel stream is: offset of the last publication and the stream's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// Options of one publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    pub info: Option<Bytes>,
    /// When set, a repeated publish with the same key within the history TTL is not stored twice.
    pub idempotency_key: Option<String>,
}

/// A history query: up to `limit` publications after `since` (all retained when `since` is None).
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub limit: usize,
    pub since: Option<StreamPosition>,
    pub reverse: bool,
}

#[derive(Debug, Clone)]
pub struct HistoryResult {
    pub publications: Vec<Publication>,
    pub position: StreamPosition,
}

/// A client's presence entry (PROTOCOL.md `presence`).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub user: String,
    pub client: String,
    pub conn_info: Option<Bytes>,
    pub chan_info: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceStats {
    pub num_clients: u64,
    pub num_users: u64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("not available in this engine")]
    NotAvailable,
    #[error("engine overloaded")]
    Overloaded,
    #[error("position is no longer in history")]
    Unrecoverable,
    #[error("engine failure: {0}")]
    Internal(String),
}

impl EngineError {
    /// The reply error code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::NotAvailable => ErrorCode::NOT_AVAILABLE,
            EngineError::Overloaded => ErrorCode::TOO_MANY_REQUESTS,
            EngineError::Unrecoverable => ErrorCode::UNRECOVERABLE_POSITION,
            EngineError::Internal(_) => ErrorCode::INTERNAL,
        }
    }
}

/// Receives every publication of channels the node subscribed to, on the owner core.
pub trait PublicationSink {
    fn deliver(&self, channel: &str, publication: &Publication, published_at: Instant);
}

/// The engine as one core sees it.
#[async_trait::async_trait(?Send)]
pub trait Engine {
    fn name(&self) -> &'static str;

    /// Stores (when history is on) and delivers a publication; returns its position.
    async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOptions,
    ) -> Result<StreamPosition, EngineError>;

    /// The node now has subscribers to `channel` (called on the owner core, first interest).
    async fn subscribe_node(&self, channel: &str) -> Result<(), EngineError>;

    /// The node has no subscribers to `channel` any more.
    async fn unsubscribe_node(&self, channel: &str) -> Result<(), EngineError>;

    /// Current position of a channel stream (creates the stream's epoch if new).
    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError>;

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryResult, EngineError>;

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError>;

    async fn presence_add(&self, _channel: &str, _info: ClientInfo) -> Result<(), EngineError> {
        Err(EngineError::NotAvailable)
    }

    async fn presence_remove(&self, _channel: &str, _client: &str) -> Result<(), EngineError> {
        Err(EngineError::NotAvailable)
    }

    async fn presence(&self, _channel: &str) -> Result<Vec<ClientInfo>, EngineError> {
        Err(EngineError::NotAvailable)
    }

    async fn presence_stats(&self, _channel: &str) -> Result<PresenceStats, EngineError> {
        Err(EngineError::NotAvailable)
    }

    /// Periodic upkeep (expiring idle streams); called about once a second on every core.
    fn housekeeping(&self, _now: Instant) {}

    /// A request another core's engine instance sent to this core (memory engine sharding).
    fn on_peer_request(&self, _req: memory::ShardRequest) {}
}
