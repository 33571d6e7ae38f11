//! Where the node's Redis connections go, and how they are opened: a fixed
//! `engine.redis.url` (`redis://` or `rediss://` TLS, optionally trusting the
//! private CA in `engine.redis.tls_ca`), or the current master of a Sentinel
//! group (`engine.redis.sentinel`), looked up again through the sentinels on
//! every (re)connect of each connection and checked with `ROLE` by the `redis`
//! crate's [`SentinelClient`] (TLS to the master with `sentinel.tls`, trusting
//! `tls_ca`; the sentinels share one user/password, taken from their URLs).
//!
//! Or a Redis Cluster (`engine.redis.cluster`, seed nodes): the `redis` crate's
//! cluster client learns the slot map from the seeds, keeps one multiplexed
//! connection per node, follows `MOVED`/`ASK` and repairs lost node connections
//! itself; the command connection is then a [`Conn::Cluster`], and PUB/SUB is a
//! second cluster connection speaking RESP3 whose push messages (sharded
//! `SSUBSCRIBE` messages, confirmations, disconnections) go to a channel
//! ([`Target::shard_pubsub`], read by `io::shard`).
//!
//! Used only by the I/O thread (`io`): [`Target::command`] opens the multiplexed
//! command connection, [`Target::pubsub`] the PUB/SUB connection, both within the
//! configured deadline. [`is_broken`] says whether a failed command means the
//! connection must be replaced (connection lost, or the server became a read-only
//! replica after a failover).

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, PushInfo, RedisFuture,
    RedisResult, TlsCertificates, TlsMode, Value,
};

use super::RedisError;
use crate::config::RedisConfig;

/// The Redis the node talks to.
pub enum Target {
    /// One server, `engine.redis.url`.
    Fixed(Client),
    /// The master of a Sentinel group, resolved on every connect.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// A Redis Cluster reached through its seed nodes (`engine.redis.cluster`).
    Cluster {
        seeds: Vec<redis::ConnectionInfo>,
        /// The private CA (`tls_ca`), PEM.
        ca: Option<Vec<u8>>,
    },
}

/// Push messages of the sharded PUB/SUB connection.
pub type Pushes = tokio::sync::mpsc::UnboundedReceiver<PushInfo>;

