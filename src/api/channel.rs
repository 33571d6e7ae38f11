//! Channel reads and history removal through the server API, as Centrifugo's methods:
//!
//! - `POST /api/history {channel, limit?, since?: {offset, epoch}, reverse?}` ->
//!   `{"result":{"publications":[{data,offset,info?,tags?}],"offset":N,"epoch":E}}`. Without
//!   `limit` (or 0) only the stream position is returned; a negative `limit` returns every
//!   retained publication. A `since` no longer in history is error 112.
//! - `POST /api/history_remove {channel}` -> `{"result":{}}`: the stream's publications are
//!   gone; its position (epoch, offset) stays.
//! - `POST /api/presence {channel}` -> `{"result":{"presence":{"<client>":{client,user,
//!   conn_info?,chan_info?}}}}`.
//! - `POST /api/presence_stats {channel}` -> `{"result":{"num_clients":N,"num_users":M}}`.
//!
//! The API is trusted: the channel policy only checks that the namespace is known (102), the
//! name valid (400/107) and history or presence enabled in the namespace (108).

use serde::Deserialize;
use std::rc::Rc;

use crate::channel::{Op, Who};
use crate::engine::{HistoryQuery, Publication, StreamPosition};
use crate::net::http::Response;
use crate::protocol::reply::{self, Obj};
use crate::runtime::core::Core;

#[derive(Deserialize)]
struct Since {
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Deserialize)]
struct HistoryRequest {
    channel: String,
    #[serde(default)]
    limit: i64,
    since: Option<Since>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
struct ChannelRequest {
    channel: String,
}

fn ok(body: impl FnOnce(&mut Obj<'_>)) -> Response {
    let mut out = Vec::new();
    let mut o = Obj::new(&mut out);
    let mut r = o.obj("result");
    body(&mut r);
    r.end();
    o.end();
    Response::json(200, out)
}

pub async fn history(core: &Rc<Core>, body: Vec<u8>) -> Response {
    let Ok(req) = serde_json::from_slice::<HistoryRequest>(&body) else {
        return super::bad_request();
    };
    let opts = match core.policy.can(&Who::API, &req.channel, Op::History) {
        Ok(o) => o,
        Err(e) => return super::refused(core, e),
    };
    let query = HistoryQuery {
        limit: usize::try_from(req.limit).unwrap_or(usize::MAX),
        since: req.since.map(|s| StreamPosition {
            offset: s.offset,
            epoch: s.epoch.into(),
        }),
        reverse: req.reverse,
    };
    match core
        .engine
        .history(&req.channel, query, opts.history())
        .await
    {
        Ok(h) => ok(|r| {
            reply::publications(r, h.publications.iter().map(Publication::json));
            r.num("offset", h.position.offset)
                .str("epoch", &h.position.epoch);
        }),
        Err(e) => super::failed(&e),
    }
}

pub async fn history_remove(core: &Rc<Core>, body: Vec<u8>) -> Response {
    let Ok(req) = serde_json::from_slice::<ChannelRequest>(&body) else {
        return super::bad_request();
    };
    if let Err(e) = core.policy.can(&Who::API, &req.channel, Op::History) {
        return super::refused(core, e);
    }
    match core.engine.remove_history(&req.channel).await {
        Ok(()) => ok(|_| {}),
        Err(e) => super::failed(&e),
    }
}

pub async fn presence(core: &Rc<Core>, body: Vec<u8>, stats: bool) -> Response {
    let Ok(req) = serde_json::from_slice::<ChannelRequest>(&body) else {
        return super::bad_request();
    };
    if let Err(e) = core.policy.can(&Who::API, &req.channel, Op::Presence) {
        return super::refused(core, e);
    }
    if stats {
        return match core.engine.presence_stats(&req.channel).await {
            Ok(st) => ok(|r| {
                r.num("num_clients", st.num_clients)
                    .num("num_users", st.num_users);
            }),
            Err(e) => super::failed(&e),
        };
    }
    match core.engine.presence(&req.channel).await {
        Ok(clients) => ok(|r| {
            let mut m = r.obj("presence");
            for c in &clients {
                let mut o = m.obj(&c.client);
                reply::client_info_obj(
                    &mut o,
                    &c.user,
                    &c.client,
                    c.conn_info.as_deref(),
                    c.chan_info.as_deref(),
                );
                o.end();
            }
            m.end();
        }),
        Err(e) => super::failed(&e),
    }
}
