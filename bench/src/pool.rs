//! Parent side of the worker processes: splits N connections over P re-executions of this
//! binary (`worker` subcommand), forwards their stdout events through one channel, prints
//! connect progress to stderr, and sends `report` / `stop` commands.
//!
//! Invariant: children are spawned with `kill_on_drop`, and `shutdown` waits a bounded time
//! before killing, so the parent never leaves workers running.

use crate::events::{Event, Report};
use crate::worker::{WorkerArgs, MAX_PER_WORKER};
use anyhow::{bail, Context, Result};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// How a run spreads its clients: worker processes, source addresses and deadlines.
#[derive(clap::Args, Debug, Clone)]
pub struct Spread {
    /// Worker processes (0 = automatic: ceil(N/15000), at least 2).
    #[arg(long, default_value_t = 0)]
    pub procs: usize,
    /// Source addresses, e.g. 127.0.0.2-127.0.0.200.
    #[arg(long)]
    pub src_ips: Option<String>,
    #[arg(long, default_value_t = 240)]
    pub connect_timeout_s: u64,
    #[arg(long, default_value_t = 30)]
    pub handshake_timeout_s: u64,
}

impl Spread {
    /// Number of source addresses (0 when none were given).
    pub fn n_ips(&self) -> Result<usize> {
        Ok(match &self.src_ips {
            Some(s) => crate::net::parse_src_ips(s)?.len(),
            None => 0,
        })
    }

    /// Worker processes for `conns` sockets.
    pub fn workers(&self, conns: u64) -> Result<usize> {
        worker_count(conns, self.procs)
    }
}

/// Worker count for `conns` sockets when the user asked for `procs` (0 = automatic: enough to
/// respect the per-process socket cap, and at least 2 so both cores can run clients).
pub fn worker_count(conns: u64, procs: usize) -> Result<usize> {
    let needed = conns.div_ceil(MAX_PER_WORKER) as usize;
    let n = if procs == 0 {
        needed.max(2.min(conns as usize))
    } else {
        procs
    };
    if n < needed {
        bail!("{conns} connections need at least {needed} worker processes (cap {MAX_PER_WORKER} each)");
    }
    Ok(n.max(1))
}

/// Worker counters summed over the pool (see `Event::Count`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub delivered: u64,
    pub live: u64,
    pub reconnected: u64,
    pub gave_up: u64,
}

pub struct Pool {
    children: Vec<(Child, ChildStdin)>,
    events: mpsc::UnboundedReceiver<Event>,
    pub pids: Vec<u32>,
    /// Connections over all workers.
    total: u64,
}

/// What every worker said when it finished connecting.
pub struct ReadySummary {
    pub ready: u64,
    pub failed: u64,
    pub failures: std::collections::BTreeMap<String, u64>,
}

