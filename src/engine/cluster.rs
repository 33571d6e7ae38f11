//! What the engine offers a node for working in a cluster, beside channels: node
//! commands, surveys, the node registry and the cluster-wide count of a user's
//! connections. The commands themselves (disconnect a user, subscribe a user, ...) are
//! opaque bytes here: `crate::cluster` encodes them and applies them to the sessions; the
//! engine only carries them.
//!
//! - [`ControlSink`]: installed once per core with [`super::Engine::set_control_sink`]; the
//!   engine hands it every command and survey addressed to this node.
//! - Memory engine: one node, so a command or survey goes to this node's sink at once, there
//!   is no registry (`nodes` is `None`: the caller reports itself) and no shared user count.
//! - Redis engine: commands and surveys travel over one PUB/SUB control channel every node
//!   subscribes to (`engine::redis::control`), the registry is a hash of node entries
//!   refreshed by a heartbeat (`engine::redis::registry`), and a user's connections are a
//!   sorted set of client ids with expiry (`engine::redis::users`).
//! - Session records ([`SessionRecord`]): the memory engine keeps none (`connections` is
//!   `None`: the caller reads its own cores' sessions); Redis stores one per client with a
//!   TTL, indexed per user and per node (`engine::redis::sessions`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Receives the node commands and surveys addressed to this node (on the core the engine
/// delivers them to; the sink reaches the other cores itself).
#[async_trait::async_trait(?Send)]
pub trait ControlSink {
    /// Applies a command on this node.
    async fn command(&self, cmd: Bytes);
    /// Answers a survey with this node's part.
    async fn survey(&self, request: Bytes) -> Bytes;
}

/// One node's entry in the registry (API `info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique per process start.
    pub uid: String,
    /// `server.node_name` (or host:port).
    pub name: String,
    pub version: String,
    /// Connected clients (past `connect`).
    pub num_clients: u64,
    /// Distinct users among them.
    pub num_users: u64,
    /// Subscriptions.
    pub num_subs: u64,
    /// Channels with at least one subscriber on the node.
    pub num_channels: u64,
    /// Seconds since the node started.
    pub uptime: u64,
    /// Unix seconds of this entry.
    pub updated_at: u64,
    /// The node is out of the pool (load shedding, `load`): discovery and balancers should
    /// send new clients elsewhere.
    #[serde(default)]
    pub shedding: bool,
    /// The node is draining (stop signal): out of the pool for good, about to leave.
    #[serde(default)]
    pub draining: bool,
}

/// A client's session record (API `connections`): who it is, where it runs, since when, and
/// its subscriptions with the stream position each has reached. Built by `crate::cluster`
/// from the live session; the Redis engine stores it as JSON under the client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The protocol client id.
    pub client: String,
    pub user: String,
    /// Uid of the node holding the connection.
    pub node: String,
    /// That node's name (`server.node_name`).
    pub node_name: String,
    /// Unix seconds of `connect`.
    pub connected_at: u64,
    /// Unix seconds when the connection's token expires (0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expire_at: u64,
    /// `connect.name` / `connect.version` the client sent (SDK name and version).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Channel -> position reached (offset 0 and no epoch: the channel keeps no history).
    pub channels: std::collections::BTreeMap<String, RecordPosition>,
}

/// A subscription's position in a session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPosition {
    #[serde(default)]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
