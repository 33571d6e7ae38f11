//! wiresocket: a self-hosted realtime WebSocket server speaking the
//! Centrifugo client protocol, thread-per-core on io_uring.
//!
//! # Layout
//!
//! In the order a connection and a publication travel through the server:
//!
//! - [`cli`], [`config`]: command line and the configuration tree.
//! - [`runtime`]: preflight, one pinned glommio executor per core, the per-core
//!   wiring ([`runtime::core::Core`]), signals and graceful drain.
//! - [`node`]: node-wide state shared by the cores through atomics (connection
//!   counts, the drain flag); a leaf.
//! - [`exec`]: executor helpers every room uses (spawn, timers, deadlines,
//!   yielding, clocks, wake-up flags); a leaf.
//! - [`net`]: SO_REUSEPORT listeners, HTTP request heads, routing an accepted
//!   connection to a WebSocket session or the HTTP endpoints.
//! - [`load`]: load shedding with hysteresis (memory, CPU, connections against their
//!   limits; `/health` and upgrades answer 503 while the node is out of the pool).
//! - [`limits`]: per-client limits shared by the cores (connections per address,
//!   prefix and user; connection and publish rates), node-local behind interfaces a
//!   cluster engine can back.
//! - [`ws`]: the WebSocket handshake, frame codec, message reassembly, and the
//!   close-code table.
//! - [`auth`]: JWT verification of connection and subscription tokens.
//! - [`channel`]: namespaces, channel-name rules, and the one permission decision
//!   (subscribe, publish, history, presence) every command and API method asks.
//! - [`protocol`]: Centrifugo commands, replies, pushes and error codes.
//! - [`session`]: one client: its socket, command dispatch, bounded outbound
//!   queue, batched writes, heartbeats; the narrow [`session::Env`] it uses.
//! - [`hub`]: per-core channel -> subscribers index and the whole interest
//!   protocol (owner side, engine subscription state); encodes each event once.
//! - [`mesh`]: generic cross-core messages (interest, frames, closures) and
//!   channel ownership.
//! - [`engine`]: the engine interface, the recovery rule and the embedded
//!   memory engine.
//! - [`cluster`]: node commands of the server API (disconnect, subscribe, unsubscribe,
//!   refresh a user's connections) applied on every core of every node, surveys, and the
//!   node statistics of `info`; carried between nodes by the engine.
//! - [`region`]: document pinning across WebSocket regions (pins with leases in the
//!   `dbCode` Redis, the 4009 redirect, `/discovery`).
//! - [`api`]: `/api/*`, `/health`, `/metrics`.
//! - [`metrics`]: per-core counters and the Prometheus exposition.

pub mod api;
pub mod auth;
pub mod channel;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod exec;
pub mod hub;
pub mod limits;
pub mod load;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod node;
pub mod protocol;
pub mod region;
pub mod runtime;
pub mod session;
pub mod ws;
