//! `connect` and `refresh`: token verification, identity, connection expiry,
//! and the server-side subscriptions named in the token's `channels` claim —
//! made with [`super::subscribe::establish`], recovered from the positions the
//! client sends in `connect.subs` after a reconnect, and reported in the
//! reply's `subs` with `recoverable`, `epoch` and `offset`, so a publication made
//! during a reconnect gap is recovered (or flagged `recovered: false`), never
//! silently lost. The user's connection count (`limits`, `server.max_connections_per_user`)
//! is taken here: beyond it, disconnect 3504. Where the engine counts a user's connections
//! cluster-wide (Redis), the cap is asked there too, so it holds across nodes; an engine
//! that cannot answer makes the connect fail with the temporary error 100 (the SDK retries).

use std::rc::Rc;

use super::document::{establish_pinned, open_document};
use super::subscribe::{Ask, Established};
use super::{token_failure, ttl_until, Batch, Outcome, VERSION};
use crate::channel::{Op, Who};
use crate::engine::StreamPosition;
use crate::protocol::command::Since;
use crate::protocol::reply::{self, Obj};
use crate::region::core::Refusal;
use crate::session::{Env, Identity, Phase, Session};
use crate::ws::close::Disconnect;

/// The SDK name and version a client sent in `connect` (kept for its session record).
pub(super) struct App {
    pub name: String,
    pub version: String,
}

/// Longest `connect.name` / `connect.version` kept (longer ones are cut).
const MAX_APP_FIELD: usize = 64;

impl App {
    /// `name` and `version`, each cut to [`MAX_APP_FIELD`] bytes and stripped of newlines,
    /// joined by a newline (`Identity::app`); `None` when both are empty.
    fn joined(self) -> Option<Box<str>> {
        let cut = |v: &str| -> String {
            let mut end = v.len().min(MAX_APP_FIELD);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v[..end].replace(['\n', '\r'], " ")
        };
        if self.name.is_empty() && self.version.is_empty() {
            return None;
        }
        Some(format!("{}\n{}", cut(&self.name), cut(&self.version)).into_boxed_str())
    }
}

