//! The slice of the Centrifugo client protocol v2 (JSON) the load generator speaks: `connect` and
//! `subscribe` commands, classification of the newline-separated objects in a server frame
//! (heartbeat `{}`, replies by `id`, `pub` pushes), and the benchmark payload
//! `{"ph":PHASE,"seq":N,"ts":MONO_NS}` the publisher sends and subscribers time (in every
//! dialect, see `dialect`).
//!
//! Publications take a substring fast path (no JSON tree per delivery); anything else is parsed
//! with serde_json.

use serde_json::Value;

/// `{"id":ID,"connect":{"token":TOKEN,"name":"wiresocket-bench"}}`
pub fn connect_cmd(id: u32, token: &str) -> String {
    serde_json::json!({"id": id, "connect": {"token": token, "name": "wiresocket-bench"}})
        .to_string()
}

/// `{"id":ID,"subscribe":{"channel":CHANNEL}}`
pub fn subscribe_cmd(id: u32, channel: &str) -> String {
    serde_json::json!({"id": id, "subscribe": {"channel": channel}}).to_string()
}

/// The benchmark payload `{"ph":PHASE,"seq":SEQ,"ts":TS_NS}` (plus `pad` filler bytes under
/// `"pad"`), the `data` of every publication in every dialect.
pub fn payload(phase: u32, seq: u64, ts_ns: u64, pad: usize) -> String {
    let mut s = String::with_capacity(64 + pad);
    s.push_str(&format!("{{\"ph\":{phase},\"seq\":{seq},\"ts\":{ts_ns}"));
    if pad > 0 {
        s.push_str(",\"pad\":\"");
        s.extend(std::iter::repeat_n('x', pad));
        s.push('"');
    }
    s.push('}');
    s
}

/// Phase and timestamp of a benchmark payload found anywhere in `frame`, without a JSON tree.
pub fn payload_fields(frame: &[u8]) -> (Option<u32>, Option<u64>) {
    (
        number_after(frame, b"\"ph\":").map(|p| p as u32),
        number_after(frame, b"\"ts\":"),
    )
}

/// One JSON object received from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Server heartbeat `{}`: answer with `{}`.
    Ping,
    /// A reply to command `id`; `error` holds the error object text when it failed.
    Reply { id: u32, error: Option<String> },
    /// A publication push; `phase`/`ts` are present for benchmark payloads.
    Pub { phase: Option<u32>, ts: Option<u64> },
    /// A `disconnect` push (code, reason).
    Disconnect(String),
    /// Any other push (join, leave, unsubscribe, ...).
    OtherPush,
    /// Not JSON, or JSON this client does not understand.
    Unknown,
}

/// Iterates the non-empty `\n`-separated objects of one text message.
pub fn split_lines(msg: &[u8]) -> impl Iterator<Item = &[u8]> {
    msg.split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
}

pub fn classify(line: &[u8]) -> Line {
    if line == b"{}" {
        return Line::Ping;
    }
    if line.starts_with(b"{\"push\":") {
        if let Some(l) = classify_push_fast(line) {
            return l;
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Line::Unknown;
    };
    if let Some(push) = v.get("push") {
        if push.get("pub").is_some() {
            let data = &push["pub"]["data"];
            return Line::Pub {
                phase: data.get("ph").and_then(Value::as_u64).map(|p| p as u32),
                ts: data.get("ts").and_then(Value::as_u64),
            };
        }
        if let Some(d) = push.get("disconnect") {
            return Line::Disconnect(d.to_string());
        }
        return Line::OtherPush;
    }
    if let Some(id) = v.get("id").and_then(Value::as_u64) {
        return Line::Reply {
            id: id as u32,
            error: v.get("error").map(|e| e.to_string()),
        };
    }
    if v.as_object().is_some_and(|o| o.is_empty()) {
        return Line::Ping;
    }
    Line::Unknown
}

/// Publication pushes without building a JSON tree; `None` falls back to the full parse.
fn classify_push_fast(line: &[u8]) -> Option<Line> {
    find(line, b"\"pub\":")?;
    let (phase, ts) = payload_fields(line);
    Some(Line::Pub { phase, ts })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned integer following the first occurrence of `key` (spaces allowed).
fn number_after(line: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(line, key)? + key.len();
    let digits = line[at..].trim_ascii_start();
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_objects() {
        assert_eq!(classify(b"{}"), Line::Ping);
        assert_eq!(
            classify(br#"{"id":1,"connect":{"client":"c","ping":25,"pong":true}}"#),
            Line::Reply { id: 1, error: None }
        );
        match classify(br#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#) {
            Line::Reply {
                id: 2,
                error: Some(e),
            } => assert!(e.contains("103")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(br#"{"push":{"channel":"bench","pub":{"data":{"ph":2,"seq":9,"ts":12345},"offset":7}}}"#),
            Line::Pub { phase: Some(2), ts: Some(12345) }
        );
        assert_eq!(
            classify(br#"{"push": {"channel":"bench","pub":{"data":{"ts": 5, "ph": 0}}}}"#),
            Line::Pub {
                phase: Some(0),
                ts: Some(5)
            }
        );
        assert!(matches!(
            classify(br#"{"push":{"disconnect":{"code":3008,"reason":"slow"}}}"#),
            Line::Disconnect(_)
        ));
        assert_eq!(classify(b"nope"), Line::Unknown);
    }

    #[test]
    fn splits_batched_frames() {
        let v: Vec<_> = split_lines(b"{}\n{\"id\":1}\n\n").collect();
        assert_eq!(v, vec![&b"{}"[..], &b"{\"id\":1}"[..]]);
    }

    #[test]
    fn payload_roundtrips() {
        let b = payload(1, 42, 99, 3);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!((v["ph"].as_u64(), v["seq"].as_u64()), (Some(1), Some(42)));
        assert_eq!(v["ts"], 99);
        assert_eq!(v["pad"], "xxx");
        assert_eq!(payload_fields(b.as_bytes()), (Some(1), Some(99)));
        let c: Value = serde_json::from_str(&connect_cmd(1, "t")).unwrap();
        assert_eq!(c["connect"]["token"], "t");
        let s: Value = serde_json::from_str(&subscribe_cmd(2, "bench")).unwrap();
        assert_eq!(s["subscribe"]["channel"], "bench");
    }
}
