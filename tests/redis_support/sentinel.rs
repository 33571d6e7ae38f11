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
    redis_cli_with(port, &[], commands)
}

/// [`redis_cli`] with more `redis-cli` arguments (`--tls`, `--cacert …`).
pub fn redis_cli_with(port: u16, args: &[String], commands: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
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

/// The test keys of the Redis TLS tests (tests/keys/).
pub fn key(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `redis-server` arguments serving TLS only on `port` with the test server
/// certificate (clients need no certificate; replication uses TLS too).
pub fn tls_server_args(port: u16) -> Vec<String> {
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &key("redis-server.crt.pem"),
        "--tls-key-file",
        &key("redis-server.key.pem"),
        "--tls-ca-cert-file",
        &key("redis-ca.crt.pem"),
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
    ]
    .map(|s| s.to_string())
    .to_vec()
}

/// One master, one replica and three sentinels (quorum 2) on loopback; with
/// `tls`, master and replica serve TLS only (test CA) and the sentinels reach
/// them over TLS, while the sentinels themselves answer plain TCP.
pub struct SentinelGroup {
    pub master: RedisProcess,
    pub replica: RedisProcess,
    pub sentinels: Vec<RedisProcess>,
    pub tls: bool,
    dir: PathBuf,
}

impl SentinelGroup {
    /// Starts the group and waits until every sentinel knows the replica and the two
    /// other sentinels (so a failover can be agreed on).
    pub fn start() -> SentinelGroup {
        Self::start_with(false)
    }

    /// [`SentinelGroup::start`] with TLS to master and replica.
    pub fn start_tls() -> SentinelGroup {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> SentinelGroup {
        let dir = temp_dir("sentinel");
        let data = dir.to_string_lossy().into_owned(); // where the replica writes its RDB copy
        let server = |port: u16, extra: &[&str]| {
            let mut args = vec!["--dir", &data];
            args.extend(extra);
            let tls_args = if tls { tls_server_args(port) } else { vec![] };
            args.extend(tls_args.iter().map(String::as_str));
            RedisProcess::server(port, &args)
        };
        let master = server(free_port(), &[]);
        let replica = server(
            free_port(),
            &["--replicaof", "127.0.0.1", &master.port.to_string()],
        );
        // with tls-replication the sentinels also reach each other over TLS (on the
        // tls-port they announce), while nodes use their plain port
        let tls_conf = || {
            if tls {
                format!(
                    "tls-replication yes\ntls-port {}\ntls-auth-clients no\n\
                     tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                    free_port(),
                    key("redis-server.crt.pem"),
                    key("redis-server.key.pem"),
                    key("redis-ca.crt.pem")
                )
            } else {
                String::new()
            }
        };
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let conf = dir.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n{tls}\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 4000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = dir.display(),
                        tls = tls_conf(),
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
            tls,
            dir,
        };
        wait_until(Duration::from_secs(30), "the replica to sync", || {
            group
                .cli(group.replica.port, "INFO replication\n")
                .contains("master_link_status:up")
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

    /// `redis-cli` on master or replica (over TLS in a TLS group).
    pub fn cli(&self, port: u16, commands: &str) -> String {
        let args = if self.tls {
            vec!["--tls".into(), "--cacert".into(), key("redis-ca.crt.pem")]
        } else {
            vec![]
        };
        redis_cli_with(port, &args, commands)
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
        let out = self.cli(
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
        let tls = if self.tls {
            vec![
                (
                    "WIRESOCKET_ENGINE__REDIS__SENTINEL__TLS".to_string(),
                    "true".to_string(),
                ),
                (
                    "WIRESOCKET_ENGINE__REDIS__TLS_CA".to_string(),
                    key("redis-ca.crt.pem"),
                ),
            ]
        } else {
            vec![]
        };
        Overrides {
            env: tls
                .into_iter()
                .chain([
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
                ])
                .collect(),
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
