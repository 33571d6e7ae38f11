//! The per-core subscription index and the whole interest protocol.
//!
//! Local side (this file): channel -> this core's subscribers. The first local
//! subscriber of a channel makes the core announce its interest to the channel's
//! owner core; the last one leaving withdraws it. A joining subscriber is
//! *pending*: publications for it are buffered until its subscribe reply is
//! queued ([`Hub::activate`]), then those already covered by the reply (offset ≤
//! the reply's offset) are dropped and the rest go in the reply's frame, after it,
//! so a client never sees a publication before its subscribe reply, nor one twice.
//!
//! Owner side ([`owner`]): channel -> interested cores, and the node's engine
//! subscription with a per-channel state machine (subscribe/unsubscribe are
//! serialized per channel; readiness is `Result`-valued and a failure rolls every
//! waiting join back). As the engine's [`PublicationSink`], the owner encodes each
//! event into its final WebSocket frame once and sends the same refcounted bytes
//! to every interested core (itself included), never to cores without subscribers.
//!
//! The hub knows subscribers only through [`Subscriber`]; sessions implement it.
//! Every wait for the owner core has the mesh's deadline.

pub mod interest;
mod owner;

use bytes::Bytes;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{Engine, EngineError};
use crate::exec::Ready;
use crate::mesh::{owner_of, CoreMsg, Mesh};
use crate::metrics::CoreMetrics;
use crate::protocol::push::{unsubscribe_push, Unsubscribe};
use crate::ws::frame;
use interest::InterestTable;

/// What the hub needs of a subscriber.
pub trait Subscriber: 'static {
    /// Where frames go (the core's flusher, for sessions).
    type Out: 'static;
    fn id(&self) -> u64;
    /// Queues a frame for the client; false when it was not taken (closing, overflow).
    fn push(self: &Rc<Self>, frame: Bytes, out: &Self::Out) -> bool;
    /// The server ended the subscription to `channel`: forget it.
    fn forget(&self, channel: &str);
    /// Too much was buffered for it while it subscribed: cut it off as slow.
    fn cut_off(&self);
}

enum State {
    /// Subscribe in progress: frames wait here (boxed: a live subscriber, the common case,
    /// then costs 16 bytes, not 32).
    Pending(Box<Pending>),
    /// Delivering; frames with `0 < offset <= after` are duplicates of the reply.
    Live { after: u64 },
}

/// Frames (offset, frame) held while a subscribe is in progress; `reset` when the stream was
/// reset meanwhile (the client is told to resubscribe right after its reply).
#[derive(Default)]
struct Pending {
    buf: Vec<(u64, Bytes)>,
    reset: bool,
}

struct Sub<S> {
    s: Rc<S>,
    state: State,
}

struct LocalChannel<S> {
    key: Arc<str>,
    /// Highest stream offset delivered here (the position this core's subscribers reached).
    top: u64,
    subs: HashMap<u64, Sub<S>, ahash::RandomState>,
    ready: Rc<Ready<EngineError>>,
}

pub struct Hub<S: Subscriber> {
    /// Itself, for the owner side's engine tasks.
    this: std::rc::Weak<Hub<S>>,
    me: usize,
    local: RefCell<HashMap<Arc<str>, LocalChannel<S>, ahash::RandomState>>,
    owned: RefCell<InterestTable>,
    mesh: Rc<Mesh>,
    engine: OnceCell<Rc<dyn Engine>>,
    out: Rc<S::Out>,
    metrics: Arc<CoreMetrics>,
    /// Frames buffered at most for one subscribing subscriber.
    pending_cap: usize,
}

impl<S: Subscriber> Hub<S> {
    pub fn new(
        mesh: Rc<Mesh>,
        out: Rc<S::Out>,
        metrics: Arc<CoreMetrics>,
        pending_cap: usize,
    ) -> Rc<Self> {
        Rc::new_cyclic(|this| Hub {
            this: this.clone(),
            me: mesh.me(),
            local: RefCell::default(),
            owned: RefCell::default(),
            mesh,
            engine: OnceCell::new(),
            out,
            metrics,
            pending_cap: pending_cap.max(1),
        })
    }

    /// Completes construction: the engine is built with this hub as its sink.
    pub fn set_engine(&self, engine: Rc<dyn Engine>) {
        let _ = self.engine.set(engine);
    }

    fn engine(&self) -> Rc<dyn Engine> {
        self.engine.get().expect("hub engine set at start").clone()
    }

