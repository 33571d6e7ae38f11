//! Parses one client command (one JSON object of a possibly newline-batched
//! frame) with `simd-json`, in place on the borrowed message bytes.
//!
//! Unknown fields are ignored; an object without a known method is
//! [`Method::Unknown`] (answered 104); `{}` without an id is the client's pong.
//! `data` payloads are kept as compact JSON text, re-emitted verbatim.

use simd_json::prelude::*;
use simd_json::BorrowedValue as Value;

/// A parsed command: its id (0 when absent) and what it asks for.
#[derive(Debug, PartialEq)]
pub struct Command {
    pub id: u32,
    pub method: Method,
}

#[derive(Debug, PartialEq)]
pub enum Method {
    /// `{}`: the client's answer to a server ping.
    Pong,
    Connect {
        token: String,
        data: Option<Vec<u8>>,
        /// Server-side subscriptions the client held, with the position to recover from.
        subs: Vec<(String, Since)>,
        /// The SDK's `name` and `version` (shown in session records, API `connections`).
        name: String,
        version: String,
    },
    Subscribe {
        channel: String,
        token: String,
        recover: bool,
        epoch: String,
        offset: u64,
        /// Bit flags; [`FLAG_REJECT_UNRECOVERED`]: answer 112 instead of `recovered: false`.
        flag: u64,
        /// The client asks for a recoverable subscription (positions in the reply).
        recoverable: bool,
        join_leave: bool,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Vec<u8>,
    },
    Presence {
        channel: String,
    },
    PresenceStats {
        channel: String,
    },
    History {
        channel: String,
        limit: i64,
        since: Option<(u64, String)>,
        reverse: bool,
    },
    Refresh {
        token: String,
    },
    SubRefresh {
        channel: String,
        token: String,
    },
    Rpc,
    Send,
    /// Debug builds only: fault injection for the black-box tests (`session::faults`).
    #[cfg(debug_assertions)]
    TestFault(String),
    Unknown,
}

/// `subscribe.flag` bit the JS SDK sets with `getState`: an unrecoverable position is an
/// error (112), so the application reloads its state.
pub const FLAG_REJECT_UNRECOVERED: u64 = 2;

/// A position a client wants to recover from (`recover`, `epoch`, `offset`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Since {
    pub recover: bool,
    pub epoch: String,
    pub offset: u64,
}

/// The line is not a JSON object (the client is told 3501 bad request).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("malformed command: {0}")]
pub struct MalformedCommand(pub String);

