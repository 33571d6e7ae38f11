//! [`SentinelGroup`]: one master, one replica and three sentinels (quorum 2) on
//! loopback, with a 1 s down-after so a failover takes a few seconds. With TLS, master
//! and replica serve TLS only (the test keys of `tests/keys/`) and the sentinels reach
//! them over TLS, while the sentinels themselves answer plain TCP.

use std::path::PathBuf;
use std::time::Duration;

use crate::keys::{key, tls_cli_options, tls_server_args};
use crate::process::{free_port, redis_cli, redis_cli_with, temp_dir, wait_until, RedisProcess};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

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
        let args = if self.tls { tls_cli_options() } else { vec![] };
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
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill9();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
