//! The Redis engine (`engine.kind = "redis"`): channel streams, presence and
//! PUB/SUB shared by every node of a cluster through one Redis.
//!
//! # How it runs under glommio
//! One dedicated I/O thread per node ([`io`]) runs a tokio current-thread
//! runtime with the `redis` crate; each core's [`RedisEngine`] is a handle that
//! sends it `Send` requests over a bounded queue and awaits a oneshot reply. Why
//! not per-core connections on glommio sockets: the crate's reconnecting
//! connection, PUB/SUB and script helpers are built on its tokio/async-std
//! runtime traits, and a glommio runtime adapter would be ours to keep; per core
//! it would also multiply connections (and PUB/SUB subscriptions, which must be
//! one per node per channel) by the core count. The cost is one cross-thread hop
//! each way, measured by the `redis_round_trip_cost` test (run with
//! `--nocapture`): on the 2-core dev machine (test profile), one sequential `PING`
//! took 108 µs from a glommio core through the hop against 50 µs issued on the
//! I/O thread itself, so the hop costs about 60 µs of latency per call (two
//! cross-thread wake-ups; throughput is not limited by it, since calls from all
//! cores pipeline over one multiplexed connection). Engine calls are rare compared
//! to deliveries (one PUB/SUB message per publication per node, fanned out by the
//! owner core), so the hop is not on the per-subscriber path.
//!
//! # Data and scripts
//! Keys and the atomic Lua scripts are in [`scripts`]; byte formats in
//! [`payload`]. A publish is one script (epoch in a meta hash, offset by
//! `HINCRBY`, `XADD MAXLEN`, TTLs, idempotency result, `PUBLISH`) and is
//! acknowledged only after it returned. Recovery uses [`recovery::missed_after`]
//! on one atomic snapshot (top, epoch, oldest retained, publications).
//! History entries expire with the whole stream (TTL refreshed by each publish),
//! not one by one as in the memory engine. `engine.max_channels` and
//! `max_idempotency_keys` do not apply: Redis memory is bounded by its own
//! `maxmemory`.
//!
//! # Delivery
//! `subscribe_node` (called by the owner core) SUBSCRIBEs the node once per
//! channel; the I/O thread routes the channel's messages to that core's queue,
//! read by a task on the core that calls the sink. Delivery is asynchronous: a
//! publication reaches the sinks shortly after `publish` returns, not before.
//! The I/O thread resets a channel (the hub's 2500 "insufficient state") when
//! its live stream jumps (offset gap, new epoch) or its PUB/SUB connection came
//! back after a drop.
//!
//! # Cluster capability
//! Node commands and surveys of the server API travel over the control channel
//! ([`control`]), `info` reads the node registry ([`registry`]), and the per-user
//! connection cap counts connections cluster-wide ([`users`]); see `engine::cluster`.
//!
//! # Connections
//! [`connect`] says where the connections go: `engine.redis.url` (`redis://`,
//! or `rediss://` verified against the system roots or `engine.redis.tls_ca`;
//! ACL user and password in the URL, shown as `***`), or the master of a Sentinel
//! group (`engine.redis.sentinel`; `sentinel.tls`: TLS to master), asked of the
//! sentinels and checked with `ROLE` on every (re)connect of each connection, so
//! a node follows a failover, or the nodes of a Redis Cluster (`engine.redis.cluster`,
//! seed nodes; see "Redis Cluster" below).
//! The I/O thread ([`io`]) checks both connections with `PING` every
//! `health_check_ms`, drops a broken one and reconnects with backoff; engine calls
//! fail at once with the temporary error 100 while the command connection is
//! down, and `/health` answers 503 (`reason: redis`) while either is.
//! `connect_retry` lets a node start while Redis is unreachable. Node-wide
//! connection metrics are in [`stats`].
//!
//! # Presence
//! Presence entries expire after `engine.redis.presence_ttl_s`; every core
//! re-adds its clients' entries each third of it (`session::heartbeat`), in
//! pipelines of [`PRESENCE_PIPELINE`] script calls (one round trip each) from a
//! background task, so only the entries of a node that died expire.
//!
//! # Redis Cluster
//! With `engine.redis.cluster` (seed nodes) commands go through the `redis` crate's
//! cluster client ([`connect::Conn::Cluster`]: each script to its channel's slot, whose
//! keys share the `{channel}` hash tag; multi-slot pipelines sent command by command),
//! and PUB/SUB is sharded: `SPUBLISH` in the publish script, one `SSUBSCRIBE` per channel
//! on the slot's node ([`shard`]). A subscription interrupted by a lost node connection,
//! a moved slot or a failover is subscribed again and then reset, as after a standalone
//! reconnect. The health `PING` of each connection goes to every node of the cluster,
//! so one unreachable Redis node makes `/health` answer 503 until it is back or failed
//! over. Node-global keys (`p:nodes`, `p:survey:<id>`, the control channel
//! `p:ch:{\0control}`) each live in one slot, as does each user's `p:user:{user}`. A
//! channel whose name starts with `}` has an empty hash tag, so its keys spread over
//! slots and its scripts fail (`CROSSSLOT`, error 100) on a cluster. A cluster connection retries a command
//! after `MOVED`/`ASK`/`TRYAGAIN` and after a lost node connection, so a publish cut
//! off mid-way may be applied twice (use `idempotency_key` where that matters).
//!
//! # Not yet built (issue 8)
//! Cluster: tests of `rediss://` seeds and of `connect_retry` (both wired, not yet
//! exercised), of a master that crashes rather than hands over (`CLUSTER FAILOVER`
//! is tested), and of a channel set large enough to show the cost of one
//! `SSUBSCRIBE` (plus its redirect-learning read) per channel. TLS to the sentinels
//! themselves; `WAIT`
//! for replicas before acknowledging a publish (Redis replication is
//! asynchronous: a publication acknowledged just before the master dies may be
//! missing on the promoted replica).

