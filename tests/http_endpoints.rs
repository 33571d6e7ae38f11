//! Plain HTTP on the WebSocket port: health, metrics, the API key rules,
//! routing errors and the request-head limits.

mod common;

use common::{http, raw_http, Overrides, Server, API_KEY};
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn health_and_metrics() {
    let server = Server::start();
    let (status, body) = http(server.addr, "GET", "/health", &[], "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let metrics = server.metrics();
    for name in [
        "wiresocket_connections{core=\"0\"}",
        "wiresocket_connections{core=\"1\"}",
        "# TYPE wiresocket_publish_deliver_seconds histogram",
        "wiresocket_slow_consumer_disconnects_total",
        "wiresocket_bytes_out_total",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
}

#[test]
fn api_key_is_required_and_checked() {
    // history on: the stream's offset shows how many publications were accepted
    let server = Server::start_with(&common::Overrides::with_history(10));
    let body = r#"{"channel":"c","data":1}"#;
    assert_eq!(http(server.addr, "POST", "/api/publish", &[], body).0, 401);
    assert_eq!(
        http(
            server.addr,
            "POST",
            "/api/publish",
            &[("X-API-Key", "wrong")],
            body
        )
        .0,
        401
    );
    let auth = format!("apikey {API_KEY}");
    let (status, resp) = http(
        server.addr,
        "POST",
        "/api/publish",
        &[("Authorization", &auth)],
        body,
    );
    assert_eq!(status, 200, "{resp}");
    // a refused call changed nothing: the stream advanced by exactly one publication
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(v["result"]["offset"], 1);
    assert_eq!(server.api("frobnicate", serde_json::json!({})).0, 404);
    assert_eq!(
        server.api("publish", serde_json::json!({"data": 1})).0,
        400,
        "channel required"
    );
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", API_KEY)],
        "{not json",
    );
    assert_eq!(status, 400);
}

#[test]
fn api_is_disabled_without_a_key() {
    let server = Server::start_with(&Overrides {
        env: vec![("WIRESOCKET_API__KEY".into(), "".into())],
        ..Default::default()
    });
    assert_eq!(
        server
            .api("publish", serde_json::json!({"channel":"c","data":1}))
            .0,
        401
    );
}

#[test]
fn routing_errors() {
    let server = Server::start();
    assert_eq!(http(server.addr, "GET", "/nope", &[], "").0, 404);
    assert_eq!(http(server.addr, "POST", "/health", &[], "").0, 405);
    assert!(raw_http(server.addr, b"BLAH\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(
        raw_http(server.addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").starts_with("HTTP/1.1 400")
    );
}

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let server = Server::start_with(&Overrides {
        server: "max_header_bytes = 1024\nmax_body_bytes = 100".into(),
        ..Default::default()
    });
    let big = format!(
        "GET /health HTTP/1.1\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(2000)
    );
    assert!(raw_http(server.addr, big.as_bytes()).starts_with("HTTP/1.1 431"));
    let many: String = (0..80).map(|i| format!("X-{i}: v\r\n")).collect();
    let req = format!("GET /health HTTP/1.1\r\n{many}\r\n");
    assert!(raw_http(server.addr, req.as_bytes()).starts_with("HTTP/1.1 431"));
    let body = "x".repeat(200);
    assert_eq!(
        http(
            server.addr,
            "POST",
            "/api/publish",
            &[("X-API-Key", API_KEY)],
            &body
        )
        .0,
        413
    );
}

#[test]
fn slow_request_heads_time_out() {
    let server = Server::start_with(&Overrides {
        server: "header_timeout_ms = 300".into(),
        ..Default::default()
    });
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes the head
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // a client that sends nothing is dropped without an answer
    let mut idle = std::net::TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start();
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
}
