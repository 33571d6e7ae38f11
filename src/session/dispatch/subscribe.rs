//! `subscribe` and `sub_refresh`, and [`establish`]: the one way a subscription
//! is made, shared with the server-side subscriptions of `connect`.
//!
//! `establish` records the subscription on the session, joins the hub (pending:
//! publications are buffered), reads the stream position or recovers missed
//! publications, adds presence and announces the join; any failure on the way
//! rolls every step back, so a refused subscribe leaves nothing behind (a retry
//! does not get 105). Recovery is exact (`engine::recovery`): a position ahead
//! of the stream, from another epoch or out of history is `recovered: false`, or
//! error 112 when the client set the reject-unrecovered flag.
//!
//! A subscription token's expiry (`exp`/`expire_at`) is kept per subscription:
//! the reply carries `expires`/`ttl`, `sub_refresh` extends it, and the heartbeat
//! sweep unsubscribes it (2501) when it passes.

use std::rc::Rc;
use std::sync::Arc;

use super::document::{establish_pinned, open_document};
use super::{token_failure, ttl_until, Batch, Outcome};
use crate::channel::{ChannelError, ChannelOptions, Op, Who};
use crate::engine::{ChannelEvent, EngineError, HistoryQuery, Publication, StreamPosition};
use crate::protocol::reply::{self, Obj};
use crate::protocol::ErrorCode;
use crate::region::core::Refusal;
use crate::session::{Env, Session, Subscription};
use crate::ws::close::Disconnect;

/// Asks the channel policy whether this session may subscribe, verifying a subscription
/// token when one is given (it must name this channel and this user, else 103). Returns the
/// channel's options and the token's expiry, if any.
fn check_permission<'e>(
    env: &'e Env,
    s: &Session,
    channel: &str,
    token: &str,
) -> Result<(&'e ChannelOptions, Option<u64>), Outcome> {
    let denied = |e: ChannelError| Outcome::Error(e.counted(&env.metrics).code());
    let resolved = env.policy.resolve(channel).map_err(denied)?;
    let identity = s.identity.borrow();
    let mut who = Who::client(&identity.user, false);
    let mut expires_at = None;
    if !token.is_empty() {
        let claims = env
            .verifier
            .verify_subscription(token)
            .map_err(|e| token_failure(&e))?;
        if claims.channel != channel || *claims.user != *identity.user {
            return Err(denied(ChannelError::PermissionDenied));
        }
        who = who.with_token();
        expires_at = claims.expires_at();
    }
    let options = resolved.allows(&who, Op::Subscribe).map_err(denied)?;
    Ok((options, expires_at))
}

pub(super) struct Request<'a> {
    pub channel: &'a str,
    pub token: &'a str,
    pub since: Option<StreamPosition>,
    pub reject_unrecovered: bool,
    /// The client asked for positions (`recoverable`).
    pub recoverable: bool,
}

/// A subscription made: what its reply reports.
pub(super) struct Established {
    pub key: Arc<str>,
    pub recoverable: bool,
    pub position: Option<StreamPosition>,
    /// `Some(recovered)` when the client asked to recover.
    pub recovered: Option<bool>,
    pub publications: Vec<Publication>,
    pub expires_at: Option<u64>,
}

impl Established {
    /// The offset the reply covers: buffered publications up to it are not sent again.
    pub fn covered(&self) -> u64 {
        self.position.as_ref().map_or(0, |p| p.offset)
    }

    /// Writes the subscribe-result fields (also used inside connect's `subs`).
    pub fn write(&self, r: &mut Obj<'_>) {
        if let Some(at) = self.expires_at {
            r.bool("expires", true).num("ttl", ttl_until(at));
        }
        if let Some(p) = &self.position {
            if self.recoverable {
                r.bool("recoverable", true);
            }
            r.str("epoch", &p.epoch).num("offset", p.offset);
        }
        if let Some(recovered) = self.recovered {
            r.bool("was_recovering", true).bool("recovered", recovered);
        }
        if !self.publications.is_empty() {
            reply::publications(r, self.publications.iter().map(Publication::json));
        }
    }
}

/// What the subscriber asks of [`establish`].
pub(super) struct Ask {
    /// The client asked for positions (`recoverable: true`).
    pub recoverable: bool,
    /// Where to recover from (`recover: true`).
    pub since: Option<StreamPosition>,
    /// Error 112 instead of `recovered: false` (the SDK's getState flow).
    pub reject_unrecovered: bool,
    /// The subscription token's expiry.
    pub expires_at: Option<u64>,
}

