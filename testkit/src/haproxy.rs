//! [`HaProxy`]: a private HAProxy in front of several wiresocket nodes, as a load
//! balancer in production would be. `haproxy -f <generated cfg> -db` listens on a free
//! loopback port, balances new connections round-robin over the nodes, takes a node
//! out when `GET /health` fails (checked every 200 ms unless told otherwise) or a connection to it is refused
//! (`option redispatch`), and keeps upgraded WebSocket connections open
//! (`timeout tunnel`). Killed when dropped. A missing `haproxy` fails the test with a
//! clear message (scripts/test.sh installs it); it is never skipped.
//!
//! What HAProxy thinks of each node is read from its admin socket (`show stat`):
//! [`HaProxy::states`] now, [`HaProxy::watch`] as a timeline of transitions (a thread
//! polling every 20 ms), for tests that assert or report when a node left and re-entered
//! the pool. docs/POOLS.md shows this configuration as the tested pool.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::{free_port, temp_dir};

pub struct HaProxy {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
    admin: PathBuf,
}

/// The configuration for a frontend on `port` balancing over `backends`.
fn config(port: u16, backends: &[SocketAddr], admin: &Path, inter: Duration) -> String {
    let mut cfg = format!(
        "global\n  maxconn 2000\n  stats socket {} mode 600 level admin\n\n\
         defaults\n  mode http\n  retries 3\n  option redispatch\n\
         \x20 timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout tunnel 1h\n\n\
         frontend fleet\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\n\
         backend nodes\n  balance roundrobin\n  option httpchk GET /health\n\
         \x20 default-server inter {}ms fall 1 rise 2\n",
        admin.display(),
        inter.as_millis()
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server node{} {b} check\n", i + 1));
    }
    cfg
}

impl HaProxy {
    /// Starts HAProxy on a free loopback port in front of `backends`, checking every 200 ms.
    pub fn start(backends: &[SocketAddr]) -> HaProxy {
        Self::start_checking_every(backends, Duration::from_millis(200))
    }

    /// Starts HAProxy in front of `backends`, checking each every `inter` (out at the
    /// first failed check, back after two good ones).
    pub fn start_checking_every(backends: &[SocketAddr], inter: Duration) -> HaProxy {
        let port = free_port();
        let dir = temp_dir("haproxy");
        let path = dir.join("haproxy.cfg");
        let admin = dir.join("admin.sock");
        std::fs::write(&path, config(port, backends, &admin, inter)).unwrap();
        // its log (a node going down, …) goes to a file, shown if it fails to start
        let log_path = dir.join("haproxy.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("haproxy is needed by this test (apt-get install haproxy; scripts/test.sh installs it): {e}")
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "haproxy exited at start ({st}); config:\n{}\nlog:\n{}",
                    config(port, backends, &admin, inter),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        while !admin.exists() {
            assert!(Instant::now() < deadline, "haproxy made no admin socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        HaProxy {
            child,
            dir,
            addr,
            admin,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// Each backend server's state now (`node1` … in `start`'s order): "UP", "DOWN",
    /// "UP 1/2" (coming up), "DOWN 1/2"…, from `show stat` on the admin socket.
    pub fn states(&self) -> BTreeMap<String, String> {
        stat_states(&self.admin).expect("haproxy admin socket")
    }

    /// Waits until server `name` (`node1` …) is in state `want` (exactly, e.g. "UP").
    pub fn wait_state(&self, name: &str, want: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.states();
            if states.get(name).map(String::as_str) == Some(want) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "haproxy: {name} not {want} within {timeout:?}: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts recording every state change of the backend servers.
    pub fn watch(&self) -> StateWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (admin, stop2, log2) = (self.admin.clone(), stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            while !stop2.load(Ordering::Relaxed) {
                if let Some(now) = stat_states(&admin) {
                    let at = Instant::now();
                    for (name, state) in &now {
                        if last.get(name) != Some(state) {
                            log2.lock().unwrap().push((at, name.clone(), state.clone()));
                        }
                    }
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        StateWatch {
            stop,
            log,
            thread: Some(thread),
        }
    }
}

/// The state changes seen by [`HaProxy::watch`]: (when, server, new state).
pub struct StateWatch {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, String, String)>>>,
    thread: Option<JoinHandle<()>>,
}

impl StateWatch {
    pub fn changes(&self) -> Vec<(Instant, String, String)> {
        self.log.lock().unwrap().clone()
    }

    /// The first time at or after `since` that `server` entered a state starting with `prefix`.
    pub fn first(&self, server: &str, prefix: &str, since: Instant) -> Option<Instant> {
        self.changes()
            .into_iter()
            .find(|(at, s, st)| *at >= since && s == server && st.starts_with(prefix))
            .map(|(at, ..)| at)
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `show stat` of the backend `nodes`: server name -> status column.
fn stat_states(admin: &Path) -> Option<BTreeMap<String, String>> {
    let mut s = UnixStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"show stat\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    Some(
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px] == "nodes" && f[sv].starts_with("node"))
            .map(|f| (f[sv].to_owned(), f[st].to_owned()))
            .collect(),
    )
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
