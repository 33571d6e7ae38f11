//! Networking below the protocols: per-core SO_REUSEPORT listeners
//! ([`listener`]), reading and answering plain HTTP requests ([`http`]), and
//! the per-connection entry point that routes a request to the WebSocket
//! session, the conformance echo, or the HTTP endpoints ([`conn`]); the socket a
//! WebSocket session owns ([`socket`]).
//! Networking below the protocols: per-core SO_REUSEPORT listeners and the
//! one-server-per-port guard ([`listener`]), hand-over to a successor process
//! ([`handover`]), admission of connections ([`admit`]), reading and answering
//! plain HTTP requests ([`http`], [`request`]), and the per-connection entry
//! point that routes a request to the WebSocket session, the conformance
//! echo, or the HTTP endpoints ([`conn`]).

pub mod accept;
pub mod admit;
pub mod conn;
pub mod handover;
pub mod http;
pub mod listener;
pub mod request;
pub mod socket;
