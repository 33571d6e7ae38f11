//! The Centrifugo client protocol v2, JSON encoding (see `shared/PROTOCOL.md`):
//! [`command`] parses what clients send, [`reply`] writes what the server
//! sends, [`error`] is the table of error codes used in replies.
//!
//! Pure functions over bytes: no I/O, no session state. Called by `session`
//! and `hub` (publication frames) and `api` (shared error codes).

pub mod command;
pub mod error;
pub mod reply;

pub use command::{Command, Method};
pub use error::ErrorCode;
