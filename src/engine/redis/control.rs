//! The node-to-node control channel of the Redis engine: node commands and surveys
//! (`engine::cluster`) travel over one PUB/SUB channel every node subscribes to once.
//!
//! The control channel is an engine channel with a reserved name ([`CHANNEL`], a NUL byte
//! first) routed like any other by the I/O thread: core 0 subscribes it at start, the I/O
//! thread resubscribes it after a PUB/SUB reconnect with every other channel (the reset it
//! then sends is ignored: a command sent while the connection was down is lost, as any
//! PUB/SUB message; the API caller got its answer when it was published), and core 0's inbox
//! hands its messages to [`on_message`] instead of the hub. The Redis engine refuses the
//! reserved name for publishing, join/leave and subscriptions, so no client can reach it.
//!
//! Messages are publications outside the stream (`P0::<body>`, [`super::payload`]) whose data
//! is `C<command>` or `S<id>:<request>`. A survey's answers are `RPUSH`ed by every node to
//! `p:survey:<id>` (expiring after a minute); the asker waits until as many answers as live
//! nodes in the registry arrived, or `engine.redis.timeout_ms` passed, and takes them.

use bytes::Bytes;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{payload, registry, RedisNode};
use crate::engine::cluster::ControlSink;
use crate::engine::EngineError;

/// The reserved engine channel of node commands (no client channel starts with NUL: the
/// engine refuses it).
pub const CHANNEL: &str = "\u{0}control";

/// Whether `channel` is the reserved control channel.
pub fn reserved(channel: &str) -> bool {
    channel.starts_with('\u{0}')
}

fn pubsub_name(node: &RedisNode) -> String {
    super::scripts::Keys::new(&node.cfg.prefix, CHANNEL).pubsub
}

fn survey_key(node: &RedisNode, id: &str) -> String {
    format!("{}:survey:{id}", node.cfg.prefix)
}

/// Subscribes the node to the control channel (core 0, at start), retrying until it works.
pub async fn subscribe(node: Arc<RedisNode>, core: usize) {
    let mut wait = Duration::from_millis(100);
    loop {
        match node.subscribe(CHANNEL, core).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing the Redis control channel failed; retrying")
            }
        }
        crate::exec::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

async fn publish(node: &RedisNode, data: Vec<u8>) -> Result<(), EngineError> {
    let mut msg = b"P0::".to_vec();
    msg.extend_from_slice(&payload::body(&data, None, None));
    let name = pubsub_name(node);
    let publish = node.publish_command();
    node.run(move |mut conn| async move {
        ::redis::cmd(publish)
            .arg(name)
            .arg(msg)
            .query_async::<i64>(&mut conn)
            .await
    })
    .await
    .map(drop)
}

/// Sends a command to every node.
pub async fn command(node: &RedisNode, cmd: Bytes) -> Result<(), EngineError> {
    let mut data = Vec::with_capacity(cmd.len() + 1);
    data.push(b'C');
    data.extend_from_slice(&cmd);
    publish(node, data).await
}

/// Asks every live node and collects their answers (see the module doc).
pub async fn survey(node: &RedisNode, request: Bytes) -> Result<Vec<Bytes>, EngineError> {
    let expected = registry::nodes(node).await?.len().max(1);
    let id = format!("{:016x}", fastrand::u64(..));
    let key = survey_key(node, &id);
    let mut data = format!("S{id}:").into_bytes();
    data.extend_from_slice(&request);
    publish(node, data).await?;
    let deadline = std::time::Instant::now() + Duration::from_millis(node.cfg.timeout_ms);
    // answers usually arrive within a millisecond or two: poll soon, then less often
    let mut wait = Duration::from_millis(1);
    loop {
        let k = key.clone();
        let got: usize =
            node.run(move |mut conn| async move {
                ::redis::cmd("LLEN").arg(k).query_async(&mut conn).await
            })
            .await?;
        if got >= expected || std::time::Instant::now() >= deadline {
            break;
        }
        crate::exec::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(20));
    }
    let answers: Vec<Vec<u8>> = node
        .run(move |mut conn| async move {
            let (answers, _): (Vec<Vec<u8>>, i64) = ::redis::pipe()
                .atomic()
                .cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            Ok(answers)
        })
        .await?;
    Ok(answers.into_iter().map(Bytes::from).collect())
}

/// One message of the control channel, on core 0: runs the command, or answers the survey.
pub fn on_message(node: &Arc<RedisNode>, sink: Option<Rc<dyn ControlSink>>, data: Bytes) {
    let Some(sink) = sink else {
        return; // not wired yet: the node is starting
    };
    match data.first() {
        Some(b'C') => {
            let cmd = data.slice(1..);
            crate::exec::spawn(async move { sink.command(cmd).await });
        }
        Some(b'S') => {
            let Some(colon) = data.iter().position(|&b| b == b':') else {
                return;
            };
            let id = String::from_utf8_lossy(&data[1..colon]).into_owned();
            let request = data.slice(colon + 1..);
            let node = node.clone();
            crate::exec::spawn(async move {
                let answer = sink.survey(request).await;
                let key = survey_key(&node, &id);
                let r = node
                    .run(move |mut conn| async move {
                        ::redis::pipe()
                            .cmd("RPUSH")
                            .arg(&key)
                            .arg(answer.to_vec())
                            .ignore()
                            .cmd("EXPIRE")
                            .arg(&key)
                            .arg(60)
                            .ignore()
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await;
                if let Err(e) = r {
                    tracing::debug!(error = %e, "answering a survey failed");
                }
            });
        }
        _ => tracing::warn!("unknown control message ignored"),
    }
}
