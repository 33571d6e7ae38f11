//! The task that drives one WebSocket connection after the handshake.
//!
//! A single hand-polled future watches three things at once without holding a
//! buffer while idle: a close request, writability (only while the outbound
//! queue is blocked), and readability. Reads borrow a pooled buffer for the
//! duration of one poll; it is kept only while a frame is incomplete.
//! Complete frames are reassembled into messages and handed to the
//! [`Handler`]: the Centrifugo protocol ([`super::dispatch`]) or the RFC 6455
//! conformance echo.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::{FlushOutcome, Phase, Session};
use crate::runtime::core::Core;
use crate::runtime::pool::ReadBuf;
use crate::ws::close::Disconnect;
use crate::ws::frame;
use crate::ws::message::{Assembler, Msg};

/// What the connection speaks above WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Centrifugo,
    Echo,
}

enum Wake {
    Data(ReadBuf),
    Eof,
    Close(Disconnect),
}

struct Conn {
    stream: TcpStream,
    /// Unparsed bytes (an incomplete frame, or bytes that came with the handshake).
    partial: Option<ReadBuf>,
    /// `partial` holds bytes that arrived with the handshake and must be handled before reading.
    replay: bool,
    asm: Assembler,
}

/// Registers the session and returns the task that runs it until the connection ends.
///
/// Everything the task needs is moved into one `Conn` before the future is created, so
/// the idle task holds each piece once (this future is the per-connection task size).
pub fn run(
    core: Rc<Core>,
    stream: TcpStream,
    early: Vec<u8>,
    handler: Handler,
) -> impl Future<Output = ()> {
    let session = core.open_session(std::os::fd::AsRawFd::as_raw_fd(&stream));
    if handler == Handler::Echo {
        crate::net::admit::echo_session(&session);
    }
    let partial = (!early.is_empty()).then(|| {
        let mut buf = core.pool.take();
        ensure_room(&mut buf, early.len());
        buf.data[..early.len()].copy_from_slice(&early);
        buf.filled = early.len();
        buf
    });
    let mut conn = Conn {
        stream,
        replay: partial.is_some(),
        partial,
        asm: Assembler::default(),
    };
    // An `async move` block, not an `async fn`: its captures are stored once, whereas an
    // async fn keeps its arguments and their moved copies side by side (measured: 480 -> 280 B).
    async move {
        let code = loop {
            let wake = if std::mem::take(&mut conn.replay) {
                Wake::Data(conn.partial.take().expect("replay implies bytes"))
            } else {
                poll_fn(|cx| conn.poll_wake(cx, &session, &core)).await
            };
            let end = match wake {
                // boxed: command handling is large and must not size the idle task
                Wake::Data(buf) => Box::pin(conn.process(buf, &core, &session, handler)).await,
                Wake::Eof => Some(Disconnect::ABNORMAL),
                Wake::Close(d) => Some(d),
            };
            if let Some(d) = end {
                // boxed for the same reason
                break Box::pin(conn.finish(&core, &session, d)).await;
            }
        };
        if let Some(buf) = conn.partial.take() {
            core.pool.put(buf);
        }
        core.close_session(&session, code);
    }
}

