//! `wiresocket-bench capacity`: what one host needs for a target load, from measured costs.
//!
//! Reads only the `costs.<system>` object (and `meta`) of a `compare` results file — the keys are
//! listed in [`costs::Costs`] — combines it with the target given on the command line, and prints
//! a plan a sysadmin can act on: RAM, CPU cores, file descriptors, a sysctl.d snippet in the format
//! of tuning/99-wiresocket.conf, and the Redis load of cluster mode (derived from the design,
//! replaced by measurements where `--redis-results` / `--memory-results` bring them). Every
//! derived number is printed with its formula and the numbers that went in; missing costs become
//! documented fallbacks plus warnings. `--json` prints the same plan as JSON.
//!
//! Data flow: [`CapacityArgs`] -> [`Target`] (validated) -> `traffic` -> `host::{ram, cpu, fds}`
//! -> `sysctl::plan` -> `redis::plan` -> [`Plan`] -> `render::text` or JSON (`model`: shared
//! `Line`/`Unit`/number formatting). Each step's assumptions are documented in its module.

mod costs;
mod host;
mod model;
mod redis;
mod render;
mod sysctl;
#[cfg(test)]
mod tests;
mod traffic;

use anyhow::{bail, Result};
use clap::Args;
use costs::{Costs, Meta};
use host::{Cpu, Fds, Ram};
use model::{num, Line, Unit, GIB, PAGE};
use serde::Serialize;
use std::path::PathBuf;
use traffic::Traffic;

/// Target load and planning assumptions. Connections and rates are per host unless noted.
#[derive(Args, Debug, Clone, Serialize)]
pub struct CapacityArgs {
    /// Comparison results JSON written by `compare` (bench/compare.sh); only its
    /// `costs.<system>` object and `meta` are read.
    #[arg(long)]
    pub results: PathBuf,
    /// System whose measured costs to plan with (a key of `costs`).
    #[arg(long, default_value = "wiresocket")]
    pub system: String,
    /// A second results file whose per-connection MEMORY costs (user-space RSS, kernel slab and
    /// TCP pages, Redis used_memory) replace those of --results, e.g. the 100,000-connection
    /// cluster idle-hold run (bench/results/cluster-100k-*.json); CPU costs stay from --results.
    #[arg(long)]
    pub memory_results: Option<PathBuf>,
    /// System of --memory-results to take the memory costs from.
    #[arg(long, default_value = "wiresocket-cluster-7")]
    pub memory_system: String,
    /// A cluster-mode comparison whose Redis costs (commands and redis-server CPU per
    /// publication, Redis memory per channel) the Redis section uses instead of the design's
    /// estimate, e.g. bench/results/compare-cluster-3nodes.json.
    #[arg(long)]
    pub redis_results: Option<PathBuf>,
    /// System of --redis-results to take the Redis costs from.
    #[arg(long, default_value = "wiresocket-cluster")]
    pub redis_system: String,
    /// Concurrent connections on this host.
    #[arg(long, default_value_t = 500_000)]
    pub conns: u64,
    /// Messages per second delivered to each connection (all its channels together).
    #[arg(long, default_value_t = 1.0)]
    pub msg_rate: f64,
    /// Payload bytes of one message.
    #[arg(long, default_value_t = 200)]
    pub msg_bytes: u64,
    /// Channels each client subscribes to.
    #[arg(long, default_value_t = 1)]
    pub channels_per_client: u32,
    /// Subscribers of one channel, cluster-wide: each publication is delivered to this many.
    #[arg(long, default_value_t = 1000)]
    pub subscribers_per_channel: u64,
    /// Publications/s entering the cluster [default: conns x nodes x msg_rate /
    /// subscribers_per_channel].
    #[arg(long)]
    pub publish_rate: Option<f64>,
    /// Hosts in the cluster, each with --conns connections (Redis estimate).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Fraction added to RAM, CPU and file descriptors.
    #[arg(long, default_value_t = 0.3)]
    pub headroom: f64,
    /// Seconds within which all of this host's clients must be able to reconnect (node loss,
    /// restart); the storm's CPU is added on top of the steady state.
    #[arg(long, default_value_t = 60.0)]
    pub reconnect_window_s: f64,
    /// Per-connection send queue limit of the server (websocket.outbound_queue_bytes).
    #[arg(long, default_value_t = 262_144)]
    pub outbound_queue_bytes: u64,
    /// Fraction of connections assumed to have a full send queue at the same time (slow readers).
    #[arg(long, default_value_t = 0.01)]
    pub slow_fraction: f64,
    /// Client round-trip time, ms: how long sent data holds kernel buffer pages until ACKed.
    #[arg(long, default_value_t = 100.0)]
    pub rtt_ms: f64,
    /// GiB for the OS, the server's baseline, buffer pools and page cache.
    #[arg(long, default_value_t = 2.0)]
    pub base_ram_gib: f64,
    /// Seconds between presence refreshes of each subscription in Redis; 0 = presence off.
    #[arg(long, default_value_t = 25.0)]
    pub presence_refresh_s: f64,
    /// Mean seconds a client stays connected (steady-state connects and disconnects).
    #[arg(long, default_value_t = 3600.0)]
    pub session_lifetime_s: f64,
    /// Publications kept per channel stream in Redis (engine.history_size).
    #[arg(long, default_value_t = 100)]
    pub history_size: u64,
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The validated target, all as f64 for the arithmetic.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub conns: f64,
    pub msg_rate: f64,
    pub msg_bytes: f64,
    pub channels: f64,
    pub subscribers_per_channel: f64,
    pub publish_rate: Option<f64>,
    pub nodes: f64,
    pub headroom: f64,
    pub reconnect_window_s: f64,
    pub outbound_queue_bytes: f64,
    pub slow_fraction: f64,
    pub rtt_ms: f64,
    pub base_ram_gib: f64,
    pub presence_refresh_s: f64,
    pub session_lifetime_s: f64,
    pub history_size: f64,
}

