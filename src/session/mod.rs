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

use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

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
    pub user: String,
    /// ClientInfo JSON attached to this client's publications and presence.
    pub info: Option<Bytes>,
    /// Unix seconds after which the connection must be refreshed.
    pub expires_at: Option<u64>,
}

pub struct Session {
    /// Node-unique id; its hex form is the protocol `client` id.
    pub id: u64,
    /// Slab key in the core's session table.
    pub key: usize,
    fd: RawFd,
    pub phase: Cell<Phase>,
    pub identity: RefCell<Identity>,
    pub subscriptions: RefCell<Vec<Arc<str>>>,
    out: RefCell<Outbound>,
    close: Cell<Option<Disconnect>>,
    waker: RefCell<Option<Waker>>,
    dirty: Cell<bool>,
    blocked: Cell<bool>,
    pub opened_at: Instant,
    pub next_ping: Cell<Instant>,
    pub pong_deadline: Cell<Option<Instant>>,
    queue_limit: usize,
}

impl Session {
    pub fn new(id: u64, key: usize, fd: RawFd, queue_limit: usize, first_ping: Instant) -> Self {
        Session {
            id,
            key,
            fd,
            phase: Cell::new(Phase::Open),
            identity: RefCell::default(),
            subscriptions: RefCell::default(),
            out: RefCell::new(Outbound::default()),
            close: Cell::new(None),
            waker: RefCell::new(None),
            dirty: Cell::new(false),
            blocked: Cell::new(false),
            opened_at: Instant::now(),
            next_ping: Cell::new(first_ping),
            pong_deadline: Cell::new(None),
            queue_limit,
        }
    }

    /// The protocol `client` id.
    pub fn client_id(&self) -> String {
        format!("{:016x}", self.id)
    }

    /// Queues a frame; flushing happens on the core's flusher (or the blocked driver).
    /// Returns false when the frame was not queued (closing, or overflow -> 3008).
    pub fn enqueue(self: &std::rc::Rc<Self>, frame: Bytes, flusher: &Flusher) -> bool {
        if self.close.get().is_some() {
            return false;
        }
        if self.out.borrow().queued() + frame.len() > self.queue_limit {
            self.request_close(Disconnect::SLOW);
            return false;
        }
        self.out.borrow_mut().push(frame);
        if !self.blocked.get() && !self.dirty.replace(true) {
            flusher.mark(self.clone());
        }
        true
    }

    /// Queues without the overflow check (control frames and the final close).
    pub fn enqueue_control(&self, frame: Bytes) {
        self.out.borrow_mut().push(frame);
    }

    /// Writes as much as the socket takes now, without blocking.
    pub fn flush(&self) -> FlushOutcome {
        self.out.borrow_mut().flush(self.fd)
    }

    pub fn has_output(&self) -> bool {
        self.out.borrow().queued() > 0
    }

    /// Seconds since the queue last made progress while non-empty (write timeout).
    pub fn stalled_for(&self, now: Instant) -> Option<std::time::Duration> {
        self.out.borrow().stalled_for(now)
    }

    /// Drops everything queued (used before a slow client's final close).
    pub fn clear_output(&self) {
        self.out.borrow_mut().clear();
    }

    /// The unsent remainder of the first queued frame (for waiting on writability).
    pub fn with_front<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        f(self.out.borrow().front())
    }

    pub fn advance(&self, n: usize) {
        self.out.borrow_mut().advance(n);
    }

    /// Asks the driver to end the connection with `d` (first request wins).
    pub fn request_close(&self, d: Disconnect) {
        if self.close.get().is_none() {
            self.close.set(Some(d));
            self.wake();
        }
    }

    pub fn close_requested(&self) -> Option<Disconnect> {
        self.close.get()
    }

    pub(crate) fn set_waker(&self, w: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
            *slot = Some(w.clone());
        }
    }

    pub(crate) fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
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

/// Builds one text frame from newline-joined replies.
pub fn text_frame(payload: &[u8]) -> Bytes {
    crate::ws::frame::text(payload)
}

/// Shared pre-encoded frames (the heartbeat ping is the same bytes for everyone).
pub fn ping_frame() -> Bytes {
    thread_local! {
        static PING: Bytes = crate::ws::frame::text(b"{}");
    }
    PING.with(|p| p.clone())
}

#[allow(dead_code)]
fn _assert_bytesmut_unused(_: BytesMut) {}
