//! The byte stream of one accepted connection: plain TCP, or TLS over it
//! ([`super::tls`]). The HTTP side reads and writes it through `AsyncRead`/`AsyncWrite`;
//! the WebSocket session keeps it in its [`super::socket::Socket`].
//!
//! A plain stream is written by the session with non-blocking `sendmsg` on its descriptor
//! (frames gathered from the queue, no copy). A TLS stream must be written through rustls,
//! so its session writes only through `AsyncWrite` ([`Stream::is_tls`] tells which).
//!
//! [`Rewind`] replays bytes already read from the socket (after a PROXY header) to the TLS
//! handshake, then frees them.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

pub type TlsStream = futures_rustls::server::TlsStream<Rewind>;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: the rustls connection is several KiB, and most deployments terminate TLS in
    /// front of the node (this keeps the plain variant, and every session, small).
    Tls(Box<TlsStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.get_ref().0.inner,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}

/// A TCP stream that first yields bytes already read from it.
pub struct Rewind {
    read: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(read: Vec<u8>, inner: TcpStream) -> Self {
        Rewind { read, at: 0, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.at < me.read.len() {
            let n = buf.len().min(me.read.len() - me.at);
            buf[..n].copy_from_slice(&me.read[me.at..me.at + n]);
            me.at += n;
            if me.at == me.read.len() {
                me.read = Vec::new(); // replayed: give the memory back
                me.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
