//! The socket of one WebSocket session, owned by the session for its whole life.
//!
//! Why: the flusher writes queued frames with non-blocking `sendmsg` from outside the
//! session's driver task. When the driver owned the stream and the session kept a bare
//! `RawFd` copy, a session closed by its driver could still sit in the flusher's dirty
//! list and write into a descriptor the kernel had already reused for a newly accepted
//! connection (other clients' publications were seen in `/health` responses). Here the
//! descriptor is closed only when the [`Socket`] is dropped, i.e. when the last `Rc` of
//! its session goes; [`Socket::shutdown`] ends the connection without releasing the
//! descriptor, so a late write fails with EPIPE instead of reaching a stranger.
//!
//! The socket also holds the connection's [`ConnLease`]: what the connection counts in the
//! node's per-client limits (its address, its user after `connect`), given back when the
//! socket is dropped, i.e. exactly when the descriptor is closed.
//!
//! The stream may be TLS ([`super::stream::Stream`]): then every byte goes through
//! [`Socket::poll_write`] (rustls encrypts it), never through the descriptor.
//!
//! Invariant: the raw descriptor never leaves this type except as a [`BorrowedFd`] tied
//! to a borrow of the socket. Reads and writability polls go through glommio's stream
//! (borrowed only for the duration of one synchronous poll, never across an await).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::stream::Stream;
use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::limits::ConnLease;

pub struct Socket {
    stream: RefCell<Stream>,
    tls: bool,
    fd: RawFd,
    shut: Cell<bool>,
    lease: ConnLease,
}

impl Socket {
    pub fn new(stream: Stream, lease: ConnLease) -> Self {
        let fd = stream.as_raw_fd();
        Socket {
            tls: stream.is_tls(),
            stream: RefCell::new(stream),
            fd,
            shut: Cell::new(false),
            lease,
        }
    }

    /// What this connection holds in the node's per-client limits.
    pub fn lease(&self) -> &ConnLease {
        &self.lease
    }

    /// Bytes must go through rustls ([`Socket::poll_write`]), never straight to [`Socket::fd`].
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The descriptor, for a synchronous non-blocking syscall while `self` is borrowed
    /// (writes only when not [`Socket::is_tls`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `fd` belongs to `stream`, which lives (open) as long as `self`.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, buf)
    }

    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_write(cx, buf)
    }

    /// Writes out what a TLS stream still buffers (no-op on plain TCP).
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.tls {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.stream.borrow_mut()).poll_flush(cx)
    }

    /// Ends the connection both ways; the descriptor stays ours until drop, so nothing
    /// written afterwards can reach another connection. Idempotent.
    pub fn shutdown(&self) {
        if !self.shut.replace(true) {
            // SAFETY: plain syscall on our own open descriptor.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
    }

    pub fn is_shut(&self) -> bool {
        self.shut.get()
    }
}
