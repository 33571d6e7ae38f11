//! `subscribe`: permission (the channel policy, after verifying a subscription token),
//! limits, joining the hub, and recovery from history as the channel's namespace allows.

use std::rc::Rc;

use super::Outcome;
use crate::channel::{ChannelError, ChannelOptions, Op, Who};
use crate::engine::{EngineError, HistoryQuery, Publication, StreamPosition};
use crate::protocol::reply::{self, Obj};
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;
use crate::session::Session;

/// Asks the channel policy whether this session may subscribe (verifying a subscription token
/// when one is given: it must name this channel and this user, else 103); `Ok` carries the
/// channel's namespace options.
fn check_permission<'c>(
    core: &'c Core,
    s: &Session,
    channel: &str,
    token: &str,
) -> Result<&'c ChannelOptions, Outcome> {
    let resolved = core
        .policy
        .resolve(channel)
        .map_err(|e| Outcome::Error(core.metrics.channel_denied(e).code()))?;
    let identity = s.identity.borrow();
    let mut who = Who::client(&identity.user, false);
    if !token.is_empty() {
        let claims = core
            .verifier
            .verify_subscription(token)
            .map_err(|e| super::token_failure(&e))?;
        if claims.channel != channel || *claims.user != *identity.user {
            let denied = core.metrics.channel_denied(ChannelError::PermissionDenied);
            return Err(Outcome::Error(denied.code()));
        }
        who = who.with_token();
    }
    resolved
        .allows(&who, Op::Subscribe)
        .map_err(|e| Outcome::Error(core.metrics.channel_denied(e).code()))
}

pub(super) async fn subscribe(
    core: &Rc<Core>,
    s: &Rc<Session>,
    id: u32,
    channel: &str,
    token: &str,
    // the client's stream position, and whether it asked to recover from it
    since: Option<(StreamPosition, bool)>,
    out: &mut Vec<u8>,
) -> Outcome {
    let options = match check_permission(core, s, channel, token) {
        Ok(options) => options,
        Err(o) => return o,
    };
    if s.is_subscribed(channel) {
        return Outcome::Error(ErrorCode::ALREADY_SUBSCRIBED);
    }
    if s.subscription_count() >= core.cfg.channels.max_subscriptions_per_client {
        return Outcome::Error(ErrorCode::LIMIT_EXCEEDED);
    }
    // join first, then read the stream position: nothing published after the reply can be missed
    let key = core.join(channel, s).await;
    s.add_subscription(key);
    if options.history_size == 0 {
        reply::result(out, id, "subscribe", |_| {});
        return Outcome::Replied;
    }
    let user = s.identity.borrow().user.clone();
    let recoverable = core
        .policy
        .can(&Who::client(&user, true), channel, Op::Recover)
        .is_ok();
    // a refused recovery still subscribes, with positions, without recovering (as Centrifugo)
    let since = since
        .filter(|(_, asked)| recoverable && (*asked || options.force_recovery))
        .map(|(position, _)| position);
    let was_recovering = since.is_some();
    let (recovered, publications, position) = match since {
        Some(since) => {
            let q = HistoryQuery {
                limit: options.history_size,
                since: Some(since),
                reverse: false,
            };
            match core.engine.history(channel, q).await {
                Ok(h) => (true, h.publications, h.position),
                Err(EngineError::Unrecoverable) => match core.engine.position(channel).await {
                    Ok(p) => (false, Vec::new(), p),
                    Err(e) => return Outcome::Error(e.code()),
                },
                Err(e) => return Outcome::Error(e.code()),
            }
        }
        None => match core.engine.position(channel).await {
            Ok(p) => (false, Vec::new(), p),
            Err(e) => return Outcome::Error(e.code()),
        },
    };
    reply::result(out, id, "subscribe", |r| {
        r.bool("recoverable", recoverable)
            .str("epoch", &position.epoch)
            .num("offset", position.offset);
        if was_recovering {
            r.bool("was_recovering", true).bool("recovered", recovered);
        }
        if !publications.is_empty() {
            write_publications(r, &publications);
        }
    });
    Outcome::Replied
}

/// `"publications":[{data,offset,info?},...]`
pub(crate) fn write_publications(r: &mut Obj<'_>, pubs: &[Publication]) {
    let arr = r.array("publications");
    for (i, p) in pubs.iter().enumerate() {
        if i > 0 {
            arr.push(b',');
        }
        let mut o = Obj::new(arr);
        reply::publication(&mut o, &p.data, p.offset, p.info.as_deref());
        o.end();
    }
    arr.push(b']');
}
