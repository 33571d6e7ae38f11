//! One client connection: its protocol state, its socket, its bounded outbound
//! queue of shared frames, and the non-blocking batched writer.
//!
//! A `Session` lives on one core, referenced by its driver task ([`driver`]),
//! the core's session table ([`table`]), the hub (per subscribed channel) and,
//! while it has unflushed frames, the core's [`Flusher`]. Frames are refcounted
//! `Bytes`: a publication frame is shared by every subscriber, never copied.
//!
//! Invariants: the session owns its socket, so its descriptor is released only
//! when the last reference goes and no write can ever reach another connection;
//! queued bytes never exceed `websocket.outbound_queue_bytes` (an overflowing
//! client is closed with 3008 "slow"); once a close is requested nothing more is
//! queued, and once the driver has finished (`Phase::Closed`) nothing is written;
//! an idle session holds no buffers.

pub mod dispatch;
pub mod driver;
pub mod env;
#[cfg(debug_assertions)]
mod faults;
mod flusher;
pub mod heartbeat;
mod limiter;
mod outbound;
mod subscriptions;
pub mod table;

pub use env::Env;
pub use flusher::Flusher;
pub use outbound::{FlushOutcome, Outbound};
pub use subscriptions::Subscription;

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

use crate::metrics::CoreMetrics;
use crate::net::socket::Socket;
use crate::ws::close::Disconnect;

/// Where a session is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// WebSocket open, `connect` not yet received.
    Open,
    Connected,
    /// The conformance echo endpoint: no Centrifugo protocol, no connect deadline.
    Echo,
    /// A close was requested; the driver is sending it.
    Closing,
    /// The driver has finished: the socket is shut down, nothing is written any more.
    Closed,
}

/// Identity and permissions established by `connect`.
#[derive(Debug, Default)]
pub struct Identity {
    pub user: Box<str>,
    /// The token's `info` claim (JSON), shown to others in publications and presence.
    pub conn_info: Option<Box<str>>,
    /// `connect.name` and `connect.version` (the SDK's) joined by a newline, for the session
    /// record (one field: it exists per idle connection).
    pub app: Option<Box<str>>,
}

impl Identity {
    /// The SDK (name, version) the client sent in `connect` (empty when not sent).
    pub fn app(&self) -> (&str, &str) {
        let app = self.app.as_deref().unwrap_or_default();
        app.split_once('\n').unwrap_or((app, ""))
    }

    /// ClientInfo JSON for this client's publications (built on use, not kept per idle session).
    pub fn client_info(&self, client: &str) -> Bytes {
        crate::protocol::reply::client_info(
            &self.user,
            client,
            self.conn_info.as_deref().map(str::as_bytes),
        )
        .into()
    }
}

/// One connection's state. Kept small on purpose (it exists per idle
/// connection): times are milliseconds of [`crate::exec::now_ms`], the
/// requested close is an index into the close-code table.
pub struct Session {
    /// Node-unique id; its hex form is the protocol `client` id.
    pub id: u64,
    /// Slab key in the core's session table.
    pub key: u32,
    sock: Socket,
    pub phase: Cell<Phase>,
    /// Counts toward `max_connections` (past `connect`); else it holds a pending slot
    /// (`net::admit`).
    pub admitted: Cell<bool>,
    /// Index into [`Disconnect::ALL`] of the requested close; `NO_CLOSE` when none.
    close: Cell<u8>,
    dirty: Cell<bool>,
    blocked: Cell<bool>,
    /// Unix seconds after which the connection must be refreshed (0: never; u32 lasts to 2106).
    pub expires_at: Cell<u32>,
    /// Unix seconds of `connect` (0 before it).
    pub connected_at: Cell<u32>,
    pub identity: RefCell<Identity>,
    subs: subscriptions::Subscriptions,
    out: RefCell<Outbound>,
    waker: Cell<Option<Waker>>,
    /// Next heartbeat; before `connect`, the deadline to send it (3502).
    pub next_ping_ms: Cell<u64>,
    /// When a pong is due (0: none outstanding).
    pub pong_deadline_ms: Cell<u64>,
    /// Command rate limit.
    pub limiter: Cell<limiter::Bucket>,
    /// The core's flusher and queue limit.
    flusher: Rc<Flusher>,
}

