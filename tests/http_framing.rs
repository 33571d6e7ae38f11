//! The HTTP edge under hostile or odd clients: one deadline per request head,
//! bodies never read before the route and key allow them, framing that leaves
//! no smuggling primitive, `HEAD` without a body, and the per-core cap on
//! connections that are not connected yet (apart from `max_connections`).

mod common;

use common::{http, raw_http, Client, Overrides, RawWs, Server};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn status_of(response: &str) -> u16 {
    common::parse_http_response(response.as_bytes()).0
}

/// Sends `head` (and `extra` body bytes) without finishing the body; returns what the server
/// answers within 5 s, and whether it had closed the connection by then.
fn answer_without_body(server: &Server, head: &str, extra: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(extra).unwrap();
    let mut out = Vec::new();
    let closed = s.read_to_end(&mut out).is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn slow_heads_are_all_cut_by_one_deadline() {
    let server = Server::start_with(&Overrides {
        server: "header_timeout_ms = 600".into(),
        ..Default::default()
    });
    // 50 clients each send one byte every 100 ms: every read is quicker than the timeout,
    // but no head ever completes.
    let mut socks: Vec<TcpStream> = (0..50)
        .map(|_| {
            let s = TcpStream::connect(server.addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let head = b"GET /health HTTP/1.1\r\nX-Slow: ";
    let mut open = vec![true; socks.len()];
    let started = Instant::now();
    let mut i = 0usize;
    while open.iter().any(|o| *o) && started.elapsed() < Duration::from_secs(8) {
        for (s, o) in socks.iter_mut().zip(open.iter_mut()).filter(|(_, o)| **o) {
            let byte = head.get(i).copied().unwrap_or(b'a');
            if s.write(&[byte]).is_err() {
                *o = false;
                continue;
            }
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(_) => *o = false, // 408 (then EOF) or EOF
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *o = false,
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_open = open.iter().filter(|o| **o).count();
    assert_eq!(
        still_open,
        0,
        "connections still open after {:?}",
        started.elapsed()
    );
    assert!(server.metric_sum("wiresocket_http_timeouts_total", &[]) >= 50.0);
}

#[test]
fn a_body_sent_to_health_is_not_read() {
    let server = Server::start();
    // announces 1 MB, sends 10 bytes and stops: the answer must not wait for the rest
    let head = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
    let (out, closed) = answer_without_body(&server, head, b"0123456789");
    assert_eq!(status_of(&out), 200, "{out}");
    assert!(out.contains("Connection: close\r\n"), "{out}");
    assert!(
        closed,
        "the connection is closed: its unread body makes it unusable"
    );
    assert!(server.metric_sum("wiresocket_http_unread_bodies_total", &[]) >= 1.0);
}

#[test]
fn a_bad_api_key_is_refused_before_the_body() {
    let server = Server::start();
    let head =
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: wrong\r\nContent-Length: 1000000\r\n\r\n";
    let (out, closed) = answer_without_body(&server, head, b"{\"channel\":");
    assert_eq!(status_of(&out), 401, "{out}");
    assert!(closed);
    // an unknown method with a good key is refused before the body too
    let head = format!(
        "POST /api/nope HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: 1000000\r\n\r\n",
        common::API_KEY
    );
    let (out, _) = answer_without_body(&server, &head, b"");
    assert_eq!(status_of(&out), 404, "{out}");
}

#[test]
fn a_slow_api_body_times_out() {
    let server = Server::start_with(&Overrides {
        server: "body_timeout_ms = 400".into(),
        ..Default::default()
    });
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: 100\r\n\r\n",
        common::API_KEY
    );
    let (out, closed) = answer_without_body(&server, &head, b"{\"chan");
    assert_eq!(status_of(&out), 408, "{out}");
    assert!(closed);
}

#[test]
fn framing_that_could_smuggle_is_refused() {
    let server = Server::start();
    let key = common::API_KEY;
    let cases = [
        ("Transfer-Encoding: chunked\r\n", 501),
        ("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", 501),
        ("Content-Length: 4\r\nContent-Length: 4\r\n", 400),
        ("Content-Length: 4\r\nContent-Length: 5\r\n", 400),
        ("Content-Length: +4\r\n", 400),
        ("Content-Length: 4, 4\r\n", 400),
        ("Content-Length: -4\r\n", 400),
    ];
    for (headers, want) in cases {
        let req = format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n{headers}\r\n0\r\n\r\n"
        );
        let out = raw_http(server.addr, req.as_bytes());
        assert_eq!(status_of(&out), want, "{headers:?}: {out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
    }
    assert_eq!(server.metric_sum("wiresocket_publishes_total", &[]), 0.0);
    assert!(server.metric_sum("wiresocket_http_rejected_total", &[]) >= cases.len() as f64);
}

#[test]
fn head_health_has_headers_only() {
    let server = Server::start();
    let get = raw_http(
        server.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let head = raw_http(
        server.addr,
        b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "no body after the head: {head:?}"
    );
    let length = |r: &str| {
        r.lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(str::to_owned)
    };
    assert_eq!(length(&head), length(&get));
    assert!(get.ends_with(r#"{"status":"ok"}"#), "{get}");
    // keep-alive after a HEAD: the next response starts right after the head
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.ends_with(r#"{"status":"ok"}"#), "{out}");
}

#[test]
fn upgraded_but_not_connected_sockets_do_not_count_as_connections() {
    let server = Server::start_with(&Overrides {
        server: "max_connections = 100".into(),
        ..Default::default()
    });
    let idle: Vec<RawWs> = (0..200)
        .map(|_| RawWs::open(&server, "/connection/websocket"))
        .collect();
    let (status, body) = http(server.addr, "GET", "/health", &[], "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (mut c, _) = Client::connect(&server, "real");
    c.subscribe("news");
    // the 200 idle sockets, plus the metrics request itself
    assert_eq!(
        server.metric_sum("wiresocket_pending_connections", &[]),
        201.0
    );
    drop(idle);
}

#[test]
fn pending_connections_are_capped_per_core() {
    let server = Server::start_with(&Overrides {
        cores: Some(1),
        server:
            "max_pending_connections_per_core = 5\nretry_after_min_s = 2\nretry_after_max_s = 4"
                .into(),
        ..Default::default()
    });
    let idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // let the server accept them
    let out = raw_http(server.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    let secs: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .expect("Retry-After")
        .trim()
        .parse()
        .unwrap();
    assert!((2..=4).contains(&secs), "{secs}");
    drop(idle);
    common::wait_for(|| {
        raw_http(
            server.addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .starts_with("HTTP/1.1 200")
    });
    assert!(server.metric_sum("wiresocket_pending_refused_total", &[]) >= 1.0);
}
