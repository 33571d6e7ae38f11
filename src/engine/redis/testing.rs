//! Test support: a private `redis-server` on a free loopback port, killed when
//! dropped, a private three-master Redis Cluster ([`RedisCluster`], likewise), and a
//! glommio executor to run engine tests on. Used by the engine
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
            // a replica's full sync writes an RDB file: not into the working tree
            .args(["--dir", std::env::temp_dir().to_str().expect("utf-8 temp dir")])
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

/// A private Redis Cluster of three masters on free loopback ports (created with
/// `redis-cli --cluster create`, waited for until every node says `cluster_state:ok`);
/// its processes are killed and its directory removed when dropped.
pub struct RedisCluster {
    servers: Vec<Child>,
    pub ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("ws-unit-cluster-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = RedisCluster {
            servers: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                ])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--dir", cluster.dir.to_str().expect("utf-8 temp dir")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server is needed by this test: {e}"));
            cluster.servers.push(child);
            cluster.ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in &cluster.ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not start on {port}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        for &port in &cluster.ports {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .expect("redis-cli");
                let info = String::from_utf8_lossy(&info.stdout);
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster not ok on {port}: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Redis engine config of a test on `cluster`.
pub fn cluster_config(cluster: &RedisCluster) -> crate::config::RedisConfig {
    crate::config::RedisConfig {
        cluster: cluster
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect(),
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
