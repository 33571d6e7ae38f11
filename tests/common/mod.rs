//! Black-box test harness: starts the real `wiresocket` binary on 127.0.0.1 with a
//! generated config, mints tokens for it, and speaks to it over real sockets
//! (a blocking tungstenite WebSocket client and a minimal HTTP/1.1 client).
//!
//! Every server is killed when its `Server` is dropped, so a failing test
//! never leaves a process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub mod delivery;
pub mod node;
mod raw;
pub mod tls;
#[allow(unused_imports)]
pub use raw::{masked_frame, RawWs};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const API_KEY: &str = "test-api-key";

/// A running server process.
pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
    pub dir: PathBuf,
    log_rx: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

fn unique_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wiresocket-test-{}-{}", std::process::id(), n));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Starts a server on 127.0.0.1:0 with both cores, the test secret and API key,
    /// and `extra` TOML appended (sections may be repeated only if not already
    /// present below: `[websocket]`, `[channels]` and `[server]` extras are merged by
    /// passing them through `extra_server`, `extra_websocket`, `extra_channels`).
    pub fn start() -> Server {
        Self::start_with(&Overrides::default())
    }

    /// Starts a server. There is no retry: a start that fails fails the test, with the
    /// server's log and its threads' states in the panic message, also appended to
    /// `target/test-start-failures.log` (it survives the test harness's output capture).
    /// A failed start is a bug to fix (see `parallel_starts_all_come_up_first_time`).
    pub fn start_with(o: &Overrides) -> Server {
        Self::try_start(o).unwrap_or_else(|report| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/test-start-failures.log"
            );
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "=== {:?}\n{report}", SystemTime::now());
            }
            panic!("server did not start (report also in {path}):\n{report}")
        })
    }

    /// One start attempt, no retry: `Err` holds the log and thread states.
    pub fn try_start(o: &Overrides) -> Result<Server, String> {
        let dir = unique_dir();
        let cfg = format!(
            r#"[server]
listen = "127.0.0.1:0"
cores = {cores}
drain_window_ms = {drain}
drain_leave_pool_ms = {leave_pool}
{server}

[websocket]
expiry_grace_s = {grace}
{websocket}

[auth]
hmac_secret = "{SECRET}"
{auth}

[api]
key = "{API_KEY}"

[shedding]
{shedding}

[channels]
allow_client_publish = true
{channels}
"#,
            cores = o.cores.unwrap_or(2),
            drain = o.drain_window_ms.unwrap_or(200),
            // no health-checking balancer in front of most tests: disconnect at once
            leave_pool = o.drain_leave_pool_ms.unwrap_or(0),
            server = o.server,
            websocket = o.websocket,
            grace = o.expiry_grace_s.unwrap_or(1),
            auth = o.auth,
            channels = o.channels,
            // off unless a test asks: admission must not depend on how busy the machine is
            shedding = o.shedding.as_deref().unwrap_or("enabled = false"),
        );
        let path = dir.join("wiresocket.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wiresocket"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("WS_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(o.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wiresocket");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if std::env::var_os("WS_TEST_LOG").is_some() {
                        eprintln!("[server] {line}");
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        // only the pipe readers hold senders now: a server that exits early ends the wait at once
        drop(tx);
        let mut server = Server {
            addr: "127.0.0.1:1".parse().unwrap(),
            child,
            dir,
            log_rx: rx,
            log: vec![],
        };
        let Some(line) = server.wait_log("listening on http", Duration::from_secs(40)) else {
            let pid = server.child.id();
            let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.flatten()
                        .map(|t| std::fs::read_to_string(t.path().join("stat")).unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default();
            let exit = match server.wait_exit(Duration::from_millis(500)) {
                Some(st) => format!("exited: {st}"),
                None => "still running (no listening line within 40 s)".to_string(),
            };
            return Err(format!(
                "server {exit}\nlog:\n{}\nthreads:\n{}",
                server.log.join("\n"),
                threads.join("")
            ));
        };
        let addr = line
            .rsplit("://")
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        server.addr = addr.parse().expect("listen address");
        Ok(server)
    }

    /// Waits until a log line containing `needle` appears (lines already seen count).
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log_rx.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connection token for `user` valid for `ttl_s` seconds (negative: already expired).
    pub fn token(&self, user: &str, ttl_s: i64) -> String {
        token_with(user, ttl_s, json!({}))
    }

    pub fn sigterm(&self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `GET /metrics` body.
    pub fn metrics(&self) -> String {
        let (status, body) = http(self.addr, "GET", "/metrics", &[], "");
        assert_eq!(status, 200, "metrics: {body}");
        body
    }

    /// Sum of every sample of `name` whose labels contain all of `labels` (e.g. `code="3008"`).
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// `POST /api/<method>` with the test API key.
    pub fn api(&self, method: &str, body: Value) -> (u16, Value) {
        let (status, text) = http(
            self.addr,
            "POST",
            &format!("/api/{method}"),
            &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
            &body.to_string(),
        );
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// RSS of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Extra config lines per section, for `Server::start_with`.
#[derive(Default, Clone)]
pub struct Overrides {
    pub cores: Option<usize>,
    /// `websocket.expiry_grace_s` (default 1 s here: tests watch expiry happen).
    pub expiry_grace_s: Option<u64>,
    pub drain_window_ms: Option<u64>,
    /// `server.drain_leave_pool_ms` (default 0 here: no balancer to leave).
    pub drain_leave_pool_ms: Option<u64>,
    pub server: String,
    pub websocket: String,
    pub auth: String,
    pub channels: String,
    pub env: Vec<(String, String)>,
    /// The `[shedding]` table's lines; `None`: shedding off.
    pub shedding: Option<String>,
}

impl Overrides {
    /// Overrides with history kept for every channel (`size` publications per channel).
    pub fn with_history(size: usize) -> Overrides {
        Overrides {
            env: vec![history_env(size)],
            ..Default::default()
        }
    }
}

/// The env override that turns history on for every channel. Today history is the
/// engine-wide `[engine] history_size`; when it becomes a channel option
/// (`[channels.default] history_size`), this is the one line to change.
pub fn history_env(size: usize) -> (String, String) {
    (
        "WIRESOCKET_CHANNELS__DEFAULT__HISTORY_SIZE".into(),
        size.to_string(),
    )
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// HS256 token with `sub`, `exp` and any extra claims.
pub fn token_with(user: &str, ttl_s: i64, extra: Value) -> String {
    let mut claims = json!({"sub": user, "exp": now_s() + ttl_s, "iat": now_s()});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            claims[k] = v;
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Minimal blocking HTTP/1.1 request (Connection: close). Returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_http_response(&raw)
}

/// Sends raw bytes and returns the raw response (for malformed-request tests).
pub fn raw_http(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

pub fn parse_http_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let metric = l.split(['{', ' ']).next().unwrap_or("");
            metric == name && labels.iter().all(|lab| l.contains(lab))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A Centrifugo-protocol client over a blocking tungstenite WebSocket.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    next_id: u32,
    /// Messages received but not yet consumed (pushes that arrived while waiting for a reply).
    pub pending: std::collections::VecDeque<Value>,
    /// Objects of the last frame not yet looked at (a frame may carry several).
    wire: std::collections::VecDeque<Value>,
}

/// How a connection ended, as seen by the client.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(u16, String),
    Eof,
}

impl Client {
    /// Opens the WebSocket (no protocol connect yet).
    pub fn open(server: &Server) -> Client {
        Self::open_url(server.addr, &server.ws_url())
    }

    pub fn open_url(addr: SocketAddr, url: &str) -> Client {
        Self::open_stream(TcpStream::connect(addr).unwrap(), url)
    }

    /// Like `open_url`, but a refused connection or handshake (an HTTP 503) is an `Err`
    /// describing it, not a panic.
    pub fn try_open_url(addr: SocketAddr, url: &str) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let (ws, _resp) = tungstenite::client(url, stream).map_err(|e| match e {
            tungstenite::handshake::HandshakeError::Failure(e) => format!("handshake: {e}"),
            e => format!("handshake: {e}"),
        })?;
        Ok(Client {
            ws,
            next_id: 0,
            pending: Default::default(),
            wire: Default::default(),
        })
    }

    /// Like `connect`, with a small fixed receive buffer (no kernel autotuning), for slow-reader tests.
    pub fn connect_small_rcvbuf(server: &Server, user: &str, rcvbuf: usize) -> Client {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(rcvbuf).unwrap();
        s.connect(&server.addr.into()).unwrap();
        let mut c = Self::open_stream(s.into(), &server.ws_url());
        let r = c.call("connect", json!({"token": server.token(user, 3600)}));
        assert!(r.get("connect").is_some(), "connect failed: {r}");
        c
    }

    fn open_stream(stream: TcpStream, url: &str) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (ws, _resp) = tungstenite::client(url, stream).expect("websocket handshake");
        Client {
            ws,
            next_id: 0,
            pending: Default::default(),
            wire: Default::default(),
        }
    }

    /// Opens and sends `connect` with a token for `user`; panics unless it succeeds.
    pub fn connect(server: &Server, user: &str) -> (Client, Value) {
        let mut c = Self::open(server);
        let r = c.call("connect", json!({"token": server.token(user, 3600)}));
        assert!(r.get("connect").is_some(), "connect failed: {r}");
        (c, r["connect"].clone())
    }

    pub fn set_timeout(&mut self, d: Duration) {
        self.ws.get_ref().set_read_timeout(Some(d)).unwrap();
    }

    /// Sends a raw text frame.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    /// Sends one command and returns its reply (pushes received meanwhile are kept in `pending`).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut cmd = json!({ "id": id });
        cmd[method] = params;
        self.send_text(&cmd.to_string());
        loop {
            let v = self
                .recv_wire()
                .unwrap_or_else(|e| panic!("no reply to {method}: {e:?}"));
            if v.get("id").and_then(Value::as_u64) == Some(id as u64) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    pub fn subscribe(&mut self, channel: &str) -> Value {
        let r = self.call("subscribe", json!({ "channel": channel }));
        assert!(
            r.get("subscribe").is_some(),
            "subscribe {channel} failed: {r}"
        );
        r
    }

    /// Next JSON object from the server: stashed ones first, then the wire.
    pub fn recv(&mut self) -> Result<Value, Ended> {
        match self.pending.pop_front() {
            Some(v) => Ok(v),
            None => self.recv_wire(),
        }
    }

    /// Next JSON object off the wire (a frame may carry several, newline-separated).
    fn recv_wire(&mut self) -> Result<Value, Ended> {
        if let Some(v) = self.wire.pop_front() {
            return Ok(v);
        }
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    for line in t.as_str().split('\n').filter(|s| !s.trim().is_empty()) {
                        self.wire.push_back(serde_json::from_str(line).unwrap());
                    }
                    if let Some(v) = self.wire.pop_front() {
                        return Ok(v);
                    }
                }
                Ok(Message::Close(cf)) => {
                    return Err(cf
                        .map(|c| Ended::Closed(u16::from(c.code), c.reason.to_string()))
                        .unwrap_or(Ended::Closed(1005, String::new())))
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => return Err(Ended::Eof),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Ended::Closed(0, "timeout".into()))
                }
                Err(_) => return Err(Ended::Eof),
            }
        }
    }

    /// Next publication push on any channel: (channel, pub object).
    pub fn next_pub(&mut self) -> (String, Value) {
        loop {
            let v = self
                .recv()
                .unwrap_or_else(|e| panic!("expected a publication, got {e:?}"));
            if let Some(p) = v.get("push") {
                if let Some(publication) = p.get("pub") {
                    return (
                        p["channel"].as_str().unwrap_or("").to_string(),
                        publication.clone(),
                    );
                }
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason (0 on EOF without close).
    pub fn wait_close(&mut self) -> (u16, String) {
        loop {
            match self.recv() {
                Ok(_) => continue,
                Err(Ended::Closed(code, reason)) => return (code, reason),
                Err(Ended::Eof) => return (0, String::new()),
            }
        }
    }
}

pub fn close_code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// Polls `cond` for up to 10 s (the server records a close after its client has seen it).
pub fn wait_for(cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "condition not reached in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