/// The command connection the engine's jobs get (cheap clones share it): one
/// multiplexed connection, or a cluster connection routing each command to its slot.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// `WAIT replicas timeout_ms` after this connection's writes; on a cluster it goes to
    /// the master of `key`'s slot (where the writes to `key` went, over the same
    /// connection). Returns how many replicas acknowledged them.
    pub async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout_ms: u64,
    ) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        match self {
            Conn::Single(c) => wait.query_async(c).await,
            Conn::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(key, SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                Ok(redis::from_redis_value(c.route_command(wait, to).await?)?)
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    /// On a cluster a pipeline's commands may name keys of different slots (presence and
    /// user refreshes): unless it is a transaction (one slot by construction), its commands
    /// are sent one by one, concurrently, each to its slot's node, and answered in order.
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => {
                if pipeline.is_transaction() {
                    return c.req_packed_commands(pipeline, offset, count);
                }
                let calls: Vec<_> = pipeline
                    .cmd_iter()
                    .map(|cmd| {
                        let (mut c, cmd) = (c.clone(), cmd.clone());
                        tokio::spawn(async move { c.req_packed_command(&cmd).await })
                    })
                    .collect();
                Box::pin(async move {
                    let mut values = Vec::with_capacity(calls.len());
                    for call in calls {
                        let value = call.await.map_err(|e| {
                            redis::RedisError::from(std::io::Error::other(e.to_string()))
                        })??;
                        values.push(value);
                    }
                    Ok(values)
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Target {
    /// Builds the target from the config (reads `tls_ca`); connects nothing yet.
    pub fn new(cfg: &RedisConfig) -> Result<Target, RedisError> {
        if !cfg.cluster.is_empty() {
            let shown = shown(cfg);
            let seeds = cfg
                .cluster
                .iter()
                .map(|u| u.as_str().into_connection_info())
                .collect::<RedisResult<Vec<_>>>()
                .map_err(|e| RedisError::Url(shown.clone(), e))?;
            let ca = tls_ca(cfg)?.and_then(|c| c.root_cert);
            let target = Target::Cluster { seeds, ca };
            target
                .cluster_builder(Duration::from_secs(1))
                .build()
                .map_err(|e| RedisError::Url(shown, e))?;
            return Ok(target);
        }
        if let Some(s) = &cfg.sentinel {
            let shown = shown(cfg);
            let bad = |e| RedisError::Url(shown.clone(), e);
            let mut sentinels = Vec::with_capacity(s.urls.len());
            let mut auth = (None, None);
            for url in &s.urls {
                let info = url.as_str().into_connection_info().map_err(bad)?;
                let r = info.redis_settings();
                if auth.1.is_none() && r.password().is_some() {
                    auth = (
                        r.username().map(str::to_owned),
                        r.password().map(str::to_owned),
                    );
                }
                sentinels.push(info.addr().clone());
            }
            let mut b =
                SentinelClientBuilder::new(sentinels, &s.master, SentinelServerType::Master)
                    .map_err(bad)?
                    .set_client_to_redis_db(s.db);
            if let (user, Some(password)) = auth {
                if let Some(user) = user {
                    b = b.set_client_to_sentinel_username(user);
                }
                b = b.set_client_to_sentinel_password(password);
            }
            if !s.username.is_empty() {
                b = b.set_client_to_redis_username(&s.username);
            }
            if !s.password.is_empty() {
                b = b.set_client_to_redis_password(&s.password);
            }
            if s.tls {
                b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
                if let Some(certs) = tls_ca(cfg)? {
                    b = b.set_client_to_redis_certificates(certs);
                }
            }
            let client = b.build().map_err(bad)?;
            return Ok(Target::Sentinel(tokio::sync::Mutex::new(client)));
        }
        let shown = super::redacted(&cfg.url);
        let info = cfg
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| RedisError::Url(shown.clone(), e))?;
        let client = match tls_ca(cfg)? {
            None => Client::open(info),
            Some(certs) => Client::build_with_tls(info, certs),
        }
        .map_err(|e| RedisError::Url(shown, e))?;
        Ok(Target::Fixed(client))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// A cluster client builder on the seeds, with the deadlines and the private CA.
    fn cluster_builder(&self, timeout: Duration) -> ClusterClientBuilder {
        let Target::Cluster { seeds, ca } = self else {
            unreachable!("a cluster builder for a cluster target only")
        };
        let mut b = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout);
        if let Some(pem) = ca {
            b = b.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        b
    }

    /// A client for the server to connect to now (for Sentinel: the current master).
    async fn client(&self) -> RedisResult<Client> {
        match self {
            Target::Fixed(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
            Target::Cluster { .. } => unreachable!("a cluster has no single client"),
        }
    }

    /// Opens the multiplexed command connection; `timeout` bounds the whole
    /// connect (Sentinel lookup included) and then each command's answer.
    pub async fn command(&self, timeout: Duration) -> RedisResult<Conn> {
        if self.is_cluster() {
            let client = self.cluster_builder(timeout).build()?;
            return within(timeout, client.get_async_connection())
                .await
                .map(Conn::Cluster);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        within(timeout, async {
            self.client()
                .await?
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
        })
        .await
        .map(Conn::Single)
    }

    /// Opens the sharded PUB/SUB connection of a cluster (RESP3) within `timeout`: its
    /// push messages arrive on the returned receiver.
    pub async fn shard_pubsub(
        &self,
        timeout: Duration,
    ) -> RedisResult<(ClusterConnection, Pushes)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = self
            .cluster_builder(timeout)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        let conn = within(timeout, client.get_async_connection()).await?;
        Ok((conn, rx))
    }

    /// Opens the PUB/SUB connection within `timeout`.
    pub async fn pubsub(&self, timeout: Duration) -> RedisResult<PubSub> {
        within(timeout, async {
            self.client().await?.get_async_pubsub().await
        })
        .await
    }
}

/// The private CA of `engine.redis.tls_ca`, read now; `None` when unset (system roots).
fn tls_ca(cfg: &RedisConfig) -> Result<Option<TlsCertificates>, RedisError> {
    if cfg.tls_ca.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(&cfg.tls_ca)
        .map_err(|e| RedisError::TlsCa(cfg.tls_ca.clone(), e.to_string()))?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// How the target is named in messages and logs (passwords hidden).
pub fn shown(cfg: &RedisConfig) -> String {
    if !cfg.cluster.is_empty() {
        return format!(
            "Redis Cluster seeds {} (engine.redis.cluster)",
            cfg.cluster
                .iter()
                .map(|u| super::redacted(u))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &cfg.sentinel {
        Some(s) => format!(
            "master {:?} of sentinels {} (engine.redis.sentinel)",
            s.master,
            s.urls
                .iter()
                .map(|u| super::redacted(u))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => super::redacted(&cfg.url),
    }
}

/// `fut`, failing with a timed-out I/O error after `timeout`.
pub async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        ))),
    }
}

/// Whether a command's failure means its connection must be replaced: the
/// connection is gone, or the server answers as a read-only replica (a Sentinel
/// failover demoted it).
pub fn is_broken(e: &redis::RedisError) -> bool {
    if e.is_timeout() {
        return false; // a slow answer; the health check catches a hung server
    }
    e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisSentinelConfig;

    #[test]
    fn broken_means_the_connection_must_go() {
        let io = |kind| redis::RedisError::from(std::io::Error::new(kind, "x"));
        assert!(is_broken(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(is_broken(&io(std::io::ErrorKind::BrokenPipe)));
        assert!(
            !is_broken(&io(std::io::ErrorKind::TimedOut)),
            "slow, not gone"
        );
        let readonly = redis::RedisError::from((
            redis::ErrorKind::Extension,
            "script",
            "READONLY You can't write against a read only replica.".to_owned(),
        ));
        assert!(is_broken(&readonly), "a demoted master");
        let script = redis::RedisError::from((
            redis::ErrorKind::Extension,
            "script",
            "ERR bad argument".to_owned(),
        ));
        assert!(!is_broken(&script));
    }

    #[test]
    fn targets_are_shown_without_passwords() {
        let mut cfg = RedisConfig {
            url: "rediss://app:pw-1@h:6380/0".into(),
            ..Default::default()
        };
        assert_eq!(shown(&cfg), "rediss://app:***@h:6380/0");
        cfg.sentinel = Some(RedisSentinelConfig {
            master: "m".into(),
            urls: vec!["redis://:pw-2@s1:26379".into(), "redis://s2:26379".into()],
            password: "pw-3".into(),
            ..Default::default()
        });
        let s = shown(&cfg);
        assert_eq!(
            s,
            "master \"m\" of sentinels redis://:***@s1:26379, redis://s2:26379 (engine.redis.sentinel)"
        );
    }
}
