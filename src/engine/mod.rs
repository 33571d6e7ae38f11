//! The engine: where publications are stored (history, offsets, epochs), where
//! presence lives, and how a node hears about events in channels it has
//! subscribers for.
//!
//! Two implementations share one interface: [`memory`] (embedded single-node
//! default) and, in cluster mode, Redis. Nothing in `hub` or `session` knows
//! which one runs. Every method is async and fallible because the Redis engine
//! crosses the network; the memory engine answers from the owner core's shard.
//! Channel options (history size and TTL) come with each call, from the channel's
//! namespace: the engine reads no channel configuration of its own.
//!
//! Delivery contract: after `publish` returns `Ok`, the publication has been
//! stored (if the channel keeps history) and handed to the node-level
//! [`PublicationSink`] of the channel's owner core on every node that called
//! `subscribe_node` for the channel. The sink encodes it once and fans it out.
//! Join/leave events travel the same way; a stream that loses continuity (new
//! epoch while subscribed) is announced with [`PublicationSink::reset`].
//!
//! The recovery rule both engines apply is [`recovery::missed_after`]; the
//! conformance suite both must pass is `conformance` (tests).

pub mod cluster;
pub mod memory;
pub mod recovery;
pub mod redis;

#[cfg(test)]
pub(crate) mod conformance;

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::ErrorCode;

/// A stored publication.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// Position in the channel stream (1-based; 0 when not part of the stream).
    pub offset: u64,
    /// The publication payload, compact JSON.
    pub data: Bytes,
    /// Publisher's ClientInfo JSON when published by a client.
    pub info: Option<Bytes>,
    /// `tags`: a JSON object of string values, when given.
    pub tags: Option<Bytes>,
}

impl Publication {
    /// Its parts as the client protocol writes them.
    pub fn json(&self) -> crate::protocol::reply::PublicationJson<'_> {
        crate::protocol::reply::PublicationJson {
            data: &self.data,
            offset: self.offset,
            info: self.info.as_deref(),
            tags: self.tags.as_deref(),
        }
    }
}

/// Where a channel stream is: offset of the last publication and the stream's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// History settings of a channel (its namespace's `history_size` / `history_ttl_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Publications kept; 0: the channel keeps no history.
    pub size: usize,
    /// How long publications are kept.
    pub ttl: Duration,
}

impl HistoryOptions {
    pub const NONE: HistoryOptions = HistoryOptions {
        size: 0,
        ttl: Duration::from_secs(1),
    };

    pub fn enabled(&self) -> bool {
        self.size > 0
    }
}

/// Options of one publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub info: Option<Bytes>,
    /// A repeated publish with the same key within the idempotency window is not stored or
    /// delivered again; it answers the first publish's position.
    pub idempotency_key: Option<String>,
    /// `tags` JSON object, delivered with the publication.
    pub tags: Option<Bytes>,
    /// The channel's history settings.
    pub history: HistoryOptions,
    /// Deliver without storing in history (the publication gets no offset).
    pub skip_history: bool,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            info: None,
            idempotency_key: None,
            tags: None,
            history: HistoryOptions::NONE,
            skip_history: false,
        }
    }
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
#[derive(Debug, Clone, PartialEq)]
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

/// Something that happened in a channel, for its subscribers.
#[derive(Debug, Clone)]
pub enum ChannelEvent {
    Publication(Publication),
    Join(ClientInfo),
    Leave(ClientInfo),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("not available in this engine or channel")]
    NotAvailable,
    #[error("engine overloaded")]
    Overloaded,
    #[error("position is no longer in history")]
    Unrecoverable,
    #[error("too many channels (engine.max_channels)")]
    LimitExceeded,
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
            EngineError::LimitExceeded => ErrorCode::LIMIT_EXCEEDED,
            EngineError::Internal(_) => ErrorCode::INTERNAL,
        }
    }
}

impl From<crate::mesh::CallError> for EngineError {
    fn from(e: crate::mesh::CallError) -> Self {
        match e {
            crate::mesh::CallError::Full => EngineError::Overloaded,
            other => EngineError::Internal(other.to_string()),
        }
    }
}

/// Receives every event of channels the node subscribed to, on the owner core.
pub trait PublicationSink {
    fn deliver(&self, channel: &str, event: &ChannelEvent, published_at: Instant);

    /// The channel's stream lost continuity: subscribers must resubscribe (and recover).
    fn reset(&self, channel: &str);
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

    /// Delivers a join or leave event (not stored).
    async fn publish_join_leave(
        &self,
        channel: &str,
        event: ChannelEvent,
    ) -> Result<(), EngineError>;

    /// The node now has subscribers to `channel` (called on the owner core, first interest).
    async fn subscribe_node(&self, channel: &str) -> Result<(), EngineError>;

