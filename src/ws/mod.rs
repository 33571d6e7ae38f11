//! WebSocket layer: the HTTP upgrade ([`handshake`]), the frame codec on
//! borrowed buffers ([`frame`]), message reassembly with size and UTF-8 limits
//! ([`message`]), and the close-code table ([`close`]).
//!
//! Called by `net` (handshake) and `session` (frames, messages); knows nothing
//! about the Centrifugo protocol above it.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod message;
