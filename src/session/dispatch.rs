//! Executes the client commands of one text message (several when batched
//! with newlines) and sends all their replies back in one frame.
//!
//! Order of checks per command: the per-connection rate limit (error 111, then
//! 3013 when the client keeps going); for `publish`, after permission, the
//! namespace's publication size (106) and the per-user and per-channel publish
//! rates of `limits` (111, then 3013); a `connect` must come first (else 3501);
//! a command without an id is a bad request, except `send` and the pong `{}`;
//! then method-specific validation, permission, limits, and the engine call.
//! Client-visible failures use the codes of `protocol::error` and `ws::close`
//! only.
//!
//! Subscriptions made by the batch become live as the batch's reply frame is
//! queued ([`Batch::activate`] → `Hub::activate`, which appends the publications
//! buffered meanwhile to that frame, after the replies), so a client reads its
//! subscribe reply before any publication of the channel, and none twice.

use bytes::Bytes;
use std::rc::Rc;
use std::sync::Arc;

use super::limiter::{Rate, Verdict};
use super::{Env, Phase, Session};
use crate::auth::AuthError;
use crate::channel::{ChannelOptions, Op, Who};
use crate::engine::{EngineError, HistoryQuery, PublishOptions, StreamPosition};
use crate::metrics::CoreMetrics;
use crate::protocol::command::{parse, split_batch};
use crate::protocol::reply;
use crate::protocol::{ErrorCode, Method};
use crate::ws::close::Disconnect;

mod connect;
mod document;
mod presence;
mod subscribe;

pub use subscribe::{server_subscribe, ServerSubscribe};

/// Server version reported in `connect` and `refresh` results.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A command either writes its reply into the batch, fails with an error code, or ends the connection.
pub(crate) enum Outcome {
    Replied,
    Error(ErrorCode),
    Disconnect(Disconnect),
}

/// The replies of one message, and the subscriptions to make live once they are queued.
#[derive(Default)]
pub(crate) struct Batch {
    pub out: Vec<u8>,
    /// (channel, offset covered by the reply).
    pub activate: Vec<(Arc<str>, u64)>,
}

pub async fn on_message(env: &Rc<Env>, s: &Rc<Session>, msg: &mut [u8]) -> Result<(), Disconnect> {
    let mut b = Batch::default();
    let mut result = Ok(());
    let rate = Rate {
        per_s: env.cfg.websocket.command_rate_per_s as f32,
        burst: env.cfg.websocket.command_burst as f32,
    };
    for line in split_batch(msg) {
        let cmd = match parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                tracing::debug!(session = s.id, error = %e, "bad command");
                result = Err(Disconnect::BAD_REQUEST);
                break;
            }
        };
        let mut bucket = s.limiter.get();
        let verdict = bucket.take(crate::exec::now_ms(), rate);
        s.limiter.set(bucket);
        match verdict {
            Verdict::Allow => {}
            Verdict::Refuse => {
                CoreMetrics::inc(&env.metrics.commands_rate_limited);
                if cmd.id != 0 {
                    separate(&mut b.out);
                    reply::error(&mut b.out, cmd.id, ErrorCode::TOO_MANY_REQUESTS);
                }
                continue;
            }
            Verdict::Disconnect => {
                CoreMetrics::inc(&env.metrics.commands_rate_limited);
                result = Err(Disconnect::TOO_MANY_REQUESTS);
                break;
            }
        }
        if cmd.method == Method::Pong || cmd.method == Method::Send {
            continue;
        }
        if cmd.id == 0
            || (s.phase.get() == Phase::Open) != matches!(cmd.method, Method::Connect { .. })
        {
            result = Err(Disconnect::BAD_REQUEST);
            break;
        }
        separate(&mut b.out);
        match execute(env, s, cmd.id, cmd.method, &mut b).await {
            Outcome::Replied => {}
            Outcome::Error(e) => {
                env.metrics.command_error(e.code);
                reply::error(&mut b.out, cmd.id, e);
            }
            Outcome::Disconnect(d) => {
                result = Err(d);
                break;
            }
        }
    }
    // the subscriptions go live with their buffered publications in the replies' frame
    for (channel, after) in std::mem::take(&mut b.activate) {
        env.hub.activate(&channel, s.id, after, &mut b.out);
    }
    if b.out.last() == Some(&b'\n') {
        b.out.pop();
    }
    if !b.out.is_empty() {
        s.enqueue(crate::ws::frame::text(&b.out));
    }
    result
}

fn separate(out: &mut Vec<u8>) {
    if !out.is_empty() && out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
}