    /// The node has no subscribers to `channel` any more.
    async fn unsubscribe_node(&self, channel: &str) -> Result<(), EngineError>;

    /// Current position of a channel stream for a subscriber: creates the stream (and its
    /// epoch) when missing, within `engine.max_channels`.
    async fn position(
        &self,
        channel: &str,
        history: HistoryOptions,
    ) -> Result<StreamPosition, EngineError>;

    /// Reads history; never creates a stream (a missing one reads as empty at offset 0).
    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
        history: HistoryOptions,
    ) -> Result<HistoryResult, EngineError>;

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError>;

    /// Adds (or refreshes) a client's presence entry.
    async fn presence_add(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError>;

    async fn presence_remove(&self, channel: &str, client: &str) -> Result<(), EngineError>;

    /// Refreshes many entries at once (the heartbeat's periodic re-add of a core's present
    /// clients); engines with round trips batch them. Stops at the first failure.
    async fn presence_refresh(
        &self,
        entries: Vec<(Arc<str>, ClientInfo)>,
    ) -> Result<(), EngineError> {
        for (channel, info) in entries {
            self.presence_add(&channel, info).await?;
        }
        Ok(())
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, EngineError>;

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError>;

    /// Periodic upkeep (expiring idle streams); called about once a second on every core.
    fn housekeeping(&self, _now: Instant) {}

    /// How often present clients' entries must be added again so they do not expire
    /// (`None`: entries live until removed, as in the memory engine).
    fn presence_refresh_every(&self) -> Option<Duration> {
        None
    }

    // --- the cluster capability (`cluster.rs`) ---

    /// Installs the receiver of node commands and surveys (once per core, at start).
    fn set_control_sink(&self, _sink: std::rc::Rc<dyn cluster::ControlSink>) {}

    /// Sends a node command to every node (this one included).
    async fn command(&self, _cmd: Bytes) -> Result<(), EngineError> {
        Err(EngineError::NotAvailable)
    }

    /// Asks every live node (this one included) and returns their answers; a node that
    /// does not answer within the deadline is left out.
    async fn survey(&self, _request: Bytes) -> Result<Vec<Bytes>, EngineError> {
        Err(EngineError::NotAvailable)
    }

    /// How often [`Engine::announce`] and [`Engine::refresh_user_connections`] must run
    /// (`None`: the engine keeps no registry).
    fn registry_refresh_every(&self) -> Option<Duration> {
        None
    }

    /// Publishes this node's entry in the node registry.
    async fn announce(&self, _node: &cluster::NodeInfo) -> Result<(), EngineError> {
        Ok(())
    }

    /// Removes this node's entry from the registry (at the end of a graceful drain).
    async fn withdraw(&self, _uid: &str) -> Result<(), EngineError> {
        Ok(())
    }

    /// The live nodes of the registry; `None`: no registry (one node).
    async fn nodes(&self) -> Result<Option<Vec<cluster::NodeInfo>>, EngineError> {
        Ok(None)
    }

    /// Counts `client` as a connection of `user` cluster-wide unless the user already holds
    /// `max`; `false`: refused. Engines without a shared count accept (the node-local count
    /// of `limits` applies).
    async fn add_user_connection(
        &self,
        _user: &str,
        _client: &str,
        _max: u32,
    ) -> Result<bool, EngineError> {
        Ok(true)
    }

    /// Forgets a connection counted by [`Engine::add_user_connection`].
    async fn remove_user_connection(&self, _user: &str, _client: &str) -> Result<(), EngineError> {
        Ok(())
    }

    /// Keeps the counted connections of this core's live clients from expiring.
    async fn refresh_user_connections(
        &self,
        _entries: Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    // --- session records (`cluster::SessionRecord`, API `connections`) ---

    /// How long a stored session record lives without being written again (`None`: the
    /// engine stores no records; the node answers from its own sessions).
    fn session_ttl(&self) -> Option<Duration> {
        None
    }

    /// Writes (creates or replaces) records and extends their TTL, in pipelined batches;
    /// returns the number of round trips it took.
    async fn write_sessions(
        &self,
        _records: Vec<cluster::SessionRecord>,
    ) -> Result<usize, EngineError> {
        Ok(0)
    }

    /// Deletes the records of closed connections: (user, client) each, all of `node`.
    async fn remove_sessions(
        &self,
        _node: &str,
        _closed: Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Up to `limit` live records cluster-wide (only `user`'s, when given); `None`: the
    /// engine stores no records.
    async fn connections(
        &self,
        _user: Option<&str>,
        _limit: usize,
    ) -> Result<Option<Vec<cluster::SessionRecord>>, EngineError> {
        Ok(None)
    }
}
