//! The WebSocket opening handshake (RFC 6455 §4.2) on an already-parsed HTTP
//! request head: tungstenite validates the request (method, version,
//! `Upgrade`, `Connection`, `Sec-WebSocket-Version: 13`, key) and derives the
//! accept key; this module turns the result into the bytes of a `101` answer.
//!
//! Called by `net::conn` for `/connection/websocket` and `/echo`.

use tungstenite::handshake::server::create_response;

/// Why an upgrade request was refused (answered with HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error("websocket handshake refused: {0}")]
pub struct HandshakeError(String);

/// Validates `head` as a WebSocket upgrade and returns the full `101 Switching Protocols` response.
pub fn accept(head: &httparse::Request<'_, '_>) -> Result<Vec<u8>, HandshakeError> {
    let mut builder = http::Request::builder()
        .method(head.method.unwrap_or("GET"))
        .uri(head.path.unwrap_or("/"))
        .version(http::Version::HTTP_11);
    for h in head.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let request = builder
        .body(())
        .map_err(|e| HandshakeError(e.to_string()))?;
    let response = create_response(&request).map_err(|e| HandshakeError(e.to_string()))?;
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Whether the request asks for a WebSocket upgrade at all (else it is plain HTTP).
pub fn is_upgrade(head: &httparse::Request<'_, '_>) -> bool {
    head.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value).eq_ignore_ascii_case("websocket")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc_example_key() {
        let raw = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        assert!(is_upgrade(&req));
        let resp = String::from_utf8(accept(&req).unwrap()).unwrap();
        assert!(resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{resp}");
    }

    #[test]
    fn refuses_missing_key() {
        let raw = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        assert!(accept(&req).is_err());
    }
}
