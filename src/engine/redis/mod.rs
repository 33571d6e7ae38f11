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
//! [`payload`]. A publish into a channel with history, or with an idempotency key,
//! is one script (epoch in a meta hash, offset by `HINCRBY`, `XADD MAXLEN`, TTLs,
//! idempotency result, `PUBLISH`) and is acknowledged only after it returned; one
//! with neither is a plain `PUBLISH` of the same message (offset 0, no epoch), which
//! costs Redis a fraction of the script's CPU (`bench/README.md`). Recovery (in [`history`]) uses `recovery::missed_after`
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
//! connection cap counts connections cluster-wide ([`users`]); session records (API
//! `connections`) are in [`sessions`]; see `engine::cluster`.
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
//! pipelines of [`presence::PRESENCE_PIPELINE`] script calls (one round trip each) from a
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
//! Cluster: a test of a channel set large enough to show the cost of one
//! `SSUBSCRIBE` (plus its redirect-learning read) per channel. TLS to the sentinels
//! themselves. (`rediss://` seeds, `connect_retry`, a crashed master with
//! `wait_replicas`, and the routing of `WAIT` to the channel's master are tested in
//! `tests/redis_cluster_mode.rs`.)

mod connect;
mod control;
mod history;
mod io;
mod node;
mod payload;
mod presence;
mod pubsub;
mod registry;
mod scripts;
mod sessions;
#[cfg(test)]
mod sessions_tests;
mod shard;
mod stats;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_costs;
mod users;

use bytes::Bytes;
use futures_lite::StreamExt as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::memory::NO_EPOCH;
use super::*;
use crate::metrics::CoreMetrics;
pub use connect::Conn;
pub use node::RedisNode;
use scripts::Keys;
pub use stats::{Link, RedisStats};

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
                    node::Inbound::Event(channel, ChannelEvent::Publication(p))
                        if control::reserved(&channel) =>
                    {
                        control::on_message(&inbox_node, ctl.get().cloned(), p.data)
                    }
                    node::Inbound::Event(channel, _) | node::Inbound::Reset(channel)
                        if control::reserved(&channel) => {}
                    node::Inbound::Event(channel, event) => {
                        sink.deliver(&channel, &event, Instant::now())
                    }
                    node::Inbound::Reset(channel) => sink.reset(&channel),
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

    /// The publish script, then `WAIT` until `replicas` replicas have it (config
    /// `engine.redis.wait_replicas`); fewer within `wait_timeout_ms` is a temporary error.
    async fn publish_replicated(
        &self,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
        replicas: u32,
    ) -> Result<(u64, String, u8), EngineError> {
        let timeout_ms = self.node.cfg.wait_timeout_ms;
        let r = self
            .node
            .run(move |mut conn| async move {
                let slot_key = keys[1].clone();
                let mut inv = scripts::PUBLISH.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                for a in args {
                    inv.arg(a);
                }
                let out: (u64, String, u8) = inv.invoke_async(&mut conn).await?;
                let confirmed = conn
                    .wait_for_replicas(&slot_key, replicas, timeout_ms)
                    .await?;
                Ok((out, confirmed))
            })
            .await;
        let (out, confirmed) = self.counted(r)?;
        if confirmed < replicas {
            CoreMetrics::inc(&self.metrics.engine_redis_wait_shortfalls);
            return Err(EngineError::Internal(format!(
                "publication at offset {} stored on the Redis master but confirmed by {confirmed} \
                 of {replicas} replicas within {timeout_ms} ms",
                out.0
            )));
        }
        Ok(out)
    }

    /// `PUBLISH` (`SPUBLISH` on a Redis Cluster) of one message to a channel's subscribers.
    async fn pubsub_publish(&self, name: String, msg: Vec<u8>) -> Result<(), EngineError> {
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
        if size == 0 && idem_ttl == 0 {
            // nothing to store and nothing to remember: one plain PUBLISH, no script (the
            // script costs Redis about ten times the CPU of the PUBLISH inside it)
            self.pubsub_publish(k.pubsub, payload::live(0, "", &body))
                .await?;
            CoreMetrics::inc(&self.metrics.publishes);
            return Ok(position(0, String::new()));
        }
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
        let keys = vec![k.stream, k.meta, idem_key];
        let (offset, epoch, _repeated): (u64, String, u8) = match self.node.cfg.wait_replicas {
            replicated if size > 0 && replicated > 0 => {
                self.publish_replicated(keys, args, replicated).await?
            }
            _ => self.script(&scripts::PUBLISH, keys, args).await?,
        };
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
        self.pubsub_publish(self.keys(channel).pubsub, msg).await
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
        self.stream_position(channel, history).await
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
        history: HistoryOptions,
    ) -> Result<HistoryResult, EngineError> {
        self.read_history(channel, query, history).await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        self.drop_history(channel).await
    }

    fn presence_refresh_every(&self) -> Option<std::time::Duration> {
        // three chances before an entry of a live client expires
        Some(std::time::Duration::from_millis(
            self.node.cfg.presence_ttl_s.max(1) * 1000 / 3,
        ))
    }

    async fn presence_add(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.add_present(channel, info).await
    }

    async fn presence_refresh(
        &self,
        entries: Vec<(Arc<str>, ClientInfo)>,
    ) -> Result<(), EngineError> {
        self.refresh_present(entries).await
    }

    async fn presence_remove(&self, channel: &str, client: &str) -> Result<(), EngineError> {
        self.remove_present(channel, client).await
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, EngineError> {
        self.present(channel).await
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        self.present_counts(channel).await
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

    fn session_ttl(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(sessions::ttl(&self.node)))
    }

    async fn write_sessions(
        &self,
        records: Vec<cluster::SessionRecord>,
    ) -> Result<usize, EngineError> {
        let r = sessions::write(&self.node, records).await;
        self.counted(r)
    }

    async fn remove_sessions(
        &self,
        node: &str,
        closed: Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        let r = sessions::remove(&self.node, node, closed).await;
        self.counted(r)
    }

    async fn connections(
        &self,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<cluster::SessionRecord>>, EngineError> {
        let r = sessions::connections(&self.node, user, limit).await;
        self.counted(r).map(Some)
    }
}