impl Target {
    /// Checks ranges; clamps subscribers per channel to the clients that exist (with a warning).
    pub fn from_args(a: &CapacityArgs, warnings: &mut Vec<String>) -> Result<Target> {
        let non_negative = [
            ("--msg-rate", a.msg_rate),
            ("--headroom", a.headroom),
            ("--rtt-ms", a.rtt_ms),
            ("--base-ram-gib", a.base_ram_gib),
            ("--presence-refresh-s", a.presence_refresh_s),
            ("--publish-rate", a.publish_rate.unwrap_or(0.0)),
        ];
        for (flag, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{flag} must be a number >= 0, got {v}");
            }
        }
        for (flag, v) in [
            ("--reconnect-window-s", a.reconnect_window_s),
            ("--session-lifetime-s", a.session_lifetime_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{flag} must be > 0, got {v}");
            }
        }
        if !(0.0..=1.0).contains(&a.slow_fraction) {
            bail!(
                "--slow-fraction must be within 0..1, got {}",
                a.slow_fraction
            );
        }
        if a.conns == 0
            || a.nodes == 0
            || a.channels_per_client == 0
            || a.subscribers_per_channel == 0
        {
            bail!(
                "--conns, --nodes, --channels-per-client, --subscribers-per-channel must be >= 1"
            );
        }
        let clients = a.conns as f64 * a.nodes as f64;
        let mut subs = a.subscribers_per_channel as f64;
        if subs > clients {
            warnings.push(format!(
                "--subscribers-per-channel {} exceeds the {} clients of the cluster: using {}",
                num(subs),
                num(clients),
                num(clients)
            ));
            subs = clients;
        }
        Ok(Target {
            conns: a.conns as f64,
            msg_rate: a.msg_rate,
            msg_bytes: a.msg_bytes as f64,
            channels: a.channels_per_client as f64,
            subscribers_per_channel: subs,
            publish_rate: a.publish_rate,
            nodes: a.nodes as f64,
            headroom: a.headroom,
            reconnect_window_s: a.reconnect_window_s,
            outbound_queue_bytes: a.outbound_queue_bytes as f64,
            slow_fraction: a.slow_fraction,
            rtt_ms: a.rtt_ms,
            base_ram_gib: a.base_ram_gib,
            presence_refresh_s: a.presence_refresh_s,
            session_lifetime_s: a.session_lifetime_s,
            history_size: a.history_size as f64,
        })
    }
}