/// Makes `s` a subscriber of `channel` (see the module doc); rolls back on any error.
pub(super) async fn establish(
    env: &Rc<Env>,
    s: &Rc<Session>,
    channel: &str,
    opts: &ChannelOptions,
    ask: Ask,
) -> Result<Established, EngineError> {
    let Ask {
        recoverable: asked_recoverable,
        since,
        reject_unrecovered,
        expires_at,
    } = ask;
    let key: Arc<str> = Arc::from(channel);
    s.subscriptions().add(Subscription {
        channel: key.clone(),
        expires_at: expires_at.map_or(0, |t| t.min(u32::MAX as u64) as u32),
        presence: false,
        join_leave: false,
        position: None,
        pinned: false,
    });
    let rollback = |s: &Rc<Session>| {
        if let Some(sub) = s.subscriptions().remove(channel) {
            env.release_subscription(s, &sub);
        }
    };
    if let Err(e) = env.hub.join(channel, s).await {
        s.subscriptions().remove(channel);
        return Err(e);
    }
    // positions (and recovery) where the namespace allows it and the client asked or the
    // namespace forces it; a refused recovery still subscribes, without recovering
    let user = s.identity.borrow().user.clone();
    let may_recover = env
        .policy
        .can(&Who::client(&user, true), channel, Op::Recover)
        .is_ok();
    let recoverable = may_recover && (asked_recoverable || since.is_some() || opts.force_recovery);
    let since = since.filter(|_| recoverable);
    let mut est = Established {
        key,
        recoverable,
        position: None,
        recovered: None,
        publications: Vec::new(),
        expires_at,
    };
    if opts.history().enabled() {
        let read = read_position(env, channel, opts, since, reject_unrecovered).await;
        match read {
            Ok((position, recovered, publications)) => {
                let at = (position.offset, position.epoch.clone());
                s.subscriptions().update(channel, |x| x.position = Some(at));
                est.position = Some(position);
                est.recovered = recovered;
                est.publications = publications;
            }
            Err(e) => {
                rollback(s);
                return Err(e);
            }
        }
    }
    if opts.presence || opts.join_leave {
        let info = env.client_info(s);
        if opts.presence {
            if let Err(e) = env.engine.presence_add(channel, info.clone()).await {
                rollback(s);
                return Err(e);
            }
            s.subscriptions().update(channel, |x| x.presence = true);
        }
        if opts.join_leave {
            s.subscriptions().update(channel, |x| x.join_leave = true);
            let _ = env
                .engine
                .publish_join_leave(channel, ChannelEvent::Join(info))
                .await;
        }
    }
    Ok(est)
}

/// After joining: the stream position, and the recovered publications when asked.
async fn read_position(
    env: &Env,
    channel: &str,
    opts: &ChannelOptions,
    since: Option<StreamPosition>,
    reject_unrecovered: bool,
) -> Result<(StreamPosition, Option<bool>, Vec<Publication>), EngineError> {
    let Some(since) = since else {
        return Ok((
            env.engine.position(channel, opts.history()).await?,
            None,
            Vec::new(),
        ));
    };
    let q = HistoryQuery {
        limit: opts.history().size,
        since: Some(since),
        reverse: false,
    };
    match env.engine.history(channel, q, opts.history()).await {
        Ok(h) => {
            // a stream that does not exist yet reads as empty: create it for this subscriber
            let position = if h.position.offset == 0 && h.publications.is_empty() {
                env.engine.position(channel, opts.history()).await?
            } else {
                h.position
            };
            Ok((position, Some(true), h.publications))
        }
        Err(EngineError::Unrecoverable) if reject_unrecovered => Err(EngineError::Unrecoverable),
        Err(EngineError::Unrecoverable) => Ok((
            env.engine.position(channel, opts.history()).await?,
            Some(false),
            Vec::new(),
        )),
        Err(e) => Err(e),
    }
}

