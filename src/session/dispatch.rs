//! Executes the client commands of one text message (several when batched
//! with newlines) and sends all their replies back in one frame.
//!
//! Order of checks per command: a `connect` must come first (else 3501); a
//! command without an id is a bad request, except `send` and the pong `{}`;
//! then method-specific validation, permission, limits, and the engine call.
//! Client-visible failures use the codes of `protocol::error` and
//! `ws::close` only.

use bytes::Bytes;
use std::rc::Rc;

use super::{Phase, Session};
use crate::auth::AuthError;
use crate::channel::{Op, Who};
use crate::engine::{EngineError, HistoryQuery, PublishOptions, StreamPosition};
use crate::metrics::CoreMetrics;
use crate::protocol::command::{parse, split_batch};
use crate::protocol::reply;
use crate::protocol::{ErrorCode, Method};
use crate::runtime::core::Core;
use crate::ws::close::Disconnect;

mod connect;
mod subscribe;

/// Server version reported in `connect` and `refresh` results.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A command either writes its reply into the batch, fails with an error code, or ends the connection.
pub(crate) enum Outcome {
    Replied,
    Error(ErrorCode),
    Disconnect(Disconnect),
}

pub async fn on_message(
    core: &Rc<Core>,
    s: &Rc<Session>,
    msg: &mut [u8],
) -> Result<(), Disconnect> {
    let mut out = Vec::new();
    let mut result = Ok(());
    for line in split_batch(msg) {
        let cmd = match parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                tracing::debug!(session = s.id, error = %e, "bad command");
                result = Err(Disconnect::BAD_REQUEST);
                break;
            }
        };
        if cmd.method == Method::Pong || cmd.method == Method::Send {
            continue;
        }
        if cmd.id == 0
            || (s.phase.get() == Phase::Open) != matches!(cmd.method, Method::Connect { .. })
        {
            result = Err(Disconnect::BAD_REQUEST);
            break;
        }
        if !out.is_empty() {
            out.push(b'\n');
        }
        match execute(core, s, cmd.id, cmd.method, &mut out).await {
            Outcome::Replied => {}
            Outcome::Error(e) => {
                CoreMetrics::inc(&core.metrics.command_errors);
                reply::error(&mut out, cmd.id, e);
            }
            Outcome::Disconnect(d) => {
                result = Err(d);
                break;
            }
        }
    }
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    if !out.is_empty() {
        s.enqueue(crate::ws::frame::text(&out), &core.flusher);
    }
    result
}

async fn execute(
    core: &Rc<Core>,
    s: &Rc<Session>,
    id: u32,
    method: Method,
    out: &mut Vec<u8>,
) -> Outcome {
    match method {
        Method::Connect { token, .. } => connect::connect(core, s, id, &token, out).await,
        Method::Refresh { token } => connect::refresh(core, s, id, &token, out),
        Method::Subscribe {
            channel,
            token,
            recover,
            epoch,
            offset,
        } => {
            // with a position but no `recover`, the namespace's force_recovery decides
            let since = (recover || !epoch.is_empty()).then(|| {
                let position = StreamPosition {
                    offset,
                    epoch: epoch.into(),
                };
                (position, recover)
            });
            subscribe::subscribe(core, s, id, &channel, &token, since, out).await
        }
        Method::Unsubscribe { channel } => {
            if s.remove_subscription(&channel) {
                core.leave(&channel, s.id);
            }
            reply::result(out, id, "unsubscribe", |_| {});
            Outcome::Replied
        }
        Method::Publish { channel, data } => publish(core, s, id, &channel, data, out).await,
        Method::History {
            channel,
            limit,
            since,
            reverse,
        } => {
            if let Err(o) = check_channel(core, s, &channel, Op::History) {
                return o;
            }
            let query = HistoryQuery {
                limit: if limit < 0 {
                    usize::MAX
                } else {
                    limit as usize
                },
                since: since.map(|(offset, epoch)| StreamPosition {
                    offset,
                    epoch: epoch.into(),
                }),
                reverse,
            };
            match core.engine.history(&channel, query).await {
                Ok(h) => {
                    reply::result(out, id, "history", |r| {
                        subscribe::write_publications(r, &h.publications);
                        r.str("epoch", &h.position.epoch)
                            .num("offset", h.position.offset);
                    });
                    Outcome::Replied
                }
                Err(e) => Outcome::Error(e.code()),
            }
        }
        Method::Presence { channel } | Method::PresenceStats { channel } => {
            if let Err(o) = check_channel(core, s, &channel, Op::Presence) {
                return o;
            }
            match core.engine.presence(&channel).await {
                Ok(_) | Err(EngineError::NotAvailable) => Outcome::Error(ErrorCode::NOT_AVAILABLE),
                Err(e) => Outcome::Error(e.code()),
            }
        }
        Method::SubRefresh { .. } | Method::Rpc => Outcome::Error(ErrorCode::NOT_AVAILABLE),
        Method::Unknown => Outcome::Error(ErrorCode::METHOD_NOT_FOUND),
        Method::Pong | Method::Send => Outcome::Replied,
    }
}

async fn publish(
    core: &Rc<Core>,
    s: &Rc<Session>,
    id: u32,
    channel: &str,
    data: Vec<u8>,
    out: &mut Vec<u8>,
) -> Outcome {
    if let Err(o) = check_channel(core, s, channel, Op::Publish) {
        return o;
    }
    let info = Some(s.identity.borrow().client_info(&s.client_id()));
    match core
        .engine
        .publish(
            channel,
            Bytes::from(data),
            PublishOptions {
                info,
                ..Default::default()
            },
        )
        .await
    {
        Ok(_) => {
            reply::result(out, id, "publish", |_| {});
            Outcome::Replied
        }
        Err(e) => Outcome::Error(e.code()),
    }
}

/// Asks the channel policy whether this session may do `op` on `channel` (counting refusals).
pub(crate) fn check_channel(
    core: &Core,
    s: &Session,
    channel: &str,
    op: Op,
) -> Result<(), Outcome> {
    let identity = s.identity.borrow();
    let who = Who::client(&identity.user, s.is_subscribed(channel));
    match core.policy.can(&who, channel, op) {
        Ok(_) => Ok(()),
        Err(e) => Err(Outcome::Error(core.metrics.channel_denied(e).code())),
    }
}

/// Maps a token failure to the client-visible outcome.
pub(crate) fn token_failure(e: &AuthError) -> Outcome {
    match e {
        AuthError::Expired => Outcome::Error(ErrorCode::TOKEN_EXPIRED),
        _ => Outcome::Disconnect(Disconnect::INVALID_TOKEN),
    }
}

/// Seconds left until `at` (unix seconds), for `ttl` fields.
pub(crate) fn ttl_until(at: u64) -> u64 {
    at.saturating_sub(crate::runtime::unix_now())
}
