//! The wire dialects the load generator speaks, one per family of system under test, so the same
//! scenario drives wiresocket and every peer in `bench/peers/`:
//!
//! - `centrifugo`: wiresocket (Centrifugo client protocol v2, JSON): `connect` with the token,
//!   one `subscribe` per channel, `{}` heartbeats, publications as `push.pub`; publish with
//!   `POST /api/publish` (`{"channel":..,"data":..}`, `X-API-Key`).
//! - `plain`: the Node `ws` and `tokio-tungstenite` peers: `GET /ws?token=..&channels=a,b`, a
//!   `{"ready":true}` frame once subscribed, each publication one text frame (the body verbatim).
//! - `socketio`: Engine.IO v4 over WebSocket: open packet `0{..}`, `40{"token","channels"}`,
//!   `42["ready"]`, publications `42["pub",DATA]`, heartbeat `2` answered with `3`.
//! - `nchan`: `GET /sub/a,b?token=..` (Nchan verifies no token), subscribed on `101`, each
//!   message one text frame.
//!
//! Peers publish with `POST /publish/<channel>` (body = data, `X-API-Key`); see
//! `bench/peers/README.md` for the contract. The per-client handshake state machine lives in
//! `client`; this module only says what to send and how to read what arrives.

use serde::{Deserialize, Serialize};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Centrifugo,
    Plain,
    Socketio,
    Nchan,
}

/// What one text message from the server means to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A benchmark publication (phase and send timestamp when the payload carries them).
    Pub { phase: Option<u32>, ts: Option<u64> },
    /// The server's application-level heartbeat; `reply` must be sent back.
    Heartbeat { reply: &'static [u8] },
    /// Handshake progress: Engine.IO open packet (send the Socket.IO connect next).
    SioOpen,
    /// Handshake progress: Socket.IO namespace connected.
    SioConnected,
    /// The server says the client is subscribed to everything it asked for.
    Ready,
    /// Centrifugo reply to command `id` (`error` when it failed).
    Reply { id: u32, error: Option<String> },
    /// The server refused or ended the session at the application level (reason text).
    Refused(String),
    /// Anything else (other pushes, acks).
    Other,
}

impl Dialect {
    /// The dialect of a system name used by `compare` (`wiresocket*`, `node-ws`, `tokio-ws`,
    /// `socketio`, `nchan`).
    pub fn of_system(name: &str) -> Option<Dialect> {
        Some(match name {
            n if n.starts_with("wiresocket") => Dialect::Centrifugo,
            "node-ws" | "tokio-ws" => Dialect::Plain,
            "socketio" => Dialect::Socketio,
            "nchan" => Dialect::Nchan,
            _ => return None,
        })
    }

    /// The WebSocket path (with query) a client opens; `base` is the path of the `--url`.
    pub fn upgrade_path(self, base: &str, token: &str, channels: &[String]) -> String {
        let list = channels.join(",");
        match self {
            Dialect::Centrifugo => base.to_string(),
            Dialect::Plain => format!("/ws?token={token}&channels={list}"),
            Dialect::Socketio => "/socket.io/?EIO=4&transport=websocket".into(),
            Dialect::Nchan => format!("/sub/{list}?token={token}"),
        }
    }

    /// Messages to send right after the upgrade.
    pub fn opening(self, token: &str) -> Option<String> {
        match self {
            Dialect::Centrifugo => Some(crate::proto::connect_cmd(1, token)),
            _ => None,
        }
    }

    /// True when the client counts as subscribed as soon as the upgrade succeeded.
    pub fn ready_on_upgrade(self) -> bool {
        self == Dialect::Nchan
    }

    /// The Socket.IO connect packet carrying the token and channels.
    pub fn sio_connect(token: &str, channels: &[String]) -> String {
        format!(
            "40{}",
            serde_json::json!({ "token": token, "channels": channels })
        )
    }

    /// Classifies every message of one server text frame (Centrifugo batches newline-separated
    /// objects; the other dialects send one message per frame).
    pub fn for_each(self, frame: &[u8], mut f: impl FnMut(Incoming)) {
        match self {
            Dialect::Centrifugo => {
                for line in crate::proto::split_lines(frame) {
                    f(centrifugo(line));
                }
            }
            Dialect::Plain => f(plain(frame)),
            Dialect::Socketio => f(socketio(frame)),
            Dialect::Nchan => f(payload(frame)),
        }
    }

    /// Path and body of one publication over HTTP; `api_base` is the path of `--api-url`.
    pub fn publish_request(self, api_base: &str, channel: &str, data: &str) -> (String, String) {
        let base = api_base.trim_end_matches('/');
        match self {
            Dialect::Centrifugo => (
                format!("{base}/api/publish"),
                format!(
                    "{{\"channel\":{},\"data\":{data}}}",
                    serde_json::Value::from(channel)
                ),
            ),
            _ => (format!("{base}/publish/{channel}"), data.to_string()),
        }
    }

    /// Whether an HTTP publish response means the publication was accepted.
    pub fn publish_ok(self, status: u16, body: &str) -> bool {
        match self {
            Dialect::Centrifugo => status == 200 && body.contains("\"result\""),
            _ => (200..300).contains(&status),
        }
    }
}

