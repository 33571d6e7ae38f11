//! Readings for the load watcher, from `/proc` and the cgroup filesystem: the process RSS,
//! the memory limit of the process's cgroup (v2), and the busy ratio of each core's
//! executor thread over the last interval.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Resident memory of this process (`/proc/self/statm`), in bytes.
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// The tightest `memory.max` of this process's cgroup (v2) and its parents; `None` when
/// unlimited or not on cgroup v2.
pub fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let root = Path::new("/sys/fs/cgroup");
    let mut dir: PathBuf = root.join(rel.trim_start_matches('/'));
    let mut limit: Option<u64> = None;
    while dir.starts_with(root) {
        if let Ok(v) = std::fs::read_to_string(dir.join("memory.max")) {
            if let Ok(n) = v.trim().parse::<u64>() {
                limit = Some(limit.map_or(n, |l| l.min(n)));
            }
        }
        if !dir.pop() || dir == root {
            break;
        }
    }
    limit
}

/// CPU time (user + system, clock ticks) of thread `tid` of this process.
fn thread_ticks(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// The busy ratio of each core thread between two calls.
#[derive(Default)]
pub struct CoreCpu {
    last: HashMap<u32, (u64, Instant)>,
}

impl CoreCpu {
    /// The highest busy ratio (0..=1) among `tids` since the previous call (0 the first time).
    pub fn busiest(&mut self, tids: &[u32]) -> f64 {
        let now = Instant::now();
        let hz = ticks_per_s();
        let mut peak: f64 = 0.0;
        for &tid in tids {
            let Some(ticks) = thread_ticks(tid) else {
                continue;
            };
            if let Some((before, at)) = self.last.insert(tid, (ticks, now)) {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    peak = peak.max((ticks.saturating_sub(before)) as f64 / hz / wall);
                }
            }
        }
        peak.min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_reads_busy_and_rss_is_positive() {
        assert!(rss_bytes() > 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let spinner = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let tid = rx.recv().unwrap();
        let mut cpu = CoreCpu::default();
        assert_eq!(cpu.busiest(&[tid]), 0.0);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let busy = cpu.busiest(&[tid]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        // on a shared machine the spinner may not own a core: it is busy, not idle
        assert!(busy > 0.05, "{busy}");
    }
}
