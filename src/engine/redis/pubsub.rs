//! Keeping the node's PUB/SUB connection: one loop for both kinds of link, a
//! standalone/Sentinel PUB/SUB connection ([`PubSubStream`], here) and the sharded
//! PUB/SUB connection of a Redis Cluster ([`super::connect::Pushes`], in
//! [`super::shard`]).
//!
//! [`keep`] reads the link until it is lost (the stream ends, or a health `PING`
//! every `health_check_ms` fails), marks PUB/SUB down (`/health` 503), then opens a
//! new link with backoff (for Sentinel: to the current master), on which every
//! subscribed channel is subscribed again and then reset: messages may have been
//! lost in between, so subscribers resubscribe and recover (never a silent gap).
//! It starts without a link under `engine.redis.connect_retry`.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt as _;
use redis::aio::PubSubStream;
use redis::RedisResult;

use super::connect;
use super::io::{Io, Sub};
use super::stats::Link;

/// A kind of PUB/SUB connection [`keep`] can keep.
pub(super) trait PubSubLink: Sized {
    /// Named in logs.
    const WHAT: &'static str;
    /// Dispatches messages until the link is lost.
    fn read_until_lost<'a>(io: &'a Io, link: &'a mut Self) -> impl Future<Output = ()> + 'a;
    /// A new link with every channel of `io.subs` subscribed, each then reset.
    fn resubscribe(io: &Io) -> impl Future<Output = RedisResult<Self>> + '_;
}

/// Keeps a PUB/SUB link up for the life of the I/O thread.
pub(super) async fn keep<L: PubSubLink>(io: Rc<Io>, mut link: Option<L>) {
    let mut was_up = link.is_some();
    loop {
        if let Some(mut l) = link.take() {
            L::read_until_lost(&io, &mut l).await;
            io.sink.borrow_mut().take();
            io.stats.set_up(Link::PubSub, false);
            tracing::warn!(redis = %io.shown, "{} connection lost; reconnecting", L::WHAT);
        }
        let mut backoff = Duration::ZERO;
        link = Some(loop {
            tokio::time::sleep(backoff).await;
            backoff = io.timing.backoff(backoff);
            match connect::within(io.timing.timeout * 2, L::resubscribe(&io)).await {
                Ok(l) => break l,
                Err(e) => {
                    io.stats.connect_failed(Link::PubSub);
                    tracing::debug!(redis = %io.shown, error = %e, "{} reconnect failed", L::WHAT);
                }
            }
        });
        if was_up {
            io.stats.reconnected(Link::PubSub);
        }
        was_up = true;
        io.stats.set_up(Link::PubSub, true);
    }
}

/// Subscribed again after a new link: counted and reset on their cores.
pub(super) fn reset_resubscribed(io: &Io, channels: Vec<(Arc<str>, usize)>, what: &str) {
    tracing::info!(
        channels = channels.len(),
        "{what} reconnected; channels resubscribed and reset"
    );
    for (channel, core) in channels {
        io.count(core, |m| &m.engine_redis_resubscribes);
        io.reset(core, channel);
    }
}

impl PubSubLink for PubSubStream {
    const WHAT: &'static str = "Redis PUB/SUB";

    async fn read_until_lost(io: &Io, stream: &mut PubSubStream) {
        let mut next_check = tokio::time::Instant::now() + io.timing.health_every;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => io.dispatch(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => return,
                },
                () = tokio::time::sleep_until(next_check) => {
                    let sink = io.sink.borrow().clone();
                    let Some(Sub::Plain(mut sink)) = sink else { return };
                    let ping = connect::within(io.timing.timeout, sink.ping::<redis::Value>()).await;
                    if let Err(e) = ping {
                        tracing::debug!(error = %e, "Redis PUB/SUB health check failed");
                        return;
                    }
                    next_check = tokio::time::Instant::now() + io.timing.health_every;
                }
            }
        }
    }

    async fn resubscribe(io: &Io) -> RedisResult<PubSubStream> {
        let (mut sink, stream) = io.target.pubsub(io.timing.timeout).await?.split();
        let channels = io.subscribed();
        for chunk in channels.chunks(512) {
            let names: Vec<String> = chunk.iter().map(|(c, _)| io.name(c)).collect();
            sink.subscribe(&names).await?;
        }
        *io.sink.borrow_mut() = Some(Sub::Plain(sink));
        io.last.borrow_mut().clear();
        reset_resubscribed(io, channels, Self::WHAT);
        Ok(stream)
    }
}
