//! `connect` and `refresh`: token verification, identity, connection expiry,
//! and the server-side subscriptions named in the token's `channels` claim.

use std::rc::Rc;

use super::{token_failure, ttl_until, Outcome, VERSION};
use crate::protocol::reply::{self, Obj};

use crate::runtime::core::Core;
use crate::session::{Identity, Phase, Session};
use crate::ws::close::Disconnect;

pub(super) async fn connect(
    core: &Rc<Core>,
    s: &Rc<Session>,
    id: u32,
    token: &str,
    out: &mut Vec<u8>,
) -> Outcome {
    let (expires_at, user, info, channels) = if token.is_empty() {
        if !core.cfg.auth.allow_anonymous {
            return Outcome::Disconnect(Disconnect::INVALID_TOKEN);
        }
        (None, String::new(), None, Vec::new())
    } else {
        match core.verifier.verify_connect(token) {
            Ok(c) => (c.expires_at(), c.user, c.info, c.channels),
            Err(e) => return token_failure(&e),
        }
    };
    let client = s.client_id();
    *s.identity.borrow_mut() = Identity {
        user: user.into_boxed_str(),
        conn_info: info.map(String::into_boxed_str),
    };
    s.expires_at.set(expiry_u32(expires_at));
    // until now this slot held the connect deadline
    s.next_ping_ms
        .set(crate::runtime::now_ms() + core.cfg.websocket.ping_interval_ms);
    s.phase.set(Phase::Connected);

    // server-side subscriptions from the token
    let mut subs = Vec::new();
    for channel in channels
        .iter()
        .take(core.cfg.channels.max_subscriptions_per_client)
    {
        // the signed token grants them: only the name rules and the namespace apply
        if core.policy.resolve(channel).is_ok() && !s.is_subscribed(channel) {
            let key = core.join(channel, s).await;
            s.add_subscription(key);
            subs.push(channel.clone());
        }
    }
    let ping_s = core.cfg.websocket.ping_interval_ms.div_ceil(1000).max(1);
    reply::result(out, id, "connect", |r| {
        r.str("client", &client)
            .str("version", VERSION)
            .num("ping", ping_s)
            .bool("pong", true);
        write_expiry(r, expires_at);
        if !subs.is_empty() {
            let mut m = r.obj("subs");
            for ch in &subs {
                m.obj(ch).end();
            }
            m.end();
        }
    });
    Outcome::Replied
}

pub(super) fn refresh(
    core: &Rc<Core>,
    s: &Rc<Session>,
    id: u32,
    token: &str,
    out: &mut Vec<u8>,
) -> Outcome {
    let claims = match core.verifier.verify_connect(token) {
        Ok(c) => c,
        Err(e) => return token_failure(&e),
    };
    if *claims.user != *s.identity.borrow().user {
        return Outcome::Disconnect(Disconnect::INVALID_TOKEN);
    }
    let expires_at = claims.expires_at();
    s.expires_at.set(expiry_u32(expires_at));
    reply::result(out, id, "refresh", |r| {
        r.str("client", &s.client_id()).str("version", VERSION);
        write_expiry(r, expires_at);
    });
    Outcome::Replied
}

fn expiry_u32(at: Option<u64>) -> u32 {
    at.map_or(0, |t| t.min(u32::MAX as u64) as u32)
}

fn write_expiry(r: &mut Obj<'_>, expires_at: Option<u64>) {
    if let Some(at) = expires_at {
        r.bool("expires", true).num("ttl", ttl_until(at));
    }
}
