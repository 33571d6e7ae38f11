//! `presence` and `presence_stats`: who is subscribed to a channel, answered by
//! the engine when the channel's namespace enables presence (else 108), to those
//! the namespace allows (`allow_presence_for_subscriber` / `_for_client`, else 103).

use super::{check, Outcome};
use crate::channel::Op;
use crate::protocol::reply::{self, client_info_obj};
use crate::session::{Env, Session};

/// `stats`: answer `presence_stats` (counts) instead of `presence` (entries).
pub(super) async fn presence(
    env: &Env,
    s: &Session,
    id: u32,
    channel: &str,
    stats: bool,
    out: &mut Vec<u8>,
) -> Outcome {
    if let Err(e) = check(env, s, channel, Op::Presence) {
        return Outcome::Error(e);
    }
    if stats {
        return match env.engine.presence_stats(channel).await {
            Ok(st) => {
                reply::result(out, id, "presence_stats", |r| {
                    r.num("num_clients", st.num_clients)
                        .num("num_users", st.num_users);
                });
                Outcome::Replied
            }
            Err(e) => e.into(),
        };
    }
    match env.engine.presence(channel).await {
        Ok(clients) => {
            reply::result(out, id, "presence", |r| {
                let mut m = r.obj("presence");
                for c in &clients {
                    let mut o = m.obj(&c.client);
                    client_info_obj(
                        &mut o,
                        &c.user,
                        &c.client,
                        c.conn_info.as_deref(),
                        c.chan_info.as_deref(),
                    );
                    o.end();
                }
                m.end();
            });
            Outcome::Replied
        }
        Err(e) => e.into(),
    }
}
