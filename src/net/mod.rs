//! Networking below the protocols: per-core SO_REUSEPORT listeners and the
//! one-server-per-port guard ([`listener`]), hand-over to a successor process
//! ([`handover`]), admission of connections ([`admit`]), reading and answering
//! plain HTTP requests ([`http`], [`request`]), the PROXY protocol header of
//! trusted proxies ([`proxy`]), the browser origin check ([`origin`]), and the
//! per-connection entry point that routes a request to the WebSocket session,
//! the conformance echo, or the HTTP endpoints ([`conn`]), on the public or the
//! internal listener; the socket a WebSocket session owns ([`socket`]); TLS termination
//! ([`tls`]) and the plain-or-TLS byte stream both sides use ([`stream`]).

pub mod accept;
pub mod admit;
pub mod conn;
pub mod edge;
pub mod handover;
pub mod http;
pub mod listener;
pub mod listening;
pub mod origin;
pub mod proxy;
pub mod request;
pub mod socket;
pub mod stream;
pub mod tls;
