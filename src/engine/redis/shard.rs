//! Sharded PUB/SUB of the Redis engine on a Redis Cluster (`engine.redis.cluster`).
//!
//! Each channel's PUB/SUB name `p:ch:{ch}` shares the `{ch}` hash tag of its keys, so
//! the publish script's `SPUBLISH` runs on the slot's master and the node's
//! `SSUBSCRIBE` goes to that slot's node. The subscriptions live on one RESP3 cluster
//! connection of the `redis` crate ([`super::connect::Target::shard_pubsub`]); its push
//! messages arrive here ([`pubsub_loop`]): `smessage` is dispatched like a standalone
//! message (`io::Io::dispatch`, with the same gap detection).
//!
//! Interruptions, and what follows them (never a silent gap):
//! - a node connection dropped (a `Disconnection` push, or a failed health `PING`,
//!   which goes to every node): every subscribed channel is marked interrupted;
//! - a slot moved away (resharding) or its master was demoted (failover): the server
//!   sends an `sunsubscribe` that this node did not ask for (`io::Io::unsubscribe_seen`
//!   tells them apart); that channel is marked interrupted.
//!
//! [`repair_loop`] subscribes every interrupted channel again (`SSUBSCRIBE`, which the
//! crate routes to the slot's current owner, following `MOVED`) and only once that is
//! confirmed resets the channel on its core (subscribers get 2500 and recover from the
//! stream, which now includes everything published while the subscription was away);
//! failures are retried with backoff. The crate also resubscribes tracked channels by
//! itself after a reconnect; subscribing twice is harmless.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};

use super::connect::{self, Pushes};
use super::io::{Io, Sub};
use super::stats::Link;

/// Channels resubscribed concurrently at a time.
const REPAIR_BATCH: usize = 512;

/// Reads the sharded PUB/SUB connection's pushes and checks the cluster with `PING`
/// every `health_check_ms`; connects first when started without a connection
/// (`connect_retry`).
pub(super) async fn pubsub_loop(io: Rc<Io>, pushes: Option<Pushes>) {
    let mut pushes = match pushes {
        Some(p) => p,
        None => connect(&io).await,
    };
    io.stats.set_up(Link::PubSub, true);
    let mut up = true;
    let mut next_check = tokio::time::Instant::now() + io.timing.health_every;
    loop {
        tokio::select! {
            push = pushes.recv() => match push {
                Some(push) => on_push(&io, push),
                None => return, // the connection is kept in `io.sink`: never
            },
            () = tokio::time::sleep_until(next_check) => {
                let sink = io.sink.borrow().clone();
                let Some(Sub::Shard(mut conn)) = sink else { return };
                let ping = connect::within(
                    io.timing.timeout,
                    redis::cmd("PING").query_async::<Value>(&mut conn),
                )
                .await;
                match ping {
                    Err(e) if up => {
                        tracing::warn!(redis = %io.shown, error = %e, "Redis Cluster PUB/SUB health check failed; channels will be resubscribed and reset");
                        up = false;
                        io.stats.set_up(Link::PubSub, false);
                        interrupted_all(&io);
                    }
                    Ok(_) if !up => {
                        up = true;
                        io.stats.set_up(Link::PubSub, true);
                        io.stats.reconnected(Link::PubSub);
                    }
                    _ => {}
                }
                next_check = tokio::time::Instant::now() + io.timing.health_every;
            }
        }
    }
}

/// Opens the sharded PUB/SUB connection, retrying with backoff.
async fn connect(io: &Io) -> Pushes {
    let mut backoff = Duration::ZERO;
    loop {
        tokio::time::sleep(backoff).await;
        backoff = io.timing.backoff(backoff);
        match io.target.shard_pubsub(io.timing.timeout).await {
            Ok((conn, pushes)) => {
                *io.sink.borrow_mut() = Some(Sub::Shard(conn));
                tracing::info!(redis = %io.shown, "Redis Cluster PUB/SUB connection up");
                return pushes;
            }
            Err(e) => {
                io.stats.connect_failed(Link::PubSub);
                tracing::debug!(redis = %io.shown, error = %e, "Redis Cluster PUB/SUB connect failed");
            }
        }
    }
}