/// Everything the command prints.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub system: String,
    pub results: String,
    pub meta: Meta,
    pub inputs: CapacityArgs,
    pub target: Target,
    pub costs: Costs,
    pub traffic: Traffic,
    pub ram: Ram,
    pub cpu: Cpu,
    pub fds: Fds,
    pub sysctl: sysctl::Sysctl,
    pub redis: redis::Redis,
    /// Facts about the model that always apply to this plan.
    pub notes: Vec<String>,
    /// Missing costs, extrapolations and limits the target exceeds.
    pub warnings: Vec<String>,
}

/// Entry point of `wiresocket-bench capacity`.
pub fn run(a: CapacityArgs) -> Result<()> {
    let (meta, costs) = load_costs(&a)?;
    let plan = build(&a, meta, costs)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render::text(&plan));
    }
    Ok(())
}

/// The costs of `--results` / `--system`, with the memory costs of `--memory-results` and the
/// Redis costs of `--redis-results` laid over them when given.
pub fn load_costs(a: &CapacityArgs) -> Result<(Meta, Costs)> {
    let (meta, mut costs) = costs::load(&a.results, &a.system)?;
    if let Some(f) = &a.memory_results {
        costs = costs.with_memory_of(&costs::load(f, &a.memory_system)?.1);
    }
    if let Some(f) = &a.redis_results {
        costs = costs.with_redis_of(&costs::load(f, &a.redis_system)?.1);
    }
    Ok((meta, costs))
}

/// The plan for `a` with the given costs.
pub fn build(a: &CapacityArgs, meta: Meta, costs: Costs) -> Result<Plan> {
    let mut warnings = Vec::new();
    let target = Target::from_args(a, &mut warnings)?;
    let traffic = traffic::traffic(&target);
    let mut ram = host::ram(&target, &traffic, &costs, &mut warnings);
    let cpu = host::cpu(&target, &traffic, &costs, &mut warnings);
    let fds = host::fds(&target);
    let sysctl = sysctl::plan(&target, &traffic, &fds, ram.buffer_pages);
    ram.lines.push(worst_case(&ram, sysctl.tcp_mem[2]));
    let redis = redis::plan(&target, &traffic, &costs);
    let notes = notes(&target, &costs);
    let mut plan = Plan {
        system: a.system.clone(),
        results: a.results.display().to_string(),
        meta,
        inputs: a.clone(),
        target,
        costs,
        traffic,
        ram,
        cpu,
        fds,
        sysctl,
        redis,
        notes,
        warnings,
    };
    limit_warnings(&mut plan);
    Ok(plan)
}

/// RAM if socket buffers grow to `tcp_mem` max instead of the reserved pages (no headroom).
fn worst_case(ram: &Ram, tcp_mem_max: u64) -> Line {
    let max_bytes = tcp_mem_max as f64 * PAGE;
    let value = ram.total_bytes - ram.buffer_pages * PAGE + max_bytes;
    Line {
        item: "worst case: socket buffers at tcp_mem max".to_string(),
        value,
        unit: Unit::Bytes,
        formula: format!(
            "total - reserved buffers + tcp_mem max = {:.2} - {:.2} + {:.2} GiB \
             (the kernel caps buffers there)",
            ram.total_bytes / GIB,
            ram.buffer_pages * PAGE / GIB,
            max_bytes / GIB
        ),
    }
}