const NO_CLOSE: u8 = u8::MAX;

impl Session {
    /// `deadline_ms`: when the client must have sent `connect`.
    pub fn new(id: u64, key: u32, sock: Socket, deadline_ms: u64, flusher: Rc<Flusher>) -> Self {
        Session {
            id,
            key,
            sock,
            phase: Cell::new(Phase::Open),
            admitted: Cell::new(false),
            close: Cell::new(NO_CLOSE),
            dirty: Cell::new(false),
            blocked: Cell::new(false),
            expires_at: Cell::new(0),
            connected_at: Cell::new(0),
            identity: RefCell::default(),
            subs: Default::default(),
            out: RefCell::new(Outbound::default()),
            waker: Cell::new(None),
            next_ping_ms: Cell::new(deadline_ms),
            pong_deadline_ms: Cell::new(0),
            limiter: Cell::new(limiter::Bucket::default()),
            flusher,
        }
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    pub fn subscriptions(&self) -> &subscriptions::Subscriptions {
        &self.subs
    }

    /// The protocol `client` id.
    pub fn client_id(&self) -> String {
        client_id_of(self.id)
    }

    fn writable(&self) -> bool {
        self.close.get() == NO_CLOSE && !matches!(self.phase.get(), Phase::Closing | Phase::Closed)
    }

    /// Queues a frame; flushing happens on the core's flusher (or the blocked driver).
    /// Returns false when the frame was not queued (closing, or overflow -> 3008).
    pub fn enqueue(self: &Rc<Self>, frame: Bytes) -> bool {
        if !self.writable() {
            return false;
        }
        if self.out.borrow().queued() + frame.len() as u64 > self.flusher.queue_limit {
            self.request_close(Disconnect::SLOW);
            return false;
        }
        self.out.borrow_mut().push(frame);
        CoreMetrics::inc(&self.flusher.metrics.messages_out);
        self.mark_dirty();
        true
    }

    fn mark_dirty(self: &Rc<Self>) {
        if !self.blocked.get() && !self.dirty.replace(true) {
            self.flusher.mark(self.clone());
        }
    }

    /// Answers a ping: pongs count against the queue budget and coalesce (only the latest
    /// unsent pong is kept), so a ping flood without reading holds one pong.
    pub fn enqueue_pong(self: &Rc<Self>, frame: Bytes) {
        if !self.writable() {
            return;
        }
        if self.out.borrow().queued() + frame.len() as u64 > self.flusher.queue_limit {
            self.request_close(Disconnect::SLOW);
            return;
        }
        self.out.borrow_mut().push_pong(frame);
        self.mark_dirty();
    }

    /// Sends a small frame at once when nothing is queued (no queue storage is allocated:
    /// the heartbeat sweep pings every due session in one burst), else queues it.
    pub fn send_or_enqueue(self: &Rc<Self>, frame: Bytes) {
        if !self.writable() || self.blocked.get() || self.has_output() || self.sock.is_tls() {
            self.enqueue(frame);
            return;
        }
        let m = &self.flusher.metrics;
        match outbound::send_now(self.sock.fd(), &frame) {
            Ok(n) if n == frame.len() => {
                CoreMetrics::inc(&m.messages_out);
                CoreMetrics::add(&m.bytes_out, n as u64);
            }
            Ok(n) => {
                CoreMetrics::add(&m.bytes_out, n as u64);
                self.enqueue(frame.slice(n..));
            }
            Err(()) => self.request_close(Disconnect::WRITE_ERROR),
        }
    }

    /// Queues the final frames of a close (disconnect push, close frame): only the driver
    /// calls this, after it set `Phase::Closing`.
    pub(crate) fn enqueue_final(&self, frame: Bytes) {
        self.out.borrow_mut().push(frame);
    }

    /// Writes as much as the socket takes now, without blocking. Nothing once closed.
    /// A TLS session writes only from its driver (through rustls, with a waker): with
    /// output queued it answers `Blocked`, which hands the queue to the driver.
    pub fn flush(&self) -> FlushOutcome {
        if self.phase.get() == Phase::Closed || self.sock.is_shut() {
            return FlushOutcome::Failed;
        }
        let mut out = self.out.borrow_mut();
        if self.sock.is_tls() {
            return match out.queued() {
                0 => FlushOutcome::Done,
                _ => FlushOutcome::Blocked,
            };
        }
        let before = out.queued();
        let outcome = out.flush(self.sock.fd());
        CoreMetrics::add(&self.flusher.metrics.bytes_out, before - out.queued());
        outcome
    }

    pub fn has_output(&self) -> bool {
        self.out.borrow().queued() > 0
    }

    /// Milliseconds since the queue last made progress while non-empty (write timeout).
    pub fn stalled_for_ms(&self, now_ms: u64) -> Option<u64> {
        self.out.borrow().stalled_for_ms(now_ms)
    }

    /// Drops everything queued except the rest of a frame already partly written, so a
    /// close frame queued next is still readable (a slow client's final 3008).
    pub fn abandon_output(&self) {
        self.out.borrow_mut().abandon();
    }

    /// The unsent remainder of the first queued frame (for waiting on writability).
    pub fn with_front<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        f(self.out.borrow_mut().front())
    }

