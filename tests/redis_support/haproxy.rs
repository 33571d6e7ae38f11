//! Test support: a private HAProxy in front of several wiresocket nodes, as a load
//! balancer in production would be. `haproxy -f <generated cfg> -db` listens on a free
//! loopback port, balances new connections round-robin over the nodes, takes a node
//! out when `GET /health` fails (checked every 200 ms) or a connection to it is refused
//! (`option redispatch`), and keeps upgraded WebSocket connections open
//! (`timeout tunnel`). Killed when dropped. A missing `haproxy` fails the test with a
//! clear message (scripts/test.sh installs it); it is never skipped.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct HaProxy {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

/// The configuration for a frontend on `port` balancing over `backends`.
fn config(port: u16, backends: &[SocketAddr]) -> String {
    let mut cfg = format!(
        "global\n  maxconn 2000\n\n\
         defaults\n  mode http\n  retries 3\n  option redispatch\n\
         \x20 timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout tunnel 1h\n\n\
         frontend fleet\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\n\
         backend nodes\n  balance roundrobin\n  option httpchk GET /health\n\
         \x20 default-server inter 200ms fall 1 rise 2\n"
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server node{} {b} check\n", i + 1));
    }
    cfg
}

impl HaProxy {
    /// Starts HAProxy on a free loopback port in front of `backends`.
    pub fn start(backends: &[SocketAddr]) -> HaProxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("wiresocket-haproxy-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config(port, backends)).unwrap();
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
                    config(port, backends),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        HaProxy { child, dir, addr }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
