//! Readings of the Redis a system fans out through (the `wiresocket-cluster` nodes' shared
//! Redis, the Socket.IO / node-ws peers' private one): `INFO all` through `redis-cli` (command
//! counts per command from `commandstats`, `used_memory`, connected clients, PUB/SUB channels)
//! and the redis-server process's CPU and RSS from `/proc`. Deltas between two readings give
//! Redis ops and CPU per publication and Redis memory per connection / per channel.
//!
//! The `redis-cli` calls themselves count one `INFO` each; they are left out of the deltas.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::Command;

/// Where a Redis is and which process it is.
#[derive(Debug, Clone)]
pub struct RedisProbe {
    /// `redis://127.0.0.1:PORT[/db]` or `unix:///path/to/redis.sock`.
    pub url: String,
    pub pid: u32,
}

/// One reading.
#[derive(Debug, Clone, Default)]
pub struct RedisSample {
    /// `calls` per command (`cmdstat_publish` → `publish`).
    pub calls: BTreeMap<String, u64>,
    pub used_memory: u64,
    pub connected_clients: u64,
    pub pubsub_channels: u64,
    /// redis-server CPU (user + system) and RSS from `/proc`.
    pub cpu_ms: u64,
    pub rss_kb: u64,
}

impl RedisProbe {
    /// Parses the `redis-cli` connection arguments of `url`.
    fn cli_args(&self) -> Result<Vec<String>> {
        if let Some(path) = self.url.strip_prefix("unix://") {
            return Ok(vec!["-s".into(), path.into()]);
        }
        let rest = self
            .url
            .strip_prefix("redis://")
            .with_context(|| format!("unsupported Redis URL {:?}", self.url))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let (host, port) = hostport
            .rsplit_once(':')
            .with_context(|| format!("Redis URL without port: {:?}", self.url))?;
        Ok(vec!["-h".into(), host.into(), "-p".into(), port.into()])
    }

    /// Takes one reading (INFO all + /proc).
    pub fn sample(&self) -> Result<RedisSample> {
        let out = Command::new("redis-cli")
            .args(self.cli_args()?)
            .args(["INFO", "all"])
            .output()
            .context("running redis-cli (apt-get install redis-tools / redis-server)")?;
        if !out.status.success() {
            bail!(
                "redis-cli INFO failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut s = parse_info(&String::from_utf8_lossy(&out.stdout));
        let p = crate::sys::sum_samples(&[self.pid]);
        s.cpu_ms = p.cpu_ms;
        s.rss_kb = p.rss_kb;
        Ok(s)
    }

    /// A reading, or `None` (with a message) when it failed: measurements must not abort a run.
    pub fn try_sample(&self) -> Option<RedisSample> {
        self.sample()
            .map_err(|e| eprintln!("redis probe: {e:#}"))
            .ok()
    }
}

/// Parses `INFO` output (`key:value` lines, `cmdstat_X:calls=N,...`).
pub fn parse_info(text: &str) -> RedisSample {
    let mut s = RedisSample::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let num = || v.trim().parse::<u64>().unwrap_or(0);
        match k {
            "used_memory" => s.used_memory = num(),
            "connected_clients" => s.connected_clients = num(),
            "pubsub_channels" => s.pubsub_channels = num(),
            _ => {
                if let Some(cmd) = k.strip_prefix("cmdstat_") {
                    let calls = v
                        .split(',')
                        .find_map(|f| f.strip_prefix("calls="))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    s.calls.insert(cmd.to_string(), calls);
                }
            }
        }
    }
    s
}

/// Commands issued by the probe itself, left out of the deltas.
const PROBE_COMMANDS: &[&str] = &["info"];

/// Redis work between `a` and `b`: commands (total and per command), CPU, memory change;
/// per publication when `publications` > 0.
pub fn delta_json(a: &RedisSample, b: &RedisSample, secs: f64, publications: u64) -> Value {
    let mut per_cmd = Map::new();
    let mut total = 0u64;
    for (cmd, &n) in &b.calls {
        let d = n.saturating_sub(a.calls.get(cmd).copied().unwrap_or(0));
        if d > 0 && !PROBE_COMMANDS.contains(&cmd.as_str()) {
            per_cmd.insert(cmd.clone(), json!(d));
            total += d;
        }
    }
    let cpu_ms = b.cpu_ms.saturating_sub(a.cpu_ms);
    let per_pub = |x: f64| {
        if publications > 0 {
            json!(x / publications as f64)
        } else {
            Value::Null
        }
    };
    json!({
        "commands": total,
        "commands_by_name": per_cmd,
        "ops_per_s": if secs > 0.0 { json!(total as f64 / secs) } else { Value::Null },
        "ops_per_publication": per_pub(total as f64),
        "cpu_ms": cpu_ms,
        "cpu_pct": if secs > 0.0 { json!(cpu_ms as f64 / 10.0 / secs) } else { Value::Null },
        "cpu_us_per_publication": per_pub(cpu_ms as f64 * 1000.0),
        "used_memory_delta": b.used_memory as i64 - a.used_memory as i64,
    })
}

/// A reading as JSON (absolute values).
pub fn sample_json(s: &RedisSample) -> Value {
    json!({
        "used_memory": s.used_memory,
        "connected_clients": s.connected_clients,
        "pubsub_channels": s.pubsub_channels,
        "rss_kb": s.rss_kb,
        "cpu_ms": s.cpu_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_and_takes_deltas() {
        let a = parse_info(
            "# Memory\r\nused_memory:1000\r\nconnected_clients:4\r\n\
             # Commandstats\r\ncmdstat_publish:calls=10,usec=5,usec_per_call=0.5\r\n\
             cmdstat_info:calls=3,usec=1\r\n",
        );
        assert_eq!(a.used_memory, 1000);
        assert_eq!(a.connected_clients, 4);
        assert_eq!(a.calls["publish"], 10);
        let mut b = a.clone();
        b.calls.insert("publish".into(), 30);
        b.calls.insert("info".into(), 9);
        b.calls.insert("ssubscribe".into(), 5);
        b.used_memory = 3000;
        b.cpu_ms = 40;
        let d = delta_json(&a, &b, 2.0, 10);
        assert_eq!(d["commands"], 25);
        assert_eq!(d["ops_per_publication"], 2.5);
        assert_eq!(d["cpu_pct"], 2.0);
        assert_eq!(d["used_memory_delta"], 2000);
        assert!(d["commands_by_name"].get("info").is_none());
        let p = RedisProbe {
            url: "redis://127.0.0.1:6390/0".into(),
            pid: 1,
        };
        assert_eq!(p.cli_args().unwrap(), ["-h", "127.0.0.1", "-p", "6390"]);
        let u = RedisProbe {
            url: "unix:///tmp/r.sock".into(),
            pid: 1,
        };
        assert_eq!(u.cli_args().unwrap(), ["-s", "/tmp/r.sock"]);
    }
}
