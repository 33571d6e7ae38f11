//! One client connection: its protocol state, its bounded outbound queue of
//! shared frames, and the non-blocking batched writer.
//!
//! A `Session` lives on one core, referenced by its driver task ([`driver`]),
//! the core's session table, the hub (per subscribed channel) and, while it
//! has unflushed frames, the core's [`Flusher`]. Frames are refcounted
//! `Bytes`: a publication frame is shared by every subscriber, never copied.
//!
//! Invariants: queued bytes never exceed `websocket.outbound_queue_bytes` (an
//! overflowing client is closed with 3008 "slow"); once a close is requested
//! nothing more is queued; an idle session holds no buffers.

pub mod dispatch;
pub mod driver;
mod flusher;
pub mod heartbeat;
mod outbound;

pub use flusher::Flusher;
pub use outbound::{FlushOutcome, Outbound};

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::Waker;

use crate::metrics::CoreMetrics;
use crate::ws::close::Disconnect;

/// Where a session is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// WebSocket open, `connect` not yet received.
    Open,
    Connected,
    /// A close was requested; the driver is sending it.
    Closing,
}

/// Identity and permissions established by `connect`.
#[derive(Debug, Default)]
pub struct Identity {
    pub user: Box<str>,
    /// The token's `info` claim (JSON), shown to others in publications and presence.
    pub conn_info: Option<Box<str>>,
}

impl Identity {
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
/// connection): times are milliseconds of [`crate::runtime::now_ms`], the
/// requested close is an index into the close-code table.
pub struct Session {
    /// Node-unique id; its hex form is the protocol `client` id.
    pub id: u64,
    /// Slab key in the core's session table.
    pub key: u32,
    fd: RawFd,
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
    pub identity: RefCell<Identity>,
    /// Subscribed channels: an exact-size slice (most clients hold one or two, and a
    /// `Vec` would over-allocate in every idle session).
    subscriptions: RefCell<Box<[Arc<str>]>>,
    out: RefCell<Outbound>,
    waker: Cell<Option<Waker>>,
    /// Next heartbeat; before `connect`, the deadline to send it (3502).
    pub next_ping_ms: Cell<u64>,
    /// When a pong is due (0: none outstanding).
    pub pong_deadline_ms: Cell<u64>,
}

const NO_CLOSE: u8 = u8::MAX;

impl Session {
    /// `deadline_ms`: when the client must have sent `connect`.
    pub fn new(id: u64, key: u32, fd: RawFd, deadline_ms: u64) -> Self {
        Session {
            id,
            key,
            fd,
            phase: Cell::new(Phase::Open),
            admitted: Cell::new(false),
            close: Cell::new(NO_CLOSE),
            dirty: Cell::new(false),
            blocked: Cell::new(false),
            expires_at: Cell::new(0),
            identity: RefCell::default(),
            subscriptions: RefCell::default(),
            out: RefCell::new(Outbound::default()),
            waker: Cell::new(None),
            next_ping_ms: Cell::new(deadline_ms),
            pong_deadline_ms: Cell::new(0),
        }
    }

    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions.borrow().iter().any(|c| **c == *channel)
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions.borrow().len()
    }

    pub fn add_subscription(&self, channel: Arc<str>) {
        let mut subs = self.subscriptions.borrow_mut();
        let mut v = std::mem::take(&mut *subs).into_vec();
        v.reserve_exact(1);
        v.push(channel);
        *subs = v.into_boxed_slice();
    }

    /// Returns whether the channel was in the list.
    pub fn remove_subscription(&self, channel: &str) -> bool {
        let mut subs = self.subscriptions.borrow_mut();
        if !subs.iter().any(|c| **c == *channel) {
            return false;
        }
        *subs = subs.iter().filter(|c| ***c != *channel).cloned().collect();
        true
    }

    pub fn take_subscriptions(&self) -> Vec<Arc<str>> {
        std::mem::take(&mut *self.subscriptions.borrow_mut()).into_vec()
    }

    /// The protocol `client` id.
    pub fn client_id(&self) -> String {
        format!("{:016x}", self.id)
    }

    /// Queues a frame; flushing happens on the core's flusher (or the blocked driver).
    /// Returns false when the frame was not queued (closing, or overflow -> 3008).
    pub fn enqueue(self: &std::rc::Rc<Self>, frame: Bytes, flusher: &Flusher) -> bool {
        if self.close.get() != NO_CLOSE {
            return false;
        }
        if self.out.borrow().queued() + frame.len() > flusher.queue_limit {
            self.request_close(Disconnect::SLOW);
            return false;
        }
        self.out.borrow_mut().push(frame);
        CoreMetrics::inc(&flusher.metrics.messages_out);
        if !self.blocked.get() && !self.dirty.replace(true) {
            flusher.mark(self.clone());
        }
        true
    }

    /// Sends a small frame at once when nothing is queued (no queue storage is allocated:
    /// the heartbeat sweep pings every due session in one burst), else queues it.
    pub fn send_or_enqueue(self: &std::rc::Rc<Self>, frame: Bytes, flusher: &Flusher) {
        if self.close.get() != NO_CLOSE || self.blocked.get() || self.has_output() {
            self.enqueue(frame, flusher);
            return;
        }
        match outbound::send_now(self.fd, &frame) {
            Ok(n) if n == frame.len() => {
                CoreMetrics::inc(&flusher.metrics.messages_out);
                CoreMetrics::add(&flusher.metrics.bytes_out, n as u64);
            }
            Ok(n) => {
                CoreMetrics::add(&flusher.metrics.bytes_out, n as u64);
                self.enqueue(frame.slice(n..), flusher);
            }
            Err(()) => self.request_close(Disconnect::WRITE_ERROR),
        }
    }

    /// Queues without the overflow check (control frames and the final close).
    pub fn enqueue_control(&self, frame: Bytes) {
        self.out.borrow_mut().push(frame);
    }

    /// Writes as much as the socket takes now, without blocking.
    pub fn flush(&self, m: &CoreMetrics) -> FlushOutcome {
        let mut out = self.out.borrow_mut();
        let before = out.queued();
        let outcome = out.flush(self.fd);
        CoreMetrics::add(&m.bytes_out, (before - out.queued()) as u64);
        outcome
    }

    pub fn has_output(&self) -> bool {
        self.out.borrow().queued() > 0
    }

    /// Milliseconds since the queue last made progress while non-empty (write timeout).
    pub fn stalled_for_ms(&self, now_ms: u64) -> Option<u64> {
        self.out.borrow().stalled_for_ms(now_ms)
    }

    /// Drops everything queued (used before a slow client's final close).
    pub fn clear_output(&self) {
        self.out.borrow_mut().clear();
    }

    /// The unsent remainder of the first queued frame (for waiting on writability).
    pub fn with_front<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        f(self.out.borrow().front())
    }

    /// Marks `n` bytes as written by the caller.
    pub fn advance(&self, n: usize, m: &CoreMetrics) {
        self.out.borrow_mut().advance(n);
        CoreMetrics::add(&m.bytes_out, n as u64);
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

/// Shared pre-encoded frames (the heartbeat ping is the same bytes for everyone).
pub fn ping_frame() -> Bytes {
    thread_local! {
        static PING: Bytes = crate::ws::frame::text(b"{}");
    }
    PING.with(|p| p.clone())
}