fn bulk(v: Option<&Value>) -> Option<&[u8]> {
    match v {
        Some(Value::BulkString(b)) => Some(b),
        _ => None,
    }
}

fn on_push(io: &Io, push: PushInfo) {
    match push.kind {
        PushKind::SMessage | PushKind::Message => {
            let (Some(name), Some(payload)) = (bulk(push.data.first()), bulk(push.data.get(1)))
            else {
                return;
            };
            if let Ok(name) = std::str::from_utf8(name) {
                io.dispatch(name, payload);
            }
        }
        PushKind::SUnsubscribe => {
            let Some(name) = bulk(push.data.first()).and_then(|n| std::str::from_utf8(n).ok())
            else {
                return;
            };
            let Some(channel) = io.channel_of(name) else {
                return;
            };
            if io.unsubscribe_seen(channel) {
                return; // the confirmation of our own SUNSUBSCRIBE
            }
            let channel = io
                .subs
                .borrow()
                .get_key_value(channel)
                .map(|(c, _)| c.clone());
            if let Some(channel) = channel {
                tracing::info!(%channel, "Redis Cluster dropped a sharded subscription (slot moved or failover); resubscribing and resetting");
                interrupted(io, [channel]);
            }
        }
        PushKind::Disconnection => {
            tracing::warn!(redis = %io.shown, "a Redis Cluster PUB/SUB node connection dropped; channels will be resubscribed and reset");
            interrupted_all(io);
        }
        _ => {}
    }
}

fn interrupted(io: &Io, channels: impl IntoIterator<Item = Arc<str>>) {
    io.dirty.borrow_mut().extend(channels);
    io.dirty_added.notify_one();
}

fn interrupted_all(io: &Io) {
    let all: Vec<Arc<str>> = io.subs.borrow().keys().cloned().collect();
    interrupted(io, all);
}

/// Subscribes interrupted channels again, then resets them (see the module doc). Idle
/// on a standalone Redis, where nothing is ever marked.
pub(super) async fn repair_loop(io: Rc<Io>) {
    let mut backoff = Duration::ZERO;
    loop {
        if io.dirty.borrow().is_empty() {
            io.dirty_added.notified().await;
            continue;
        }
        tokio::time::sleep(backoff).await;
        let sink = io.sink.borrow().clone();
        let Some(Sub::Shard(conn)) = sink else {
            backoff = io.timing.backoff(backoff);
            continue;
        };
        let channels: Vec<(Arc<str>, usize)> = {
            let subs = io.subs.borrow();
            io.dirty
                .borrow_mut()
                .drain()
                .filter_map(|c| subs.get(&c).map(|core| (c, *core)))
                .collect()
        };
        let mut failed = false;
        for batch in channels.chunks(REPAIR_BATCH) {
            let calls: Vec<_> = batch
                .iter()
                .map(|(channel, core)| {
                    let (mut conn, name, timeout) =
                        (conn.clone(), io.name(channel), io.timing.timeout);
                    let call = tokio::task::spawn_local(async move {
                        connect::within(timeout, conn.ssubscribe(name)).await
                    });
                    (channel.clone(), *core, call)
                })
                .collect();
            for (channel, core, call) in calls {
                match call.await {
                    Ok(Ok(())) => {
                        if io.subs.borrow().get(&channel) != Some(&core) {
                            continue; // unsubscribed meanwhile
                        }
                        io.last.borrow_mut().remove(&channel);
                        io.count(core, |m| &m.engine_redis_resubscribes);
                        io.reset(core, channel);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%channel, error = %e, "sharded resubscribe failed; retrying");
                        failed = true;
                        io.dirty.borrow_mut().insert(channel);
                    }
                    Err(e) => {
                        tracing::debug!(%channel, error = %e, "sharded resubscribe task failed; retrying");
                        failed = true;
                        io.dirty.borrow_mut().insert(channel);
                    }
                }
            }
        }
        backoff = if failed {
            io.timing.backoff(backoff)
        } else {
            Duration::ZERO
        };
    }
}
