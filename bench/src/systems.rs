//! Starting and stopping the systems `compare` measures, each fresh for every scenario on its
//! own free loopback port with a random JWT secret and API key:
//!
//! - `wiresocket` (and `wiresocket-1core`): the release binary with a generated config file
//!   (plus the scenario's `wiresocket_env` overrides), ready when `/health` answers 200.
//! - `wiresocket-cluster[-N]`: Redis plus N one-core nodes sharing it (`cluster`).
//! - peers (`node-ws`, `socketio`, `nchan`, `tokio-ws`): `bench/peers/run.sh start|stop`, which
//!   prints the `PIDS=` of every process belonging to the system (workers, Redis, nginx workers).
//!
//! Invariant: a started system is stopped by `Running::stop` or, if the caller unwinds, by its
//! `Drop` (kill), so no run leaves servers behind.

use crate::dialect::Dialect;
use crate::runner::Sut;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the binaries and scripts are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub wiresocket: PathBuf,
    pub peers_dir: PathBuf,
}

pub struct Running {
    pub sut: Sut,
    /// Processes we started ourselves, in stop order (cluster nodes before their Redis).
    children: Vec<Child>,
    peer_state: Option<PathBuf>,
    peers_dir: PathBuf,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound and released; the system binds it right after).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Cores a system runs on: `wiresocket-1core` uses one (and each cluster node), everything
/// else `cores`.
fn cores_of(name: &str, cores: usize) -> usize {
    if name.ends_with("-1core") || crate::cluster::nodes_of(name).is_some() {
        1
    } else {
        cores
    }
}

/// Starts `name` with `cores` cores, its state (config, logs) under `state`.
pub fn start(
    name: &str,
    cores: usize,
    state: &Path,
    bins: &Binaries,
    wiresocket_env: &BTreeMap<String, String>,
) -> Result<Running> {
    let dialect = Dialect::of_system(name).with_context(|| format!("unknown system {name}"))?;
    std::fs::create_dir_all(state)?;
    let port = free_port()?;
    let (secret, api_key) = (random_hex(24), random_hex(16));
    let base = format!("127.0.0.1:{port}");
    let mut running = Running {
        sut: Sut {
            name: name.to_string(),
            dialect,
            url: match dialect {
                Dialect::Centrifugo => format!("ws://{base}/connection/websocket"),
                _ => format!("ws://{base}/"),
            },
            api_url: format!("http://{base}"),
            api_key: api_key.clone(),
            secret: secret.clone(),
            pids: Vec::new(),
            redis: None,
        },
        children: Vec::new(),
        peer_state: None,
        peers_dir: bins.peers_dir.clone(),
    };
    let cores = cores_of(name, cores);
    if let Some(nodes) = crate::cluster::nodes_of(name) {
        let c = crate::cluster::start(
            nodes,
            state,
            &bins.wiresocket,
            wiresocket_env,
            &secret,
            &api_key,
        )?;
        running.sut.url = c.urls.join(",");
        running.sut.api_url = c.api_urls.join(",");
        running.sut.pids = c.children.iter().map(Child::id).collect();
        running.sut.redis = Some(c.redis);
        running.children = c.children;
    } else if dialect == Dialect::Centrifugo {
        let cfg = state.join("wiresocket.toml");
        std::fs::write(&cfg, wiresocket_config(port, cores, &secret, &api_key))?;
        let log = std::fs::File::create(state.join("wiresocket.log"))?;
        let child = Command::new(&bins.wiresocket)
            .args(["serve", "--config"])
            .arg(&cfg)
            .envs(wiresocket_env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bins.wiresocket.display()))?;
        running.sut.pids = vec![child.id()];
        running.children = vec![child];
        wait_health(port, Duration::from_secs(30)).with_context(|| {
            format!(
                "{name} did not become healthy; log: {}",
                tail(&state.join("wiresocket.log"))
            )
        })?;
    } else {
        let out = Command::new(bins.peers_dir.join("run.sh"))
            .args(["start", name, &port.to_string(), &cores.to_string()])
            .arg(state)
            .env("JWT_SECRET", &secret)
            .env("API_KEY", &api_key)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("running bench/peers/run.sh")?;
        running.peer_state = Some(state.to_path_buf());
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("starting {name} failed: {stdout}");
        }
        running.sut.pids = parse_pids(&stdout).context("run.sh printed no PIDS= line")?;
        running.sut.redis = peer_redis(state);
    }
    // Let the baseline settle before it is sampled.
    std::thread::sleep(Duration::from_millis(500));
    Ok(running)
}

/// The peer's Redis, from the `STATE_DIR/redis` file `run.sh` writes (`URL PID`).
fn peer_redis(state: &Path) -> Option<crate::redis_probe::RedisProbe> {
    let text = std::fs::read_to_string(state.join("redis")).ok()?;
    let (url, pid) = text.trim().split_once(' ')?;
    Some(crate::redis_probe::RedisProbe {
        url: url.to_string(),
        pid: pid.trim().parse().ok()?,
    })
}

fn parse_pids(stdout: &str) -> Option<Vec<u32>> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("PIDS="))?;
    let pids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    (!pids.is_empty()).then_some(pids)
}

fn wiresocket_config(port: u16, cores: usize, secret: &str, key: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ncores = {cores}\n\n\
         [auth]\nhmac_secret = \"{secret}\"\n\n[api]\nkey = \"{key}\"\n\n\
         [shedding]\nenabled = false\n\n\
         [log]\nlevel = \"warn\"\n"
    )
}

/// Polls `GET /health` until it answers 200.
pub fn wait_health(port: u16, max: Duration) -> Result<()> {
    let until = Instant::now() + max;
    while Instant::now() < until {
        if health_ok(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no 200 from /health on port {port} within {max:?}")
}

fn health_ok(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200")
}

pub fn tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Running {
    /// Stops the system (SIGTERM, then SIGKILL after 10 s for wiresocket; `run.sh stop` for
    /// peers).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        for mut child in std::mem::take(&mut self.children) {
            crate::sys::stop_child(&mut child, libc::SIGTERM, Duration::from_secs(10));
        }
        if let Some(state) = self.peer_state.take() {
            let _ = Command::new(self.peers_dir.join("run.sh"))
                .arg("stop")
                .arg(&state)
                .stdout(Stdio::null())
                .status();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pid_line_and_config() {
        assert_eq!(
            parse_pids("starting\nPIDS=12 34  56\n"),
            Some(vec![12, 34, 56])
        );
        assert_eq!(parse_pids("PIDS=\n"), None);
        let c = wiresocket_config(8123, 2, "s3", "k9");
        assert!(c.contains("listen = \"127.0.0.1:8123\"") && c.contains("cores = 2"));
        assert!(c.contains("hmac_secret = \"s3\"") && c.contains("key = \"k9\""));
        assert_eq!(cores_of("wiresocket-1core", 2), 1);
        assert_eq!(cores_of("node-ws", 2), 2);
        assert!(free_port().unwrap() > 0);
    }
}
