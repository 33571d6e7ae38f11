//! The `compare` subcommand: every scenario in `bench/scenarios/` against wiresocket and every
//! peer, in the same run, on the same machine. Scenarios run one after another; within a
//! scenario the systems take turns, each on a fresh server, so slow drift of the (shared, noisy)
//! machine hits all of them alike. The raw results are saved after every single run (a crash
//! keeps what was measured), then `compare_report` writes the JSON, the Markdown report with
//! ratios and the SVG charts into `bench/results/`.
//!
//! Also `run`: one scenario against one already running server (for users load-testing their
//! own deployment).

use crate::dialect::Dialect;
use crate::pool::Spread;
use crate::runner::Sut;
use crate::scenario::ScenarioDef;
use crate::systems::{self, Binaries};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Systems to measure, in order (wiresocket, wiresocket-1core, wiresocket-cluster[-N],
    /// node-ws, socketio, nchan, tokio-ws).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "wiresocket,node-ws,socketio,nchan,tokio-ws"
    )]
    pub systems: Vec<String>,
    /// Directory of scenario files.
    #[arg(long, default_value = "bench/scenarios")]
    pub scenarios: PathBuf,
    /// Run only these scenarios (names), default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Multiplies every scenario's connection count (e.g. 0.05 for a smoke run).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Multiplies every publish phase's duration and idle hold (smoke runs).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Cores given to each system.
    #[arg(long, default_value_t = 2)]
    pub cores: usize,
    #[arg(long, default_value = "target/release/wiresocket")]
    pub wiresocket_bin: PathBuf,
    #[arg(long, default_value = "bench/peers")]
    pub peers_dir: PathBuf,
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// File name stem of the outputs (default `compare-<UTC date-time>`).
    #[arg(long)]
    pub name: Option<String>,
    /// `KEY=VALUE` lines for the report header; repeatable.
    #[arg(long)]
    pub meta: Vec<String>,
    /// Record a CPU profile of wiresocket (`perf record`) during each scenario into this
    /// directory (`<scenario>.perf.data`); see `bench/profile.sh`.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    #[command(flatten)]
    pub spread: Spread,
}

/// The fixed presentation order of scenarios.
const ORDER: &[&str] = &[
    "connect-storm",
    "idle-hold",
    "fanout",
    "many-channels",
    "reconnect-storm",
    "slow-consumers",
];

/// Loads the scenario files of `dir` (all, or the `only` ones), in `ORDER`.
pub fn load_scenarios(dir: &Path, only: &[String]) -> Result<Vec<ScenarioDef>> {
    let mut defs = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let d = ScenarioDef::load(&p)?;
            if only.is_empty() || only.contains(&d.name) {
                defs.push(d);
            }
        }
    }
    defs.sort_by_key(|d| {
        ORDER
            .iter()
            .position(|n| *n == d.name)
            .unwrap_or(ORDER.len())
    });
    if defs.is_empty() {
        bail!("no scenarios selected in {}", dir.display());
    }
    Ok(defs)
}

fn stamp() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y%m%d-%H%M%S"])
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{}", crate::sys::mono_ns()))
}

pub async fn run(a: CompareArgs) -> Result<()> {
    for s in &a.systems {
        Dialect::of_system(s).with_context(|| format!("unknown system {s}"))?;
    }
    let defs: Vec<ScenarioDef> = load_scenarios(&a.scenarios, &a.only)?
        .into_iter()
        .map(|d| d.scaled(a.scale).time_scaled(a.time_scale))
        .collect();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("compare-{}", stamp()));
    std::fs::create_dir_all(&a.out_dir)?;
    let work = std::env::temp_dir().join(format!("wiresocket-{name}"));
    let bins = Binaries {
        wiresocket: a.wiresocket_bin.clone(),
        peers_dir: a.peers_dir.clone(),
    };
    let mut meta = Map::new();
    for kv in &a.meta {
        let (k, v) = kv.split_once('=').context("--meta wants KEY=VALUE")?;
        meta.insert(k.into(), v.into());
    }
    meta.insert("scale".into(), json!(a.scale));
    meta.insert("time_scale".into(), json!(a.time_scale));
    meta.insert("cores_per_system".into(), json!(a.cores));
    let mut results = Map::new();
    let raw_path = a.out_dir.join(format!("{name}.raw.json"));
    for def in &defs {
        let mut per_system = Map::new();
        for sys in &a.systems {
            let state = work.join(format!("{}-{sys}", def.name));
            let profile = a
                .profile
                .as_ref()
                .filter(|_| sys.starts_with("wiresocket"))
                .map(|d| d.join(format!("{}.perf.data", def.name)));
            let v = match run_one(
                def, sys, a.cores, &state, &bins, &a.spread, a.scale, profile,
            )
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{} on {sys} failed: {e:#}", def.name);
                    json!({ "error": format!("{e:#}") })
                }
            };
            per_system.insert(sys.clone(), v);
            results.insert(
                def.name.clone(),
                json!({ "definition": def, "systems": per_system }),
            );
            let doc = json!({ "meta": meta, "systems": a.systems, "results": results });
            std::fs::write(&raw_path, serde_json::to_string_pretty(&doc)? + "\n")?;
        }
    }
    let doc = json!({ "meta": meta, "systems": a.systems, "results": results });
    let out = crate::compare_report::write(&doc, &a.out_dir, &name)?;
    let _ = std::fs::remove_file(&raw_path);
    println!("{}", std::fs::read_to_string(&out)?);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    def: &ScenarioDef,
    sys: &str,
    cores: usize,
    state: &Path,
    bins: &Binaries,
    spread: &Spread,
    scale: f64,
    profile: Option<PathBuf>,
) -> Result<Value> {
    let env = if sys.starts_with("wiresocket") {
        scaled_env(def)
    } else {
        Default::default()
    };
    let running = systems::start(sys, cores, state, bins, &env)?;
    let rec = match &profile {
        Some(out) => Some(crate::profiler::start(running.sut.pids[0], out)?),
        None => None,
    };
    let res = crate::runner::run(def, &running.sut, spread, scale).await;
    if let Some(r) = rec {
        r.stop();
    }
    running.stop();
    res
}

