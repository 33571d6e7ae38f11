//! Test support for Redis high availability and connection tests: any
//! `redis-server` / `redis-sentinel` process with chosen arguments on a free
//! loopback port ([`RedisProcess`], killed with SIGKILL when dropped), `redis-cli`
//! calls, and a Sentinel group ([`SentinelGroup`]: one master, one replica and
//! three sentinels with a 1 s down-after, so a failover takes a few seconds).
//! A missing program fails the test with a clear message; nothing is skipped.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{history_env, Overrides};

/// A free loopback port (bound once and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A private directory for config files and working state.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wiresocket-{what}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `redis-server` or `redis-sentinel` process listening on `port`.
pub struct RedisProcess {
    child: Child,
    pub port: u16,
}

impl RedisProcess {
    /// Runs `program args…` and waits until `port` accepts connections.
    pub fn spawn(program: &str, args: &[String], port: u16) -> RedisProcess {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} is needed by this test (apt-get install redis-server redis-sentinel; scripts/test.sh installs them): {e}")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{program} did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisProcess { child, port }
    }

    /// A plain `redis-server` (no persistence) on `port` with `extra` arguments.
    pub fn server(port: u16, extra: &[&str]) -> RedisProcess {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn("redis-server", &args, port)
    }

    /// Sends `signal` (`STOP`, `CONT`, …) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `redis-cli -p port` with `commands` (one per line, on one connection);
/// returns stdout.
pub fn redis_cli(port: u16, commands: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-cli is needed by this test: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("redis-cli output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Calls `check` every 100 ms until it is true; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub const MASTER_NAME: &str = "mymaster";

/// One master, one replica and three sentinels (quorum 2) on loopback.
pub struct SentinelGroup {
    pub master: RedisProcess,
    pub replica: RedisProcess,
    pub sentinels: Vec<RedisProcess>,
    dir: PathBuf,
}

impl SentinelGroup {
    /// Starts the group and waits until every sentinel knows the replica and the two
    /// other sentinels (so a failover can be agreed on).
    pub fn start() -> SentinelGroup {
        let dir = temp_dir("sentinel");
        let data = dir.to_string_lossy().into_owned(); // where the replica writes its RDB copy
        let master = RedisProcess::server(free_port(), &["--dir", &data]);
        let replica_port = free_port();
        let replica = RedisProcess::server(
            replica_port,
            &[
                "--dir",
                &data,
                "--replicaof",
                "127.0.0.1",
                &master.port.to_string(),
            ],
        );
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let conf = dir.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 4000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = dir.display(),
                        master = master.port
                    ),
                )
                .unwrap();
                RedisProcess::spawn(
                    "redis-sentinel",
                    &[conf.to_string_lossy().into_owned()],
                    port,
                )
            })
            .collect();
        let group = SentinelGroup {
            master,
            replica,
            sentinels,
            dir,
        };
        wait_until(Duration::from_secs(30), "the replica to sync", || {
            redis_cli(group.replica.port, "INFO replication\n").contains("master_link_status:up")
        });
        for s in &group.sentinels {
            wait_until(
                Duration::from_secs(30),
                "sentinels to discover each other and the replica",
                || {
                    let known = redis_cli(s.port, &format!("SENTINEL master {MASTER_NAME}\n"));
                    let lines: Vec<&str> = known.lines().collect();
                    let field = |name: &str| {
                        lines
                            .iter()
                            .position(|l| *l == name)
                            .and_then(|i| lines.get(i + 1))
                            .and_then(|v| v.parse::<u32>().ok())
                    };
                    field("num-slaves") == Some(1) && field("num-other-sentinels") == Some(2)
                },
            );
        }
        group
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The master's port as the first sentinel names it now.
    pub fn current_master_port(&self) -> Option<u16> {
        let out = redis_cli(
            self.sentinels[0].port,
            &format!("SENTINEL get-master-addr-by-name {MASTER_NAME}\n"),
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// Waits until the replica has every write the master acknowledged so far
    /// (Redis replication is asynchronous: only then can a failover keep them).
    pub fn wait_replicated(&self) {
        let out = redis_cli(
            self.master.port,
            "SET wiresocket-test-sync 1\nWAIT 1 5000\n",
        );
        assert!(
            out.lines().nth(1).map(str::trim) == Some("1"),
            "the replica did not acknowledge: {out}"
        );
    }

    /// A node on this group (via the sentinels) keeping `history` publications per channel.
    pub fn node_overrides(&self, history: usize) -> Overrides {
        Overrides {
            env: vec![
                ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
                (
                    "WIRESOCKET_ENGINE__REDIS__SENTINEL__MASTER".into(),
                    MASTER_NAME.into(),
                ),
                (
                    "WIRESOCKET_ENGINE__REDIS__SENTINEL__URLS".into(),
                    self.sentinel_urls().join(","),
                ),
                (
                    "WIRESOCKET_ENGINE__REDIS__HEALTH_CHECK_MS".into(),
                    "300".into(),
                ),
                (
                    "WIRESOCKET_ENGINE__REDIS__RECONNECT_MAX_DELAY_MS".into(),
                    "300".into(),
                ),
                history_env(history),
            ],
            ..Default::default()
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill9();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
