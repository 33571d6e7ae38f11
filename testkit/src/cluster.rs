//! [`RedisCluster`]: a private Redis Cluster of `masters` cluster-enabled `redis-server`s
//! (plus `replicas` per master) on free loopback ports, joined with
//! `redis-cli --cluster create` and waited for until every node says `cluster_state:ok`
//! and knows every other node (`cluster-node-timeout` 2 s, so failovers are quick).
//! Optionally TLS-only, with a certificate from a private [`Ca`]. Every process is
//! killed, and its directory removed, when dropped. What a test does to a running
//! cluster (slot moves, failovers, crashes) is in [`crate::cluster_ops`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::ca::{Ca, Kind};
use crate::process::{free_port, redis_cli_args, temp_dir, wait_until};

pub struct RedisCluster {
    pub(crate) children: Mutex<Vec<(u16, Child)>>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

/// `ports` as `engine.redis.cluster` seeds (comma-separated; `rediss://` for TLS nodes).
pub fn seeds(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|&p| {
            let scheme = if tls_of(p).is_some() {
                "rediss"
            } else {
                "redis"
            };
            format!("{scheme}://127.0.0.1:{p}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The certificate, key and CA of each TLS-only cluster node by port (started by
/// [`RedisCluster::start_tls`]): [`cli`] reaches them with `--tls` and the CA.
static TLS_NODES: Mutex<Vec<(u16, Tls)>> = Mutex::new(Vec::new());

#[derive(Clone)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn tls_of(port: u16) -> Option<Tls> {
    let nodes = TLS_NODES.lock().unwrap();
    nodes
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, t)| t.clone())
}

/// `redis-cli`'s TLS options for a node on `port`, if it is a TLS node.
fn tls_options(port: u16) -> Vec<String> {
    match tls_of(port) {
        Some(t) => vec![
            "--tls".into(),
            "--cacert".into(),
            t.ca.display().to_string(),
        ],
        None => Vec::new(),
    }
}

/// Runs `redis-cli -p port args...` on a cluster node (over TLS for a TLS node);
/// returns its trimmed output.
pub fn cli(port: u16, args: &[&str]) -> String {
    redis_cli_args(port, &tls_options(port), args)
}

/// Waits up to 30 s for `ok`.
pub(crate) fn settle(what: &str, ok: impl FnMut() -> bool) {
    wait_until(Duration::from_secs(30), what, ok)
}

/// A cluster-enabled `redis-server` on `port`, its `nodes-<port>.conf` in `dir` (so a
/// restart rejoins with its identity).
fn spawn_node(dir: &Path, port: u16) -> Child {
    let listen = if let Some(t) = tls_of(port) {
        let path = |p: PathBuf| p.display().to_string();
        let (cert, private, ca) = (path(t.cert), path(t.key), path(t.ca));
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cluster".into(),
            "yes".into(),
            "--tls-replication".into(),
            "yes".into(),
            "--tls-cert-file".into(),
            cert,
            "--tls-key-file".into(),
            private,
            "--tls-ca-cert-file".into(),
            ca,
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    } else {
        vec!["--port".to_string(), port.to_string()]
    };
    Command::new("redis-server")
        .args(listen)
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .args(["--cluster-node-timeout", "2000"])
        .args(["--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("redis-server is needed by this test (apt-get install redis-server; scripts/test.sh installs it): {e}")
        })
}

impl RedisCluster {
    /// Starts (again) the node on `port`.
    pub(crate) fn spawn(&self, port: u16) {
        let child = spawn_node(&self.dir, port);
        self.children.lock().unwrap().push((port, child));
    }

    /// Starts and joins `masters` masters with `replicas` replicas each.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        Self::start_on(Self::free_ports(masters * (1 + replicas)), replicas)
    }

    /// A cluster of TLS-only nodes (`--tls-port`, TLS on the cluster bus and for
    /// replication) with a certificate for 127.0.0.1 from a private CA in `ca_dir`
    /// (no extended key usage: the nodes also present it as clients on the bus);
    /// its seeds are `rediss://`. Returns the cluster and the CA's path.
    pub fn start_tls(masters: usize, replicas: usize, ca_dir: &Path) -> (RedisCluster, PathBuf) {
        let ca = Ca::new(ca_dir);
        let (cert, key, _) = ca.issue("redis-node", Kind::Valid);
        let ports = Self::free_ports(masters * (1 + replicas));
        let tls = Tls {
            cert,
            key,
            ca: ca.ca_path(),
        };
        TLS_NODES
            .lock()
            .unwrap()
            .extend(ports.iter().map(|&p| (p, tls.clone())));
        (Self::start_on(ports, replicas), ca.ca_path())
    }

    /// Free ports for a cluster started later with [`RedisCluster::start_on`].
    pub fn free_ports(n: usize) -> Vec<u16> {
        (0..n).map(|_| free_port()).collect()
    }

    /// Starts and joins a cluster on `ports`, with `replicas` replicas per master.
    pub fn start_on(ports: Vec<u16>, replicas: usize) -> RedisCluster {
        let n = ports.len();
        let cluster = RedisCluster {
            children: Mutex::new(Vec::new()),
            ports: ports.clone(),
            dir: temp_dir("redis-cluster"),
        };
        for &port in &ports {
            cluster.spawn(port);
        }
        for &port in &ports {
            settle(&format!("redis-server on {port}"), || {
                cli(port, &["PING"]) == "PONG"
            });
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(tls_options(ports[0]))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for &port in &ports {
            settle(&format!("cluster_state:ok on {port}"), || {
                let info = cli(port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{n}"))
            });
        }
        if replicas > 0 {
            for &port in &ports {
                settle(&format!("replication settled on {port}"), || {
                    let info = cli(port, &["INFO", "replication"]);
                    info.contains("role:master") || info.contains("master_link_status:up")
                });
            }
        }
        cluster
    }

    /// The nodes as `engine.redis.cluster` seeds (comma-separated).
    pub fn seeds(&self) -> String {
        seeds(&self.ports)
    }

    /// The nodes as a list of seed URLs.
    pub fn seed_urls(&self) -> Vec<String> {
        self.seeds().split(',').map(str::to_owned).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in self.children.get_mut().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