impl Pool {
    /// Starts `procs` workers sharing `template.conns` connections and `template.concurrency`
    /// in-flight handshakes.
    pub fn spawn(template: &WorkerArgs, procs: usize, n_src_ips: usize) -> Result<Pool> {
        let exe = std::env::current_exe().context("locating own binary")?;
        let (tx, events) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        let mut pids = Vec::new();
        let mut base = 0;
        for id in 0..procs {
            let mut a = template.clone();
            a.id = id;
            a.conns = template.conns / procs as u64
                + u64::from((id as u64) < template.conns % procs as u64);
            a.index_base = base;
            base += a.conns;
            a.concurrency = (template.concurrency / procs).max(1);
            a.ip_offset = id * (n_src_ips / procs).max(1);
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(worker_argv(&a))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("spawning worker")?;
            pids.push(child.id().unwrap_or(0));
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&line) {
                        Ok(ev) => {
                            let _ = tx.send(ev);
                        }
                        Err(e) => eprintln!("worker {id}: unparsable line ({e}): {line}"),
                    }
                }
            });
            children.push((child, stdin));
        }
        Ok(Pool {
            children,
            events,
            pids,
            total: template.conns,
        })
    }

    /// Waits until every worker has sent `Ready`, printing progress.
    pub async fn wait_ready(&mut self, deadline: Instant) -> Result<ReadySummary> {
        let n = self.children.len();
        let bar = crate::progress::bar(self.total, "connecting");
        let mut progress = vec![(0u64, 0u64); n];
        let mut done = vec![false; n];
        let mut sum = ReadySummary {
            ready: 0,
            failed: 0,
            failures: Default::default(),
        };
        while done.iter().any(|d| !d) {
            let ev = timeout_at(deadline, self.events.recv())
                .await
                .context("timed out waiting for workers to connect")?
                .context("all workers exited before connecting")?;
            match ev {
                Event::Progress { id, ready, failed } => {
                    progress[id] = (ready, failed);
                    let (r, f) = progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
                    bar.set_position(r + f);
                    bar.set_message(format!("{r} subscribed, {f} failed"));
                }
                Event::Ready {
                    id,
                    ready,
                    failed,
                    failures,
                } => {
                    done[id] = true;
                    progress[id] = (ready, failed);
                    sum.ready += ready;
                    sum.failed += failed;
                    let (r, f) = progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
                    bar.set_position(r + f);
                    for (k, v) in failures {
                        *sum.failures.entry(k).or_default() += v;
                    }
                }
                Event::Report(r) => eprintln!("worker {} reported early (deadline?)", r.id),
                Event::Count { .. } => {}
            }
        }
        bar.finish_and_clear();
        Ok(sum)
    }

    /// Every worker's counters right now, summed.
    pub async fn counts(&mut self, wait: Duration) -> Result<Counts> {
        self.broadcast("count").await?;
        let deadline = Instant::now() + wait;
        let mut got = 0;
        let mut sum = Counts::default();
        while got < self.children.len() {
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Count {
                    total,
                    live,
                    reconnected,
                    gave_up,
                    ..
                })) => {
                    got += 1;
                    sum.delivered += total;
                    sum.live += live;
                    sum.reconnected += reconnected;
                    sum.gave_up += gave_up;
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("workers exited before counting"),
                Err(_) => bail!("timed out waiting for worker counts"),
            }
        }
        Ok(sum)
    }

    /// Waits until deliveries stop arriving (unchanged over one second), at most `max`, so a
    /// backlog still in flight is not mistaken for loss. Returns the seconds waited.
    pub async fn settle(&mut self, max: Duration) -> Result<f64> {
        let start = Instant::now();
        let mut last = self.counts(Duration::from_secs(10)).await?.delivered;
        while start.elapsed() < max {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.counts(Duration::from_secs(10)).await?.delivered;
            if now == last {
                break;
            }
            last = now;
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// Asks every worker for its `Report` and collects them (ordered by worker id).
    pub async fn collect_reports(&mut self, wait: Duration) -> Result<Vec<Report>> {
        self.broadcast("report").await?;
        let deadline = Instant::now() + wait;
        let mut out: Vec<Report> = Vec::new();
        while out.len() < self.children.len() {
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Report(r))) => out.push(*r),
                Ok(Some(_)) => {}
                Ok(None) => bail!("workers exited before reporting"),
                Err(_) => bail!(
                    "timed out waiting for worker reports ({} of {})",
                    out.len(),
                    self.children.len()
                ),
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Sends one control line (`drop`, `stall`, `resume`, ...) to every worker.
    pub async fn broadcast(&mut self, cmd: &str) -> Result<()> {
        for (_, stdin) in &mut self.children {
            stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
            stdin.flush().await?;
        }
        Ok(())
    }

    /// Tells workers to stop, waits up to 10 s, then kills stragglers.
    pub async fn shutdown(mut self) {
        let _ = self.broadcast("stop").await;
        for (child, _) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

fn worker_argv(a: &WorkerArgs) -> Vec<String> {
    let mut v = vec![
        "--url".into(),
        a.url.clone(),
        "--dialect".into(),
        format!("{:?}", a.dialect).to_lowercase(),
        "--channel-count".into(),
        a.channel_count.to_string(),
        "--channels-per-client".into(),
        a.channels_per_client.to_string(),
        "--index-base".into(),
        a.index_base.to_string(),
        "--stall-every".into(),
        a.stall_every.to_string(),
        "--secret".into(),
        a.secret.clone(),
        "--channel".into(),
        a.channel.clone(),
        "--conns".into(),
        a.conns.to_string(),
        "--concurrency".into(),
        a.concurrency.to_string(),
        "--ip-offset".into(),
        a.ip_offset.to_string(),
        "--id".into(),
        a.id.to_string(),
        "--phases".into(),
        a.phases.to_string(),
        "--deadline-s".into(),
        a.deadline_s.to_string(),
        "--handshake-timeout-s".into(),
        a.handshake_timeout_s.to_string(),
        "--token-ttl-s".into(),
        a.token_ttl_s.to_string(),
    ];
    if let Some(ips) = &a.src_ips {
        v.extend(["--src-ips".into(), ips.clone()]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts() {
        assert_eq!(worker_count(15_000, 0).unwrap(), 2);
        assert_eq!(worker_count(40_000, 0).unwrap(), 3);
        assert_eq!(worker_count(1, 0).unwrap(), 1);
        assert_eq!(worker_count(100, 4).unwrap(), 4);
        assert!(worker_count(40_000, 1).is_err());
    }
}
