//! The PROXY protocol version 2 header a trusted proxy (HAProxy, a cloud load balancer with
//! `send-proxy-v2`) puts before the client's bytes, naming the client's address.
//!
//! Called by `net::conn` only for connections whose peer is in `server.trusted_proxies`,
//! and only when their first bytes are the v2 signature; parsing is the `ppp` crate's.
//! Answers: a header that does not parse, or does not arrive within `header_timeout_ms`,
//! closes the connection (400 / 408 via [`ReadError`]). A `LOCAL` header (the proxy's own
//! health check) or one without an IP address leaves the peer's address as the client.

use std::net::IpAddr;
use std::time::Instant;

use super::http::{self, ReadError};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Whether `buf` (the first bytes of a connection) starts, or could start, a v2 header.
pub fn maybe_header(buf: &[u8]) -> bool {
    let n = buf.len().min(SIGNATURE.len());
    n > 0 && buf[..n] == SIGNATURE[..n]
}

/// Reads a whole v2 header from the front of `buf` (reading more from `stream` as needed,
/// until `deadline`), removes it from `buf`, and returns the client address it names.
pub async fn read(
    stream: &mut impl super::http::Io,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Option<IpAddr>, ReadError> {
    let len = loop {
        if buf.len() >= 16 {
            if buf[..12] != SIGNATURE[..] {
                return Err(ReadError::Malformed);
            }
            break 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
        }
        http::read_at_least(stream, buf, 16, deadline).await?;
    };
    if buf.len() < len {
        http::read_at_least(stream, buf, len, deadline).await?;
    }
    let ip = parse(&buf[..len])?;
    buf.drain(..len);
    Ok(ip)
}

/// The client address of one complete header.
pub fn parse(header: &[u8]) -> Result<Option<IpAddr>, ReadError> {
    use ppp::v2::{Addresses, Command, Header};
    let h = Header::try_from(header).map_err(|_| ReadError::Malformed)?;
    if h.command == Command::Local {
        return Ok(None);
    }
    Ok(match h.addresses {
        Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
        Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Command, Protocol, Version};

    fn header(src: &str) -> Vec<u8> {
        let src: std::net::SocketAddr = src.parse().unwrap();
        let dst = if src.is_ipv4() {
            "10.0.0.1:443"
        } else {
            "[2001:db8::1]:443"
        };
        let addrs = (src, dst.parse::<std::net::SocketAddr>().unwrap());
        Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addrs)
            .build()
            .unwrap()
    }

    #[test]
    fn parses_v4_v6_and_refuses_garbage() {
        let h = header("203.0.113.7:5555");
        assert!(maybe_header(&h) && maybe_header(&h[..3]));
        assert!(!maybe_header(b"GET / HTTP/1.1\r\n"));
        assert_eq!(parse(&h).unwrap(), Some("203.0.113.7".parse().unwrap()));
        let h6 = header("[2001:db8::7]:5555");
        assert_eq!(parse(&h6).unwrap(), Some("2001:db8::7".parse().unwrap()));
        let mut bad = h.clone();
        bad[12] = 0x30; // version 3
        assert!(parse(&bad).is_err());
        assert!(parse(&h[..15]).is_err());
    }
}
