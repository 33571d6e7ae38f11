//! The measured per-unit costs a capacity plan rests on: the `costs.<system>` object of a
//! `compare` results file (bench/results/*.json), plus the file's `meta` for provenance.
//!
//! Only the keys of [`Costs`] are read; everything else in the file is ignored, so the report can
//! grow freely. A cost may be `null` or absent (not measured): [`used`] turns it into a documented
//! fallback plus a warning, so a plan is always printed and always says which lines are guesses.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Per-unit costs of one system, as the `compare` report measures them (units in the names).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Costs {
    /// Server user-space RSS per idle subscribed connection (one channel).
    pub rss_per_conn_bytes: Option<f64>,
    /// Extra RSS per additional channel subscription.
    pub rss_per_sub_bytes: Option<f64>,
    /// `/proc/net/sockstat` TCP mem per idle connection (system-wide).
    pub kernel_per_conn_bytes: Option<f64>,
    /// `/proc/meminfo` Slab delta per connection: sockets, files, epoll (system-wide).
    pub slab_per_conn_bytes: Option<f64>,
    /// Server CPU per delivered message (fan-out, below saturation).
    pub cpu_us_per_delivery: Option<f64>,
    /// Server CPU per publication accepted over the HTTP API, deliveries excluded.
    pub cpu_us_per_publish: Option<f64>,
    /// Server CPU per new connection (TCP + WebSocket + JWT + subscribe).
    pub cpu_us_per_connect: Option<f64>,
    /// Server CPU per connection per second while idle (heartbeats).
    pub idle_cpu_us_per_conn_s: Option<f64>,
    /// Redis `used_memory` growth per connected client (cluster mode, idle-hold).
    pub redis_used_memory_per_conn_bytes: Option<f64>,
    /// Redis `used_memory` growth per channel with subscribers (cluster mode, many-channels).
    pub redis_used_memory_per_channel_bytes: Option<f64>,
    /// Redis commands per connect (cluster mode, presence off: idle-hold connect step / clients,
    /// an upper bound that includes the nodes' background PINGs and registry refreshes).
    pub redis_cmds_per_connect: Option<f64>,
    /// Redis commands per idle connection per second (cluster mode, presence off: idle-hold
    /// hold / clients / seconds, upper bound as above).
    pub redis_cmds_per_conn_s: Option<f64>,
    /// Redis commands per publication (cluster mode, fan-out below saturation).
    pub redis_ops_per_publication: Option<f64>,
    /// redis-server CPU per publication (cluster mode, fan-out below saturation).
    pub redis_cpu_us_per_publication: Option<f64>,
    /// Payload size `cpu_us_per_delivery` was measured with.
    pub msg_bytes: Option<f64>,
    /// Whether the kernel figures were taken over loopback, i.e. count both ends of every
    /// connection. Absent means true: the bench only ever runs on loopback.
    pub loopback: Option<bool>,
    /// Scenario names/versions/files the numbers came from (shown, not interpreted).
    #[serde(default)]
    pub source: Value,
}

impl Costs {
    /// These costs with the per-connection memory figures (user-space RSS, kernel slab and TCP
    /// pages, Redis `used_memory`) replaced by `mem`'s where `mem` measured them: e.g. the
    /// 100,000-connection cluster idle-hold run instead of the 10,000-connection comparison.
    pub fn with_memory_of(mut self, mem: &Costs) -> Costs {
        let pick = |a: &mut Option<f64>, b: Option<f64>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.rss_per_conn_bytes, mem.rss_per_conn_bytes);
        pick(&mut self.kernel_per_conn_bytes, mem.kernel_per_conn_bytes);
        pick(&mut self.slab_per_conn_bytes, mem.slab_per_conn_bytes);
        pick(
            &mut self.redis_used_memory_per_conn_bytes,
            mem.redis_used_memory_per_conn_bytes,
        );
        pick(&mut self.redis_cmds_per_connect, mem.redis_cmds_per_connect);
        pick(&mut self.redis_cmds_per_conn_s, mem.redis_cmds_per_conn_s);
        self
    }

    /// These costs with the Redis figures of a cluster-mode comparison (`r`): commands and CPU
    /// per publication, memory per channel (and per connection when `r` has it and these
    /// costs do not).
    pub fn with_redis_of(mut self, r: &Costs) -> Costs {
        self.redis_ops_per_publication = r.redis_ops_per_publication;
        self.redis_cpu_us_per_publication = r.redis_cpu_us_per_publication;
        self.redis_used_memory_per_channel_bytes = r.redis_used_memory_per_channel_bytes;
        let keep = |a: &mut Option<f64>, b: Option<f64>| {
            if a.is_none() {
                *a = b;
            }
        };
        keep(
            &mut self.redis_used_memory_per_conn_bytes,
            r.redis_used_memory_per_conn_bytes,
        );
        keep(&mut self.redis_cmds_per_connect, r.redis_cmds_per_connect);
        keep(&mut self.redis_cmds_per_conn_s, r.redis_cmds_per_conn_s);
        self
    }
}