mod connect;
mod control;
mod io;
mod payload;
mod registry;
mod scripts;
mod shard;
mod stats;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod users;

use bytes::Bytes;
use futures_lite::StreamExt as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::memory::NO_EPOCH;
use super::recovery::missed_after;
use super::*;
use crate::metrics::CoreMetrics;
pub use io::{Conn, RedisNode};
use scripts::Keys;
pub use stats::{Link, RedisStats};

/// Presence entries refreshed per pipeline (one round trip).
const PRESENCE_PIPELINE: usize = 512;

/// Why the Redis engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis address {0}: {1}")]
    Url(String, ::redis::RedisError),
    #[error("cannot connect to Redis at {0}: {1} (engine.redis.connect_retry = true starts the node anyway and keeps trying)")]
    Connect(String, ::redis::RedisError),
    #[error("cannot read engine.redis.tls_ca {0}: {1}")]
    TlsCa(String, String),
    #[error("cannot start the Redis I/O thread: {0}")]
    Thread(String),
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redacted(url: &str) -> String {
    match ::redis::parse_redis_url(url) {
        Some(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// One core's view of the Redis engine.
pub struct RedisEngine {
    me: usize,
    node: Arc<RedisNode>,
    metrics: Arc<CoreMetrics>,
    idempotency_ttl_s: u64,
    /// Where control-channel messages go (core 0 receives them).
    control: Rc<std::cell::OnceCell<Rc<dyn cluster::ControlSink>>>,
}

impl RedisEngine {
    /// Registers this core with the node's I/O thread and starts the task that hands
    /// the events of channels this core subscribed to `sink`. Runs on the core.
    pub fn new(
        me: usize,
        node: Arc<RedisNode>,
        sink: Rc<dyn PublicationSink>,
        metrics: Arc<CoreMetrics>,
        idempotency_ttl_s: u64,
    ) -> Result<Self, EngineError> {
        let (tx, mut rx) = futures_channel::mpsc::channel(node.cfg.core_queue);
        node.register(me, tx, metrics.clone())?;
        let control: Rc<std::cell::OnceCell<Rc<dyn cluster::ControlSink>>> = Rc::default();
        let (ctl, inbox_node) = (control.clone(), node.clone());
        crate::exec::spawn_critical("redis-inbox", async move {
            while let Some(msg) = rx.next().await {
                match msg {
                    io::Inbound::Event(channel, ChannelEvent::Publication(p))
                        if control::reserved(&channel) =>
                    {
                        control::on_message(&inbox_node, ctl.get().cloned(), p.data)
                    }
                    io::Inbound::Event(channel, _) | io::Inbound::Reset(channel)
                        if control::reserved(&channel) => {}
                    io::Inbound::Event(channel, event) => {
                        sink.deliver(&channel, &event, Instant::now())
                    }
                    io::Inbound::Reset(channel) => sink.reset(&channel),
                }
                crate::exec::yield_if_needed().await;
            }
        });
        if me == 0 {
            crate::exec::spawn(control::subscribe(node.clone(), me));
        }
        Ok(RedisEngine {
            me,
            node,
            metrics,
            idempotency_ttl_s: idempotency_ttl_s.max(1),
            control,
        })
    }

    fn keys(&self, channel: &str) -> Keys {
        Keys::new(&self.node.cfg.prefix, channel)
    }

    /// Counts a failure on this core.
    fn counted<T>(&self, r: Result<T, EngineError>) -> Result<T, EngineError> {
        if let Err(EngineError::Internal(e)) = &r {
            CoreMetrics::inc(&self.metrics.engine_redis_errors);
            tracing::debug!(error = %e, "redis engine operation failed");
        }
        r
    }

    /// Runs `script` with `keys` and `args` on the I/O thread.
    async fn script<T: ::redis::FromRedisValue + Send + 'static>(
        &self,
        script: &'static ::redis::Script,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> Result<T, EngineError> {
        let r = self
            .node
            .run(move |mut conn| async move {
                let mut inv = script.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                for a in args {
                    inv.arg(a);
                }
                inv.invoke_async(&mut conn).await
            })
            .await;
        self.counted(r)
    }

    fn presence_keys(k: &Keys) -> Vec<String> {
        vec![
            k.presence.clone(),
            k.presence_exp.clone(),
            k.presence_users.clone(),
        ]
    }
}

fn new_epoch() -> String {
    format!("{:08x}", fastrand::u32(..))
}

fn arg(v: impl ToString) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn position(offset: u64, epoch: String) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: if epoch.is_empty() {
            NO_EPOCH.into()
        } else {
            epoch.into()
        },
    }
}

