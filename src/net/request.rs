//! Turns one complete HTTP/1.1 request head into what the connection must do
//! next, with the framing rules that leave no request-smuggling primitive.
//!
//! Called by `net::conn` for each head; pure (no I/O), so every rule is tested
//! here. The parser's header array never outlives this call (it would sit in
//! every connection's task across an await).
//!
//! Framing (RFC 9112 §6), strictest reading:
//! - `Transfer-Encoding` of any value: 501 (bodies are only ever sized by
//!   `Content-Length`; a proxy that chunks must not be half-understood), and
//!   the connection closes.
//! - `Content-Length` must be plain ASCII digits (no sign, no list, no space
//!   inside); a second `Content-Length` header, even an equal one: 400, close.
//! - A WebSocket upgrade that announces a body: 400 (its bytes would be read
//!   as frames).
//! - httparse itself refuses obsolete line folding, spaces before the colon,
//!   bare CR, and invalid bytes in names and values (400).

use super::http::{ReadError, MAX_HEADERS};
use crate::session::driver::Handler;
use crate::ws::handshake;

/// A plain HTTP request, extracted so the head buffer can be reused.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub keep_alive: bool,
    /// Announced body length; `None` when absent.
    pub content_length: Option<usize>,
    /// `Expect: 100-continue`: the client waits for a go-ahead before its body.
    pub expect_continue: bool,
    pub api_key: Option<String>,
    /// `Authorization: Bearer <token>` (`/discovery`).
    pub bearer: Option<String>,
}

impl Request {
    /// Whether the client announced a body we would have to read to reuse the connection.
    pub fn has_body(&self) -> bool {
        self.content_length.is_some_and(|n| n > 0)
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// The headers of an upgrade the edge checks: origin, host, and the client address a
/// trusted proxy names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpgradeMeta {
    pub origin: Option<String>,
    pub host: Option<String>,
    /// Every `X-Forwarded-For` value, in order (read only from trusted proxies).
    pub forwarded_for: Vec<String>,
    /// The document named by `/connection/websocket/<url-encoded document>` (`region`).
    pub document: Option<String>,
}

/// What a complete request head asks for.
pub enum Parsed {
    /// A WebSocket upgrade: the 101 answer (or why not), who handles it, and its meta.
    Upgrade(
        Result<Vec<u8>, handshake::HandshakeError>,
        Handler,
        UpgradeMeta,
    ),
    Http(Request),
    /// Answer with this status and close.
    Refuse(u16),
    Fail(ReadError),
}

/// Parses `head` (exactly one complete head). `echo`: whether `/echo` upgrades are served.
pub fn parse(head: &[u8], echo: bool) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Parsed::Fail(ReadError::TooLarge),
        _ => return Parsed::Fail(ReadError::Malformed),
    }
    let content_length = match framing(parsed.headers) {
        Ok(n) => n,
        Err(status) => return Parsed::Refuse(status),
    };
    if !handshake::is_upgrade(&parsed) {
        return Parsed::Http(extract(&parsed, content_length));
    }
    if content_length.is_some_and(|n| n > 0) {
        return Parsed::Refuse(400);
    }
    let mut document = None;
    let handler = match parsed.path {
        Some("/echo") if echo => Handler::Echo,
        Some(p) if p.starts_with(crate::region::document::WS_PATH) => {
            match crate::region::document::from_ws_path(p) {
                Ok(doc) => document = doc,
                Err(bad) => return Parsed::Refuse(bad.0),
            }
            Handler::Centrifugo
        }
        _ => return Parsed::Refuse(404),
    };
    let mut meta = meta(parsed.headers);
    meta.document = document;
    Parsed::Upgrade(handshake::accept(&parsed), handler, meta)
}

