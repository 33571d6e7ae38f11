//! Test support for the Redis black-box tests: a private `redis-server` on a free
//! loopback port (killed when dropped, restartable on the same port) and the
//! `Overrides` that point a wiresocket node at it. A missing `redis-server` fails
//! the test with a clear message; it is never skipped silently.

pub mod cluster;
pub mod haproxy;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod sentinel;

use crate::common::{history_env, Overrides};

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::on_port(port)
    }

    /// Starts a server on `port` (a restart after a kill).
    pub fn on_port(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is needed by this test (apt-get install redis-server; scripts/test.sh installs it): {e}")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A node on this Redis keeping `history` publications per channel.
    pub fn node_overrides(&self, history: usize) -> Overrides {
        Overrides {
            env: vec![
                ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
                ("WIRESOCKET_ENGINE__REDIS__URL".into(), self.url()),
                history_env(history),
            ],
            ..Default::default()
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