    /// Adds `s` as a pending subscriber of `channel` and waits until publications to it
    /// reach this core. On error the join is rolled back.
    pub async fn join(self: &Rc<Self>, channel: &str, s: &Rc<S>) -> Result<Arc<str>, EngineError> {
        let (key, ready, first) = {
            let mut local = self.local.borrow_mut();
            CoreMetrics::gauge(&self.metrics.subscriptions, 1);
            let pending = || Sub {
                s: s.clone(),
                state: State::Pending(Box::default()),
            };
            match local.get_mut(channel) {
                Some(ch) => {
                    ch.subs.insert(s.id(), pending());
                    (ch.key.clone(), ch.ready.clone(), false)
                }
                None => {
                    let key: Arc<str> = Arc::from(channel);
                    let ready = Rc::new(Ready::default());
                    let mut subs = HashMap::default();
                    subs.insert(s.id(), pending());
                    local.insert(
                        key.clone(),
                        LocalChannel {
                            key: key.clone(),
                            top: 0,
                            subs,
                            ready: ready.clone(),
                        },
                    );
                    CoreMetrics::gauge(&self.metrics.channels, 1);
                    (key, ready, true)
                }
            }
        };
        if first {
            self.announce(key.clone(), true, Some(ready.clone()));
        }
        let outcome = match ready.outcome() {
            Some(o) => o,
            None => match crate::exec::timeout(self.mesh.call_timeout(), ready.wait()).await {
                Some(o) => o,
                None => {
                    CoreMetrics::inc(&self.metrics.mesh_call_timeouts);
                    Err(EngineError::Internal(
                        "the channel's owner core did not answer in time".into(),
                    ))
                }
            },
        };
        match outcome {
            Ok(()) => Ok(key),
            Err(e) => {
                self.leave(&key, s.id());
                Err(e)
            }
        }
    }

    /// Makes a pending subscriber live as its subscribe reply is about to be queued: the
    /// buffered frames with `offset <= after` (already in the reply) are dropped, the rest
    /// are appended to `reply` (the text of the reply's frame) as lines of that same frame,
    /// as is the unsubscribe push of a subscriber whose stream was reset meanwhile.
    ///
    /// One frame, not the reply's frame followed by one frame per publication: the JS SDK
    /// (centrifuge 5.7.4) dispatches the lines of one frame in order, but frames that
    /// arrive in the same read concurrently, so a publication in its own frame could be
    /// handled before the reply's recovered publications (out of order after a recovery).
    pub fn activate(&self, channel: &str, id: u64, after: u64, reply: &mut Vec<u8>) {
        let reset = {
            let mut local = self.local.borrow_mut();
            let Some(ch) = local.get_mut(channel) else {
                return;
            };
            let Some(sub) = ch.subs.get_mut(&id) else {
                return;
            };
            match std::mem::replace(&mut sub.state, State::Live { after }) {
                State::Live { .. } => return,
                State::Pending(p) if p.reset => Some((ch.key.clone(), sub.s.clone())),
                State::Pending(p) => {
                    for (offset, frame) in p.buf {
                        if offset == 0 || offset > after {
                            append_line(reply, frame::payload(&frame));
                        }
                    }
                    None
                }
            }
        };
        if let Some((key, s)) = reset {
            append_line(
                reply,
                &unsubscribe_push(&key, Unsubscribe::INSUFFICIENT_STATE),
            );
            s.forget(&key);
            self.leave(&key, id);
        }
    }

    /// Removes a subscriber, withdrawing this core's interest when it was the last one.
    pub fn leave(&self, channel: &str, id: u64) {
        let last = {
            let mut local = self.local.borrow_mut();
            let Some(ch) = local.get_mut(channel) else {
                return;
            };
            if ch.subs.remove(&id).is_none() {
                return;
            }
            CoreMetrics::gauge(&self.metrics.subscriptions, -1);
            if !ch.subs.is_empty() {
                return;
            }
            let key = ch.key.clone();
            local.remove(channel);
            CoreMetrics::gauge(&self.metrics.channels, -1);
            key
        };
        self.announce(last, false, None);
    }

    /// Tells one subscriber it is unsubscribed (`u`) and removes it.
    pub fn drop_subscriber(&self, channel: &str, id: u64, u: Unsubscribe) {
        let sub = {
            let local = self.local.borrow();
            local
                .get(channel)
                .and_then(|ch| ch.subs.get(&id))
                .map(|sub| sub.s.clone())
        };
        if let Some(s) = sub {
            s.push(frame::text(&unsubscribe_push(channel, u)), &self.out);
            s.forget(channel);
            self.leave(channel, id);
        }
    }

