//! Test support: a private `redis-server` on a free loopback port, killed when
//! dropped, and a glommio executor to run engine tests on. Used by the engine
//! conformance suite and the Redis engine's own tests. A missing `redis-server`
//! fails the test with a clear message (never a silent skip).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

    /// Starts (or restarts) a server on `port`.
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

    /// Runs `redis-cli` against this server; returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Redis engine config of a test on `server`.
pub fn config(server: &RedisServer) -> crate::config::RedisConfig {
    crate::config::RedisConfig {
        url: server.url(),
        prefix: format!("t{}", fastrand::u32(..)),
        ..Default::default()
    }
}

/// Runs `fut` on a fresh glommio executor.
pub fn run<F: std::future::Future<Output = ()> + 'static>(fut: F) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .make()
        .expect("executor (needs RLIMIT_MEMLOCK >= 512 KiB)")
        .run(fut);
}
