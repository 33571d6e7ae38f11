//! The Centrifugo client protocol v2, JSON encoding (see `docs/PROTOCOL.md`):
//! [`command`] parses what clients send, [`reply`] writes replies to commands,
//! [`push`] writes what the server sends unasked, [`error`] is the table of
//! error codes used in replies.
//!
//! Pure functions over bytes: no I/O, no session state. Called by `session`
//! and `hub` (frames encoded once) and `api` (shared error codes).

pub mod command;
pub mod error;
pub mod push;
pub mod reply;

pub use command::{Command, Method};
pub use error::ErrorCode;