pub(super) async fn connect(
    env: &Rc<Env>,
    s: &Rc<Session>,
    id: u32,
    token: &str,
    client_subs: Vec<(String, Since)>,
    app: App,
    b: &mut Batch,
) -> Outcome {
    // an empty token is the anonymous user where allowed, else refused (and counted) by the
    // verifier like any other bad token
    let (expires_at, user, info, mut channels, db_code) = match env.verifier.verify_connect(token) {
        Ok(c) => (c.expires_at(), c.user, c.info, c.channels, c.db_code),
        Err(e) => return token_failure(&e),
    };
    if let Err(r) = s.socket().lease().acquire_user(&user) {
        r.counted(&env.metrics);
        return Outcome::Disconnect(Disconnect::CONNECTION_LIMIT); // limits: 3504, terminal
    }
    if !env.admit_connected(s) {
        return Outcome::Disconnect(Disconnect::TOO_MANY_REQUESTS); // node full: retry later
    }
    let max = env.cfg.server.max_connections_per_user;
    if max > 0 && !user.is_empty() {
        match env
            .engine
            .add_user_connection(&user, &s.client_id(), max)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                crate::limits::Refusal::UserConnections.counted(&env.metrics);
                return Outcome::Disconnect(Disconnect::CONNECTION_LIMIT);
            }
            Err(e) => return e.into(),
        }
    }
    let client = s.client_id();
    *s.identity.borrow_mut() = Identity {
        user: user.into_boxed_str(),
        conn_info: info.map(String::into_boxed_str),
        app: app.joined(),
    };
    s.connected_at
        .set(crate::exec::unix_now().min(u32::MAX as u64) as u32);
    s.expires_at.set(expiry_u32(expires_at));
    // until now this slot held the connect deadline
    s.next_ping_ms
        .set(crate::exec::now_ms() + env.cfg.websocket.ping_interval_ms);
    s.phase.set(Phase::Connected);

    // the document of the connection URL first, then the token's channels
    if let Some(pins) = &env.pins {
        pins.note_db_code(s.id, db_code);
        if let Some(doc) = pins.url_document(s.id) {
            if let Err(d) = url_document_allowed(env, s, &doc) {
                return Outcome::Disconnect(d);
            }
            channels.retain(|c| *c != doc);
            channels.insert(0, doc);
        }
    }

    // server-side subscriptions from the token (and the URL's document)
    let mut subs: Vec<(String, Established)> = Vec::new();
    let mut redirect = false;
    for channel in channels
        .iter()
        .take(env.cfg.channels.max_subscriptions_per_client)
    {
        // granted by the token: only the name and namespace must be valid
        let opts = match env.policy.resolve(channel) {
            Ok(r) => r.options,
            Err(e) => {
                e.counted(&env.metrics);
                continue;
            }
        };
        if s.subscriptions().contains(channel) {
            continue;
        }
        let since = client_subs
            .iter()
            .find(|(c, since)| c == channel && since.recover)
            .map(|(_, since)| StreamPosition {
                offset: since.offset,
                epoch: since.epoch.as_str().into(),
            });
        let ask = Ask {
            recoverable: false,
            since,
            reject_unrecovered: false,
            expires_at: None,
        };
        let pinned = match open_document(env, s, channel, opts).await {
            Ok(pinned) => pinned,
            Err(Refusal::Redirect) => {
                redirect = true;
                break;
            }
            // the SDK reconnects after 3004 and tries again
            Err(Refusal::Unavailable) => return Outcome::Disconnect(Disconnect::INTERNAL),
            Err(Refusal::NoStore) => return Outcome::Disconnect(Disconnect::PERMISSION_DENIED),
        };
        match establish_pinned(env, s, channel, opts, ask, pinned).await {
            Ok(est) => subs.push((channel.clone(), est)),
            Err(e) => {
                tracing::warn!(session = s.id, %channel, error = %e, "server-side subscription failed");
            }
        }
    }
    if redirect {
        // Connected first, then closed with 4009: a reconnect-class close *during* connect is
        // retried silently by the SDKs (centrifuge-js stays "connecting" and reconnects to
        // the same URL), while one after it is reported (`connecting`, code 4009, reason).
        subs.clear();
    }
    let ping_s = env.cfg.websocket.ping_interval_ms.div_ceil(1000).max(1);
    reply::result(&mut b.out, id, "connect", |r| {
        r.str("client", &client)
            .str("version", VERSION)
            .num("ping", ping_s)
            .bool("pong", true)
            .str("node", &env.node_name);
        write_expiry(r, expires_at);
        if !subs.is_empty() {
            let mut m = r.obj("subs");
            for (ch, est) in &subs {
                let mut o = m.obj(ch);
                est.write(&mut o);
                o.end();
            }
            m.end();
        }
    });
    if redirect {
        return Outcome::Disconnect(Disconnect::REDIRECT);
    }
    for (_, est) in subs {
        b.activate.push((est.key.clone(), est.covered()));
    }
    Outcome::Replied
}

/// The document named in the connection URL must be a channel of a `pinned` namespace (else
/// 3501) that this user may subscribe to without a subscription token (else 3507).
fn url_document_allowed(env: &Env, s: &Session, doc: &str) -> Result<(), Disconnect> {
    let resolved = match env.policy.resolve(doc) {
        Ok(r) if r.options.pinned => r,
        Ok(_) => return Err(Disconnect::BAD_REQUEST),
        Err(e) => {
            e.counted(&env.metrics);
            return Err(Disconnect::BAD_REQUEST);
        }
    };
    let identity = s.identity.borrow();
    resolved
        .allows(&Who::client(&identity.user, false), Op::Subscribe)
        .map(drop)
        .map_err(|e| {
            e.counted(&env.metrics);
            Disconnect::PERMISSION_DENIED
        })
}

pub(super) fn refresh(env: &Env, s: &Session, id: u32, token: &str, out: &mut Vec<u8>) -> Outcome {
    let claims = match env.verifier.verify_connect(token) {
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
