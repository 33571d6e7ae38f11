//! The embedded single-node engine: channel streams (epoch, offset, bounded
//! history), presence and idempotency results kept in memory, sharded by
//! channel owner core ([`shard`]).
//!
//! Each core's [`MemoryEngine`] is a handle: an operation on a channel this core
//! owns runs on its own shard; any other runs on the owner's shard through
//! [`Mesh::call`] (a `Send` closure that finds the shard in the owner thread's
//! core-local slot), with the mesh's deadline and admission. The mesh never
//! names this engine.

mod shard;

use bytes::Bytes;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::mesh::{owner_of, Mesh};
use crate::metrics::CoreMetrics;
pub use shard::{Limits, Shard, NO_EPOCH};

thread_local! {
    /// This core's shard (one executor per thread), for closures sent by other cores.
    static SHARD: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

fn on_shard<R>(f: impl FnOnce(&Shard) -> R) -> R {
    SHARD.with(|s| {
        f(s.borrow()
            .as_ref()
            .expect("memory engine shard on this core"))
    })
}

/// One core's view of the memory engine.
pub struct MemoryEngine {
    me: usize,
    mesh: Rc<Mesh>,
    shard: Rc<Shard>,
    /// Node commands and surveys go straight to this node's sink (one node).
    control: std::cell::OnceCell<Rc<dyn cluster::ControlSink>>,
}

impl MemoryEngine {
    /// Builds this core's shard and registers it for the other cores' calls.
    pub fn new(
        mesh: Rc<Mesh>,
        sink: Rc<dyn PublicationSink>,
        limits: Arc<Limits>,
        metrics: Arc<CoreMetrics>,
    ) -> Self {
        let shard = Rc::new(Shard::new(sink, mesh.clone(), limits, metrics));
        SHARD.with(|s| *s.borrow_mut() = Some(shard.clone()));
        MemoryEngine {
            me: mesh.me(),
            mesh,
            shard,
            control: Default::default(),
        }
    }

    /// Runs `f` on the owner shard of `channel`.
    async fn on_owner<T: Send + 'static>(
        &self,
        channel: &str,
        f: impl FnOnce(&Shard, &str) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let owner = owner_of(channel, self.mesh.ncores());
        if owner == self.me {
            return Ok(f(&self.shard, channel));
        }
        let channel = channel.to_owned();
        Ok(self
            .mesh
            .call(owner, move || on_shard(|s| f(s, &channel)))
            .await?)
    }
}

#[async_trait::async_trait(?Send)]
impl Engine for MemoryEngine {
    fn set_control_sink(&self, sink: Rc<dyn cluster::ControlSink>) {
        let _ = self.control.set(sink);
    }

    async fn command(&self, cmd: Bytes) -> Result<(), EngineError> {
        let sink = self.control.get().ok_or(EngineError::NotAvailable)?;
        sink.command(cmd).await;
        Ok(())
    }

    async fn survey(&self, request: Bytes) -> Result<Vec<Bytes>, EngineError> {
        let sink = self.control.get().ok_or(EngineError::NotAvailable)?;
        Ok(vec![sink.survey(request).await])
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let published_at = Instant::now();
        self.on_owner(channel, move |s, ch| {
            s.publish(ch, data, opts, published_at)
        })
        .await?
    }

    async fn publish_join_leave(
        &self,
        channel: &str,
        event: ChannelEvent,
    ) -> Result<(), EngineError> {
        self.on_owner(channel, move |s, ch| s.join_leave(ch, event))
            .await
    }

    async fn subscribe_node(&self, channel: &str) -> Result<(), EngineError> {
        // called on the owner core: one node, so every event already reaches its sink
        self.shard.subscribe_node(channel);
        Ok(())
    }

    async fn unsubscribe_node(&self, channel: &str) -> Result<(), EngineError> {
        self.shard.unsubscribe_node(channel);
        Ok(())
    }

    async fn position(
        &self,
        channel: &str,
        history: HistoryOptions,
    ) -> Result<StreamPosition, EngineError> {
        self.on_owner(channel, move |s, ch| s.position(ch, history))
            .await?
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
        history: HistoryOptions,
    ) -> Result<HistoryResult, EngineError> {
        self.on_owner(channel, move |s, ch| s.history(ch, query, history))
            .await?
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        self.on_owner(channel, |s, ch| s.remove_history(ch)).await
    }

    async fn presence_add(&self, channel: &str, info: ClientInfo) -> Result<(), EngineError> {
        self.on_owner(channel, move |s, ch| {
            s.presence_add(ch, info);
        })
        .await
    }

    async fn presence_remove(&self, channel: &str, client: &str) -> Result<(), EngineError> {
        let client = client.to_owned();
        self.on_owner(channel, move |s, ch| {
            s.presence_remove(ch, &client);
        })
        .await
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, EngineError> {
        self.on_owner(channel, |s, ch| s.presence(ch)).await
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        self.on_owner(channel, |s, ch| s.presence_stats(ch)).await
    }

    fn housekeeping(&self, now: Instant) {
        self.shard.housekeeping(now);
    }
}
