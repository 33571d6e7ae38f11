//! Regression test for cross-connection writes: a closed session must never write
//! into a descriptor the kernel has reused for a new connection.
//!
//! The scenario that showed it (issue 7, item 1): 3,000 subscribers of 8 KB
//! publications on both cores, 100 of them disconnecting per round while 150 new
//! connections arrive (100 plain `GET /health` probes, 50 new subscribers), with
//! publications flowing all the time. Before the fix, probes read other clients'
//! `{"push":{"channel":...}}` frames after their HTTP response. Every probe here must
//! read exactly one HTTP response and nothing else.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{http, RawWs, Server};

const SUBSCRIBERS: usize = 3_000;
const ROUNDS: usize = 8;
const LEAVE_PER_ROUND: usize = 100;
const PROBES_PER_ROUND: usize = 100;
const JOIN_PER_ROUND: usize = 50;
const READERS: usize = 8;

/// Opens a WebSocket, connects and subscribes to `news`; returns once subscribed.
fn subscriber(server: &Server, n: usize) -> TcpStream {
    let mut ws = RawWs::open(server, "/connection/websocket");
    let cmds = format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"news\"}}}}",
        server.token(&format!("u{n}"), 3600)
    );
    ws.frame(0x1, true, cmds.as_bytes());
    loop {
        let (op, payload) = ws.read_frame().expect("subscribe reply");
        if op == 0x1 && String::from_utf8_lossy(&payload).contains("\"id\":2") {
            assert!(String::from_utf8_lossy(&payload).contains("\"subscribe\""));
            return ws.stream;
        }
    }
}

/// A probe: one `GET /health`; the whole byte stream must be exactly one HTTP response.
fn probe(server: &Server) -> Result<(), String> {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!(
            "no HTTP head in {:?}",
            &text[..text.len().min(200)]
        ));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected status in {head:?}"));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    if body.len() != len || raw.windows(6).any(|w| w == b"\"push\"") {
        return Err(format!(
            "probe read {} bytes beyond its response: {:?}",
            body.len().saturating_sub(len),
            &body[..body.len().min(200)]
        ));
    }
    Ok(())
}

/// Drains subscriber sockets so publications keep flowing (nonblocking reads).
fn reader(rx: mpsc::Receiver<TcpStream>, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    let mut socks: Vec<TcpStream> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        while let Ok(s) = rx.try_recv() {
            s.set_nonblocking(true).unwrap();
            socks.push(s);
        }
        socks.retain_mut(|s| loop {
            match s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        });
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn closed_sessions_never_write_into_reused_descriptors() {
    let server = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut feeds = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (tx, rx) = mpsc::channel();
        let (stop, received) = (stop.clone(), received.clone());
        readers.push(std::thread::spawn(move || reader(rx, stop, received)));
        feeds.push(tx);
    }
    let mut subs: Vec<TcpStream> = Vec::new();
    let add = |server: &Server, subs: &mut Vec<TcpStream>, n: usize| {
        let s = subscriber(server, n);
        feeds[n % READERS].send(s.try_clone().unwrap()).unwrap();
        subs.push(s);
    };
    for n in 0..SUBSCRIBERS {
        add(&server, &mut subs, n);
    }
    // publications of 8 KB, back to back, each through a new HTTP connection
    let publisher = {
        let (stop, addr) = (stop.clone(), server.addr);
        std::thread::spawn(move || {
            let body = format!(
                "{{\"channel\":\"news\",\"data\":{{\"p\":\"{}\"}}}}",
                "x".repeat(8 * 1024)
            );
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = http(
                    addr,
                    "POST",
                    "/api/publish",
                    &[("X-API-Key", common::API_KEY)],
                    &body,
                );
                assert_eq!(status, 200);
                n += 1;
            }
            n
        })
    };
    let mut failures = Vec::new();
    let mut next = SUBSCRIBERS;
    for round in 0..ROUNDS {
        for _ in 0..LEAVE_PER_ROUND {
            let i = fastrand::usize(..subs.len());
            let s = subs.swap_remove(i);
            let _ = s.shutdown(Shutdown::Both);
        }
        for k in 0..PROBES_PER_ROUND + JOIN_PER_ROUND {
            if k % 3 == 2 {
                add(&server, &mut subs, next);
                next += 1;
            } else if let Err(e) = probe(&server) {
                failures.push(format!("round {round}: {e}"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert!(published > 0 && received.load(Ordering::Relaxed) > 0);
    assert!(
        failures.is_empty(),
        "{} of {} probes read bytes that were not theirs; first: {}",
        failures.len(),
        ROUNDS * 100,
        failures[0]
    );
}
