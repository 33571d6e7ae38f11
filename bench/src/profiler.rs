//! Profiling hook for `compare --profile DIR`: while a scenario runs against wiresocket, `perf
//! record` samples the server's stacks (software `cpu-clock` event, which also works inside VMs
//! and containers without hardware counters; DWARF unwinding, since the release build keeps line
//! tables but no frame pointers) into `DIR/<scenario>.perf.data`. The recording is
//! stopped with SIGINT when the scenario ends; `bench/profile.sh` turns it into a flamegraph.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Recording(Child);

/// Starts `perf record` on `pid`, writing `out`.
pub fn start(pid: u32, out: &Path) -> Result<Recording> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let child = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "149"])
        .args(["--call-graph", "dwarf,8192", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record (install linux-perf)")?;
    Ok(Recording(child))
}

impl Recording {
    /// Stops the recording (SIGINT, then SIGKILL after 20 s) and waits for perf to write out.
    pub fn stop(mut self) {
        crate::sys::stop_child(&mut self.0, libc::SIGINT, Duration::from_secs(20));
    }
}
