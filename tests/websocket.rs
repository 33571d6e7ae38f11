//! RFC 6455 behaviour over real sockets: handshake acceptance and refusal,
//! fragmentation, size and UTF-8 limits, ping/pong, protocol violations, and
//! the conformance echo endpoint.

mod common;

use common::{http, masked_frame, Client, Overrides, RawWs, Server};

fn echo_server(extra_ws: &str) -> Server {
    Server::start_with(&Overrides {
        server: "conformance_echo = true".into(),
        websocket: extra_ws.into(),
        ..Default::default()
    })
}

#[test]
fn handshake_refuses_bad_upgrades() {
    let server = Server::start();
    let base = |extra: &str, skip: &str| {
        let mut req = String::from("GET /connection/websocket HTTP/1.1\r\nHost: x\r\n");
        for h in [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ] {
            if !h.starts_with(skip) || skip.is_empty() {
                req.push_str(h);
                req.push_str("\r\n");
            }
        }
        req.push_str(extra);
        req.push_str("\r\n");
        common::raw_http(server.addr, req.as_bytes())
    };
    assert!(base("", "").starts_with("HTTP/1.1 101"));
    assert!(base("", "Sec-WebSocket-Key").starts_with("HTTP/1.1 400"));
    assert!(base("", "Sec-WebSocket-Version").starts_with("HTTP/1.1 400"));
    // the echo endpoint is off by default
    let r = common::raw_http(
        server.addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // a plain GET of the websocket path says an upgrade is required
    assert_eq!(
        http(server.addr, "GET", "/connection/websocket", &[], "").0,
        426
    );
}

#[test]
fn echo_reassembles_fragments_and_answers_pings() {
    let server = echo_server("");
    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x1, true, b"hello");
    assert_eq!(ws.read_frame(), Some((0x1, b"hello".to_vec())));
    ws.frame(0x2, true, &[0, 1, 2, 255]);
    assert_eq!(ws.read_frame(), Some((0x2, vec![0, 1, 2, 255])));
    // text in three fragments with a ping in the middle
    ws.frame(0x1, false, b"frag");
    ws.frame(0x0, false, b"men");
    ws.frame(0x9, true, b"are you there");
    ws.frame(0x0, true, b"ted");
    assert_eq!(ws.read_frame(), Some((0xA, b"are you there".to_vec())));
    assert_eq!(ws.read_frame(), Some((0x1, b"fragmented".to_vec())));
    // a 60 KiB message in one frame (under the default 64 KiB limit, bigger than a pooled buffer)
    let big = vec![b'x'; 60 * 1024];
    ws.frame(0x1, true, &big);
    assert_eq!(ws.read_frame().map(|f| f.1.len()), Some(big.len()));
    // a client close is echoed
    ws.frame(0x8, true, &1000u16.to_be_bytes());
    assert_eq!(ws.wait_close_code(), 1000);
}

#[test]
fn frames_split_across_tcp_writes_are_reassembled() {
    let server = echo_server("");
    let mut ws = RawWs::open(&server, "/echo");
    let frame = masked_frame(0x1, true, &vec![b'z'; 3000]);
    for chunk in frame.chunks(7) {
        ws.write_raw(chunk);
    }
    assert_eq!(ws.read_frame().map(|f| f.1.len()), Some(3000));
}

#[test]
fn message_too_big_closes_1009() {
    let server = echo_server("max_message_bytes = 1024");
    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x1, true, &vec![b'a'; 2000]);
    assert_eq!(ws.wait_close_code(), 1009);
    // the limit applies to the reassembled message too
    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x1, false, &vec![b'a'; 600]);
    ws.frame(0x0, true, &vec![b'a'; 600]);
    assert_eq!(ws.wait_close_code(), 1009);
    common::wait_for(|| {
        server.metric_sum("wiresocket_disconnects_total", &["code=\"1009\""]) >= 2.0
    });
}

#[test]
fn invalid_utf8_closes_1007_and_violations_close_1002() {
    let server = echo_server("");
    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x1, true, &[0xc3, 0x28]);
    assert_eq!(ws.wait_close_code(), 1007);

    let mut ws = RawWs::open(&server, "/echo");
    ws.write_raw(&[0x81, 0x02, b'h', b'i']); // unmasked client frame
    assert_eq!(ws.wait_close_code(), 1002);

    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x0, true, b"stray continuation");
    assert_eq!(ws.wait_close_code(), 1002);

    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x3, true, b"reserved opcode");
    assert_eq!(ws.wait_close_code(), 1002);

    let mut ws = RawWs::open(&server, "/echo");
    ws.frame(0x9, false, b"fragmented ping");
    assert_eq!(ws.wait_close_code(), 1002);
}

#[test]
fn protocol_endpoint_answers_pings_and_rejects_binary() {
    let server = Server::start();
    let mut ws = RawWs::open(&server, "/connection/websocket");
    ws.frame(0x9, true, b"p");
    assert_eq!(ws.read_frame(), Some((0xA, b"p".to_vec())));
    ws.frame(0x2, true, b"\x01\x02");
    assert_eq!(ws.wait_close_code(), 3506);
    // and the tungstenite client sees the same close on the Centrifugo path
    let mut c = Client::open(&server);
    c.ws.send(tungstenite::Message::binary(vec![1u8, 2]))
        .unwrap();
    assert_eq!(c.wait_close().0, 3506);
}

#[test]
fn invalid_utf8_in_a_first_fragment_closes_1007_at_once() {
    let server = echo_server("");
    let mut ws = RawWs::open(&server, "/echo");
    // valid start, then a byte that can never appear in UTF-8; the final fragment is never sent
    ws.frame(0x1, false, b"hello \xff");
    assert_eq!(ws.wait_close_code(), 1007);
    // a code point split across fragments is fine
    let mut ws = RawWs::open(&server, "/echo");
    let text = "añ𝄞".as_bytes();
    ws.frame(0x1, false, &text[..2]);
    ws.frame(0x0, false, &text[2..5]);
    ws.frame(0x0, true, &text[5..]);
    assert_eq!(ws.read_frame(), Some((0x1, text.to_vec())));
}

#[test]
fn subscription_token_is_refused_as_connection_token() {
    let server = Server::start();
    let mut c = Client::open(&server);
    let token = common::token_with("u", 3600, serde_json::json!({"channel": "$room"}));
    c.send_text(&serde_json::json!({"id": 1, "connect": {"token": token}}).to_string());
    assert_eq!(c.wait_close().0, 3500);
}

#[test]
fn echo_is_not_cut_by_the_connect_deadline() {
    // the connect deadline is header_timeout_ms; echo sessions never send `connect`
    let server = Server::start_with(&Overrides {
        server: "conformance_echo = true\nheader_timeout_ms = 300".into(),
        ..Default::default()
    });
    let mut ws = RawWs::open(&server, "/echo");
    let started = std::time::Instant::now();
    let mut n = 0u32;
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        let msg = format!("busy {n}");
        ws.frame(0x1, true, msg.as_bytes());
        assert_eq!(ws.read_frame(), Some((0x1, msg.into_bytes())), "after {n}");
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        server.metric_sum("wiresocket_disconnects_total", &["code=\"3502\""]),
        0.0
    );
}
