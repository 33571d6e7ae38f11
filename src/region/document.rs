//! A document name in a URL: the path segment of `/connection/websocket/<document>` and the
//! `documentName` query parameter of `/discovery`, both percent-encoded (RFC 3986).
//!
//! [`encode`] keeps only the unreserved characters (`A-Z a-z 0-9 - . _ ~`), so the result is
//! safe in a path segment, a query value and a close reason. [`decode`] is strict: a `%` not
//! followed by two hex digits, or bytes that are not UTF-8, are refused (`None`), never
//! guessed at. Whether the name is a document (a channel of a pinned namespace) is the
//! channel policy's question, asked by the callers.

/// The WebSocket path whose extra segment names a document.
pub const WS_PATH: &str = "/connection/websocket";

/// Percent-encodes every byte but the unreserved characters.
pub fn encode(document: &str) -> String {
    let mut out = String::with_capacity(document.len());
    for b in document.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space); `None` when malformed.
pub fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// An upgrade path that is not a WebSocket endpoint: the HTTP status to refuse it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath(pub u16);

/// What an upgrade path says about a document: `Ok(None)` for the plain WebSocket path,
/// `Ok(Some(doc))` for `/connection/websocket/<doc>`; a malformed or empty document segment
/// is 400, another path 404. Any query string is ignored.
pub fn from_ws_path(path: &str) -> Result<Option<String>, BadPath> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path.strip_prefix(WS_PATH).ok_or(BadPath(404))?;
    if rest.is_empty() {
        return Ok(None);
    }
    let segment = rest.strip_prefix('/').ok_or(BadPath(404))?;
    if segment.is_empty() || segment.contains('/') {
        return Err(BadPath(400));
    }
    decode(segment, false)
        .filter(|d| !d.is_empty())
        .map(Some)
        .ok_or(BadPath(400))
}

/// The `documentName` parameter of a query string: `None` when absent, `Some(None)` when
/// malformed.
pub fn from_query(path: &str) -> Option<Option<String>> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("documentName="))
        .map(|v| decode(v, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_malformed() {
        let doc = "docs:plan é/1 #x";
        let enc = encode(doc);
        assert_eq!(enc, "docs%3Aplan%20%C3%A9%2F1%20%23x");
        assert_eq!(decode(&enc, false).as_deref(), Some(doc));
        assert_eq!(decode("a%2", false), None);
        assert_eq!(decode("a%zz", false), None);
        assert_eq!(decode("%FF", false), None, "not UTF-8");
        assert_eq!(decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(decode("a+b", false).as_deref(), Some("a+b"));
    }

    #[test]
    fn ws_paths() {
        assert_eq!(from_ws_path("/connection/websocket"), Ok(None));
        assert_eq!(from_ws_path("/connection/websocket?x=1"), Ok(None));
        assert_eq!(
            from_ws_path("/connection/websocket/docs%3Aa"),
            Ok(Some("docs:a".into()))
        );
        assert_eq!(from_ws_path("/connection/websocket/"), Err(BadPath(400)));
        assert_eq!(from_ws_path("/connection/websocket/a/b"), Err(BadPath(400)));
        assert_eq!(from_ws_path("/connection/websocket/%zz"), Err(BadPath(400)));
        assert_eq!(from_ws_path("/connection/websocketx"), Err(BadPath(404)));
    }

    #[test]
    fn query_parameter() {
        assert_eq!(from_query("/discovery"), None);
        assert_eq!(from_query("/discovery?x=1"), None);
        assert_eq!(
            from_query("/discovery?x=1&documentName=docs%3Aa"),
            Some(Some("docs:a".into()))
        );
        assert_eq!(from_query("/discovery?documentName=%"), Some(None));
    }
}
