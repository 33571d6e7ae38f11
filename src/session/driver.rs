//! The task that drives one WebSocket connection after the handshake.
//!
//! A single hand-polled future watches three things at once without holding a
//! buffer while idle: a close request, writability (only while the outbound
//! queue is blocked), and readability. Reads borrow a pooled buffer for the
//! duration of one poll; it is kept only while a frame is incomplete.
//! Complete frames are reassembled into messages and handed to the
//! [`Handler`]: the Centrifugo protocol ([`super::dispatch`]) or the RFC 6455
//! conformance echo. A task busy for more than [`SLICE_MS`] lets the other
//! tasks of its core run, so one connection flooding messages cannot starve it.
//!
//! Every way out (EOF, write error, protocol error, timeout, requested close,
//! even a panic in command handling) ends in [`Session::mark_closed`] and
//! [`Env::close`]: the socket is shut down and the queue dropped before anything
//! else could write to it. A panic is contained to its session: the client is
//! dropped, `wiresocket_session_panics_total` counts it, the core goes on.

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::FutureExt as _;

use super::{Env, FlushOutcome, Phase, Session};
use crate::metrics::CoreMetrics;
use crate::net::socket::Socket;
use crate::ws::close::Disconnect;
use crate::ws::frame;
use crate::ws::message::{Assembler, Msg};
use crate::ws::readbuf::ReadBuf;

/// Longest a session task works before letting the other tasks of its core run.
const SLICE_MS: u64 = 5;

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
    env: Rc<Env>,
    sock: Socket,
    early: Vec<u8>,
    handler: Handler,
    document: Option<String>,
) -> impl Future<Output = ()> {
    let session = env.open_session(sock);
    if let (Some(doc), Some(pins)) = (document, &env.pins) {
        pins.note_url_document(session.id, doc); // opened by `connect`
    }
    if handler == Handler::Echo {
        session.phase.set(Phase::Echo);
        env.admit_echo(&session);
    }
    let partial = (!early.is_empty()).then(|| {
        let mut buf = env.pool.take();
        ensure_room(&mut buf, early.len());
        buf.data[..early.len()].copy_from_slice(&early);
        buf.filled = early.len();
        buf
    });
    let mut conn = Conn {
        replay: partial.is_some(),
        partial,
        asm: Assembler::default(),
    };
    // An `async move` block, not an `async fn`: its captures are stored once, whereas an
    // async fn keeps its arguments and their moved copies side by side (measured: 480 -> 280 B).
    async move {
        let body = AssertUnwindSafe(conn.drive(&env, &session, handler)).catch_unwind();
        let code = match body.await {
            Ok(code) => code,
            Err(_) => {
                CoreMetrics::inc(&env.metrics.session_panics);
                tracing::error!(
                    session = session.id,
                    "session task panicked; connection dropped"
                );
                Disconnect::INTERNAL.code
            }
        };
        session.mark_closed();
        if let Some(buf) = conn.partial.take() {
            env.pool.put(buf);
        }
        env.close(&session, code);
    }
}

impl Conn {
    async fn drive(&mut self, env: &Rc<Env>, s: &Rc<Session>, h: Handler) -> u16 {
        let mut slice = crate::exec::Slice::new(SLICE_MS);
        loop {
            let wake = if std::mem::take(&mut self.replay) {
                Wake::Data(self.partial.take().expect("replay implies bytes"))
            } else {
                poll_fn(|cx| self.poll_wake(cx, s, env)).await
            };
            let end = match wake {
                // boxed: command handling is large and must not size the idle task
                Wake::Data(buf) => {
                    let end = Box::pin(self.process(buf, env, s, h)).await;
                    // a socket that always has data makes every read complete at once:
                    // without this the task would never give the core back
                    slice.check().await;
                    end
                }
                Wake::Eof => Some(Disconnect::ABNORMAL),
                Wake::Close(d) => Some(d),
            };
            if let Some(d) = end {
                // boxed for the same reason
                return Box::pin(finish(env, s, d)).await;
            }
        }
    }