impl Conn {
    fn poll_wake(&mut self, cx: &mut Context<'_>, s: &Session, core: &Core) -> Poll<Wake> {
        if let Some(d) = s.close_requested() {
            return Poll::Ready(Wake::Close(d));
        }
        if s.is_blocked() {
            match self.poll_drain(cx, s, &core.metrics) {
                Poll::Ready(Ok(())) => s.set_blocked(false),
                Poll::Ready(Err(())) => return Poll::Ready(Wake::Close(Disconnect::WRITE_ERROR)),
                Poll::Pending => {}
            }
        }
        s.set_waker(cx.waker());
        let mut buf = self.partial.take().unwrap_or_else(|| core.pool.take());
        ensure_room(&mut buf, 1024);
        let filled = buf.filled;
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf.data[filled..]) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                core.pool.put(buf);
                Poll::Ready(Wake::Eof)
            }
            Poll::Ready(Ok(n)) => {
                buf.filled += n;
                Poll::Ready(Wake::Data(buf))
            }
            Poll::Pending => {
                if buf.filled > 0 {
                    self.partial = Some(buf);
                } else {
                    core.pool.put(buf);
                }
                Poll::Pending
            }
        }
    }

    /// Writes the blocked queue as the socket accepts it; Ready(Ok) when it is empty.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        s: &Session,
        m: &CoreMetrics,
    ) -> Poll<Result<(), ()>> {
        loop {
            let step = s.with_front(|front| match front {
                None => Poll::Ready(Ok(0)),
                Some(bytes) => Pin::new(&mut self.stream).poll_write(cx, bytes),
            });
            match step {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => {
                    s.advance(n, m);
                    match s.flush(m) {
                        FlushOutcome::Done => return Poll::Ready(Ok(())),
                        FlushOutcome::Blocked => continue,
                        FlushOutcome::Failed => return Poll::Ready(Err(())),
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Parses and handles every complete frame in `buf`; keeps an incomplete tail.
    async fn process(
        &mut self,
        mut buf: ReadBuf,
        core: &Rc<Core>,
        s: &Rc<Session>,
        h: Handler,
    ) -> Option<Disconnect> {
        crate::metrics::CoreMetrics::add(&core.metrics.bytes_in, buf.filled as u64);
        let max = core.cfg.websocket.max_message_bytes;
        let mut pos = 0;
        let end = loop {
            let parsed = match frame::parse(&mut buf.data[pos..buf.filled], max) {
                Ok(Some(f)) => f,
                Ok(None) => break None,
                Err(d) => break Some(d),
            };
            let frame_end = pos + parsed.payload.end;
            let outcome = match self.asm.push(&parsed, &mut buf.data[pos..frame_end], max) {
                Ok(None) => None,
                Ok(Some(msg)) => handle(msg, core, s, h).await,
                Err(d) => Some(d),
            };
            self.asm.reset_if_complete(&parsed);
            pos = frame_end;
            if outcome.is_some() {
                break outcome;
            }
        };
        if s.has_output() && !s.is_blocked() {
            match s.flush(&core.metrics) {
                FlushOutcome::Done => {}
                FlushOutcome::Blocked => s.set_blocked(true),
                FlushOutcome::Failed => return Some(Disconnect::WRITE_ERROR),
            }
        }
        if end.is_some() {
            core.pool.put(buf);
            return end;
        }
        buf.data.copy_within(pos..buf.filled, 0);
        buf.filled -= pos;
        if buf.filled > 0 {
            self.partial = Some(buf);
        } else {
            core.pool.put(buf);
        }
        None
    }

    /// Sends the disconnect push (protocol-level codes) and the close frame, then closes.
    async fn finish(&mut self, core: &Core, s: &Rc<Session>, d: Disconnect) -> u16 {
        tracing::debug!(session = s.id, code = d.code, reason = d.reason, "closing");
        // a client-initiated close was already answered in `handle`
        let answered = s.phase.replace(Phase::Closing) == Phase::Closing;
        if d == Disconnect::SLOW {
            CoreMetrics::inc(&core.metrics.slow_disconnects);
            s.clear_output();
        }
        if !answered && d != Disconnect::ABNORMAL && d != Disconnect::WRITE_ERROR {
            if d.is_protocol_level() && d != Disconnect::SLOW {
                s.enqueue_control(frame::text(&crate::protocol::reply::disconnect_push(d)));
            }
            s.enqueue_control(frame::close(d.code, d.reason));
            let limit = Duration::from_millis(core.cfg.websocket.write_timeout_ms.min(2_000));
            let _ = crate::runtime::timeout(limit, self.write_all(s, &core.metrics)).await;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both).await;
        d.code
    }

    async fn write_all(&mut self, s: &Session, m: &CoreMetrics) {
        if s.flush(m) == FlushOutcome::Done {
            return;
        }
        let _ = poll_fn(|cx| self.poll_drain(cx, s, m)).await;
    }
}

use crate::metrics::CoreMetrics;

fn ensure_room(buf: &mut ReadBuf, min_free: usize) {
    if buf.data.len() - buf.filled < min_free {
        let new_len = (buf.filled + min_free).max(buf.data.len() * 2);
        buf.data.resize(new_len, 0);
    }
}

/// Handles one complete message; returns a reason to close, if any.
async fn handle(msg: Msg<'_>, core: &Rc<Core>, s: &Rc<Session>, h: Handler) -> Option<Disconnect> {
    CoreMetrics::inc(&core.metrics.messages_in);
    s.pong_deadline_ms.set(0); // any traffic proves the client is alive
    match msg {
        Msg::Ping(payload) => {
            s.enqueue_control(frame::pong(payload));
            None
        }
        Msg::Pong => None,
        Msg::Close(code) => {
            s.enqueue_control(frame::close(code, ""));
            let _ = s.flush(&core.metrics);
            s.phase.set(Phase::Closing);
            Some(Disconnect::ALL[Disconnect::index(code)])
        }
        Msg::Text(bytes) if h == Handler::Centrifugo => {
            super::dispatch::on_message(core, s, bytes).await.err()
        }
        Msg::Binary(_) if h == Handler::Centrifugo => Some(Disconnect::INAPPROPRIATE_PROTOCOL),
        Msg::Text(bytes) => {
            s.enqueue(frame::text(bytes), &core.flusher);
            None
        }
        Msg::Binary(bytes) => {
            s.enqueue(frame::binary(bytes), &core.flusher);
            None
        }
    }
}