fn meta(headers: &[httparse::Header<'_>]) -> UpgradeMeta {
    let mut m = UpgradeMeta::default();
    for h in headers {
        let value = || String::from_utf8_lossy(h.value).trim().to_string();
        if h.name.eq_ignore_ascii_case("origin") {
            m.origin = Some(value());
        } else if h.name.eq_ignore_ascii_case("host") {
            m.host = Some(value());
        } else if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            m.forwarded_for.push(value());
        }
    }
    m
}

/// The announced body length, or the status refusing the framing.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, u16> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(501);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(400);
            }
            length = Some(content_length(h.value).ok_or(400u16)?);
        }
    }
    Ok(length)
}

/// `1*DIGIT` with optional surrounding blanks; a value beyond `usize` saturates (then 413).
fn content_length(value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add((d - b'0') as usize)
    }))
}

fn extract(p: &httparse::Request<'_, '_>, content_length: Option<usize>) -> Request {
    let header = |name: &str| {
        p.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let connection = header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let keep_alive = if p.version == Some(0) {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let api_key = header("x-api-key").or_else(|| {
        header("authorization")
            .and_then(|v| v.strip_prefix("apikey ").map(|k| k.trim().to_string()))
    });
    let bearer = header("authorization").and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    Request {
        bearer,
        method: p.method.unwrap_or("").to_string(),
        path: p.path.unwrap_or("/").to_string(),
        keep_alive,
        content_length,
        expect_continue: header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
        api_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> Option<u16> {
        match parse(head.as_bytes(), false) {
            Parsed::Refuse(s) => Some(s),
            Parsed::Fail(e) => e.status(),
            _ => None,
        }
    }

    fn request(head: &str) -> Request {
        match parse(head.as_bytes(), false) {
            Parsed::Http(r) => r,
            _ => panic!("not a plain request: {head}"),
        }
    }

    #[test]
    fn content_length_must_be_one_plain_number() {
        let ok = request("POST /api/x HTTP/1.1\r\nContent-Length: 24\r\n\r\n");
        assert_eq!(ok.content_length, Some(24));
        assert!(ok.has_body() && ok.keep_alive);
        for bad in ["+24", "-1", "2 4", "24, 24", "0x18", "", "24a"] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(status(&head), Some(400), "{bad:?}");
        }
        for dup in ["5\r\nContent-Length: 5", "5\r\ncontent-length: 6"] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {dup}\r\n\r\n");
            assert_eq!(status(&head), Some(400), "{dup:?}");
        }
        let huge = request("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(huge.content_length, Some(usize::MAX));
    }

    #[test]
    fn transfer_encoding_is_not_implemented() {
        for te in ["chunked", "gzip, chunked", "identity"] {
            let head = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(status(&head), Some(501), "{te}");
        }
        let both = "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(both), Some(501));
    }

    #[test]
    fn httparse_refuses_folding_and_spaces_before_colon() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
            Some(400),
            "obs-fold"
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"),
            Some(400)
        );
    }

    #[test]
    fn upgrade_with_a_body_is_refused() {
        let head = "GET /connection/websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(status(head), Some(400));
    }

    #[test]
    fn upgrade_meta_carries_origin_host_and_forwarded_for() {
        let head = "GET /connection/websocket HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n";
        let Parsed::Upgrade(Ok(_), Handler::Centrifugo, m) = parse(head.as_bytes(), false) else {
            panic!("not an upgrade");
        };
        assert_eq!(m.origin.as_deref(), Some("http://evil.example"));
        assert_eq!(m.host.as_deref(), Some("ws.example.com"));
        assert_eq!(m.forwarded_for, ["1.2.3.4", "5.6.7.8"]);
    }

    #[test]
    fn keep_alive_key_and_expect() {
        let r = request("GET / HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive && !r.has_body() && r.content_length.is_none());
        let r = request(
            "POST /api/publish HTTP/1.1\r\nConnection: close\r\nAuthorization: apikey k1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(!r.keep_alive && r.expect_continue && !r.has_body());
        assert_eq!(r.api_key.as_deref(), Some("k1"));
        assert!(request("HEAD /health HTTP/1.1\r\n\r\n").is_head());
    }
}
