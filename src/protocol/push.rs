//! Pushes: what the server sends without a command (`{"push":{...}}`), each
//! encoded once and shared by every receiver: publications, join/leave,
//! server-side unsubscribes and disconnect advice.
//!
//! Unsubscribe codes follow Centrifugo: below 2500 the SDK stays unsubscribed;
//! 2500 and above make it resubscribe (with recovery when it has a position).

use super::reply::{client_info_obj, publication, Obj, PublicationJson};
use crate::ws::close::Disconnect;

/// A server-side unsubscribe reason (`{"push":{"channel":C,"unsubscribe":{code,reason}}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe {
    pub code: u32,
    pub reason: &'static str,
}

impl Unsubscribe {
    /// The server (API) unsubscribed the client; the SDK does not resubscribe.
    pub const SERVER: Unsubscribe = Unsubscribe {
        code: 2000,
        reason: "server unsubscribe",
    };
    /// The stream lost continuity: the SDK resubscribes and recovers.
    pub const INSUFFICIENT_STATE: Unsubscribe = Unsubscribe {
        code: 2500,
        reason: "insufficient state",
    };
    /// The subscription token expired without `sub_refresh`: the SDK resubscribes with a new token.
    pub const EXPIRED: Unsubscribe = Unsubscribe {
        code: 2501,
        reason: "subscription expired",
    };
}

fn push(channel: Option<&str>, kind: &str, body: impl FnOnce(&mut Obj<'_>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    let mut o = Obj::new(&mut out);
    let mut p = o.obj("push");
    if let Some(channel) = channel {
        p.str("channel", channel);
    }
    let mut inner = p.obj(kind);
    body(&mut inner);
    inner.end();
    p.end();
    o.end();
    out
}

/// `{"push":{"channel":C,"pub":{..}}}` — the payload of the once-per-publication frame.
pub fn publication_push(channel: &str, p: &PublicationJson<'_>) -> Vec<u8> {
    push(Some(channel), "pub", |o| publication(o, p))
}

/// `{"push":{"channel":C,"join":{"info":{..}}}}` (`leave` alike).
pub fn join_leave_push(channel: &str, join: bool, info: &ClientInfoJson<'_>) -> Vec<u8> {
    push(Some(channel), if join { "join" } else { "leave" }, |o| {
        let mut i = o.obj("info");
        client_info_obj(
            &mut i,
            info.user,
            info.client,
            info.conn_info,
            info.chan_info,
        );
        i.end();
    })
}

/// The parts of a ClientInfo as already-encoded JSON.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfoJson<'a> {
    pub user: &'a str,
    pub client: &'a str,
    pub conn_info: Option<&'a [u8]>,
    pub chan_info: Option<&'a [u8]>,
}

pub fn unsubscribe_push(channel: &str, u: Unsubscribe) -> Vec<u8> {
    push(Some(channel), "unsubscribe", |o| {
        o.num("code", u.code as u64).str("reason", u.reason);
    })
}

/// `{"push":{"channel":C,"subscribe":{..}}}`: the server subscribed the client (`body` writes
/// the subscribe result's fields).
pub fn subscribe_push(channel: &str, body: impl FnOnce(&mut Obj<'_>)) -> Vec<u8> {
    push(Some(channel), "subscribe", body)
}

/// `{"push":{"disconnect":{"code":N,"reason":R,"reconnect":B}}}`; `reason` is `d.reason`
/// except where the close names more (4009: the redirect URL).
pub fn disconnect_push(d: Disconnect, reason: &str) -> Vec<u8> {
    push(None, "disconnect", |o| {
        o.num("code", d.code as u64)
            .str("reason", reason)
            .bool("reconnect", d.reconnect);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn writes_pushes() {
        let p = publication_push(
            "news",
            &PublicationJson {
                data: br#"{"x":1}"#,
                offset: 4,
                info: Some(br#"{"user":"u"}"#),
                tags: Some(br#"{"k":"v"}"#),
            },
        );
        assert_eq!(
            v(&p),
            json!({"push":{"channel":"news","pub":{"data":{"x":1},"offset":4,"info":{"user":"u"},"tags":{"k":"v"}}}})
        );
        let d = disconnect_push(Disconnect::SHUTDOWN, Disconnect::SHUTDOWN.reason);
        assert_eq!(v(&d)["push"]["disconnect"]["code"], 3001);
        assert_eq!(v(&d)["push"]["disconnect"]["reconnect"], true);
        let u = unsubscribe_push("c", Unsubscribe::INSUFFICIENT_STATE);
        assert_eq!(
            v(&u),
            json!({"push":{"channel":"c","unsubscribe":{"code":2500,"reason":"insufficient state"}}})
        );
        let j = join_leave_push(
            "c",
            false,
            &ClientInfoJson {
                user: "u",
                client: "1",
                conn_info: None,
                chan_info: None,
            },
        );
        assert_eq!(
            v(&j),
            json!({"push":{"channel":"c","leave":{"info":{"user":"u","client":"1"}}}})
        );
    }
}
