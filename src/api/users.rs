//! Commands on a user's live connections through the server API, as Centrifugo's methods;
//! each answers `{"result":{}}` once the command is on its way to every node (applied on
//! this node's cores already with the memory engine; with Redis, every node applies it when
//! it reads the control channel, within milliseconds):
//!
//! - `POST /api/disconnect {user, client?, session?, whitelist?, disconnect?: {code, reason}}`:
//!   closes the user's connections (one client's, when given; not those in `whitelist`) with `code` (default 3503 "force
//!   disconnect"), sent as a `disconnect` push and close frame. The code must be one of the
//!   close table's (PROTOCOL.md) from 3000 up, else 400; its reason text is the table's (a
//!   custom `reason` is not carried).
//! - `POST /api/subscribe {user, channel, client?, session?, data?, recover_since?}`:
//!   subscribes the user's connections to `channel`; each gets a `subscribe` push (with
//!   `epoch`/`offset` when the namespace keeps history, `data` when given, and the
//!   publications after `recover_since: {offset, epoch}` with `recovered`), then the
//!   channel's publications. Connections already subscribed, or at
//!   `channels.max_subscriptions_per_client`, are left as they are.
//! - `POST /api/unsubscribe {user, channel, client?, session?}`: an `unsubscribe` push (code
//!   2000, the SDK stays unsubscribed) and the subscription ends.
//! - `POST /api/refresh {user, client?, session?, expired?, expire_at?}`: `expired: true`
//!   closes the connections with 3005; else `expire_at` (unix seconds) becomes their expiry
//!   (absent: they no longer expire).
//!
//! `session` is accepted as a synonym of `client` (a wiresocket connection has one id). A
//! missing `user` (or `channel`) is 400; an unknown namespace or bad channel name is refused
//! as by `publish`.

use serde::Deserialize;
use std::rc::Rc;

use crate::channel::{Op, Who};
use crate::cluster::Command;
use crate::net::http::Response;
use crate::runtime::core::Core;
use crate::ws::close::Disconnect;

#[derive(Deserialize)]
struct DisconnectAdvice {
    code: u16,
}

#[derive(Deserialize)]
struct Since {
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Deserialize)]
struct UserRequest {
    user: String,
    #[serde(default)]
    channel: String,
    client: Option<String>,
    session: Option<String>,
    disconnect: Option<DisconnectAdvice>,
    #[serde(default)]
    expired: bool,
    expire_at: Option<u64>,
    data: Option<serde_json::Value>,
    recover_since: Option<Since>,
    #[serde(default)]
    whitelist: Vec<String>,
}

impl UserRequest {
    fn client(&mut self) -> Option<String> {
        self.client
            .take()
            .or(self.session.take())
            .filter(|c| !c.is_empty())
    }
}

/// Which API method a [`UserRequest`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Disconnect,
    Subscribe,
    Unsubscribe,
    Refresh,
}

pub async fn call(core: &Rc<Core>, kind: Kind, body: Vec<u8>) -> Response {
    let Ok(mut req) = serde_json::from_slice::<UserRequest>(&body) else {
        return super::bad_request();
    };
    if req.user.is_empty() {
        return super::bad_request();
    }
    let client = req.client();
    let cmd = match kind {
        Kind::Disconnect => {
            let code = req
                .disconnect
                .as_ref()
                .map_or(Disconnect::FORCE_DISCONNECT.code, |d| d.code);
            if code < 3000 || !Disconnect::ALL.iter().any(|d| d.code == code) {
                return super::bad_request();
            }
            Command::Disconnect {
                user: req.user,
                client,
                code,
                whitelist: req.whitelist,
            }
        }
        Kind::Subscribe | Kind::Unsubscribe => {
            if let Err(e) = core.policy.can(&Who::API, &req.channel, Op::Subscribe) {
                return super::refused(core, e);
            }
            if matches!(kind, Kind::Subscribe) {
                Command::Subscribe {
                    user: req.user,
                    channel: req.channel,
                    client,
                    data: req.data.map(|d| d.to_string()),
                    recover_since: req.recover_since.map(|s| (s.offset, s.epoch)),
                }
            } else {
                Command::Unsubscribe {
                    user: req.user,
                    channel: req.channel,
                    client,
                }
            }
        }
        Kind::Refresh => Command::Refresh {
            user: req.user,
            client,
            expired: req.expired,
            expire_at: req.expire_at.filter(|&t| t > 0),
        },
    };
    let Ok(bytes) = serde_json::to_vec(&cmd) else {
        return super::bad_request();
    };
    match core.engine.command(bytes.into()).await {
        Ok(()) => Response::json(200, r#"{"result":{}}"#),
        Err(e) => super::failed(&e),
    }
}