#[async_trait::async_trait(?Send)]
impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        if control::reserved(channel) {
            return Err(EngineError::NotAvailable);
        }
        let k = self.keys(channel);
        let size = if opts.history.enabled() && !opts.skip_history {
            opts.history.size
        } else {
            0
        };
        let (idem_key, idem_ttl) = match &opts.idempotency_key {
            Some(key) => (k.idempotency(key), self.idempotency_ttl_s),
            None => (k.idempotency(""), 0),
        };
        let body = payload::body(&data, opts.info.as_deref(), opts.tags.as_deref());
        let args = vec![
            body,
            arg(size),
            arg(opts.history.ttl.as_secs().max(1)),
            arg(self.node.cfg.meta_ttl_s),
            arg(idem_ttl),
            arg(new_epoch()),
            arg(&k.pubsub),
            arg(self.node.publish_command()),
        ];
        let (offset, epoch, _repeated): (u64, String, u8) = self
            .script(&scripts::PUBLISH, vec![k.stream, k.meta, idem_key], args)
            .await?;
        CoreMetrics::inc(&self.metrics.publishes);
        Ok(position(offset, epoch))
    }

    async fn publish_join_leave(
        &self,
        channel: &str,
        event: ChannelEvent,
    ) -> Result<(), EngineError> {
        if control::reserved(channel) {
            return Err(EngineError::NotAvailable);
        }
        let msg = match &event {
            ChannelEvent::Join(i) => payload::join_leave(true, i),
            ChannelEvent::Leave(i) => payload::join_leave(false, i),
            ChannelEvent::Publication(_) => return Err(EngineError::NotAvailable),
        };
        let name = self.keys(channel).pubsub;
        let publish = self.node.publish_command();
        let r = self
            .node
            .run(move |mut conn| async move {
                ::redis::cmd(publish)
                    .arg(name)
                    .arg(msg)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        self.counted(r).map(drop)
    }

    async fn subscribe_node(&self, channel: &str) -> Result<(), EngineError> {
        if control::reserved(channel) {
            return Err(EngineError::NotAvailable);
        }
        let r = self.node.subscribe(channel, self.me).await;
        self.counted(r)
    }

    async fn unsubscribe_node(&self, channel: &str) -> Result<(), EngineError> {
        if control::reserved(channel) {
            return Ok(()); // never subscribed through the hub (see `subscribe_node`)
        }
        let r = self.node.unsubscribe(channel).await;
        self.counted(r)
    }

    async fn position(
        &self,
        channel: &str,
        history: HistoryOptions,
    ) -> Result<StreamPosition, EngineError> {
        if !history.enabled() {
            return Ok(position(0, String::new()));
        }
        let k = self.keys(channel);
        let args = vec![arg(new_epoch()), arg(self.node.cfg.meta_ttl_s)];
        let (offset, epoch): (u64, String) = self
            .script(&scripts::POSITION, vec![k.stream, k.meta], args)
            .await?;
        Ok(position(offset, epoch))
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
        history: HistoryOptions,
    ) -> Result<HistoryResult, EngineError> {
        if !history.enabled() {
            return Err(EngineError::NotAvailable);
        }
        let k = self.keys(channel);
        let after = query
            .since
            .as_ref()
            .map_or_else(|| "-1".to_owned(), |s| s.offset.to_string());
        let limit = i64::try_from(query.limit).unwrap_or(-1);
        let args = vec![arg(after), arg(limit), arg(u8::from(query.reverse))];
        type Raw = (u64, String, u64, Vec<Vec<u8>>);
        let (top, epoch, oldest, raw): Raw = self
            .script(&scripts::HISTORY, vec![k.stream, k.meta], args)
            .await?;
        let pos = position(top, epoch);
        let oldest_kept = if oldest == 0 {
            top.saturating_add(1)
        } else {
            oldest
        };
        let after = match &query.since {
            Some(since) if pos.epoch.is_empty() => missed_after(since, NO_EPOCH, 0, 1)?,
            Some(since) => missed_after(since, &pos.epoch, top, oldest_kept)?,
            None => 0,
        };
        let mut publications = Vec::with_capacity(raw.len() / 2);
        for pair in raw.chunks_exact(2) {
            let offset = std::str::from_utf8(&pair[0])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| EngineError::Internal("redis: bad stream id".into()))?;
            let p = payload::decode_body(offset, &Bytes::from(pair[1].clone()))
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            if p.offset > after {
                publications.push(p);
            }
        }
        Ok(HistoryResult {
            publications,
            position: pos,
        })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        let stream = self.keys(channel).stream;
        let r = self
            .node
            .run(move |mut conn| async move {
                ::redis::cmd("DEL")
                    .arg(stream)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        self.counted(r).map(drop)
    }

    fn presence_refresh_every(&self) -> Option<std::time::Duration> {
        // three chances before an entry of a live client expires
        Some(std::time::Duration::from_millis(
            self.node.cfg.presence_ttl_s.max(1) * 1000 / 3,
        ))
    }

    async fn presence_add(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        let k = self.keys(channel);
        let ttl = self.node.cfg.presence_ttl_s;
        let now = crate::exec::unix_now();
        let entry = payload::client_info(
            info.user.as_bytes(),
            info.client.as_bytes(),
            info.conn_info.as_deref().unwrap_or_default(),
            info.chan_info.as_deref().unwrap_or_default(),
        );
        let args = vec![
            arg(now),
            info.client.into_bytes(),
            entry,
            arg(now + ttl),
            arg(ttl),
        ];
        self.script::<i64>(&scripts::PRESENCE_ADD, Self::presence_keys(&k), args)
            .await
            .map(drop)
    }

    /// One pipeline of `EVALSHA` per [`PRESENCE_PIPELINE`] entries (the script is loaded
    /// first, so a Redis that restarted meanwhile costs one failed refresh, retried at the
    /// next one): a core with 100,000 present clients refreshes them in 196 round trips,
    /// not 100,000.
    async fn presence_refresh(
        &self,
        entries: Vec<(Arc<str>, ClientInfo)>,
    ) -> Result<(), EngineError> {
        let ttl = self.node.cfg.presence_ttl_s;
        let now = crate::exec::unix_now();
        let mut batch = Vec::with_capacity(entries.len().min(PRESENCE_PIPELINE));
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            batch.clear();
            for (channel, info) in entries.by_ref().take(PRESENCE_PIPELINE) {
                let entry = payload::client_info(
                    info.user.as_bytes(),
                    info.client.as_bytes(),
                    info.conn_info.as_deref().unwrap_or_default(),
                    info.chan_info.as_deref().unwrap_or_default(),
                );
                let args = [
                    arg(now),
                    info.client.into_bytes(),
                    entry,
                    arg(now + ttl),
                    arg(ttl),
                ];
                batch.push((Self::presence_keys(&self.keys(&channel)), args));
            }
            let calls = std::mem::take(&mut batch);
            let r = self
                .node
                .run(move |mut conn| async move {
                    let script = &*scripts::PRESENCE_ADD;
                    script.prepare_invoke().load_async(&mut conn).await?;
                    let mut pipe = ::redis::pipe();
                    for (keys, args) in &calls {
                        let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
                        for k in keys {
                            cmd.arg(k);
                        }
                        for a in args {
                            cmd.arg(a);
                        }
                        cmd.ignore();
                    }
                    pipe.query_async::<()>(&mut conn).await
                })
                .await;
            self.counted(r)?;
        }
        Ok(())
    }

    async fn presence_remove(&self, channel: &str, client: &str) -> Result<(), EngineError> {
        let k = self.keys(channel);
        let args = vec![arg(crate::exec::unix_now()), arg(client)];
        self.script::<i64>(&scripts::PRESENCE_REMOVE, Self::presence_keys(&k), args)
            .await
            .map(drop)
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, EngineError> {
        let k = self.keys(channel);
        let args = vec![arg(crate::exec::unix_now())];
        let raw: Vec<Vec<u8>> = self
            .script(&scripts::PRESENCE_GET, Self::presence_keys(&k), args)
            .await?;
        raw.into_iter()
            .map(|v| {
                payload::decode_client_info(&Bytes::from(v))
                    .map_err(|e| EngineError::Internal(e.to_string()))
            })
            .collect()
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let k = self.keys(channel);
        let args = vec![arg(crate::exec::unix_now())];
        let (num_clients, num_users): (u64, u64) = self
            .script(&scripts::PRESENCE_STATS, Self::presence_keys(&k), args)
            .await?;
        Ok(PresenceStats {
            num_clients,
            num_users,
        })
    }

    fn set_control_sink(&self, sink: Rc<dyn cluster::ControlSink>) {
        let _ = self.control.set(sink);
    }

    async fn command(&self, cmd: Bytes) -> Result<(), EngineError> {
        let r = control::command(&self.node, cmd).await;
        self.counted(r)
    }

    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, EngineError> {
        let r = control::survey(&self.node, request).await;
        self.counted(r)
    }

    fn registry_refresh_every(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(
            self.node.cfg.node_ttl_s.max(1) * 1000 / 3,
        ))
    }

    async fn announce(&self, node: &cluster::NodeInfo) -> Result<(), EngineError> {
        let r = registry::announce(&self.node, node).await;
        self.counted(r)
    }

    async fn withdraw(&self, uid: &str) -> Result<(), EngineError> {
        let r = registry::withdraw(&self.node, uid).await;
        self.counted(r)
    }

    async fn nodes(&self) -> Result<Option<Vec<cluster::NodeInfo>>, EngineError> {
        let r = registry::nodes(&self.node).await;
        self.counted(r).map(Some)
    }

    async fn add_user_connection(
        &self,
        user: &str,
        client: &str,
        max: u32,
    ) -> Result<bool, EngineError> {
        let r = users::add(&self.node, user, client, max).await;
        self.counted(r)
    }

    async fn remove_user_connection(&self, user: &str, client: &str) -> Result<(), EngineError> {
        let r = users::remove(&self.node, user, client).await;
        self.counted(r)
    }

    async fn refresh_user_connections(
        &self,
        entries: Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        let r = users::refresh(&self.node, entries).await;
        self.counted(r)
    }
}