    /// Queues `frame` to every local subscriber of `channel` (buffers it for pending ones).
    pub fn fanout(&self, channel: &str, frame: &Bytes, offset: u64, published_at: Instant) {
        let mut local = self.local.borrow_mut();
        let Some(ch) = local.get_mut(channel) else {
            return;
        };
        let mut delivered = 0u64;
        ch.top = ch.top.max(offset);
        for sub in ch.subs.values_mut() {
            match &mut sub.state {
                State::Pending(p) => {
                    if p.buf.len() >= self.pending_cap {
                        sub.s.cut_off();
                    } else {
                        p.buf.push((offset, frame.clone()));
                    }
                }
                State::Live { after } => {
                    if offset != 0 && offset <= *after {
                        continue; // already in this subscriber's subscribe reply
                    }
                    if offset > *after {
                        *after = 0; // the stream moved past the reply: stop filtering
                    }
                    sub.s.push(frame.clone(), &self.out);
                    delivered += 1;
                }
            }
        }
        CoreMetrics::add(&self.metrics.deliveries, delivered);
        let us = published_at.elapsed().as_micros() as u64;
        for _ in 0..delivered.min(64) {
            // one sample per subscriber up to 64: big fan-outs would otherwise dominate
            self.metrics.deliver_latency.record_us(us);
        }
    }

    /// The channel's stream was reset: live subscribers get an "insufficient state"
    /// unsubscribe (the SDK resubscribes and recovers); pending ones get it after their reply.
    pub fn reset_local(&self, channel: &str) {
        let live: Vec<u64> = {
            let mut local = self.local.borrow_mut();
            let Some(ch) = local.get_mut(channel) else {
                return;
            };
            ch.top = 0; // a new stream (epoch) may restart below it
            let mut live = Vec::new();
            for (id, sub) in ch.subs.iter_mut() {
                match &mut sub.state {
                    State::Pending(p) => {
                        p.buf.clear();
                        p.reset = true;
                    }
                    State::Live { .. } => live.push(*id),
                }
            }
            live
        };
        CoreMetrics::inc(&self.metrics.stream_resets);
        for id in live {
            self.drop_subscriber(channel, id, Unsubscribe::INSUFFICIENT_STATE);
        }
    }

    /// Subscribers on this core, per channel (for tests and introspection).
    pub fn local_subscribers(&self, channel: &str) -> usize {
        self.local.borrow().get(channel).map_or(0, |c| c.subs.len())
    }

    /// Highest stream offset of `channel` delivered on this core (0: none yet).
    pub fn top_offset(&self, channel: &str) -> u64 {
        self.local.borrow().get(channel).map_or(0, |c| c.top)
    }

    /// Channels this core owns with interest from some core (summed over cores: the node's
    /// channels, each counted once).
    pub fn owned_channels(&self) -> usize {
        self.owned.borrow().len()
    }

    /// This core's channels with their local subscriber counts.
    pub fn local_channel_counts(&self) -> Vec<(Arc<str>, usize)> {
        self.local
            .borrow()
            .values()
            .map(|c| (c.key.clone(), c.subs.len()))
            .collect()
    }

    fn announce(&self, channel: Arc<str>, on: bool, ready: Option<Rc<Ready<EngineError>>>) {
        let owner = owner_of(&channel, self.mesh.ncores());
        let ack = ready.map(|ready| {
            let (tx, rx) = futures_channel::oneshot::channel::<Result<(), String>>();
            crate::exec::spawn(async move {
                let outcome = match rx.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(EngineError::Internal(e)),
                    Err(_) => Err(EngineError::Internal(
                        "owner core dropped the request".into(),
                    )),
                };
                ready.set(outcome);
            });
            tx
        });
        if owner == self.me {
            self.on_interest(channel, self.me, on, ack);
        } else {
            self.mesh.send(
                owner,
                CoreMsg::Interest {
                    channel,
                    from: self.me,
                    on,
                    ack,
                },
            );
        }
    }
}

/// Appends `line` to a frame's text, newline-separated from what is there.
fn append_line(text: &mut Vec<u8>, line: &[u8]) {
    if !text.is_empty() && text.last() != Some(&b'\n') {
        text.push(b'\n');
    }
    text.extend_from_slice(line);
}

#[cfg(test)]
mod tests;
