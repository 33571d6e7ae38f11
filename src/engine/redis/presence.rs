//! Presence in Redis: the engine's presence operations (see [`super::scripts`] for the
//! keys: a hash of entries, a sorted set of their expiry times and a per-user count, so
//! `presence_stats` is cheap and expired entries are dropped by every script first).
//!
//! Entries expire after `engine.redis.presence_ttl_s`; each core re-adds its clients'
//! entries each third of it from the heartbeat sweep, in pipelines of
//! [`PRESENCE_PIPELINE`] script calls, so only the entries of a node that died expire.

use std::sync::Arc;

use bytes::Bytes;

use super::scripts::{self, Keys};
use super::{arg, payload, RedisEngine};
use crate::engine::{ClientInfo, EngineError, PresenceStats};

/// Presence entries refreshed per pipeline (one round trip).
pub(super) const PRESENCE_PIPELINE: usize = 512;

fn presence_keys(k: &Keys) -> Vec<String> {
    vec![
        k.presence.clone(),
        k.presence_exp.clone(),
        k.presence_users.clone(),
    ]
}

impl RedisEngine {
    /// The presence scripts' ARGV for `info` at `now`: now, client, entry, expires at,
    /// keys TTL.
    fn presence_entry(&self, now: u64, info: ClientInfo) -> [Vec<u8>; 5] {
        let ttl = self.node.cfg.presence_ttl_s;
        let entry = payload::client_info(
            info.user.as_bytes(),
            info.client.as_bytes(),
            info.conn_info.as_deref().unwrap_or_default(),
            info.chan_info.as_deref().unwrap_or_default(),
        );
        [
            arg(now),
            info.client.into_bytes(),
            entry,
            arg(now + ttl),
            arg(ttl),
        ]
    }

    pub(super) async fn add_present(
        &self,
        channel: &str,
        info: ClientInfo,
    ) -> Result<(), EngineError> {
        let k = self.keys(channel);
        let args = self.presence_entry(crate::exec::unix_now(), info).to_vec();
        self.script::<i64>(&scripts::PRESENCE_ADD, presence_keys(&k), args)
            .await
            .map(drop)
    }

    /// One pipeline of `EVALSHA` per [`PRESENCE_PIPELINE`] entries (the script is loaded
    /// first, so a Redis that restarted meanwhile costs one failed refresh, retried at the
    /// next one): a core with 100,000 present clients refreshes them in 196 round trips,
    /// not 100,000.
    pub(super) async fn refresh_present(
        &self,
        entries: Vec<(Arc<str>, ClientInfo)>,
    ) -> Result<(), EngineError> {
        let now = crate::exec::unix_now();
        let mut batch = Vec::with_capacity(entries.len().min(PRESENCE_PIPELINE));
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            batch.clear();
            for (channel, info) in entries.by_ref().take(PRESENCE_PIPELINE) {
                let args = self.presence_entry(now, info);
                batch.push((presence_keys(&self.keys(&channel)), args));
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

    pub(super) async fn remove_present(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<(), EngineError> {
        let k = self.keys(channel);
        let args = vec![arg(crate::exec::unix_now()), arg(client)];
        self.script::<i64>(&scripts::PRESENCE_REMOVE, presence_keys(&k), args)
            .await
            .map(drop)
    }

    pub(super) async fn present(&self, channel: &str) -> Result<Vec<ClientInfo>, EngineError> {
        let k = self.keys(channel);
        let args = vec![arg(crate::exec::unix_now())];
        let raw: Vec<Vec<u8>> = self
            .script(&scripts::PRESENCE_GET, presence_keys(&k), args)
            .await?;
        raw.into_iter()
            .map(|v| {
                payload::decode_client_info(&Bytes::from(v))
                    .map_err(|e| EngineError::Internal(e.to_string()))
            })
            .collect()
    }

    pub(super) async fn present_counts(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let k = self.keys(channel);
        let args = vec![arg(crate::exec::unix_now())];
        let (num_clients, num_users): (u64, u64) = self
            .script(&scripts::PRESENCE_STATS, presence_keys(&k), args)
            .await?;
        Ok(PresenceStats {
            num_clients,
            num_users,
        })
    }
}
