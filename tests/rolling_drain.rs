//! The graceful drain of one node, seen from outside (the rolling restart behind HAProxy is
//! `rolling_restart.rs`): on SIGTERM the node leaves the pool at once (`/health` 503
//! "draining", upgrades 503 + Retry-After) while its sessions stay up for
//! `server.drain_leave_pool_ms`; only then does it send 3001 "shutdown", in
//! `server.drain_batches` batches spread over `server.drain_window_ms`, report its progress on
//! `/metrics` (`wiresocket_drain_sessions_left`, `wiresocket_drain_batches_total`), and exit 0.
//!
//! With a successor process on the port (`serve --takeover`) the leave-pool wait is skipped.
//!
//! One core, so that one core's batches are the node's (with several cores each core splits
//! its own sessions, and the batches of all cores go out at the same times).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Client, Ended, Overrides, Server};

const UPGRADE: &[u8] = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const LEAVE_POOL: Duration = Duration::from_millis(1500);
const WINDOW_MS: u64 = 1200;
const CLIENTS: usize = 6;

#[test]
fn sigterm_leaves_the_pool_first_then_disconnects_in_batches() {
    let mut server = Server::start_with(&Overrides {
        cores: Some(1),
        drain_window_ms: Some(WINDOW_MS),
        drain_leave_pool_ms: Some(LEAVE_POOL.as_millis() as u64),
        server: "drain_batches = 3".into(),
        ..Overrides::default()
    });
    let (tx, rx) = mpsc::channel();
    for i in 0..CLIENTS {
        let (mut c, _) = Client::connect(&server, &format!("u{i}"));
        let tx = tx.clone();
        std::thread::spawn(move || {
            c.set_timeout(Duration::from_secs(20));
            let end = loop {
                match c.recv() {
                    Ok(v) if v == serde_json::json!({}) => c.send_text("{}"),
                    Ok(_) => {}
                    Err(e) => break e,
                }
            };
            let _ = tx.send((Instant::now(), end));
        });
    }
    drop(tx);

    let t0 = Instant::now();
    server.sigterm();
    // out of the pool at once: health 503 "draining", upgrades refused with Retry-After
    let deadline = t0 + Duration::from_secs(5);
    loop {
        let (status, body) = common::http(server.addr, "GET", "/health", &[], "");
        if status == 503 {
            assert_eq!(body, r#"{"status":"draining"}"#);
            break;
        }
        assert!(Instant::now() < deadline, "health still {status} {body}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = common::raw_http(server.addr, UPGRADE);
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("Retry-After: "), "{r}");
    let left_pool = t0.elapsed();

    // drain progress on /metrics until the node stops answering
    let mut seen_left: Vec<u64> = Vec::new();
    let mut batches_seen = 0.0f64;
    while server.child.try_wait().unwrap().is_none() {
        let Ok(mut s) = std::net::TcpStream::connect(server.addr) else {
            break;
        };
        use std::io::{Read, Write};
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let (status, text) = common::parse_http_response(&raw);
        if status == 200 {
            assert_eq!(common::metric_sum(&text, "wiresocket_draining", &[]), 1.0);
            let left = common::metric_sum(&text, "wiresocket_drain_sessions_left", &[]) as u64;
            if seen_left.last() != Some(&left) {
                seen_left.push(left);
            }
            batches_seen = batches_seen.max(common::metric_sum(
                &text,
                "wiresocket_drain_batches_total",
                &[],
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = server.wait_exit(Duration::from_secs(20)).expect("exit");
    assert!(status.success(), "{status}");

    let closes: Vec<(Instant, Ended)> = rx.iter().collect();
    assert_eq!(closes.len(), CLIENTS);
    for (_, end) in &closes {
        assert!(
            matches!(end, Ended::Closed(3001, r) if r == "shutdown"),
            "{end:?}"
        );
    }
    let first = closes.iter().map(|c| c.0).min().unwrap() - t0;
    let last = closes.iter().map(|c| c.0).max().unwrap() - t0;
    println!(
        "drain: health 503 after {left_pool:?}; closes from {first:?} to {last:?} \
         (leave pool {LEAVE_POOL:?}, window {WINDOW_MS} ms, 3 batches of 2); \
         sessions left seen on /metrics: {seen_left:?}; batches seen: {batches_seen}"
    );
    // nobody was disconnected before the pool had time to notice
    assert!(first >= LEAVE_POOL, "first 3001 after {first:?}");
    // three batches, a third of the window apart: not all at once
    assert!(
        last - first >= Duration::from_millis(WINDOW_MS / 2),
        "closes from {first:?} to {last:?}"
    );
    assert!(
        server
            .wait_log("sessions=6 batches=3", Duration::from_secs(5))
            .is_some(),
        "no drain log line with sessions=6 batches=3:\n{}",
        server.log.join("\n")
    );
    // the progress went down in steps: 6 to go, then fewer, then none (a first 0 may be read
    // before the core saw the signal)
    let steps: Vec<u64> = seen_left.iter().copied().skip_while(|&l| l == 0).collect();
    assert_eq!(steps.first(), Some(&(CLIENTS as u64)), "{seen_left:?}");
    assert!(
        steps.iter().any(|&l| l > 0 && l < CLIENTS as u64),
        "{seen_left:?}"
    );
    assert!(steps.windows(2).all(|w| w[0] >= w[1]), "{seen_left:?}");
    assert!(batches_seen >= 2.0, "{batches_seen}");
}

/// With a successor on the port (`serve --takeover`), new connections already reach the
/// successor: the drain does not wait `drain_leave_pool_ms` (a minute here) before its 3001s.
#[test]
fn with_a_successor_on_the_port_the_drain_does_not_wait_to_leave_the_pool() {
    use std::io::BufRead;
    let mut server = Server::start_with(&Overrides {
        cores: Some(1),
        drain_leave_pool_ms: Some(60_000),
        ..Overrides::default()
    });
    let (mut c, _) = Client::connect(&server, "u");
    let mut successor = std::process::Command::new(env!("CARGO_BIN_EXE_wiresocket"))
        .args(["serve", "--takeover", "--config"])
        .arg(server.dir.join("wiresocket.toml"))
        .env("WIRESOCKET_SERVER__LISTEN", server.addr.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("listening on http://{}", server.addr);
    let lines = std::io::BufReader::new(successor.stdout.take().unwrap()).lines();
    let mut lines = lines.map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains(&ready)),
        "the successor did not start"
    );
    server.sigterm();
    c.set_timeout(Duration::from_secs(30));
    assert_eq!(c.wait_close(), (3001, "shutdown".to_owned()));
    let status = server.wait_exit(Duration::from_secs(30));
    let _ = successor.kill();
    let _ = successor.wait();
    assert!(
        status.is_some_and(|s| s.success()),
        "the old process did not drain and exit: {status:?}"
    );
}
