//! Host measurements shared by every scenario: the monotonic clock that stamps publications,
//! per-process CPU time and RSS read from `/proc/<pid>/{stat,status}`, kernel socket memory from
//! `/proc/net/sockstat`, and the `RLIMIT_NOFILE` raise every process does at start.
//!
//! Invariant: `mono_ns` is `CLOCK_MONOTONIC`, which on Linux is one clock for all processes of the
//! machine, so a timestamp taken by the publisher (parent process) can be subtracted from one taken
//! by a subscriber (worker process).

use serde::{Deserialize, Serialize};

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Clock ticks per second used by `/proc/<pid>/stat` CPU fields.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// Raises the soft open-file limit to the hard limit (the machine caps both at 20,000).
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit struct for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// user + system CPU time in milliseconds since the process started.
    pub cpu_ms: u64,
    /// Resident set size (VmRSS) in KiB.
    pub rss_kb: u64,
    /// Peak resident set size (VmHWM) in KiB.
    pub hwm_kb: u64,
}

/// Samples `/proc/<pid>`; `None` when the process is gone.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    Some(ProcSample {
        cpu_ms: ticks * 1000 / clk_tck(),
        rss_kb: status_kb(&status, "VmRSS:").unwrap_or(0),
        hwm_kb: status_kb(&status, "VmHWM:").unwrap_or(0),
    })
}

/// Sums a set of processes (the load generator: parent plus its workers).
pub fn sum_samples(pids: &[u32]) -> ProcSample {
    pids.iter()
        .filter_map(|p| proc_sample(*p))
        .fold(ProcSample::default(), |a, s| ProcSample {
            cpu_ms: a.cpu_ms + s.cpu_ms,
            rss_kb: a.rss_kb + s.rss_kb,
            hwm_kb: a.hwm_kb + s.hwm_kb,
        })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name may hold
/// spaces, so fields are counted after the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11, stime index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Machine-wide CPU ticks from the first line of `/proc/stat`: (busy, total), all cores.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Machine CPU busy between two `machine_ticks` samples, in % of one core (100 × cores max).
pub fn machine_busy_pct(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (t1 > t0).then(|| 100.0 * cores * (b1 - b0) as f64 / (t1 - t0) as f64)
}

/// CPU milliseconds of every process on the machine, keyed by pid, with its command name.
pub fn all_proc_cpu() -> std::collections::HashMap<u32, (String, u64)> {
    let tck = clk_tck();
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat
            .find('(')
            .zip(stat.rfind(')'))
            .map_or(String::new(), |(a, b)| stat[a + 1..b].to_string());
        if let Some(t) = parse_stat_cpu_ticks(&stat) {
            out.insert(pid, (comm, t * 1000 / tck));
        }
    }
    out
}

/// The `n` heaviest other processes between two `all_proc_cpu` samples (excluding `ours`), as
/// (command, CPU % of one core over `secs`).
pub fn top_others(
    before: &std::collections::HashMap<u32, (String, u64)>,
    after: &std::collections::HashMap<u32, (String, u64)>,
    ours: &[u32],
    secs: f64,
    n: usize,
) -> Vec<(String, f64)> {
    let mut by_comm = std::collections::HashMap::<String, u64>::new();
    for (pid, (comm, ms)) in after {
        if ours.contains(pid) {
            continue;
        }
        let d = ms.saturating_sub(before.get(pid).map_or(0, |b| b.1));
        *by_comm.entry(comm.clone()).or_default() += d;
    }
    let mut v: Vec<(String, f64)> = by_comm
        .into_iter()
        .filter(|(_, ms)| *ms > 0)
        .map(|(c, ms)| (c, ms as f64 / 10.0 / secs.max(1e-9)))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(n);
    v
}

/// System-wide TCP socket counters from `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SockStat {
    pub inuse: u64,
    pub orphan: u64,
    pub tw: u64,
    pub alloc: u64,
    /// Pages of kernel memory charged to TCP socket buffers (all sockets of the machine).
    pub mem_pages: u64,
}

impl SockStat {
    pub fn mem_bytes(&self) -> u64 {
        self.mem_pages * page_size()
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// Kernel slab memory of the whole machine (`Slab:` in `/proc/meminfo`), KiB. Socket, file,
/// epoll and dentry objects of both ends of every connection land here.
pub fn slab_kb() -> Option<u64> {
    status_kb(&std::fs::read_to_string("/proc/meminfo").ok()?, "Slab:")
}

pub fn sockstat() -> Option<SockStat> {
    parse_sockstat(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

fn parse_sockstat(text: &str) -> Option<SockStat> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let toks: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| -> u64 {
        toks.iter()
            .position(|t| *t == k)
            .and_then(|i| toks.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(SockStat {
        inuse: get("inuse"),
        orphan: get("orphan"),
        tw: get("tw"),
        alloc: get("alloc"),
        mem_pages: get("mem"),
    })
}

/// Stops a child process: `signal`, then SIGKILL if it has not exited after `grace`; reaps it.
pub fn stop_child(
    child: &mut std::process::Child,
    signal: libc::c_int,
    grace: std::time::Duration,
) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let until = std::time::Instant::now() + grace;
    while std::time::Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let s = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 2000 300";
        assert_eq!(parse_stat_cpu_ticks(s), Some(300));
    }

    #[test]
    fn parses_proc_stat_cpu_line() {
        assert_eq!(
            parse_cpu_line("cpu  10 0 5 80 5 0 0 0 0 0"),
            Some((15, 100))
        );
        assert!(machine_ticks().is_some());
    }

    #[test]
    fn ranks_other_processes() {
        let before = [(1, ("a".to_string(), 100)), (2, ("b".to_string(), 0))].into();
        let after = [
            (1, ("a".into(), 600)),
            (2, ("b".into(), 50)),
            (3, ("c".into(), 900)),
        ]
        .into();
        let top = top_others(&before, &after, &[3], 1.0, 5);
        assert_eq!(top, vec![("a".to_string(), 50.0), ("b".to_string(), 5.0)]);
        assert!(!all_proc_cpu().is_empty());
    }

    #[test]
    fn parses_sockstat() {
        let t = "sockets: used 10\nTCP: inuse 5 orphan 1 tw 2 alloc 7 mem 33\nUDP: inuse 0 mem 0\n";
        let s = parse_sockstat(t).unwrap();
        assert_eq!(
            (s.inuse, s.orphan, s.tw, s.alloc, s.mem_pages),
            (5, 1, 2, 7, 33)
        );
    }

    #[test]
    fn own_process_is_sampled() {
        let s = proc_sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(mono_ns() > 0);
        assert!(slab_kb().is_some());
    }
}