pub(super) async fn subscribe(
    env: &Rc<Env>,
    s: &Rc<Session>,
    id: u32,
    req: Request<'_>,
    b: &mut Batch,
) -> Outcome {
    let (opts, expires_at) = match check_permission(env, s, req.channel, req.token) {
        Ok(found) => found,
        Err(o) => return o,
    };
    if s.subscriptions().contains(req.channel) {
        return Outcome::Error(ErrorCode::ALREADY_SUBSCRIBED);
    }
    if s.subscriptions().len() >= env.cfg.channels.max_subscriptions_per_client {
        return Outcome::Error(ErrorCode::LIMIT_EXCEEDED);
    }
    let ask = Ask {
        recoverable: req.recoverable,
        since: req.since,
        reject_unrecovered: req.reject_unrecovered,
        expires_at,
    };
    let pinned = match open_document(env, s, req.channel, opts).await {
        Ok(pinned) => pinned,
        Err(Refusal::Redirect) => return Outcome::Disconnect(Disconnect::REDIRECT),
        Err(Refusal::Unavailable) => return Outcome::Error(ErrorCode::INTERNAL),
        Err(Refusal::NoStore) => return Outcome::Error(ErrorCode::PERMISSION_DENIED),
    };
    let est = match establish_pinned(env, s, req.channel, opts, ask, pinned).await {
        Ok(est) => est,
        Err(e) => return e.into(),
    };
    reply::result(&mut b.out, id, "subscribe", |r| est.write(r));
    b.activate.push((est.key.clone(), est.covered()));
    Outcome::Replied
}

/// What the API asks of a server-side subscription.
#[derive(Debug, Default, Clone)]
pub struct ServerSubscribe {
    /// JSON for the push's `data`.
    pub data: Option<String>,
    /// Recover the publications after this position (`recovered` tells whether it worked).
    pub since: Option<StreamPosition>,
}

/// A subscription the server makes for a connected session (API `subscribe`): granted, so
/// only the name and namespace must be valid; nothing happens when the session is already
/// subscribed or at `channels.max_subscriptions_per_client`. The client gets a `subscribe`
/// push with the subscribe result's fields (and `data`), then the channel's publications.
pub async fn server_subscribe(
    env: &Rc<Env>,
    s: &Rc<Session>,
    channel: &str,
    asked: ServerSubscribe,
) -> Result<(), EngineError> {
    let opts = env
        .policy
        .resolve(channel)
        .map_err(|_| EngineError::NotAvailable)?
        .options;
    if s.subscriptions().contains(channel)
        || s.subscriptions().len() >= env.cfg.channels.max_subscriptions_per_client
    {
        return Ok(());
    }
    let ask = Ask {
        recoverable: asked.since.is_some(),
        since: asked.since,
        reject_unrecovered: false,
        expires_at: None,
    };
    let pinned = open_document(env, s, channel, opts)
        .await
        .map_err(|r| match r {
            Refusal::Unavailable => EngineError::Internal("document pin unavailable".into()),
            Refusal::Redirect | Refusal::NoStore => EngineError::NotAvailable,
        })?;
    let est = establish_pinned(env, s, channel, opts, ask, pinned).await?;
    let mut push = crate::protocol::push::subscribe_push(channel, |r| {
        est.write(r);
        if let Some(data) = &asked.data {
            r.raw("data", data.as_bytes());
        }
    });
    // publications buffered meanwhile travel in the push's frame, after it (`Hub::activate`)
    env.hub.activate(&est.key, s.id, est.covered(), &mut push);
    s.enqueue(crate::ws::frame::text(&push));
    Ok(())
}

/// `sub_refresh {channel, token}`: a new subscription token extends the subscription.
pub(super) fn sub_refresh(
    env: &Env,
    s: &Session,
    id: u32,
    channel: &str,
    token: &str,
    out: &mut Vec<u8>,
) -> Outcome {
    if !s.subscriptions().contains(channel) {
        return Outcome::Error(ErrorCode::PERMISSION_DENIED);
    }
    let claims = match env.verifier.verify_subscription(token) {
        Ok(c) => c,
        Err(e) => return token_failure(&e),
    };
    if claims.channel != channel || *claims.user != *s.identity.borrow().user {
        return Outcome::Error(ErrorCode::PERMISSION_DENIED);
    }
    let at = claims.expires_at();
    s.subscriptions().update(channel, |x| {
        x.expires_at = at.map_or(0, |t| t.min(u32::MAX as u64) as u32)
    });
    reply::result(out, id, "sub_refresh", |r| {
        if let Some(at) = at {
            r.bool("expires", true).num("ttl", ttl_until(at));
        }
    });
    Outcome::Replied
}