fn centrifugo(line: &[u8]) -> Incoming {
    use crate::proto::Line;
    match crate::proto::classify(line) {
        Line::Ping => Incoming::Heartbeat { reply: b"{}" },
        Line::Pub { phase, ts } => Incoming::Pub { phase, ts },
        Line::Reply { id, error } => Incoming::Reply { id, error },
        Line::Disconnect(d) => Incoming::Refused(d),
        Line::OtherPush | Line::Unknown => Incoming::Other,
    }
}

fn plain(frame: &[u8]) -> Incoming {
    if frame.starts_with(b"{\"ready\"") {
        return Incoming::Ready;
    }
    payload(frame)
}

fn socketio(frame: &[u8]) -> Incoming {
    match frame {
        b"2" => Incoming::Heartbeat { reply: b"3" },
        [b'0', ..] => Incoming::SioOpen,
        [b'4', b'0', ..] => Incoming::SioConnected,
        [b'4', b'4', rest @ ..] => Incoming::Refused(String::from_utf8_lossy(rest).into_owned()),
        [b'4', b'1', ..] => Incoming::Refused("socket.io disconnect".into()),
        f if f.starts_with(b"42[\"ready\"") => Incoming::Ready,
        f if f.starts_with(b"42[\"pub\"") => payload(f),
        _ => Incoming::Other,
    }
}

/// A frame that carries the benchmark payload somewhere inside it.
fn payload(frame: &[u8]) -> Incoming {
    let (phase, ts) = crate::proto::payload_fields(frame);
    Incoming::Pub { phase, ts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: Dialect, frame: &[u8]) -> Vec<Incoming> {
        let mut v = Vec::new();
        d.for_each(frame, |i| v.push(i));
        v
    }

    #[test]
    fn paths_per_dialect() {
        let ch = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            Dialect::Centrifugo.upgrade_path("/connection/websocket", "T", &ch),
            "/connection/websocket"
        );
        assert_eq!(
            Dialect::Plain.upgrade_path("/", "T", &ch),
            "/ws?token=T&channels=a,b"
        );
        assert_eq!(
            Dialect::Nchan.upgrade_path("/", "T", &ch),
            "/sub/a,b?token=T"
        );
        assert!(Dialect::Socketio
            .upgrade_path("/", "T", &ch)
            .contains("EIO=4&transport=websocket"));
        assert_eq!(
            Dialect::Socketio.upgrade_path("/", "T", &ch),
            "/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            Dialect::sio_connect("T", &ch),
            r#"40{"channels":["a","b"],"token":"T"}"#
        );
    }

    #[test]
    fn classifies_each_dialect() {
        let p = Incoming::Pub {
            phase: Some(1),
            ts: Some(7),
        };
        assert_eq!(
            all(Dialect::Plain, br#"{"ready":true}"#),
            vec![Incoming::Ready]
        );
        assert_eq!(all(Dialect::Plain, br#"{"ph":1,"seq":3,"ts":7}"#), vec![p]);
        assert_eq!(
            all(Dialect::Socketio, br#"0{"sid":"x","pingInterval":25000}"#),
            vec![Incoming::SioOpen]
        );
        assert_eq!(
            all(Dialect::Socketio, br#"40{"sid":"y"}"#),
            vec![Incoming::SioConnected]
        );
        assert_eq!(
            all(Dialect::Socketio, b"2"),
            vec![Incoming::Heartbeat { reply: b"3" }]
        );
        assert_eq!(
            all(Dialect::Socketio, br#"42["ready"]"#),
            vec![Incoming::Ready]
        );
        assert_eq!(
            all(Dialect::Socketio, br#"42["pub",{"ph":1,"seq":3,"ts":7}]"#),
            vec![Incoming::Pub {
                phase: Some(1),
                ts: Some(7)
            }]
        );
        assert!(matches!(
            all(Dialect::Socketio, br#"44{"message":"unauthorized"}"#)[0],
            Incoming::Refused(_)
        ));
        assert_eq!(
            all(Dialect::Centrifugo, b"{}\n{\"id\":1,\"connect\":{}}"),
            vec![
                Incoming::Heartbeat { reply: b"{}" },
                Incoming::Reply { id: 1, error: None }
            ]
        );
        assert_eq!(
            all(Dialect::Nchan, br#"{"ph":0,"seq":1,"ts":99}"#),
            vec![Incoming::Pub {
                phase: Some(0),
                ts: Some(99)
            }]
        );
    }

    #[test]
    fn publish_requests() {
        let (p, b) = Dialect::Centrifugo.publish_request("/", "ch", r#"{"ts":1}"#);
        assert_eq!(p, "/api/publish");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["channel"], "ch");
        assert_eq!(v["data"]["ts"], 1);
        assert_eq!(
            Dialect::Nchan.publish_request("/", "c7", "{}"),
            ("/publish/c7".to_string(), "{}".to_string())
        );
        assert!(Dialect::Nchan.publish_ok(202, "queued"));
        assert!(!Dialect::Centrifugo.publish_ok(200, "{\"error\":{}}"));
        assert!(Dialect::Centrifugo.publish_ok(200, "{\"result\":{}}"));
        assert_eq!(Dialect::of_system("socketio"), Some(Dialect::Socketio));
        assert_eq!(
            Dialect::of_system("wiresocket-1core"),
            Some(Dialect::Centrifugo)
        );
        assert_eq!(Dialect::of_system("x"), None);
    }
}
