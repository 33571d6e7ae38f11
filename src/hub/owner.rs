//! The owner side of the interest protocol: which cores want a channel this
//! core owns, the node's engine subscription for it, and encoding each event
//! once for all of them.
//!
//! State machine per channel (see `interest::Interest`): an interest change
//! updates the core set, then [`Hub::reconcile`] starts at most one engine call
//! (subscribe when cores want the channel and the node is not subscribed,
//! unsubscribe in the opposite case); when it completes the result is recorded
//! and the state reconciled again, so on/off/on in any interleaving ends
//! subscribed. A failed subscribe answers every waiting core with the error and
//! forgets them (they roll their joins back).

use std::sync::Arc;
use std::time::Instant;

use super::interest::CoreSet;
use super::{Hub, Subscriber};
use crate::engine::{ChannelEvent, EngineError, PublicationSink};
use crate::mesh::{CoreMsg, InterestAck};
use crate::metrics::CoreMetrics;
use crate::protocol::push::{join_leave_push, publication_push, ClientInfoJson};
use crate::ws::frame;

impl<S: Subscriber> Hub<S> {
    /// Core `from` gained or lost interest in `channel` (this core owns it).
    pub fn on_interest(&self, channel: Arc<str>, from: usize, on: bool, ack: Option<InterestAck>) {
        {
            let mut owned = self.owned.borrow_mut();
            let e = owned.entry(channel.clone()).or_default();
            if on {
                e.cores.insert(from);
                if let Some(ack) = ack {
                    if e.on && !e.busy {
                        let _ = ack.send(Ok(()));
                    } else {
                        e.waiting.push((from, ack));
                    }
                }
            } else {
                e.cores.remove(from);
            }
        }
        self.reconcile(channel);
    }

    /// Starts the engine call the channel's state needs, unless one is in flight.
    fn reconcile(&self, channel: Arc<str>) {
        let subscribe = {
            let mut owned = self.owned.borrow_mut();
            let Some(e) = owned.get_mut(&channel) else {
                return;
            };
            if e.busy {
                return;
            }
            let want = !e.cores.is_empty();
            if want == e.on {
                if !want {
                    owned.remove(&channel);
                }
                return;
            }
            e.busy = true;
            want
        };
        let Some(hub) = self.this.upgrade() else {
            return;
        };
        let engine = self.engine();
        crate::exec::spawn(async move {
            let r = if subscribe {
                engine.subscribe_node(&channel).await
            } else {
                engine.unsubscribe_node(&channel).await
            };
            hub.engine_done(channel, subscribe, r);
        });
    }

    fn engine_done(&self, channel: Arc<str>, subscribed: bool, r: Result<(), EngineError>) {
        {
            let mut owned = self.owned.borrow_mut();
            let Some(e) = owned.get_mut(&channel) else {
                return;
            };
            e.busy = false;
            match (subscribed, r) {
                (true, Ok(())) => {
                    e.on = true;
                    for (_, ack) in e.waiting.drain(..) {
                        let _ = ack.send(Ok(()));
                    }
                }
                (true, Err(err)) => {
                    tracing::warn!(%channel, error = %err, "engine subscribe failed");
                    CoreMetrics::inc(&self.metrics.engine_subscribe_errors);
                    let msg = err.to_string();
                    for (core, ack) in e.waiting.drain(..) {
                        e.cores.remove(core);
                        let _ = ack.send(Err(msg.clone()));
                    }
                }
                (false, r) => {
                    if let Err(err) = r {
                        // the engine may keep sending; the sink drops what nobody wants
                        tracing::warn!(%channel, error = %err, "engine unsubscribe failed");
                    }
                    e.on = false;
                }
            }
        }
        self.reconcile(channel);
    }

    fn interest_of(&self, channel: &str) -> Option<(Arc<str>, CoreSet)> {
        let owned = self.owned.borrow();
        owned
            .get_key_value(channel)
            .map(|(k, e)| (k.clone(), e.cores))
    }

    /// Cores interested in an owned channel (for tests and introspection).
    pub fn interested_cores(&self, channel: &str) -> Vec<usize> {
        self.owned
            .borrow()
            .get(channel)
            .map(|e| e.cores.iter().collect())
            .unwrap_or_default()
    }
}

impl<S: Subscriber> PublicationSink for Hub<S> {
    fn deliver(&self, channel: &str, event: &ChannelEvent, published_at: Instant) {
        // copied out: fan-out may end subscriptions, which re-enters the interest table
        let Some((key, cores)) = self.interest_of(channel) else {
            return;
        };
        let (payload, offset) = match event {
            ChannelEvent::Publication(p) => (publication_push(channel, &p.json()), p.offset),
            ChannelEvent::Join(i) | ChannelEvent::Leave(i) => (
                join_leave_push(
                    channel,
                    matches!(event, ChannelEvent::Join(_)),
                    &ClientInfoJson {
                        user: &i.user,
                        client: &i.client,
                        conn_info: i.conn_info.as_deref(),
                        chan_info: i.chan_info.as_deref(),
                    },
                ),
                0,
            ),
        };
        let frame = frame::text(&payload);
        for core in cores.iter() {
            if core == self.me {
                self.fanout(channel, &frame, offset, published_at);
            } else {
                self.mesh.send(
                    core,
                    CoreMsg::Deliver {
                        channel: key.clone(),
                        frame: frame.clone(),
                        offset,
                        published_at,
                    },
                );
            }
        }
    }

    fn reset(&self, channel: &str) {
        let Some((key, cores)) = self.interest_of(channel) else {
            return;
        };
        for core in cores.iter() {
            if core == self.me {
                self.reset_local(channel);
            } else {
                self.mesh.send(
                    core,
                    CoreMsg::Reset {
                        channel: key.clone(),
                    },
                );
            }
        }
    }
}
