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

use super::{channel_options, token_failure, ttl_until, Batch, ChannelOptions, Outcome};
use crate::engine::{ChannelEvent, EngineError, HistoryQuery, Publication, StreamPosition};
use crate::protocol::reply::{self, Obj, PublicationJson};
use crate::protocol::ErrorCode;
use crate::session::{Env, Session, Subscription};

/// Name rules shared by subscribe, publish and history.
pub fn check_channel(env: &Env, channel: &str) -> Result<(), ErrorCode> {
    if channel.is_empty() || channel.len() > env.cfg.channels.max_channel_length {
        return Err(ErrorCode::BAD_REQUEST);
    }
    Ok(())
}

/// Checks the client may subscribe; returns the subscription token's expiry, if any.
fn check_permission(
    env: &Env,
    s: &Session,
    channel: &str,
    token: &str,
) -> Result<Option<u64>, Outcome> {
    let cfg = &env.cfg.channels;
    let private =
        !cfg.private_prefix.is_empty() && channel.starts_with(cfg.private_prefix.as_str());
    if !token.is_empty() {
        let claims = env
            .verifier
            .verify_subscription(token)
            .map_err(|e| token_failure(&e))?;
        if claims.channel != channel || *claims.user != *s.identity.borrow().user {
            return Err(Outcome::Error(ErrorCode::PERMISSION_DENIED));
        }
        return Ok(claims.expires_at());
    }
    let anonymous = s.identity.borrow().user.is_empty();
    if private || !cfg.allow_client_subscribe || (anonymous && !cfg.allow_anonymous_subscribe) {
        return Err(Outcome::Error(ErrorCode::PERMISSION_DENIED));
    }
    Ok(None)
}

pub(super) struct Request<'a> {
    pub channel: &'a str,
    pub token: &'a str,
    pub since: Option<StreamPosition>,
    pub reject_unrecovered: bool,
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
            write_publications(r, &self.publications);
        }
    }
}

/// Makes `s` a subscriber of `channel` (see the module doc); rolls back on any error.
pub(super) async fn establish(
    env: &Rc<Env>,
    s: &Rc<Session>,
    channel: &str,
    opts: ChannelOptions,
    since: Option<StreamPosition>,
    reject_unrecovered: bool,
    expires_at: Option<u64>,
) -> Result<Established, EngineError> {
    let key: Arc<str> = Arc::from(channel);
    s.subscriptions().add(Subscription {
        channel: key.clone(),
        expires_at: expires_at.map_or(0, |t| t.min(u32::MAX as u64) as u32),
        presence: false,
        join_leave: false,
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
    let recoverable = opts.history.enabled() && (since.is_some() || opts.force_recovery);
    let mut est = Established {
        key,
        recoverable,
        position: None,
        recovered: None,
        publications: Vec::new(),
        expires_at,
    };
    if opts.history.enabled() {
        let read = read_position(env, channel, &opts, since, reject_unrecovered).await;
        match read {
            Ok((position, recovered, publications)) => {
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
            env.engine.position(channel, opts.history).await?,
            None,
            Vec::new(),
        ));
    };
    let q = HistoryQuery {
        limit: opts.history.size,
        since: Some(since),
        reverse: false,
    };
    match env.engine.history(channel, q, opts.history).await {
        Ok(h) => {
            // a stream that does not exist yet reads as empty: create it for this subscriber
            let position = if h.position.offset == 0 && h.publications.is_empty() {
                env.engine.position(channel, opts.history).await?
            } else {
                h.position
            };
            Ok((position, Some(true), h.publications))
        }
        Err(EngineError::Unrecoverable) if reject_unrecovered => Err(EngineError::Unrecoverable),
        Err(EngineError::Unrecoverable) => Ok((
            env.engine.position(channel, opts.history).await?,
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
    if let Err(e) = check_channel(env, req.channel) {
        return Outcome::Error(e);
    }
    let expires_at = match check_permission(env, s, req.channel, req.token) {
        Ok(at) => at,
        Err(o) => return o,
    };
    if s.subscriptions().contains(req.channel) {
        return Outcome::Error(ErrorCode::ALREADY_SUBSCRIBED);
    }
    if s.subscriptions().len() >= env.cfg.channels.max_subscriptions_per_client {
        return Outcome::Error(ErrorCode::LIMIT_EXCEEDED);
    }
    let opts = channel_options(env, req.channel);
    let est = match establish(
        env,
        s,
        req.channel,
        opts,
        req.since,
        req.reject_unrecovered,
        expires_at,
    )
    .await
    {
        Ok(est) => est,
        Err(e) => return e.into(),
    };
    reply::result(&mut b.out, id, "subscribe", |r| est.write(r));
    b.activate.push((est.key.clone(), est.covered()));
    Outcome::Replied
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

/// `"publications":[{data,offset,info?,tags?},...]`
pub(crate) fn write_publications(r: &mut Obj<'_>, pubs: &[Publication]) {
    let arr = r.array("publications");
    for (i, p) in pubs.iter().enumerate() {
        if i > 0 {
            arr.push(b',');
        }
        let mut o = Obj::new(arr);
        reply::publication(
            &mut o,
            &PublicationJson {
                data: &p.data,
                offset: p.offset,
                info: p.info.as_deref(),
                tags: p.tags.as_deref(),
            },
        );
        o.end();
    }
    arr.push(b']');
}