/// The scenario's wiresocket overrides; a connection limit equal to the unscaled population is
/// scaled with it.
fn scaled_env(def: &ScenarioDef) -> std::collections::BTreeMap<String, String> {
    let mut env = def.wiresocket_env.clone();
    if let Some(v) = env.get_mut("WIRESOCKET_SERVER__MAX_CONNECTIONS") {
        *v = def.conns.to_string();
    }
    env
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// A `compare` results file (`<name>.json`, or `<name>.raw.json` of an interrupted run).
    #[arg(long)]
    pub from: PathBuf,
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// Output stem (default: the input's, without `.raw`).
    #[arg(long)]
    pub name: Option<String>,
}

/// `report`: recomputes metrics, ratios, costs, charts and Markdown from a results file.
pub fn report(a: ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.from)
        .with_context(|| format!("reading {}", a.from.display()))?;
    let doc: Value = serde_json::from_str(&text)?;
    let stem = a
        .from
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report");
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| stem.trim_end_matches(".raw").to_string());
    let out = crate::compare_report::write(&doc, &a.out_dir, &name)?;
    println!("{}", out.display());
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Scenario file, e.g. bench/scenarios/fanout.toml
    #[arg(long)]
    pub scenario: PathBuf,
    /// Name of the system in the result.
    #[arg(long, default_value = "wiresocket")]
    pub system: String,
    #[arg(long, value_enum, default_value = "centrifugo")]
    pub dialect: Dialect,
    /// WebSocket URL, e.g. ws://127.0.0.1:8000/connection/websocket; comma-separated for
    /// several nodes (clients round-robin over them).
    #[arg(long)]
    pub url: String,
    /// HTTP base URL for publishing, e.g. http://127.0.0.1:8000; comma-separated for several
    /// nodes (default: the hosts of --url).
    #[arg(long)]
    pub api_url: Option<String>,
    #[arg(long, default_value = "")]
    pub api_key: String,
    /// HS256 secret for connection tokens.
    #[arg(long)]
    pub secret: String,
    /// Processes of the system under test (memory and CPU are summed over them); repeatable.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[command(flatten)]
    pub spread: Spread,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `run`: one scenario against a running server; prints the result JSON.
pub async fn run_single(a: RunArgs) -> Result<Value> {
    let def = ScenarioDef::load(&a.scenario)?.scaled(a.scale);
    let api_url = match &a.api_url {
        Some(u) => u.clone(),
        None => crate::net::Target::parse_list(&a.url)?
            .iter()
            .map(|t| format!("http://{}", t.host_header))
            .collect::<Vec<_>>()
            .join(","),
    };
    let sut = Sut {
        name: a.system.clone(),
        dialect: a.dialect,
        url: a.url.clone(),
        api_url,
        api_key: a.api_key.clone(),
        secret: a.secret.clone(),
        pids: a.server_pid.clone(),
        redis: None,
    };
    crate::runner::run(&def, &sut, &a.spread, a.scale).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_in_presentation_order_and_filters() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let all = load_scenarios(&dir, &[]).unwrap();
        let names: Vec<_> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ORDER);
        let one = load_scenarios(&dir, &["fanout".into()]).unwrap();
        assert_eq!(one.len(), 1);
        assert!(load_scenarios(&dir, &["nope".into()]).is_err());
        let storm = all.iter().find(|d| d.name == "reconnect-storm").unwrap();
        let scaled = storm.scaled(0.1);
        assert_eq!(
            scaled_env(&scaled)
                .get("WIRESOCKET_SERVER__MAX_CONNECTIONS")
                .map(String::as_str),
            Some("1000")
        );
        let t = all[2].time_scaled(0.2);
        assert_eq!(t.secs_per_rate, 2.0);
    }
}