/// Where the results came from (the file's `meta` object; missing fields read "unknown").
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Meta {
    pub date: String,
    pub machine: String,
    pub commit: String,
}

/// A cost as the plan uses it: the value, and whether it was measured or is a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Used {
    pub value: f64,
    pub measured: bool,
}

impl Used {
    /// How a formula shows this cost: the number with its unit, or that it is a fallback.
    pub fn show(&self, unit: &str) -> String {
        let v = super::model::num(self.value);
        if self.measured {
            format!("{v} {unit}")
        } else {
            format!("{v} {unit} [NOT MEASURED: fallback]")
        }
    }
}

/// `key`'s measured value when it is a finite number >= 0; otherwise `fallback`, and a warning
/// naming the key and what the fallback makes uncertain (`affects`).
pub fn used(
    key: &str,
    value: Option<f64>,
    fallback: f64,
    affects: &str,
    warnings: &mut Vec<String>,
) -> Used {
    match value {
        Some(v) if v.is_finite() && v >= 0.0 => Used {
            value: v,
            measured: true,
        },
        other => {
            let why = match other {
                None => "not measured (null or absent)".to_string(),
                Some(v) => format!("unusable ({v})"),
            };
            warnings.push(format!(
                "cost {key} is {why}: using {} instead; {affects}",
                super::model::num(fallback)
            ));
            Used {
                value: fallback,
                measured: false,
            }
        }
    }
}

/// Reads `path` and returns its meta and `system`'s costs.
pub fn load(path: &Path, system: &str) -> Result<(Meta, Costs)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, system).with_context(|| format!("in {}", path.display()))
}

/// Parses a results document and picks `system`'s costs.
pub fn parse(text: &str, system: &str) -> Result<(Meta, Costs)> {
    let doc: Value = serde_json::from_str(text).context("not JSON")?;
    let Some(all) = doc.get("costs").and_then(Value::as_object) else {
        bail!("no \"costs\" object: not a compare results file");
    };
    let Some(raw) = all.get(system) else {
        let known: Vec<&str> = all.keys().map(String::as_str).collect();
        bail!(
            "no costs for system {system:?}; the file has: {}",
            known.join(", ")
        );
    };
    let costs = serde_json::from_value(raw.clone()).with_context(|| format!("costs.{system}"))?;
    Ok((meta(&doc), costs))
}

fn meta(doc: &Value) -> Meta {
    let field = |k: &str| match doc.get("meta").and_then(|m| m.get(k)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "unknown".to_string(),
        Some(other) => other.to_string(),
    };
    Meta {
        date: field("date"),
        machine: field("machine"),
        commit: field("commit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../testdata/compare-sample.json");

    #[test]
    fn sample_parses_with_meta() {
        let (meta, c) = parse(SAMPLE, "wiresocket").unwrap();
        assert_eq!(c.rss_per_conn_bytes, Some(1880.0));
        assert_eq!(c.slab_per_conn_bytes, Some(10000.0));
        assert_eq!(c.cpu_us_per_connect, Some(66.0));
        assert_eq!(c.loopback, None);
        assert!(meta.machine.contains("2 cores"), "{meta:?}");
        let (_, other) = parse(SAMPLE, "node-ws").unwrap();
        assert_eq!(other.cpu_us_per_publish, None, "null reads as not measured");
    }

    #[test]
    fn unknown_system_and_wrong_file_are_errors() {
        let e = parse(SAMPLE, "nope").unwrap_err().to_string();
        assert!(e.contains("wiresocket") && e.contains("node-ws"), "{e}");
        let e = parse(r#"{"idle": {}}"#, "x").unwrap_err().to_string();
        assert!(e.contains("costs"), "{e}");
        let (m, c) = parse(r#"{"costs": {"x": {}}}"#, "x").unwrap();
        assert_eq!(m.date, "unknown");
        assert_eq!(c, Costs::default());
    }

    #[test]
    fn used_falls_back_and_warns() {
        let mut w = Vec::new();
        let ok = used("a", Some(2.5), 9.0, "x", &mut w);
        assert_eq!((ok.value, ok.measured, w.len()), (2.5, true, 0));
        let missing = used(
            "cpu_us_per_publish",
            None,
            0.0,
            "CPU is understated",
            &mut w,
        );
        assert_eq!((missing.value, missing.measured), (0.0, false));
        let negative = used("b", Some(-3.0), 1.0, "y", &mut w);
        assert_eq!(negative.value, 1.0);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("cpu_us_per_publish") && w[0].contains("understated"));
        assert!(w[1].contains("unusable (-3)"), "{}", w[1]);
        assert!(missing.show("us").contains("NOT MEASURED"));
    }
}
