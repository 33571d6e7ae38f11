//! One server per port, and the zero-downtime hand-over: a second server on a
//! busy port refuses to start unless started with `--takeover`; a draining
//! server with a successor stops taking connections at once; API calls during
//! a drain are refused as temporary instead of acknowledged.

mod common;

use common::{Client, Overrides, Server};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process started by hand (the harness has no way to pass `--takeover`), killed
/// on drop.
struct Successor {
    child: Child,
    log: std::sync::mpsc::Receiver<String>,
}

impl Successor {
    /// Starts `wiresocket serve --takeover` with `first`'s config on `first`'s address and
    /// waits for its readiness line.
    fn start(first: &Server) -> Successor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wiresocket"))
            .args(["serve", "--takeover", "--config"])
            .arg(first.dir.join("wiresocket.toml"))
            .env("WIRESOCKET_SERVER__LISTEN", first.addr.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, log) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let s = Successor { child, log };
        let ready = format!("listening on http://{}", first.addr);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = s.log.recv_timeout(left).expect("successor started");
            if line.contains(&ready) {
                return s;
            }
        }
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let first = Server::start();
    let mut second = Command::new(env!("CARGO_BIN_EXE_wiresocket"))
        .args(["serve", "--config"])
        .arg(first.dir.join("wiresocket.toml"))
        .env("WIRESOCKET_SERVER__LISTEN", first.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second server started on a busy port");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&first.addr.to_string())
            && stderr.contains("already listens")
            && stderr.contains("--takeover"),
        "{stderr}"
    );
    // the first one is untouched and serves everything
    for _ in 0..4 {
        Client::connect(&first, "u");
    }
}

#[test]
fn takeover_hands_the_port_to_the_successor_on_sigterm() {
    let mut old = Server::start_with(&Overrides {
        drain_window_ms: Some(1000),
        ..Default::default()
    });
    let mut old_clients: Vec<Client> = (0..4)
        .map(|i| Client::connect(&old, &format!("old{i}")).0)
        .collect();
    let new = Successor::start(&old);
    old.sigterm();
    std::thread::sleep(Duration::from_millis(200)); // the signal is handled
                                                    // every new upgrade is served by the successor: none gets 503 from the draining one
                                                    // (`Client::connect` fails on anything but 101 and a connect reply)
    let fresh: Vec<Client> = (0..24)
        .map(|i| Client::connect(&old, &format!("new{i}")).0)
        .collect();
    // metrics and health now come from the successor alone: it accepted every upgrade
    let metrics = common::http(old.addr, "GET", "/metrics", &[], "").1;
    assert_eq!(
        common::metric_sum(&metrics, "wiresocket_connections_accepted_total", &[]),
        fresh.len() as f64,
        "{metrics}"
    );
    for c in old_clients.iter_mut() {
        assert_eq!(c.wait_close().0, 3001);
    }
    let status = old.wait_exit(Duration::from_secs(10)).expect("old exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        common::http(old.addr, "GET", "/health", &[], "").0,
        200,
        "the successor keeps serving"
    );
    drop(new);
}

#[test]
fn publish_during_a_drain_is_refused_as_temporary() {
    let server = Server::start_with(&Overrides {
        drain_window_ms: Some(3000),
        ..Default::default()
    });
    // closes are spread over the window, so the node drains for about 3 s
    let _clients: Vec<Client> = (0..8)
        .map(|i| Client::connect(&server, &format!("u{i}")).0)
        .collect();
    server.sigterm();
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = server.api("publish", json!({"channel": "c", "data": 1}));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], 100, "{body}");
    assert_eq!(body["error"]["temporary"], true, "{body}");
    assert_eq!(server.metric_sum("wiresocket_publishes_total", &[]), 0.0);
}