    fn poll_wake(&mut self, cx: &mut Context<'_>, s: &Session, env: &Env) -> Poll<Wake> {
        if let Some(d) = s.close_requested() {
            return Poll::Ready(Wake::Close(d));
        }
        if s.is_blocked() {
            match poll_drain(cx, s) {
                Poll::Ready(Ok(())) => s.set_blocked(false),
                Poll::Ready(Err(())) => return Poll::Ready(Wake::Close(Disconnect::WRITE_ERROR)),
                Poll::Pending => {}
            }
        }
        s.set_waker(cx.waker());
        let mut buf = self.partial.take().unwrap_or_else(|| env.pool.take());
        ensure_room(&mut buf, 1024);
        let filled = buf.filled;
        match s.socket().poll_read(cx, &mut buf.data[filled..]) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                env.pool.put(buf);
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
                    env.pool.put(buf);
                }
                Poll::Pending
            }
        }
    }

    /// Parses and handles every complete frame in `buf`; keeps an incomplete tail.
    async fn process(
        &mut self,
        mut buf: ReadBuf,
        env: &Rc<Env>,
        s: &Rc<Session>,
        h: Handler,
    ) -> Option<Disconnect> {
        CoreMetrics::add(&env.metrics.bytes_in, buf.filled as u64);
        let max = env.cfg.websocket.max_message_bytes;
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
                Ok(Some(msg)) => handle(msg, env, s, h).await,
                Err(d) => Some(d),
            };
            self.asm.reset_if_complete(&parsed);
            pos = frame_end;
            if outcome.is_some() {
                break outcome;
            }
        };
        if s.has_output() && !s.is_blocked() {
            match s.flush() {
                FlushOutcome::Done => {}
                FlushOutcome::Blocked => s.set_blocked(true),
                FlushOutcome::Failed => return Some(Disconnect::WRITE_ERROR),
            }
        }
        if end.is_some() {
            env.pool.put(buf);
            return end;
        }
        buf.data.copy_within(pos..buf.filled, 0);
        buf.filled -= pos;
        if buf.filled > 0 {
            self.partial = Some(buf);
        } else {
            env.pool.put(buf);
        }
        None
    }
}

/// Writes the blocked queue as the socket accepts it; Ready(Ok) when it is empty and
/// written out (a TLS stream's buffered records flushed too).
fn poll_drain(cx: &mut Context<'_>, s: &Session) -> Poll<Result<(), ()>> {
    loop {
        let step = s.with_front(|front| match front {
            None => Poll::Ready(Ok(0)),
            Some(bytes) => s.socket().poll_write(cx, bytes),
        });
        match step {
            Poll::Ready(Ok(0)) => return s.socket().poll_flush(cx).map_err(|_| ()),
            Poll::Ready(Ok(n)) => {
                s.advance(n);
                if s.socket().is_tls() {
                    continue; // every byte goes through rustls, frame by frame
                }
                match s.flush() {
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

/// Sends the disconnect push (protocol-level codes) and the close frame, then shuts the
/// socket down. A slow client's queue is abandoned first, except the rest of a frame it
/// has partly received, so its close frame arrives on a frame boundary and reads as 3008.
async fn finish(env: &Env, s: &Rc<Session>, d: Disconnect) -> u16 {
    tracing::debug!(session = s.id, code = d.code, reason = d.reason, "closing");
    // a client-initiated close was already answered in `handle`
    let answered = s.phase.replace(Phase::Closing) == Phase::Closing;
    if d == Disconnect::SLOW {
        CoreMetrics::inc(&env.metrics.slow_disconnects);
        s.abandon_output();
    }
    if !answered && d != Disconnect::ABNORMAL && d != Disconnect::WRITE_ERROR {
        // 4009 names the region to go to (kept by `region` when the redirect was decided)
        let redirect = (d == Disconnect::REDIRECT)
            .then(|| env.pins.as_ref().and_then(|p| p.take_redirect(s.id)))
            .flatten();
        let reason = redirect.as_deref().unwrap_or(d.reason);
        if d.is_protocol_level() && d != Disconnect::SLOW {
            s.enqueue_final(frame::text(&crate::protocol::push::disconnect_push(
                d, reason,
            )));
        }
        s.enqueue_final(frame::close(d.code, reason));
        let limit = Duration::from_millis(env.cfg.websocket.write_timeout_ms.min(2_000));
        let _ = crate::exec::timeout(limit, write_all(s)).await;
    }
    s.mark_closed();
    d.code
}

async fn write_all(s: &Session) {
    if s.flush() == FlushOutcome::Done {
        return;
    }
    let _ = poll_fn(|cx| poll_drain(cx, s)).await;
}

fn ensure_room(buf: &mut ReadBuf, min_free: usize) {
    if buf.data.len() - buf.filled < min_free {
        let new_len = (buf.filled + min_free).max(buf.data.len() * 2);
        buf.data.resize(new_len, 0);
    }
}

/// Handles one complete message; returns a reason to close, if any.
async fn handle(msg: Msg<'_>, env: &Rc<Env>, s: &Rc<Session>, h: Handler) -> Option<Disconnect> {
    CoreMetrics::inc(&env.metrics.messages_in);
    s.pong_deadline_ms.set(0); // any traffic proves the client is alive
    match msg {
        Msg::Ping(payload) => {
            s.enqueue_pong(frame::pong(payload));
            None
        }
        Msg::Pong => None,
        Msg::Close(code) => {
            s.phase.set(Phase::Closing);
            s.enqueue_final(frame::close(code, ""));
            let _ = s.flush();
            Some(Disconnect::ALL[Disconnect::index(code)])
        }
        Msg::Text(bytes) if h == Handler::Centrifugo => {
            super::dispatch::on_message(env, s, bytes).await.err()
        }
        Msg::Binary(_) if h == Handler::Centrifugo => Some(Disconnect::INAPPROPRIATE_PROTOCOL),
        Msg::Text(bytes) => {
            s.enqueue(frame::text(bytes));
            None
        }
        Msg::Binary(bytes) => {
            s.enqueue(frame::binary(bytes));
            None
        }
    }
}
