//! A private Redis Cluster for the black-box tests: `masters` cluster-enabled
//! `redis-server`s (plus `replicas` per master) on free loopback ports, joined with
//! `redis-cli --cluster create`, waited for until every node says `cluster_state:ok`
//! and knows every other node. Every process is killed, and its config directory
//! removed, when dropped. Helpers move one slot between masters by hand
//! (`CLUSTER SETSLOT` + `MIGRATE`), fail a master over to its replica, or crash a
//! master (SIGKILL) and bring it back, when it rejoins as a replica.

#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::{history_env, Overrides};

pub struct RedisCluster {
    children: Mutex<Vec<(u16, Child)>>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `ports` as `engine.redis.cluster` seeds (comma-separated).
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
/// [`RedisCluster::start_tls`]): `cli` reaches them with `--tls` and the CA.
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

/// Runs `redis-cli -p port args...`; returns its trimmed output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(tls_options(port))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli is needed (apt-get install redis-tools): {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
    fn spawn(&self, port: u16) {
        let child = spawn_node(&self.dir, port);
        self.children.lock().unwrap().push((port, child));
    }

    /// A port whose server answers (after a crash, `ports[0]` may be down).
    fn live_port(&self) -> u16 {
        self.ports
            .iter()
            .copied()
            .find(|&p| cli(p, &["PING"]) == "PONG")
            .expect("a live cluster node")
    }

    /// Kills (SIGKILL) the master on `master`, waits until one of its replicas took
    /// over its slots (after `cluster-node-timeout`, 2 s), then starts it again on the
    /// same port and waits until it replicates from the new master. Returns the new
    /// master's port.
    pub fn crash_and_return(&self, master: u16) -> u16 {
        let replica = self.replica_of(master);
        {
            let children = self.children.lock().unwrap();
            let (_, child) = children.iter().rev().find(|(p, _)| *p == master).unwrap();
            let killed = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
        }
        wait_until(
            &format!("{replica} promoted after {master} crashed"),
            || {
                cli(replica, &["ROLE"]).starts_with("master")
                    && self
                        .ports
                        .iter()
                        .filter(|&&p| p != master)
                        .all(|&p| cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            },
        );
        self.spawn(master);
        wait_until(&format!("{master} back as a replica of {replica}"), || {
            let info = cli(master, &["INFO", "replication"]);
            info.contains("role:slave") && info.contains("master_link_status:up")
        });
        replica
    }

    /// The port of a replica of the master on `master`.
    fn replica_of(&self, master: u16) -> u16 {
        self.ports
            .iter()
            .copied()
            .find(|&p| {
                let role = cli(p, &["ROLE"]);
                role.starts_with("slave") && role.contains(&master.to_string())
            })
            .unwrap_or_else(|| panic!("no replica of {master}"))
    }

    /// Starts and joins `masters` masters with `replicas` replicas each.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let n = masters * (1 + replicas);
        Self::start_on((0..n).map(|_| free_port()).collect(), replicas)
    }

    /// A cluster of TLS-only nodes (`--tls-port`, TLS on the cluster bus and for
    /// replication) with a certificate for 127.0.0.1 from a private CA in `ca_dir`
    /// (no extended key usage: the nodes also present it as clients on the bus);
    /// its seeds are `rediss://`. Returns the cluster and the CA's path.
    pub fn start_tls(masters: usize, replicas: usize, ca_dir: &Path) -> (RedisCluster, PathBuf) {
        let ca = crate::common::tls::Ca::new(ca_dir);
        let (cert, key, _) = ca.issue("redis-node", crate::common::tls::Kind::Valid);
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
        let dir = std::env::temp_dir().join(format!("ws-redis-cluster-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let n = ports.len();
        let cluster = RedisCluster {
            children: Mutex::new(Vec::new()),
            ports: ports.clone(),
            dir: dir.clone(),
        };
        for &port in &ports {
            cluster.spawn(port);
        }
        for &port in &ports {
            wait_until(&format!("redis-server on {port}"), || {
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
            wait_until(&format!("cluster_state:ok on {port}"), || {
                let info = cli(port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{n}"))
            });
        }
        if replicas > 0 {
            for &port in &ports {
                wait_until(&format!("replication settled on {port}"), || {
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

    /// A node on this cluster keeping `history` publications per channel.
    pub fn node_overrides(&self, history: usize) -> Overrides {
        Overrides {
            env: vec![
                ("WIRESOCKET_ENGINE__KIND".into(), "redis".into()),
                ("WIRESOCKET_ENGINE__REDIS__CLUSTER".into(), self.seeds()),
                history_env(history),
            ],
            ..Default::default()
        }
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        cli(self.live_port(), &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT")
    }

    /// The slot of wiresocket channel `channel` (its keys' `{channel}` hash tag).
    pub fn channel_slot(&self, channel: &str) -> u16 {
        self.slot(&format!("{{{channel}}}"))
    }

    /// The node id of the server on `port`.
    pub fn id(&self, port: u16) -> String {
        cli(port, &["CLUSTER", "MYID"])
    }

    /// The port of the master serving `slot`, as a live node sees it
    /// (`CLUSTER NODES`: `id host:port@bus flags master ... slot-ranges`).
    pub fn owner(&self, slot: u16) -> u16 {
        let out = cli(self.live_port(), &["CLUSTER", "NODES"]);
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") {
                continue;
            }
            let covers = f[8..].iter().any(|r| {
                let mut it = r.split('-').map(|v| v.parse::<u16>());
                match (it.next(), it.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => a <= slot && slot <= b,
                    (Some(Ok(a)), None) => a == slot,
                    _ => false, // [slot->-id] migration markers
                }
            });
            if covers {
                let port = f[1].split('@').next().and_then(|a| a.rsplit(':').next());
                return port.and_then(|p| p.parse().ok()).expect("host:port");
            }
        }
        panic!("no master serves slot {slot}: {out}")
    }

    /// The masters' ports.
    pub fn masters(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|&p| cli(p, &["ROLE"]).starts_with("master"))
            .collect()
    }

    /// Moves `slot` to the master on `to` by hand: IMPORTING/MIGRATING, `MIGRATE` of its
    /// keys in batches, then `SETSLOT NODE` on every master.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let (from_id, to_id) = (self.id(from), self.id(to));
        let s = slot.to_string();
        assert_eq!(
            cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            "OK"
        );
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, "10"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let out = cli(from, &args);
            assert!(out == "OK" || out == "NOKEY", "MIGRATE: {out}");
            std::thread::sleep(Duration::from_millis(20)); // let publishes interleave
        }
        assert_eq!(cli(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]), "OK");
        assert_eq!(cli(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]), "OK");
        for m in self.masters() {
            if m != from && m != to {
                cli(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            }
        }
        wait_until(&format!("slot {slot} served by {to}"), || {
            self.owner(slot) == to
        });
    }

    /// Promotes a replica of the master on `master` with `CLUSTER FAILOVER` and waits
    /// until it serves the master's slots; returns the new master's port.
    pub fn failover(&self, master: u16) -> u16 {
        let replica = self.replica_of(master);
        assert_eq!(cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
        wait_until(&format!("{replica} promoted"), || {
            cli(replica, &["ROLE"]).starts_with("master")
                && self
                    .ports
                    .iter()
                    .all(|&p| cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        replica
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
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
