//! `wiresocket-bench`: load generator, scenario runner and side-by-side comparison of
//! wiresocket with its peers (Node `ws` + Redis, Socket.IO + Redis adapter, nginx + Nchan,
//! tokio-tungstenite).
//!
//! # Layout (data flow)
//! - `main`: CLI (`compare`, `report`, `run`, `capacity`, internal `worker`).
//! - `compare` -> `systems` (start/stop each system fresh per scenario) -> `runner` (one
//!   `scenario` against one system: connect step, then the kind: `idle`, `publish`,
//!   `reconnect`, `slow`) -> `compare_report` (metrics, ratios, costs, `chart`s, Markdown).
//! - `runner` -> `pool` -> `worker` (re-executed binary, stdout `events`) -> `client` per
//!   connection (`handshake`, `stats`) -> `ws` (raw WebSocket frames) + `dialect` (what each
//!   system speaks) + `proto` (Centrifugo JSON) + `jwt`; `net` for addressing.
//! - `publisher`: HTTP publish load; `hist`: latency histograms; `sys`: /proc readings;
//!   `progress`: progress bars; `capacity`: host plan from a results file.
//!
//! Safety rails: every target must be loopback, every run has a deadline, and workers exit on
//! their own when the parent disappears.

mod capacity;
mod chart;
mod client;
mod cluster;
mod compare;
mod compare_report;
mod dialect;
mod events;
mod handshake;
mod hist;
mod idle;
mod jwt;
mod net;
mod pool;
mod profiler;
mod progress;
mod proto;
mod publish;
mod publisher;
mod reconnect;
mod redis_probe;
mod runner;
mod scenario;
mod slow;
mod stats;
mod sys;
mod systems;
mod tls;
mod worker;
mod ws;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::future::Future;

#[derive(Parser)]
#[command(
    name = "wiresocket-bench",
    about = "Load generator and engine benchmark for wiresocket"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario against wiresocket and every peer, same run; JSON + Markdown + charts.
    Compare(compare::CompareArgs),
    /// Re-render a comparison report (metrics, ratios, costs, charts) from its results file.
    Report(compare::ReportArgs),
    /// One scenario against one running server; prints (and saves) the result JSON.
    Run(compare::RunArgs),
    /// Plan a host (RAM, cores, fds, sysctls, Redis) from measured costs in a results file.
    Capacity(capacity::CapacityArgs),
    /// What TLS termination costs on one core: handshakes/s and idle memory per connection.
    Tls(tls::TlsArgs),
    /// Internal: one load-generator process (started by the scenario runner).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&rt, f))
}

fn write_out(out: &Option<std::path::PathBuf>, v: &serde_json::Value) -> Result<()> {
    if let Some(p) = out {
        std::fs::write(p, serde_json::to_string_pretty(v)? + "\n")?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Worker(a) => worker::main(a),
        Cmd::Capacity(a) => capacity::run(a),
        Cmd::Tls(a) => tls::run(a),
        Cmd::Report(a) => compare::report(a),
        Cmd::Compare(a) => block_on(compare::run(a))?,
        Cmd::Run(a) => {
            let out = a.out.clone();
            let v = block_on(compare::run_single(a))??;
            println!("{}", serde_json::to_string_pretty(&v)?);
            write_out(&out, &v)
        }
    }
}
