//! Networking below the protocols: per-core SO_REUSEPORT listeners
//! ([`listener`]), reading and answering plain HTTP requests ([`http`]), and
//! the per-connection entry point that routes a request to the WebSocket
//! session, the conformance echo, or the HTTP endpoints ([`conn`]); the socket a
//! WebSocket session owns ([`socket`]).

pub mod conn;
pub mod http;
pub mod listener;
pub mod socket;