    /// Marks `n` bytes as written by the caller.
    pub fn advance(&self, n: usize) {
        self.out.borrow_mut().advance(n);
        CoreMetrics::add(&self.flusher.metrics.bytes_out, n as u64);
    }

    /// The driver is done: the socket is shut down and the queue dropped; every later
    /// write attempt (a stale flusher entry, a late publication) is refused.
    pub(crate) fn mark_closed(&self) {
        self.phase.set(Phase::Closed);
        if self.close.get() == NO_CLOSE {
            self.close
                .set(Disconnect::index(Disconnect::ABNORMAL.code) as u8);
        }
        self.sock.shutdown();
        self.out.borrow_mut().clear();
        self.waker.take();
    }

    /// Asks the driver to end the connection with `d` (first request wins).
    pub fn request_close(&self, d: Disconnect) {
        if self.close.get() == NO_CLOSE {
            self.close.set(Disconnect::index(d.code) as u8);
            self.wake();
        }
    }

    pub fn close_requested(&self) -> Option<Disconnect> {
        match self.close.get() {
            NO_CLOSE => None,
            i => Some(Disconnect::ALL[i as usize]),
        }
    }

    pub(crate) fn set_waker(&self, w: &Waker) {
        let old = self.waker.take();
        self.waker.set(Some(match old {
            Some(old) if old.will_wake(w) => old,
            _ => w.clone(),
        }));
    }

    pub(crate) fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake_by_ref();
            self.waker.set(Some(w));
        }
    }

    pub(crate) fn set_blocked(&self, b: bool) {
        self.blocked.set(b);
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked.get()
    }

    pub(crate) fn clear_dirty(&self) {
        self.dirty.set(false);
    }
}

impl crate::hub::Subscriber for Session {
    type Out = ();

    fn id(&self) -> u64 {
        self.id
    }

    fn push(self: &Rc<Self>, frame: Bytes, _out: &()) -> bool {
        self.enqueue(frame)
    }

    fn forget(&self, channel: &str) {
        self.subs.remove(channel);
    }

    fn cut_off(&self) {
        self.request_close(Disconnect::SLOW);
    }
}

/// The protocol `client` id of session `id`.
pub fn client_id_of(id: u64) -> String {
    format!("{id:016x}")
}

/// Shared pre-encoded frames (the heartbeat ping is the same bytes for everyone).
pub fn ping_frame() -> Bytes {
    thread_local! {
        static PING: Bytes = crate::ws::frame::text(b"{}");
    }
    PING.with(|p| p.clone())
}
