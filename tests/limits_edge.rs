//! Black-box tests of the per-client connection limits at the edge: connections per
//! address and per /24, connection attempts per address and per node, and who the client
//! is (the socket, a trusted proxy's PROXY v2 header or `X-Forwarded-For`, never an
//! untrusted peer's headers). Refusals at accept are written before the request is read,
//! so the "refused" helper reads first and sends nothing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{wait_for, Overrides, Server};
use ppp::v2::{Builder, Command, Protocol, Version};

/// A server that limits loopback clients too; its metrics are read on the internal
/// listener, which the limits do not apply to (a scrape on the public port would be one
/// more connection from the limited address).
fn server(lines: &str) -> Server {
    let mut server = Server::start_with(&Overrides {
        server: format!("limits_exempt = []\ninternal_listen = \"127.0.0.1:0\"\n{lines}"),
        ..Default::default()
    });
    server.wait_log("internal on http://", Duration::from_secs(10));
    server
}

fn internal(server: &Server) -> SocketAddr {
    let line = server
        .log
        .iter()
        .find(|l| l.contains("internal on http://"));
    line.and_then(|l| l.rsplit("http://").next())
        .and_then(|a| a.trim().parse().ok())
        .expect("internal listener address")
}

fn upgrade_head(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads one response head (until the blank line or EOF): (status, head text).
fn read_head(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    (status.unwrap_or(0), text)
}

/// Sends `prefix` then an upgrade with `extra` headers; the stream stays open.
fn upgrade(addr: SocketAddr, prefix: &[u8], extra: &str) -> (u16, String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(prefix).unwrap();
    s.write_all(upgrade_head(addr, extra).as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    (status, head, s)
}

/// Sends only `prefix` (maybe nothing) and reads the answer the server gives unasked.
fn refused(addr: SocketAddr, prefix: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(prefix).unwrap();
    read_head(&mut s)
}

fn proxy_header(client: &str) -> Vec<u8> {
    let addrs = (
        client.parse::<SocketAddr>().unwrap(),
        "10.0.0.1:443".parse::<SocketAddr>().unwrap(),
    );
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addrs)
        .build()
        .unwrap()
}

fn refusals(server: &Server, reason: &str) -> f64 {
    let (status, text) = common::http(internal(server), "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let label = format!("reason=\"{reason}\"");
    common::metric_sum(&text, "wiresocket_limit_refused_total", &[&label])
}

#[test]
fn connections_per_address_get_429_with_retry_after_until_one_closes() {
    let server = server("max_connections_per_ip = 2");
    let (a, _, held_a) = upgrade(server.addr, b"", "");
    let (b, _, _held_b) = upgrade(server.addr, b"", "");
    assert_eq!((a, b), (101, 101));
    let (status, head) = refused(server.addr, b"");
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("Retry-After: "), "{head}");
    assert_eq!(refusals(&server, "ip_connections"), 1.0);
    drop(held_a);
    wait_for(|| upgrade(server.addr, b"", "").0 == 101);
}

#[test]
fn a_connect_flood_from_one_address_is_cut_after_its_burst() {
    let server = server("connect_rate_per_ip = 1\nconnect_burst_per_ip = 20");
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        answers.push(read_head(&mut s).0);
    }
    let allowed = answers.iter().filter(|s| **s == 200).count();
    // the burst (a reconnect storm) gets through whole, the flood beyond it does not
    assert!(answers[..20].iter().all(|s| *s == 200), "{answers:?}");
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(allowed <= 20 + refill, "{allowed} allowed");
    assert_eq!(refusals(&server, "ip_rate"), (200 - allowed) as f64);
}

#[test]
fn the_node_connect_rate_answers_503() {
    let server =
        server("connect_rate_per_ip = 0\nconnect_rate_per_node = 1\nconnect_burst_per_node = 3");
    for _ in 0..3 {
        let (s, _, _) = upgrade(server.addr, b"", "");
        assert_eq!(s, 101);
    }
    let (status, head) = refused(server.addr, b"");
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("Retry-After: "), "{head}");
    assert!(refusals(&server, "node_rate") >= 1.0);
}

#[test]
fn a_trusted_proxys_proxy_v2_header_names_the_client_and_its_prefix() {
    let server = server(
        "trusted_proxies = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 1\nmax_connections_per_prefix = 2",
    );
    let (a, _, _held_a) = upgrade(server.addr, &proxy_header("203.0.113.1:4000"), "");
    assert_eq!(a, 101);
    let (b, head) = refused(server.addr, &proxy_header("203.0.113.1:4001"));
    assert_eq!(b, 429, "same client address behind the proxy: {head}");
    let (c, _, _held_c) = upgrade(server.addr, &proxy_header("203.0.113.2:4000"), "");
    assert_eq!(c, 101, "another client behind the same proxy");
    let (d, _) = refused(server.addr, &proxy_header("203.0.113.3:4000"));
    assert_eq!(d, 429, "a third client of the same /24");
    let (e, _, _held_e) = upgrade(server.addr, &proxy_header("198.51.100.1:4000"), "");
    assert_eq!(e, 101);
    assert_eq!(refusals(&server, "ip_connections"), 1.0);
    assert_eq!(refusals(&server, "prefix_connections"), 1.0);
}

#[test]
fn a_proxy_header_from_an_untrusted_peer_is_a_bad_request() {
    let server = Server::start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&proxy_header("203.0.113.1:4000")).unwrap();
    s.write_all(upgrade_head(server.addr, "").as_bytes())
        .unwrap();
    assert_eq!(read_head(&mut s).0, 400);
}

#[test]
fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = server("max_connections_per_ip = 1");
    let (a, _, _held) = upgrade(server.addr, b"", "X-Forwarded-For: 198.51.100.7\r\n");
    assert_eq!(a, 101);
    // another "client" according to the header, the same socket address in truth
    let (b, head) = refused(server.addr, b"");
    assert_eq!(b, 429, "{head}");
}

#[test]
fn forwarded_for_from_a_trusted_peer_names_the_client() {
    let server = server("trusted_proxies = [\"127.0.0.0/8\"]\nmax_connections_per_ip = 1");
    let xff = |ip: &str| format!("X-Forwarded-For: 1.1.1.1, {ip}\r\n");
    let (a, _, _held_a) = upgrade(server.addr, b"", &xff("198.51.100.7"));
    let (b, _, _held_b) = upgrade(server.addr, b"", &xff("198.51.100.8"));
    assert_eq!((a, b), (101, 101), "two clients behind one proxy");
    let (c, head, _) = upgrade(server.addr, b"", &xff("198.51.100.7"));
    assert_eq!(c, 429, "{head}");
    assert_eq!(refusals(&server, "ip_connections"), 1.0);
}
