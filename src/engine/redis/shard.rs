//! Sharded PUB/SUB of the Redis engine on a Redis Cluster (`engine.redis.cluster`).
//!
//! Each channel's PUB/SUB name `p:ch:{ch}` shares the `{ch}` hash tag of its keys, so
//! the publish script's `SPUBLISH` runs on the slot's master and the node's
//! `SSUBSCRIBE` goes to that slot's node. The subscriptions live on one RESP3 cluster
//! connection of the `redis` crate ([`super::connect::Target::shard_pubsub`]); its push
//! messages arrive here (its [`PubSubLink`] impl, kept by [`super::pubsub::keep`]): `smessage` is dispatched like a standalone
//! message (`io::Io::dispatch`, with the same gap detection).
//!
//! Interruptions, and what follows them (never a silent gap):
//! - a node connection dropped (a `Disconnection` push) or a health `PING` (sent to
//!   every node) failed: the whole PUB/SUB connection is replaced by a new one on which
//!   every channel is subscribed again, then every channel is reset ([`super::pubsub::keep`]);
//! - a slot moved away (resharding) or its master was demoted (failover): the server
//!   sends an `sunsubscribe` that this node did not ask for (`io::Io::unsubscribe_seen`
//!   tells them apart); [`repair_loop`] subscribes that channel again (`SSUBSCRIBE`,
//!   which the crate routes to the slot's current owner, following `MOVED`) and only
//!   once that is confirmed resets it, so its subscribers recover from a stream that
//!   holds everything published while the subscription was away. Failures are retried
//!   with backoff.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisResult, Value};

use super::connect::{self, Pushes};
use super::io::{Io, Sub};
use super::pubsub::{reset_resubscribed, PubSubLink};

/// Channels resubscribed concurrently at a time.
const REPAIR_BATCH: usize = 512;

/// `SSUBSCRIBE`s `name` on its slot's master. A replica accepts `SSUBSCRIBE` for its
/// master's slots, but after a failover a subscription left on the demoted master got
/// none of the new master's messages (seen in
/// `a_master_failover_loses_no_acknowledged_publication`), and the connection's slot map
/// still names the demoted master until something is redirected. So a read of the
/// channel's name as a key (which never exists) goes first: a replica answers it with
/// `MOVED`, which makes the crate learn the slot's current master before subscribing.
pub(super) async fn ssubscribe(conn: &mut ClusterConnection, name: String) -> RedisResult<()> {
    redis::cmd("EXISTS")
        .arg(&name)
        .query_async::<Value>(conn)
        .await?;
    conn.ssubscribe(name).await
}

/// The sharded PUB/SUB connection, kept by [`keep`]: the whole connection is replaced
/// when a node connection drops or a health `PING` (sent to every node) fails, rather
/// than left to the crate's own repair, whose reconnect paths can race and leave a
/// node's subscriptions on a connection it then drops (seen in
/// `on_a_cluster_dropped_sharded_pubsub_connections_resubscribe_and_reset`).
impl PubSubLink for Pushes {
    const WHAT: &'static str = "Redis Cluster PUB/SUB";

    /// Dispatches pushes until a node connection drops or a health `PING` fails.
    async fn read_until_lost(io: &Io, pushes: &mut Pushes) {
        let mut next_check = tokio::time::Instant::now() + io.timing.health_every;
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) if push.kind == PushKind::Disconnection => return,
                    Some(push) => on_push(io, push),
                    None => return,
                },
                () = tokio::time::sleep_until(next_check) => {
                    let sink = io.sink.borrow().clone();
                    let Some(Sub::Shard(mut conn)) = sink else { return };
                    let ping = connect::within(
                        io.timing.timeout,
                        redis::cmd("PING").query_async::<Value>(&mut conn),
                    )
                    .await;
                    if let Err(e) = ping {
                        tracing::debug!(error = %e, "Redis Cluster PUB/SUB health check failed");
                        return;
                    }
                    next_check = tokio::time::Instant::now() + io.timing.health_every;
                }
            }
        }
    }

    /// A new sharded PUB/SUB connection subscribed to every channel in `subs`, each then reset.
    async fn resubscribe(io: &Io) -> RedisResult<Pushes> {
        let (conn, pushes) = io.target.shard_pubsub(io.timing.timeout).await?;
        let channels = io.subscribed();
        for batch in channels.chunks(REPAIR_BATCH) {
            let calls: Vec<_> = batch
                .iter()
                .map(|(channel, _)| {
                    let (mut conn, name) = (conn.clone(), io.name(channel));
                    tokio::task::spawn_local(async move { ssubscribe(&mut conn, name).await })
                })
                .collect();
            for call in calls {
                call.await
                    .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))??;
            }
        }
        *io.sink.borrow_mut() = Some(Sub::Shard(conn));
        io.last.borrow_mut().clear();
        io.dirty.borrow_mut().clear();
        io.unsubscribing.borrow_mut().clear();
        reset_resubscribed(io, channels, Self::WHAT);
        Ok(pushes)
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
        _ => {}
    }
}

fn interrupted(io: &Io, channels: impl IntoIterator<Item = Arc<str>>) {
    io.dirty.borrow_mut().extend(channels);
    io.dirty_added.notify_one();
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
                        connect::within(timeout, ssubscribe(&mut conn, name)).await
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
