//! The `wiresocket-cluster` system: a private `redis-server` (loopback, free port,
//! `--save "" --appendonly no`) and N wiresocket nodes on consecutive ports, one core each,
//! all with `[engine] kind = "redis"` on that Redis. Clients are spread round-robin over the
//! nodes' WebSocket URLs and the publisher's connections over the nodes' APIs (so most
//! publications are delivered by nodes other than the one that took them); every node and the
//! Redis are the system's pids.
//!
//! `wiresocket-cluster` has 3 nodes, `wiresocket-cluster-N` has N (e.g. `-7` for 100,000
//! connections under the 20,000 open files per process cap).

use crate::redis_probe::RedisProbe;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes of a cluster system name (`wiresocket-cluster` → 3, `wiresocket-cluster-7` → 7);
/// `None` for every other system.
pub fn nodes_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("wiresocket-cluster")?;
    match rest {
        "" => Some(3),
        r => r.strip_prefix('-')?.parse().ok().filter(|n| *n >= 1),
    }
}

/// A started cluster: endpoints, processes (nodes first, Redis last: the stop order).
pub struct Cluster {
    pub urls: Vec<String>,
    pub api_urls: Vec<String>,
    pub children: Vec<Child>,
    pub redis: RedisProbe,
}

/// `n` consecutive free loopback ports (checked by binding each; released right after).
fn consecutive_ports(n: usize) -> Result<u16> {
    for _ in 0..50 {
        let base = crate::systems::free_port()?;
        if base as usize + n > 65535 {
            continue;
        }
        let held: Vec<_> = (0..n as u16)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n {
            return Ok(base);
        }
    }
    bail!("found no {n} consecutive free ports on 127.0.0.1")
}

/// Per-node overrides: a connection limit meant for the whole population is split evenly.
pub fn node_env(env: &BTreeMap<String, String>, nodes: usize) -> BTreeMap<String, String> {
    let mut env = env.clone();
    if let Some(v) = env.get_mut("WIRESOCKET_SERVER__MAX_CONNECTIONS") {
        if let Ok(total) = v.parse::<usize>() {
            *v = total.div_ceil(nodes).to_string();
        }
    }
    env
}

fn node_config(port: u16, redis_port: u16, secret: &str, key: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ncores = 1\n\n\
         [auth]\nhmac_secret = \"{secret}\"\n\n[api]\nkey = \"{key}\"\n\n\
         [engine]\nkind = \"redis\"\n\n[engine.redis]\nurl = \"redis://127.0.0.1:{redis_port}/0\"\n\n\
         [shedding]\nenabled = false\n\n\
         [log]\nlevel = \"warn\"\n"
    )
}

fn redis_ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

/// Starts Redis and `nodes` wiresocket nodes; on error everything started is killed.
pub fn start(
    nodes: usize,
    state: &Path,
    wiresocket: &Path,
    env: &BTreeMap<String, String>,
    secret: &str,
    api_key: &str,
) -> Result<Cluster> {
    crate::sys::raise_nofile();
    let mut children: Vec<Child> = Vec::new();
    let res = start_inner(
        nodes,
        state,
        wiresocket,
        env,
        secret,
        api_key,
        &mut children,
    );
    if res.is_err() {
        for c in children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    res.map(|(urls, api_urls, redis)| Cluster {
        urls,
        api_urls,
        children,
        redis,
    })
}

type Endpoints = (Vec<String>, Vec<String>, RedisProbe);

fn start_inner(
    nodes: usize,
    state: &Path,
    wiresocket: &Path,
    env: &BTreeMap<String, String>,
    secret: &str,
    api_key: &str,
    children: &mut Vec<Child>,
) -> Result<Endpoints> {
    let rport = crate::systems::free_port()?;
    let rlog = state.join("redis.log");
    let redis = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &rport.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(state)
        .arg("--logfile")
        .arg(&rlog)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server (bench/peers/install.sh installs it)")?;
    let probe = RedisProbe {
        url: format!("redis://127.0.0.1:{rport}/0"),
        pid: redis.id(),
    };
    children.push(redis);
    let until = Instant::now() + Duration::from_secs(10);
    while !redis_ping(rport) {
        if Instant::now() > until {
            bail!("redis-server on port {rport} did not answer PING within 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = consecutive_ports(nodes)?;
    let env = node_env(env, nodes);
    let (mut urls, mut api_urls) = (Vec::new(), Vec::new());
    for i in 0..nodes {
        let port = base + i as u16;
        let cfg = state.join(format!("node{i}.toml"));
        std::fs::write(&cfg, node_config(port, rport, secret, api_key))?;
        let log = std::fs::File::create(state.join(format!("node{i}.log")))?;
        let child = Command::new(wiresocket)
            .args(["serve", "--config"])
            .arg(&cfg)
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", wiresocket.display()))?;
        children.push(child);
        urls.push(format!("ws://127.0.0.1:{port}/connection/websocket"));
        api_urls.push(format!("http://127.0.0.1:{port}"));
    }
    // Redis (started first) goes last, so the nodes are stopped before it.
    children.rotate_left(1);
    for i in 0..nodes {
        crate::systems::wait_health(base + i as u16, Duration::from_secs(30)).with_context(
            || {
                format!(
                    "node {i} did not become healthy; log: {}",
                    crate::systems::tail(&state.join(format!("node{i}.log")))
                )
            },
        )?;
    }
    Ok((urls, api_urls, probe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_config_and_split_limit() {
        assert_eq!(nodes_of("wiresocket-cluster"), Some(3));
        assert_eq!(nodes_of("wiresocket-cluster-7"), Some(7));
        assert_eq!(nodes_of("wiresocket-cluster-0"), None);
        assert_eq!(nodes_of("wiresocket"), None);
        let c = node_config(8100, 6400, "s", "k");
        assert!(c.contains("cores = 1") && c.contains("kind = \"redis\""));
        assert!(c.contains("url = \"redis://127.0.0.1:6400/0\""));
        let env = BTreeMap::from([(
            "WIRESOCKET_SERVER__MAX_CONNECTIONS".to_string(),
            "10000".to_string(),
        )]);
        assert_eq!(
            node_env(&env, 3)["WIRESOCKET_SERVER__MAX_CONNECTIONS"],
            "3334"
        );
        let p = consecutive_ports(3).unwrap();
        assert!(p > 0);
    }
}