async fn execute(
    env: &Rc<Env>,
    s: &Rc<Session>,
    id: u32,
    method: Method,
    b: &mut Batch,
) -> Outcome {
    match method {
        Method::Connect {
            token,
            subs,
            name,
            version,
            ..
        } => {
            let app = connect::App { name, version };
            connect::connect(env, s, id, &token, subs, app, b).await
        }
        Method::Refresh { token } => connect::refresh(env, s, id, &token, &mut b.out),
        Method::Subscribe {
            channel,
            token,
            recover,
            epoch,
            offset,
            flag,
            recoverable,
            ..
        } => {
            let req = subscribe::Request {
                channel: &channel,
                token: &token,
                since: recover.then(|| StreamPosition {
                    offset,
                    epoch: epoch.into(),
                }),
                reject_unrecovered: flag & crate::protocol::command::FLAG_REJECT_UNRECOVERED != 0,
                recoverable,
            };
            subscribe::subscribe(env, s, id, req, b).await
        }
        Method::Unsubscribe { channel } => {
            if let Some(sub) = s.subscriptions().remove(&channel) {
                env.release_subscription(s, &sub);
            }
            reply::result(&mut b.out, id, "unsubscribe", |_| {});
            Outcome::Replied
        }
        Method::SubRefresh { channel, token } => {
            subscribe::sub_refresh(env, s, id, &channel, &token, &mut b.out)
        }
        Method::Publish { channel, data } => publish(env, s, id, &channel, data, &mut b.out).await,
        Method::History {
            channel,
            limit,
            since,
            reverse,
        } => history(env, s, id, &channel, limit, since, reverse, &mut b.out).await,
        Method::Presence { channel } => {
            presence::presence(env, s, id, &channel, false, &mut b.out).await
        }
        Method::PresenceStats { channel } => {
            presence::presence(env, s, id, &channel, true, &mut b.out).await
        }
        Method::Rpc => Outcome::Error(ErrorCode::NOT_AVAILABLE),
        #[cfg(debug_assertions)]
        Method::TestFault(kind) => Outcome::Error(super::faults::inject(&kind)),
        Method::Unknown => Outcome::Error(ErrorCode::METHOD_NOT_FOUND),
        Method::Pong | Method::Send => Outcome::Replied,
    }
}

#[allow(clippy::too_many_arguments)]
async fn history(
    env: &Rc<Env>,
    s: &Session,
    id: u32,
    channel: &str,
    limit: i64,
    since: Option<(u64, String)>,
    reverse: bool,
    out: &mut Vec<u8>,
) -> Outcome {
    let opts = match check(env, s, channel, Op::History) {
        Ok(o) => o,
        Err(e) => return Outcome::Error(e),
    };
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
    match env.engine.history(channel, query, opts.history()).await {
        Ok(h) => {
            reply::result(out, id, "history", |r| {
                reply::publications(
                    r,
                    h.publications.iter().map(crate::engine::Publication::json),
                );
                r.str("epoch", &h.position.epoch)
                    .num("offset", h.position.offset);
            });
            Outcome::Replied
        }
        Err(e) => Outcome::Error(e.code()),
    }
}

async fn publish(
    env: &Rc<Env>,
    s: &Rc<Session>,
    id: u32,
    channel: &str,
    data: Vec<u8>,
    out: &mut Vec<u8>,
) -> Outcome {
    let opts = match check(env, s, channel, Op::Publish) {
        Ok(o) => o,
        Err(e) => return Outcome::Error(e),
    };
    if let Err(o) = publish_limits(env, s, channel, data.len(), opts) {
        return o;
    }
    let info = Some(s.identity.borrow().client_info(&s.client_id()));
    let publish = PublishOptions {
        info,
        history: opts.history(),
        ..Default::default()
    };
    match env
        .engine
        .publish(channel, Bytes::from(data), publish)
        .await
    {
        Ok(_) => {
            reply::result(out, id, "publish", |_| {});
            Outcome::Replied
        }
        Err(e) => Outcome::Error(e.code()),
    }
}

/// The publication size of the namespace (106), then the publish rates per user and per
/// channel (`limits`: 111, then 3013 on persistent abuse); each refusal counted.
fn publish_limits(
    env: &Env,
    s: &Session,
    channel: &str,
    len: usize,
    opts: &ChannelOptions,
) -> Result<(), Outcome> {
    use crate::limits::{PublishVerdict, Refusal};
    if opts.max_publication_bytes > 0 && len > opts.max_publication_bytes {
        Refusal::PublicationSize.counted(&env.metrics);
        return Err(Outcome::Error(ErrorCode::LIMIT_EXCEEDED));
    }
    let user = s.identity.borrow().user.clone();
    let who = if user.is_empty() {
        s.client_id()
    } else {
        user.into()
    };
    match s.socket().lease().limits().publish(&who, channel) {
        PublishVerdict::Allow => Ok(()),
        PublishVerdict::Refuse(r) => {
            r.counted(&env.metrics);
            Err(Outcome::Error(ErrorCode::TOO_MANY_REQUESTS))
        }
        PublishVerdict::Disconnect(r) => {
            r.counted(&env.metrics);
            Err(Outcome::Disconnect(Disconnect::TOO_MANY_REQUESTS))
        }
    }
}

/// The one permission gate of client commands: asks the channel policy whether this session
/// may do `op` on `channel` (counting refusals by reason) and returns the channel's options.
pub(crate) fn check<'e>(
    env: &'e Env,
    s: &Session,
    channel: &str,
    op: Op,
) -> Result<&'e ChannelOptions, ErrorCode> {
    let identity = s.identity.borrow();
    let who = Who::client(&identity.user, s.subscriptions().contains(channel));
    env.policy
        .can(&who, channel, op)
        .map_err(|e| e.counted(&env.metrics).code())
}

/// Maps a token failure to the client-visible outcome.
pub(crate) fn token_failure(e: &AuthError) -> Outcome {
    match e {
        AuthError::Expired => Outcome::Error(ErrorCode::TOKEN_EXPIRED),
        // the key set cannot be fetched now: temporary, the SDK retries
        AuthError::Unavailable => Outcome::Error(ErrorCode::INTERNAL),
        _ => Outcome::Disconnect(Disconnect::INVALID_TOKEN),
    }
}

/// Seconds left until `at` (unix seconds), for `ttl` fields.
pub(crate) fn ttl_until(at: u64) -> u64 {
    at.saturating_sub(crate::exec::unix_now())
}

impl From<EngineError> for Outcome {
    fn from(e: EngineError) -> Self {
        Outcome::Error(e.code())
    }
}
