//! Bounded memory and a fair core under abuse from raw-socket clients: a ping
//! flood that never reads, a command flood, channel names invented by the
//! thousand. Memory bounds are asserted on the server's RSS (not timings).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{masked_frame, Client, Overrides, RawWs, Server};
use serde_json::json;

#[test]
fn ping_flood_without_reading_holds_one_pong() {
    let server = Server::start();
    let mut ws = RawWs::open_small_rcvbuf(&server, "/connection/websocket", 4096);
    let before = server.rss_kib();
    // 6,000,000 pings (36 MB), never reading a pong: pongs coalesce and count
    // against the outbound budget instead of queueing one allocation each
    let chunk: Vec<u8> = (0..10_000)
        .flat_map(|_| masked_frame(0x9, true, b""))
        .collect();
    ws.stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in 0..600 {
        if ws.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss_kib();
    assert!(
        after < before + 32 * 1024,
        "server RSS grew from {before} KiB to {after} KiB under a ping flood"
    );
    // the server is still healthy and serves others
    let (mut c, _) = Client::connect(&server, "other");
    c.subscribe("news");
}

#[test]
fn flooding_clients_do_not_starve_their_cores() {
    // the rate limit is off: what keeps the core fair here is the session's time slice
    let server = Server::start_with(&Overrides {
        websocket: "command_rate_per_s = 0".into(),
        ..Default::default()
    });
    let batch: String = (1..=1000)
        .map(|i| json!({"id": i, "presence": {"channel": "x"}}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    // two flooders per core (connections are spread over both cores' listeners), each
    // pipelining batches without waiting, replies drained by a second thread
    let flooders: Vec<_> = (0..4)
        .map(|i| {
            let mut ws = RawWs::open(&server, "/connection/websocket");
            let connect =
                json!({"id": 1, "connect": {"token": server.token(&format!("f{i}"), 60)}});
            ws.frame(0x1, true, connect.to_string().as_bytes());
            let frame = masked_frame(0x1, true, batch.as_bytes());
            let mut reader = ws.stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut sink = vec![0u8; 1 << 16];
                while matches!(std::io::Read::read(&mut reader, &mut sink), Ok(n) if n > 0) {}
            });
            std::thread::spawn(move || {
                let until = std::time::Instant::now() + Duration::from_secs(3);
                let mut sent = 0;
                while std::time::Instant::now() < until && ws.stream.write_all(&frame).is_ok() {
                    sent += 1;
                }
                let _ = ws.stream.shutdown(std::net::Shutdown::Both);
                sent
            })
        })
        .collect();
    for _ in 0..30 {
        let (status, body) = common::http(server.addr, "GET", "/health", &[], "");
        assert_eq!(status, 200, "health not served during a flood: {body}");
        let (mut c, _) = Client::connect(&server, "bystander");
        c.subscribe("news");
    }
    for f in flooders {
        assert!(f.join().unwrap() > 0);
    }
}

#[test]
fn command_flood_gets_111_then_3013_and_others_are_served() {
    let server = Server::start_with(&Overrides {
        websocket: "command_rate_per_s = 50\ncommand_burst = 20".into(),
        ..Default::default()
    });
    let (mut flood, _) = Client::connect(&server, "flood");
    let batch: String = (1..=500)
        .map(|i| json!({"id": i, "history": {"channel": "x"}}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    flood.send_text(&batch);
    let mut limited = 0;
    let code = loop {
        match flood.recv() {
            Ok(v) if v["error"]["code"] == 111 => limited += 1,
            Ok(_) => {}
            Err(common::Ended::Closed(code, _)) => break code,
            Err(common::Ended::Eof) => break 0,
        }
    };
    assert!(limited > 0, "refused commands are answered 111 first");
    assert_eq!(code, 3013, "persistent abuse closes with 3013");
    assert!(server.metric_sum("wiresocket_commands_rate_limited_total", &[]) >= 20.0);
    let (mut ok, _) = Client::connect(&server, "polite");
    ok.subscribe("news");
}

#[test]
fn invented_channel_names_create_no_streams_beyond_the_cap() {
    let server = Server::start_with(&Overrides {
        env: vec![
            common::history_env(10),
            ("WIRESOCKET_ENGINE__MAX_CHANNELS".into(), "3".into()),
            // clients may read history without subscribing: the reads are the attack here
            (
                "WIRESOCKET_CHANNELS__DEFAULT__ALLOW_HISTORY_FOR_CLIENT".into(),
                "true".into(),
            ),
        ],
        websocket: "command_rate_per_s = 0".into(), // 300 reads in a row are the point here
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&server, "reader");
    // history reads of 300 unknown channels store nothing
    for i in 0..300 {
        let r = c.call(
            "history",
            json!({"channel": format!("nobody-{i}"), "limit": 10}),
        );
        assert!(r.get("history").is_some(), "{r}");
    }
    assert_eq!(server.metric_sum("wiresocket_engine_streams", &[]), 0.0);
    for i in 0..3 {
        c.subscribe(&format!("real-{i}"));
    }
    let r = c.call("subscribe", json!({"channel": "real-3"}));
    assert_eq!(r["error"]["code"], 106, "{r}");
    assert_eq!(server.metric_sum("wiresocket_engine_streams", &[]), 3.0);
    assert_eq!(
        server.metric_sum("wiresocket_engine_channel_refusals_total", &[]),
        1.0
    );
    let _ = TcpStream::connect(server.addr).unwrap(); // still accepting
}

/// The server with fault injection on (debug builds: `session::faults`).
fn faulty() -> Server {
    Server::start_with(&Overrides {
        env: vec![("WS_TEST_FAULTS".into(), "1".into())],
        ..Default::default()
    })
}

#[test]
fn a_panicking_session_is_dropped_and_counted_and_its_core_goes_on() {
    let server = faulty();
    // bystanders on both cores
    let mut others: Vec<Client> = (0..6)
        .map(|i| {
            let (mut c, _) = Client::connect(&server, &format!("b{i}"));
            c.subscribe("news");
            c
        })
        .collect();
    for i in 0..4 {
        let (mut victim, _) = Client::connect(&server, &format!("v{i}"));
        victim.send_text(r#"{"id":2,"__test_fault":"session-panic"}"#);
        assert!(victim.recv().is_err(), "the panicking session is dropped");
    }
    common::wait_for(|| server.metric_sum("wiresocket_session_panics_total", &[]) == 4.0);
    let (status, _) = common::http(server.addr, "GET", "/health", &[], "");
    assert_eq!(status, 200);
    let (status, _) = server.api("publish", json!({"channel": "news", "data": 1}));
    assert_eq!(status, 200);
    for c in others.iter_mut() {
        assert_eq!(c.next_pub().0, "news", "every core still delivers");
    }
    Client::connect(&server, "late").0.subscribe("news");
}

#[test]
fn a_dead_core_takes_the_node_down_visibly() {
    let mut server = faulty();
    let (mut c, _) = Client::connect(&server, "x");
    c.send_text(r#"{"id":2,"__test_fault":"core-panic"}"#);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the node exits instead of serving with a dead core");
    assert!(!status.success(), "{status:?}");
}
