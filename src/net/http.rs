//! Plain HTTP/1.1 on the WebSocket port: reading a request head and body
//! within their size and time limits, and writing responses.
//!
//! Called by `net::conn`. Limits (from `[server]`): the whole head must arrive
//! before one deadline, `header_timeout_ms` after the server starts waiting for
//! it (a slow or silent client is dropped, with 408 when it sent something;
//! a per-read timeout would let a client sending one byte a second hold the
//! connection forever). It must fit `max_header_bytes` (else 431, also for more
//! than [`MAX_HEADERS`] headers). A body has its own deadline,
//! `body_timeout_ms` (408), and may not exceed `max_body_bytes` (413). A head
//! that does not parse is answered 400.

use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// What the HTTP side reads from and writes to: a raw TCP stream (before TLS) or a [`Stream`].
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 64;

/// Why reading a request failed; `status()` is the answer owed, if any.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("request head timed out")]
    Timeout { partial: bool },
    #[error("request head too large")]
    TooLarge,
    #[error("malformed request")]
    Malformed,
}

impl ReadError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadError::Closed | ReadError::Timeout { partial: false } => None,
            ReadError::Timeout { partial: true } => Some(408),
            ReadError::TooLarge => Some(431),
            ReadError::Malformed => Some(400),
        }
    }
}

/// Reads until `buf` holds a complete head, or until `deadline`; returns the head's length.
pub async fn read_head(
    stream: &mut impl Io,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    // bytes of `buf` actually received: a read cut by the deadline leaves its zeroed room
    let filled = std::cell::Cell::new(buf.len());
    let read = read_head_inner(stream, buf, max, &filled);
    match crate::exec::timeout(left, read).await {
        Some(r) => r,
        None => {
            buf.truncate(filled.get());
            Err(ReadError::Timeout {
                partial: !buf.is_empty(),
            })
        }
    }
}

async fn read_head_inner(
    stream: &mut impl Io,
    buf: &mut Vec<u8>,
    max: usize,
    filled: &std::cell::Cell<usize>,
) -> Result<usize, ReadError> {
    loop {
        if let Some(end) = head_end(buf) {
            return Ok(end);
        }
        if buf.len() >= max {
            return Err(ReadError::TooLarge);
        }
        match read_more(stream, buf, (max + 4 - buf.len()).min(READ_CHUNK)).await {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => filled.set(buf.len()),
        }
    }
}

/// Reads until `buf` holds at least `n` bytes, or until `deadline` (a PROXY header).
pub async fn read_at_least(
    stream: &mut impl Io,
    buf: &mut Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Result<(), ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let filled = std::cell::Cell::new(buf.len());
    match crate::exec::timeout(left, read_at_least_inner(stream, buf, n, &filled)).await {
        Some(r) => r,
        None => {
            buf.truncate(filled.get());
            Err(ReadError::Timeout {
                partial: !buf.is_empty(),
            })
        }
    }
}

