//! Scenario definitions: named, versioned TOML files under `bench/scenarios/` (one per
//! scenario), loaded into `ScenarioDef`. A result always records the definition it ran (name,
//! version and every parameter), so numbers from different versions are never mixed up.
//! Bump `version` whenever a change to a file changes what its numbers mean.
//!
//! `--scale` shrinks or grows connection counts (and the channel count with them) for smoke
//! runs or bigger hosts without editing the files; the scale is recorded in the result.

use crate::client::ChannelPlan;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Connect N clients (handshake + JWT + subscribe): time to N, rate, handshake latency.
    Connect,
    /// Connect N and hold them: server memory (user space, kernel) and CPU per idle connection.
    Idle,
    /// Publish at each rate to `channels` channels: throughput, latency, loss.
    Publish,
    /// Every client drops at once and reconnects: time until all are back, shedding.
    Reconnect,
    /// A share of clients stops reading during a publish phase: others' latency, server memory.
    Slow,
}

/// One scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDef {
    pub name: String,
    pub version: u32,
    pub kind: Kind,
    pub description: String,
    /// Simulated clients.
    pub conns: u64,
    /// Channels in use (1 = everyone on `bench`).
    #[serde(default = "one")]
    pub channels: u64,
    #[serde(default = "one")]
    pub channels_per_client: u64,
    /// Handshakes in flight at once over all workers.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Publications per second, one phase each (publish, slow).
    #[serde(default)]
    pub rates: Vec<u64>,
    #[serde(default = "ten")]
    pub secs_per_rate: f64,
    /// Pause after each phase so late deliveries land in their own phase.
    #[serde(default = "three")]
    pub drain_s: f64,
    /// Filler bytes added to each publication.
    #[serde(default)]
    pub payload_bytes: usize,
    /// Idle hold after connecting (idle), or settle time before a drop (reconnect).
    #[serde(default)]
    pub hold_s: f64,
    /// Share of clients that stop reading (slow).
    #[serde(default)]
    pub slow_share: f64,
    /// Longest wait for a reconnect storm to finish, seconds.
    #[serde(default = "sixty")]
    pub max_recover_s: f64,
    /// `WIRESOCKET_*` overrides `compare` applies to wiresocket for this scenario (e.g. a
    /// connection limit to exercise load shedding); peers have no such knobs.
    #[serde(default)]
    pub wiresocket_env: std::collections::BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}
fn default_concurrency() -> usize {
    500
}
fn ten() -> f64 {
    10.0
}
fn three() -> f64 {
    3.0
}
fn sixty() -> f64 {
    60.0
}

impl ScenarioDef {
    pub fn load(path: &Path) -> Result<ScenarioDef> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let def: ScenarioDef =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        def.validate()
            .with_context(|| format!("invalid scenario {}", path.display()))?;
        Ok(def)
    }

    fn validate(&self) -> Result<()> {
        if self.conns == 0 || self.channels == 0 || self.channels_per_client == 0 {
            bail!("conns, channels and channels_per_client must be positive");
        }
        if self.channels_per_client > self.channels {
            bail!("channels_per_client exceeds channels");
        }
        if matches!(self.kind, Kind::Publish | Kind::Slow) && self.rates.is_empty() {
            bail!("{:?} needs rates", self.kind);
        }
        if self.rates.contains(&0) {
            bail!("rates must be positive");
        }
        if self.kind == Kind::Slow && !(0.0 < self.slow_share && self.slow_share < 1.0) {
            bail!("slow_share must be in (0, 1)");
        }
        Ok(())
    }

    /// The definition with connection counts multiplied by `scale` (channels scale with them
    /// when there are more than one, so subscribers per channel stay the same).
    pub fn scaled(&self, scale: f64) -> ScenarioDef {
        let mut d = self.clone();
        let s = |n: u64| ((n as f64 * scale).round() as u64).max(1);
        d.conns = s(self.conns);
        if self.channels > 1 {
            d.channels = s(self.channels).max(self.channels_per_client);
        }
        d.concurrency = (self.concurrency as f64 * scale.min(1.0)).ceil().max(1.0) as usize;
        d
    }

    /// The definition with publish phases, drain pauses and idle hold multiplied by `t`
    /// (phases and pauses stay at least 1 s).
    pub fn time_scaled(&self, t: f64) -> ScenarioDef {
        let mut d = self.clone();
        d.secs_per_rate = (d.secs_per_rate * t).max(1.0);
        d.hold_s *= t;
        d.drain_s = (d.drain_s * t).max(1.0);
        d
    }

    /// Which channels clients subscribe to and publications go to: `bench` when there is one
    /// channel, `ch0`..`chN-1` otherwise.
    pub fn channel_plan(&self) -> ChannelPlan {
        ChannelPlan {
            prefix: if self.channels > 1 { "ch" } else { "bench" }.into(),
            count: self.channels,
            per_client: self.channels_per_client,
        }
    }

    /// Every N-th client is slow so that about `slow_share` of them are.
    pub fn stall_every(&self) -> u64 {
        if self.kind != Kind::Slow {
            return 0;
        }
        (1.0 / self.slow_share).round().max(2.0) as u64
    }

    /// Subscribers of each channel when `ready` clients are connected.
    pub fn subs_per_channel(&self, ready: u64) -> f64 {
        ready as f64 * self.channels_per_client as f64 / self.channels as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let d = ScenarioDef::load(&p).unwrap();
                assert_eq!(
                    p.file_stem().unwrap().to_str().unwrap(),
                    d.name,
                    "file named after its scenario"
                );
                assert!(d.version >= 1);
                names.push(d.name);
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "connect-storm",
                "fanout",
                "idle-hold",
                "many-channels",
                "reconnect-storm",
                "slow-consumers"
            ]
        );
    }

    #[test]
    fn rejects_bad_definitions_and_scales() {
        let base = r#"name="x"
version=1
kind="publish"
description="d"
conns=1000
channels=100
channels_per_client=3
rates=[10]"#;
        let d: ScenarioDef = toml::from_str(base).unwrap();
        d.validate().unwrap();
        let s = d.scaled(0.1);
        assert_eq!((s.conns, s.channels), (100, 10));
        assert_eq!(s.subs_per_channel(100), 30.0);
        assert_eq!(s.channel_plan().for_publication(13), "ch3");
        let t = d.time_scaled(0.2);
        assert_eq!((t.secs_per_rate, t.drain_s), (2.0, 1.0));
        let mut bad = d.clone();
        bad.rates.clear();
        assert!(bad.validate().is_err());
        bad = d.clone();
        bad.channels_per_client = 101;
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<ScenarioDef>(&format!("{base}\nbogus=1")).is_err());
        let mut slow = d;
        slow.kind = Kind::Slow;
        slow.slow_share = 0.1;
        assert_eq!(slow.stall_every(), 10);
    }
}
