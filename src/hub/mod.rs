//! The per-core subscription index and the owner side of interest tracking.
//!
//! Local side: channel -> this core's subscribed sessions. The first local
//! subscriber of a channel makes the core announce its interest to the
//! channel's owner core; the last one leaving withdraws it.
//!
//! Owner side ([`interest`]): channel -> set of interested cores. As the
//! engine's [`PublicationSink`], the hub encodes each publication into its
//! final WebSocket frame once and sends the same refcounted bytes to every
//! interested core (itself included), never to cores without subscribers.

pub mod interest;
mod ready;

pub use ready::Ready;

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{Publication, PublicationSink};
use crate::mesh::{CoreMsg, Mesh};
use crate::metrics::CoreMetrics;
use crate::protocol::reply;
use crate::session::{Flusher, Session};
use crate::ws::frame;
use interest::InterestTable;

struct LocalChannel {
    key: Arc<str>,
    subscribers: HashMap<u64, Rc<Session>, ahash::RandomState>,
    ready: Rc<Ready>,
}

/// Outcome of adding a local subscriber.
pub enum Joined {
    /// Others on this core already subscribe; wait for `Ready` (usually already set).
    Existing(Arc<str>, Rc<Ready>),
    /// First on this core: the caller announces interest to the owner and sets `Ready` on ack.
    First(Arc<str>, Rc<Ready>),
}

pub struct Hub {
    me: usize,
    local: RefCell<HashMap<Arc<str>, LocalChannel, ahash::RandomState>>,
    interest: RefCell<InterestTable>,
    mesh: Rc<Mesh>,
    flusher: Rc<Flusher>,
    metrics: Arc<CoreMetrics>,
}

impl Hub {
    pub fn new(mesh: Rc<Mesh>, flusher: Rc<Flusher>, metrics: Arc<CoreMetrics>) -> Self {
        Hub {
            me: mesh.me(),
            local: RefCell::new(HashMap::default()),
            interest: RefCell::new(InterestTable::default()),
            mesh,
            flusher,
            metrics,
        }
    }

    /// Adds `session` as a local subscriber of `channel`.
    pub fn join(&self, channel: &str, session: &Rc<Session>) -> Joined {
        let mut local = self.local.borrow_mut();
        CoreMetrics::gauge(&self.metrics.subscriptions, 1);
        if let Some(ch) = local.get_mut(channel) {
            ch.subscribers.insert(session.id, session.clone());
            return Joined::Existing(ch.key.clone(), ch.ready.clone());
        }
        let key: Arc<str> = Arc::from(channel);
        let ready = Rc::new(Ready::default());
        let mut subscribers = HashMap::default();
        subscribers.insert(session.id, session.clone());
        local.insert(
            key.clone(),
            LocalChannel {
                key: key.clone(),
                subscribers,
                ready: ready.clone(),
            },
        );
        CoreMetrics::gauge(&self.metrics.channels, 1);
        Joined::First(key, ready)
    }

    /// Removes a local subscriber; returns the channel key when it was the last one on this core.
    pub fn leave(&self, channel: &str, session_id: u64) -> Option<Arc<str>> {
        let mut local = self.local.borrow_mut();
        let ch = local.get_mut(channel)?;
        ch.subscribers.remove(&session_id)?;
        CoreMetrics::gauge(&self.metrics.subscriptions, -1);
        if !ch.subscribers.is_empty() {
            return None;
        }
        let key = ch.key.clone();
        local.remove(channel);
        CoreMetrics::gauge(&self.metrics.channels, -1);
        Some(key)
    }

    /// Owner side: core `from` is interested. Returns whether it is the node's first, and
    /// the flag set once the engine subscription is complete.
    pub fn interest_add(&self, channel: &Arc<str>, from: usize) -> (bool, Rc<Ready>) {
        self.interest.borrow_mut().add(channel, from)
    }

    /// Owner side: core `from` lost interest. Returns true when no core is left.
    pub fn interest_remove(&self, channel: &str, from: usize) -> bool {
        self.interest.borrow_mut().remove(channel, from)
    }

    /// Queues `frame` to every local subscriber of `channel`.
    pub fn fanout(&self, channel: &str, frame: &Bytes, published_at: Instant) {
        let local = self.local.borrow();
        let Some(ch) = local.get(channel) else { return };
        for session in ch.subscribers.values() {
            session.enqueue(frame.clone(), &self.flusher);
        }
        let n = ch.subscribers.len() as u64;
        CoreMetrics::add(&self.metrics.deliveries, n);
        let us = published_at.elapsed().as_micros() as u64;
        for _ in 0..n.min(64) {
            // one sample per subscriber up to 64: big fan-outs would otherwise dominate the histogram
            self.metrics.deliver_latency.record_us(us);
        }
    }
}

impl PublicationSink for Hub {
    fn deliver(&self, channel: &str, publication: &Publication, published_at: Instant) {
        CoreMetrics::inc(&self.metrics.publishes);
        let interest = self.interest.borrow();
        let Some((key, cores)) = interest.get(channel) else {
            return;
        };
        let payload = reply::pub_push(
            channel,
            &publication.data,
            publication.offset,
            publication.info.as_deref(),
        );
        let frame = frame::text(&payload);
        for core in cores.iter() {
            if core == self.me {
                self.fanout(channel, &frame, published_at);
            } else {
                self.mesh.send(
                    core,
                    CoreMsg::Deliver {
                        channel: key.clone(),
                        frame: frame.clone(),
                        published_at,
                    },
                );
            }
        }
    }
}