/// Parses one JSON object. `line` is modified in place by the parser.
pub fn parse(line: &mut [u8]) -> Result<Command, MalformedCommand> {
    let value = simd_json::to_borrowed_value(line).map_err(|e| MalformedCommand(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| MalformedCommand("not an object".into()))?;
    let id = match obj.get("id") {
        None => 0,
        Some(v) => v
            .as_u32()
            .ok_or_else(|| MalformedCommand("id must be a u32".into()))?,
    };
    let method = if obj.is_empty() {
        Method::Pong
    } else if let Some(p) = obj.get("connect") {
        let subs = p
            .get("subs")
            .and_then(|v| v.as_object())
            .map(|m| {
                m.iter()
                    .map(|(ch, v)| {
                        let since = Since {
                            recover: v.get("recover").and_then(|r| r.as_bool()).unwrap_or(false),
                            epoch: s(v, "epoch"),
                            offset: v.get("offset").and_then(|o| o.as_u64()).unwrap_or(0),
                        };
                        (ch.to_string(), since)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Method::Connect {
            token: s(p, "token"),
            data: p.get("data").map(json_bytes),
            subs,
            name: s(p, "name"),
            version: s(p, "version"),
        }
    } else if let Some(p) = obj.get("subscribe") {
        Method::Subscribe {
            channel: s(p, "channel"),
            token: s(p, "token"),
            recover: p.get("recover").and_then(|v| v.as_bool()).unwrap_or(false),
            epoch: s(p, "epoch"),
            offset: p.get("offset").and_then(|v| v.as_u64()).unwrap_or(0),
            flag: p.get("flag").and_then(|v| v.as_u64()).unwrap_or(0),
            recoverable: p
                .get("recoverable")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            join_leave: p
                .get("join_leave")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }
    } else if let Some(p) = obj.get("unsubscribe") {
        Method::Unsubscribe {
            channel: s(p, "channel"),
        }
    } else if let Some(p) = obj.get("publish") {
        let data = p
            .get("data")
            .map(json_bytes)
            .ok_or_else(|| MalformedCommand("publish without data".into()))?;
        Method::Publish {
            channel: s(p, "channel"),
            data,
        }
    } else if let Some(p) = obj.get("presence") {
        Method::Presence {
            channel: s(p, "channel"),
        }
    } else if let Some(p) = obj.get("presence_stats") {
        Method::PresenceStats {
            channel: s(p, "channel"),
        }
    } else if let Some(p) = obj.get("history") {
        let since = p.get("since").map(|v| {
            (
                v.get("offset").and_then(|o| o.as_u64()).unwrap_or(0),
                s(v, "epoch"),
            )
        });
        Method::History {
            channel: s(p, "channel"),
            limit: p.get("limit").and_then(|v| v.as_i64()).unwrap_or(0),
            since,
            reverse: p.get("reverse").and_then(|v| v.as_bool()).unwrap_or(false),
        }
    } else if let Some(p) = obj.get("refresh") {
        Method::Refresh {
            token: s(p, "token"),
        }
    } else if let Some(p) = obj.get("sub_refresh") {
        Method::SubRefresh {
            channel: s(p, "channel"),
            token: s(p, "token"),
        }
    } else if let Some(fault) = test_fault(obj) {
        fault
    } else if obj.contains_key("rpc") {
        Method::Rpc
    } else if obj.contains_key("send") {
        Method::Send
    } else {
        Method::Unknown
    };
    Ok(Command { id, method })
}

#[cfg(debug_assertions)]
fn test_fault(obj: &simd_json::borrowed::Object<'_>) -> Option<Method> {
    obj.get("__test_fault")
        .map(|v| Method::TestFault(v.as_str().unwrap_or_default().to_owned()))
}

#[cfg(not(debug_assertions))]
fn test_fault(_: &simd_json::borrowed::Object<'_>) -> Option<Method> {
    None
}

fn s(params: &Value, key: &str) -> String {
    params
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn json_bytes(v: &Value) -> Vec<u8> {
    v.encode().into_bytes()
}

/// Splits a text message into its newline-separated JSON objects (blank lines skipped).
pub fn split_batch(msg: &mut [u8]) -> impl Iterator<Item = &mut [u8]> {
    msg.split_mut(|&b| b == b'\n')
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Command {
        parse(&mut s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn parses_methods() {
        assert_eq!(p("{}").method, Method::Pong);
        let c =
            p(r#"{"id":1,"connect":{"token":"t","name":"js","version":"5.1","data":{"a":[1,2]}}}"#);
        assert_eq!(c.id, 1);
        assert_eq!(
            c.method,
            Method::Connect {
                token: "t".into(),
                data: Some(br#"{"a":[1,2]}"#.to_vec()),
                subs: vec![],
                name: "js".into(),
                version: "5.1".into(),
            }
        );
        let c =
            p(r#"{"id":9,"connect":{"subs":{"news":{"recover":true,"epoch":"e","offset":7}}}}"#);
        assert!(matches!(c.method, Method::Connect { ref subs, .. }
            if subs == &vec![("news".to_string(), Since { recover: true, epoch: "e".into(), offset: 7 })]));
        let c = p(
            r#"{"id":2,"subscribe":{"channel":"news","recover":true,"offset":5,"epoch":"e","flag":3}}"#,
        );
        assert_eq!(
            c.method,
            Method::Subscribe {
                channel: "news".into(),
                token: "".into(),
                recover: true,
                epoch: "e".into(),
                offset: 5,
                flag: 3,
                recoverable: false,
                join_leave: false,
            }
        );
        let c = p(r#"{"id":3,"publish":{"channel":"news","data":"x"},"extra":1}"#);
        assert_eq!(
            c.method,
            Method::Publish {
                channel: "news".into(),
                data: br#""x""#.to_vec()
            }
        );
        assert_eq!(p(r#"{"id":4,"frobnicate":{}}"#).method, Method::Unknown);
        let c =
            p(r#"{"id":5,"history":{"channel":"c","limit":10,"since":{"offset":3,"epoch":"x"}}}"#);
        assert!(matches!(
            c.method,
            Method::History {
                since: Some((3, _)),
                limit: 10,
                ..
            }
        ));
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse(&mut b"{not json".to_vec()).is_err());
        assert!(parse(&mut b"[1,2]".to_vec()).is_err());
        assert!(parse(&mut br#"{"id":-1,"connect":{}}"#.to_vec()).is_err());
        assert!(parse(&mut br#"{"id":1,"publish":{"channel":"a"}}"#.to_vec()).is_err());
    }

    #[test]
    fn splits_batches() {
        let mut m = b"{\"id\":1}\n\n{\"id\":2}\n".to_vec();
        assert_eq!(split_batch(&mut m).count(), 2);
    }
}
