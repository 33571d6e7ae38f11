//! `wiresocket-bench`: load generator and engine benchmark for wiresocket.
//!
//! # Layout (data flow)
//! - `main`: CLI (`idle`, `fanout`, `report`, internal `worker`).
//! - `idle` / `fanout`: parent-side scenarios; they start `pool` workers, drive the `publisher`,
//!   sample `sys` (server and load-generator CPU/RSS, sockstat) and build the JSON results.
//! - `pool` -> `worker` (re-executed binary, stdout `events`) -> `client` per connection ->
//!   `ws` (raw WebSocket frames) + `proto` (Centrifugo JSON) + `jwt`; `net` for addressing.
//! - `hist`: latency histograms; `report`: merged JSON + Markdown for `engine-bench.sh`.
//!
//! Safety rails: every target must be loopback, every run has a deadline, and workers exit on
//! their own when the parent disappears.

mod client;
mod events;
mod fanout;
mod hist;
mod idle;
mod jwt;
mod net;
mod pool;
mod proto;
mod publisher;
mod report;
mod sys;
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
    /// Open N idle subscribed connections and measure their cost on the server.
    Idle(idle::IdleArgs),
    /// N subscribers, HTTP API publisher at several rates: throughput, loss, latency.
    Fanout(fanout::FanoutArgs),
    /// Merge idle/fanout JSON results into the engine report (JSON + Markdown).
    Report(report::ReportArgs),
    /// Internal: one load-generator process (started by idle/fanout).
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
        Cmd::Report(a) => report::run(a),
        Cmd::Idle(a) => {
            let out = a.out.clone();
            let v = block_on(idle::run(a))??;
            println!("{}", idle::summary(&v));
            write_out(&out, &v)
        }
        Cmd::Fanout(a) => {
            let out = a.out.clone();
            let v = block_on(fanout::run(a))??;
            print!("{}", fanout::summary(&v));
            write_out(&out, &v)
        }
    }
}
