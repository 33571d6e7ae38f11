//! WebSocket layer: the HTTP upgrade ([`handshake`]), the frame codec on
//! borrowed buffers ([`frame`]), message reassembly with size and UTF-8 limits
//! ([`message`]), the close-code table ([`close`]), and the per-core pool of
//! read buffers frames are parsed in ([`readbuf`]).
//!
//! Called by `net` (handshake) and `session` (frames, messages); knows nothing
//! about the Centrifugo protocol above it.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod readbuf;
