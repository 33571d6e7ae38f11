//! Black-box tests of the browser origin check (cross-site WebSocket hijacking): a page on
//! another site cannot open a WebSocket with the user's cookies unless the operator lists
//! its origin; same-origin pages and clients without `Origin` (SDKs outside browsers) work.
//! The official JS SDK under Node sends no `Origin`: `tests/interop_js.rs` runs it against
//! the default (same-origin) configuration.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Client, Overrides, Server};

fn upgrade_status(addr: SocketAddr, origin: Option<&str>) -> u16 {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn origin_refusals(server: &Server) -> f64 {
    server.metric_sum("wiresocket_limit_refused_total", &["reason=\"origin\""])
}

#[test]
fn a_cross_site_upgrade_is_refused_and_same_origin_passes() {
    let server = Server::start();
    assert_eq!(
        upgrade_status(server.addr, Some("http://evil.example")),
        403
    );
    assert_eq!(upgrade_status(server.addr, Some("null")), 403);
    assert_eq!(origin_refusals(&server), 2.0);
    let own = format!("http://{}", server.addr);
    assert_eq!(upgrade_status(server.addr, Some(&own)), 101);
    assert_eq!(upgrade_status(server.addr, None), 101, "not a browser");
    // a non-browser client keeps working end to end
    let (mut c, _) = Client::connect(&server, "alice");
    assert!(c.subscribe("news").get("subscribe").is_some());
    assert_eq!(origin_refusals(&server), 2.0);
}

#[test]
fn listed_and_wildcard_origins_pass_and_lookalikes_do_not() {
    let server = Server::start_with(&Overrides {
        server: "allowed_origins = [\"https://*.example.com\", \"https://app.example.org\"]".into(),
        ..Default::default()
    });
    for ok in [
        "https://app.example.com",
        "https://a.b.example.com",
        "https://app.example.org",
    ] {
        assert_eq!(upgrade_status(server.addr, Some(ok)), 101, "{ok}");
    }
    for bad in [
        "https://example.com.evil.example",
        "http://app.example.com",
        "https://app.example.org.evil",
        "http://evil.example",
    ] {
        assert_eq!(upgrade_status(server.addr, Some(bad)), 403, "{bad}");
    }
    assert_eq!(origin_refusals(&server), 4.0);
}

#[test]
fn a_star_allows_every_origin() {
    let server = Server::start_with(&Overrides {
        server: "allowed_origins = [\"*\"]".into(),
        ..Default::default()
    });
    assert_eq!(
        upgrade_status(server.addr, Some("http://evil.example")),
        101
    );
}
