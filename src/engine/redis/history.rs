//! History in Redis: a channel's stream position, history reads (with the recovery rule
//! of [`crate::engine::recovery`], on one atomic snapshot from the `HISTORY` script: top,
//! epoch, oldest retained, publications) and removal. Keys and scripts: [`super::scripts`].

use bytes::Bytes;

use super::super::memory::NO_EPOCH;
use super::super::recovery::missed_after;
use super::{arg, new_epoch, payload, position, scripts, RedisEngine};
use crate::engine::{EngineError, HistoryOptions, HistoryQuery, HistoryResult, StreamPosition};

impl RedisEngine {
    pub(super) async fn stream_position(
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

    pub(super) async fn read_history(
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

    pub(super) async fn drop_history(&self, channel: &str) -> Result<(), EngineError> {
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
}
