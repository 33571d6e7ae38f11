//! The `worker` subcommand: one load-generator process holding up to ~15,000 client sockets (the
//! machine caps open files at 20,000 per process). Runs a single-threaded tokio runtime, starts
//! its share of clients with a bounded number of handshakes in flight, prints JSON events on
//! stdout (`events::Event`) and obeys `count` / `report` / `stop` lines on stdin, plus `drop`
//! (every client closes and reconnects: reconnect storm) and `stall` / `resume` (slow consumers
//! stop / start reading).
//!
//! Invariant: a worker always ends by itself — on `stop`, on stdin EOF (parent gone) or at
//! `--deadline-s` — so no run can leave sockets behind.

use crate::client::{self, ChannelPlan, ClientCfg, Control};
use crate::dialect::Dialect;
use crate::events::Event;
use crate::net::{parse_src_ips, Target};
use crate::stats::Stats;
use anyhow::{bail, Result};
use clap::Args;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::time::{interval, sleep, Instant};

/// Sockets one worker may hold (fd cap 20,000 minus headroom).
pub const MAX_PER_WORKER: u64 = 15_000;

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// WebSocket URL, or several comma-separated (the nodes of a cluster, used round-robin by
    /// client index).
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum, default_value = "centrifugo")]
    pub dialect: Dialect,
    #[arg(long)]
    pub secret: String,
    /// Channel name, or name prefix when `--channel-count` > 1.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    #[arg(long, default_value_t = 1)]
    pub channel_count: u64,
    #[arg(long, default_value_t = 1)]
    pub channels_per_client: u64,
    #[arg(long)]
    pub conns: u64,
    /// Global index of this worker's first client (channel assignment, user names).
    #[arg(long, default_value_t = 0)]
    pub index_base: u64,
    /// Every N-th client (global index) is a slow consumer for `stall`; 0 = none.
    #[arg(long, default_value_t = 0)]
    pub stall_every: u64,
    /// Handshakes in flight at once in this worker.
    #[arg(long, default_value_t = 250)]
    pub concurrency: usize,
    #[arg(long)]
    pub src_ips: Option<String>,
    /// Index into the source list where this worker starts its round-robin.
    #[arg(long, default_value_t = 0)]
    pub ip_offset: usize,
    #[arg(long, default_value_t = 0)]
    pub id: usize,
    /// Number of publish phases to keep histograms for.
    #[arg(long, default_value_t = 0)]
    pub phases: usize,
    /// Hard stop: the worker exits this many seconds after start whatever happens.
    #[arg(long, default_value_t = 600)]
    pub deadline_s: u64,
    #[arg(long, default_value_t = 30)]
    pub handshake_timeout_s: u64,
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_s: u64,
}

pub fn main(args: WorkerArgs) -> Result<()> {
    let nofile = crate::sys::raise_nofile();
    if args.conns > MAX_PER_WORKER || args.conns + 64 > nofile {
        bail!(
            "worker asked for {} sockets; limit is {MAX_PER_WORKER} (nofile {nofile})",
            args.conns
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args))
}

fn emit(ev: &Event) {
    let mut out = std::io::stdout().lock();
    // The parent reads line by line; a failed write means it is gone and stdin EOF follows.
    let _ = serde_json::to_writer(&mut out, ev);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

async fn run(args: WorkerArgs) -> Result<()> {
    let started = Instant::now();
    let hard_deadline = started + Duration::from_secs(args.deadline_s);
    let cfg = Rc::new(ClientCfg {
        targets: Target::parse_list(&args.url)?,
        dialect: args.dialect,
        secret: args.secret.clone(),
        channels: ChannelPlan {
            prefix: args.channel.clone(),
            count: args.channel_count.max(1),
            per_client: args.channels_per_client.max(1),
        },
        handshake_timeout: Duration::from_secs(args.handshake_timeout_s),
        token_ttl_s: args.token_ttl_s,
        user_prefix: "bench-".into(),
        stall_every: args.stall_every,
        give_up_at: hard_deadline - Duration::from_secs(5).min(hard_deadline - started),
    });
    let (gen_tx, generation) = tokio::sync::watch::channel(0u32);
    let (stall_tx, stalled) = tokio::sync::watch::channel(false);
    let ctl = Control {
        generation,
        stalled,
    };
    let ips = match &args.src_ips {
        Some(spec) => parse_src_ips(spec)?,
        None => Vec::new(),
    };
    let stats = Rc::new(Stats::new(args.phases));
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    {
        let (cfg, stats, sem, ctl) = (cfg.clone(), stats.clone(), sem.clone(), ctl.clone());
        let (n, off, base) = (args.conns, args.ip_offset, args.index_base);
        tokio::task::spawn_local(async move {
            for i in 0..n {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    return;
                };
                let src = (!ips.is_empty()).then(|| ips[(off + i as usize) % ips.len()]);
                let (cfg, stats, ctl) = (cfg.clone(), stats.clone(), ctl.clone());
                tokio::task::spawn_local(async move {
                    client::run(&cfg, ctl, base + i, src, &stats, permit).await
                });
            }
        });
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = interval(Duration::from_secs(2));
    let mut announced = args.conns == 0;
    if announced {
        emit(&ready_event(&args, &stats));
    }
    loop {
        tokio::select! {
            line = stdin.next_line() => match line?.as_deref().map(str::trim) {
                Some("report") => emit(&Event::Report(Box::new(stats.report(args.id)))),
                Some("count") => {
                    let (live, reconnected, gave_up) = stats.live_counts();
                    emit(&Event::Count { id: args.id, total: stats.delivered_total(), live, reconnected, gave_up })
                }
                Some("drop") => {
                    gen_tx.send_modify(|g| *g += 1);
                }
                Some("stall") => { let _ = stall_tx.send(true); }
                Some("resume") => { let _ = stall_tx.send(false); }
                Some("stop") | None => break,
                Some(other) => eprintln!("worker {}: unknown command {other:?}", args.id),
            },
            _ = tick.tick(), if !announced => {
                let done = stats.ready.get() + stats.failed.get();
                if done >= args.conns {
                    announced = true;
                    emit(&ready_event(&args, &stats));
                } else {
                    emit(&Event::Progress { id: args.id, ready: stats.ready.get(), failed: stats.failed.get() });
                }
            }
            _ = sleep_until_done(&stats, args.conns), if !announced => {
                announced = true;
                emit(&ready_event(&args, &stats));
            }
            _ = tokio::time::sleep_until(hard_deadline) => {
                eprintln!("worker {}: deadline {} s reached, reporting and exiting", args.id, args.deadline_s);
                emit(&Event::Report(Box::new(stats.report(args.id))));
                break;
            }
        }
    }
    // Exit without tearing down thousands of tasks one by one; the kernel closes the sockets.
    std::process::exit(0)
}

/// Resolves once every attempt has finished (polled every 20 ms: cheap, and precise enough for
/// time-to-N in seconds).
async fn sleep_until_done(stats: &Stats, n: u64) {
    while stats.ready.get() + stats.failed.get() < n {
        sleep(Duration::from_millis(20)).await;
    }
}

fn ready_event(args: &WorkerArgs, stats: &Stats) -> Event {
    Event::Ready {
        id: args.id,
        ready: stats.ready.get(),
        failed: stats.failed.get(),
        failures: stats.failures(),
    }
}