async fn read_at_least_inner(
    stream: &mut impl Io,
    buf: &mut Vec<u8>,
    n: usize,
    filled: &std::cell::Cell<usize>,
) -> Result<(), ReadError> {
    while buf.len() < n {
        match read_more(stream, buf, (n - buf.len()).min(READ_CHUNK)).await {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => filled.set(buf.len()),
        }
    }
    Ok(())
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Reads exactly `len` body bytes, some of which may already be in `have`, before `deadline`.
pub async fn read_body(
    stream: &mut impl Io,
    have: &[u8],
    len: usize,
    deadline: Instant,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::with_capacity(len.min(have.len().max(READ_CHUNK)));
    body.extend_from_slice(&have[..have.len().min(len)]);
    let left = deadline.saturating_duration_since(Instant::now());
    let read = async {
        while body.len() < len {
            let want = (len - body.len()).min(READ_CHUNK);
            match read_more(stream, &mut body, want).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
        Ok(())
    };
    match crate::exec::timeout(left, read).await {
        Some(Ok(())) => Ok(body),
        Some(Err(e)) => Err(e),
        None => Err(ReadError::Timeout { partial: true }),
    }
}

/// How long [`linger`] discards input after the answer before closing.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes [`linger`] discards.
const LINGER_BYTES: usize = 64 << 10;

/// Closes a connection whose request body was not read: ends our side (FIN after the
/// answer), then discards what the client still sends for a moment, so the close does not
/// turn into a reset that destroys the answer before the client has read it. Bounded by
/// [`LINGER`] and [`LINGER_BYTES`]; no buffer is kept.
pub async fn linger(stream: &mut (impl Io + std::os::fd::AsRawFd)) {
    // SHUT_WR on the descriptor: a FIN after what was written (on TLS, without a
    // close_notify: the answer is complete, and a refused client gets no more than that)
    let _ = stream.flush().await;
    // SAFETY: plain syscall on a descriptor `stream` keeps open.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
    let mut sink = vec![0u8; READ_CHUNK];
    let discard = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = crate::exec::timeout(LINGER, discard).await;
}

/// How much one read asks for.
const READ_CHUNK: usize = 4096;

/// Reads up to `want` bytes onto the end of `buf`. No stack buffer: this runs in every
/// connection's first task, whose size is fixed by its largest await. Not cancel-safe:
/// dropped mid-read, it leaves `want` zero bytes on `buf` (callers truncate).
async fn read_more(stream: &mut impl Io, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let r = stream.read(&mut buf[start..]).await;
    buf.truncate(start + *r.as_ref().unwrap_or(&0));
    r
}

/// A response to a plain HTTP request.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: body.into(),
            headers: vec![],
        }
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            headers: vec![],
        }
    }

    /// `{"error":{"code":N,"message":M}}` (plus `"temporary":true` for a temporary code)
    /// with the given HTTP status.
    pub fn error(status: u16, e: crate::protocol::ErrorCode) -> Self {
        let mut out = Vec::new();
        let mut o = crate::protocol::reply::Obj::new(&mut out);
        let mut err = o.obj("error");
        err.num("code", e.code as u64).str("message", e.message);
        if e.temporary {
            err.bool("temporary", true);
        }
        err.end();
        o.end();
        Response::json(status, out)
    }

    pub fn status_only(status: u16) -> Self {
        Response::text(status, format!("{} {}\n", status, reason(status)))
    }

    /// Adds a `Retry-After` drawn uniformly from the configured range (spreads retries).
    pub fn with_retry_after(self, server: &crate::config::ServerConfig) -> Self {
        let lo = server.retry_after_min_s;
        let hi = server.retry_after_max_s.max(lo);
        self.with_header("Retry-After", fastrand::u32(lo..=hi).to_string())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The response on the wire; `head_only` (a `HEAD` request) leaves the body out but keeps
    /// the `Content-Length` a `GET` would have had.
    pub fn to_bytes(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        out.extend_from_slice(
            format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

pub async fn write(stream: &mut impl Io, resp: &Response, keep_alive: bool) -> std::io::Result<()> {
    write_for(stream, resp, keep_alive, false).await
}

/// [`write`], without the body when answering a `HEAD` request.
pub async fn write_for(
    stream: &mut impl Io,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    stream
        .write_all(&resp.to_bytes(keep_alive, head_only))
        .await?;
    stream.flush().await
}

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_head_end_and_formats() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        let r = Response::status_only(431).with_header("Retry-After", "3".into());
        let s = String::from_utf8(r.to_bytes(false, false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(s.contains("Retry-After: 3\r\n") && s.contains("Connection: close\r\n"));
        let head = String::from_utf8(r.to_bytes(true, true)).unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 36\r\n"));
        assert_eq!(
            s.len(),
            head.len() - "keep-alive".len() + "close".len() + 36
        );
    }
}
