//! `subscribe`: channel validation, permissions (private channels need a
//! subscription token), limits, joining the hub, and recovery from history.

use std::rc::Rc;

use super::Outcome;
use crate::engine::{EngineError, HistoryQuery, Publication, StreamPosition};
use crate::protocol::reply::{self, Obj};
use crate::protocol::ErrorCode;
use crate::runtime::core::Core;
use crate::session::Session;

/// Name rules shared by subscribe, publish and history.
pub fn check_channel(core: &Core, channel: &str) -> Result<(), ErrorCode> {
    if channel.is_empty() || channel.len() > core.cfg.channels.max_channel_length {
        return Err(ErrorCode::BAD_REQUEST);
    }
    Ok(())
}

fn check_permission(core: &Core, s: &Session, channel: &str, token: &str) -> Result<(), Outcome> {
    let cfg = &core.cfg.channels;
    let private =
        !cfg.private_prefix.is_empty() && channel.starts_with(cfg.private_prefix.as_str());
    if !token.is_empty() {
        let claims = core
            .verifier
            .verify_subscription(token)
            .map_err(|e| super::token_failure(&e))?;
        if claims.channel != channel || *claims.user != *s.identity.borrow().user {
            return Err(Outcome::Error(ErrorCode::PERMISSION_DENIED));
        }
        return Ok(());
    }
    let anonymous = s.identity.borrow().user.is_empty();
    if private || !cfg.allow_client_subscribe || (anonymous && !cfg.allow_anonymous_subscribe) {
        return Err(Outcome::Error(ErrorCode::PERMISSION_DENIED));
    }
    Ok(())
}

pub(super) async fn subscribe(
    core: &Rc<Core>,
    s: &Rc<Session>,
    id: u32,
    channel: &str,
    token: &str,
    since: Option<StreamPosition>,
    out: &mut Vec<u8>,
) -> Outcome {
    if let Err(e) = check_channel(core, channel) {
        return Outcome::Error(e);
    }
    if let Err(o) = check_permission(core, s, channel, token) {
        return o;
    }
    if s.is_subscribed(channel) {
        return Outcome::Error(ErrorCode::ALREADY_SUBSCRIBED);
    }
    if s.subscription_count() >= core.cfg.channels.max_subscriptions_per_client {
        return Outcome::Error(ErrorCode::LIMIT_EXCEEDED);
    }
    // join first, then read the stream position: nothing published after the reply can be missed
    let key = core.join(channel, s).await;
    s.add_subscription(key);
    if core.cfg.engine.history_size == 0 {
        reply::result(out, id, "subscribe", |_| {});
        return Outcome::Replied;
    }
    let was_recovering = since.is_some();
    let (recovered, publications, position) = match since {
        Some(since) => {
            let q = HistoryQuery {
                limit: core.cfg.engine.history_size,
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
        r.bool("recoverable", true)
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