/// Statements that qualify every plan.
fn notes(t: &Target, c: &Costs) -> Vec<String> {
    let mut n = Vec::new();
    if c.loopback.unwrap_or(true) {
        n.push(
            "Kernel costs were measured over loopback, where both ends of each connection live \
             on the measuring host; the plan counts half of them for the server's end."
                .to_string(),
        );
    }
    let measured = [
        c.redis_ops_per_publication,
        c.redis_used_memory_per_conn_bytes,
        c.redis_cmds_per_connect,
    ];
    n.push(if measured.iter().all(Option::is_none) {
        "Redis numbers are DERIVED FROM THE DESIGN (ARCHITECTURE.md), NOT MEASURED: these \
         results carry no cluster-mode Redis readings."
            .to_string()
    } else {
        "Redis figures marked MEASURED come from wiresocket-cluster runs (INFO commandstats and \
         used_memory deltas, presence off; per-connection commands replace the design's only \
         with --presence-refresh-s 0); the others are derived from the design (ARCHITECTURE.md)."
            .to_string()
    });
    if t.nodes <= 1.0 {
        n.push(
            "With --nodes 1 the server runs the memory engine (engine.kind = \"memory\") and uses \
             no Redis; the Redis section shows what the same load would cost in cluster mode."
                .to_string(),
        );
    }
    if t.conns > 55_536.0 {
        n.push(format!(
            "{} connections on one listening port are fine for the server. Anything opening that \
             many connections to it from one address (a load generator, a proxy on this host) \
             needs {} source IPs: ip_local_port_range 10000-65535 gives 55,536 ports per source \
             IP and destination.",
            num(t.conns),
            num((t.conns / 55_536.0).ceil())
        ));
    }
    n
}

/// Warnings for targets beyond what one host or one Redis usually does.
fn limit_warnings(p: &mut Plan) {
    let mut w = Vec::new();
    if p.cpu.cores > 64 {
        let cores = p.cpu.cores;
        w.push(format!(
            "{cores} cores for one host: spread the load over more nodes"
        ));
    }
    let gbit = p.traffic.egress_bytes_per_s * 8.0 / 1e9;
    if gbit > 10.0 {
        w.push(format!(
            "client egress {gbit:.1} Gbit/s exceeds a 10 GbE NIC"
        ));
    }
    let peak = p.redis.peak_commands_per_s.cluster;
    if peak > redis::ONE_REDIS_CMDS_PER_S {
        w.push(format!(
            "Redis would take {} commands/s at peak (cluster): one Redis process serves very \
             roughly {} small commands/s; shard (Redis Cluster) or raise --presence-refresh-s",
            num(peak.round()),
            num(redis::ONE_REDIS_CMDS_PER_S)
        ));
    }
    let worst = p.ram.lines.last().map_or(0.0, |l| l.value) / GIB;
    if worst > p.ram.host_gib as f64 {
        w.push(format!(
            "worst case RAM {worst:.1} GiB exceeds the {} GiB host: lower tcp_mem or take a \
             larger host",
            p.ram.host_gib
        ));
    }
    w.extend(publish_rate_mismatch(&p.target));
    p.warnings.extend(w);
}

/// A given `--publish-rate` that does not fit deliveries / subscribers per channel (+-10%).
fn publish_rate_mismatch(t: &Target) -> Option<String> {
    let pubs = t.publish_rate.filter(|p| *p > 0.0)?;
    let implied = t.conns * t.nodes * t.msg_rate / pubs;
    let ratio = implied / t.subscribers_per_channel;
    if (0.9..=1.1).contains(&ratio) {
        return None;
    }
    Some(format!(
        "--publish-rate {} with {} deliveries/s per connection implies {} subscribers per \
         channel, not {}",
        num(pubs),
        num(t.msg_rate),
        num(implied.round()),
        num(t.subscribers_per_channel)
    ))
}
