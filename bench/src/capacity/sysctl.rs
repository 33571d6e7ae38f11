//! The kernel settings a target needs, as a sysctl.d snippet in the format of
//! tuning/99-wiresocket.conf: the same keys in the same order, each preceded by a `# [tag] why`
//! comment, so tuning/check.sh (`--conf FILE`, `--plan`) and apply.sh read it unchanged.
//!
//! Target-dependent keys scale with connections (fds, TIME_WAIT, orphans, conntrack, tcp_mem from
//! the RAM plan's socket buffer pages, accept queues from the reconnect storm); the others are
//! copied from the conf file's reasoning. Invariant (tested): 500,000 connections with the default
//! inputs reproduce tuning/99-wiresocket.conf exactly.

use super::host::Fds;
use super::model::{next_pow2, num, GIB, PAGE};
use super::traffic::Traffic;
use super::Target;
use serde::Serialize;

/// `tcp_mem` is rounded to whole GiB of pages.
const GIB_PAGES: u64 = (GIB / PAGE) as u64;
/// Floor of the accept-queue keys: the conf file's value (the classic 16-bit maximum).
const ACCEPT_QUEUE_FLOOR: u64 = 65535;

/// One sysctl key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// How check.sh compares it: `min`, `max`, `eq` or `range`.
    pub tag: &'static str,
    /// Written with systemd's `-` prefix: skipped when the key does not exist (module not loaded).
    pub optional: bool,
    pub why: String,
}

/// The settings and the ready-to-paste file.
#[derive(Debug, Clone, Serialize)]
pub struct Sysctl {
    pub entries: Vec<Entry>,
    /// `net.ipv4.tcp_mem` low/pressure/max in pages.
    pub tcp_mem: [u64; 3],
    pub snippet: String,
}

fn entry(key: &str, tag: &'static str, value: impl ToString, why: impl Into<String>) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.to_string(),
        tag,
        optional: false,
        why: why.into(),
    }
}

/// `tcp_mem` from the socket buffer pages the RAM plan reserves: pressure = one page each way on
/// each of them, rounded up to whole GiB; low = 3/4 and max = 3/2 of it.
pub fn tcp_mem(buffer_pages: f64) -> [u64; 3] {
    let gibs = (2.0 * buffer_pages / GIB_PAGES as f64).ceil().max(1.0) as u64;
    let pressure = gibs * GIB_PAGES;
    [pressure / 4 * 3, pressure, pressure / 2 * 3]
}

/// Every key for the target, in the order of tuning/99-wiresocket.conf.
pub fn plan(t: &Target, tr: &Traffic, fds: &Fds, buffer_pages: f64) -> Sysctl {
    let mem = tcp_mem(buffer_pages);
    let mut entries = accept(tr.storm_connects_per_s);
    entries.extend(files(fds));
    entries.extend(closing(t.conns));
    entries.extend(buffers(mem, buffer_pages));
    entries.push(conntrack(t.conns));
    let snippet = snippet(t, &entries);
    Sysctl {
        entries,
        tcp_mem: mem,
        snippet,
    }
}

/// Accept queues sized for the reconnect storm, and the NIC's packet backlog.
fn accept(storm: f64) -> Vec<Entry> {
    let queue = ACCEPT_QUEUE_FLOOR.max(storm.ceil() as u64);
    let why = format!(
        "Accept queue of each per-core listener (server.backlog is clamped to it): \
         max(65535, one second of the storm = {}/s).",
        num(storm.ceil())
    );
    vec![
        entry("net.core.somaxconn", "min", queue, why),
        entry(
            "net.ipv4.tcp_max_syn_backlog",
            "min",
            queue,
            "Half-open (SYN_RECV) connections per listener during the storm before SYN cookies; \
             as somaxconn.",
        ),
        entry(
            "net.core.netdev_max_backlog",
            "min",
            16384,
            "Per-CPU queue of received packets before the TCP stack; 16x the default for 10G+ \
             NIC bursts.",
        ),
        Entry {
            // the key exists only on Linux 5.14+
            optional: true,
            ..entry(
                "net.ipv4.tcp_migrate_req",
                "min",
                1,
                "Restart hand-over (serve --takeover): connections queued on the old \
                 process's closing listeners move to the successor instead of being reset \
                 (Linux 5.14+).",
            )
        },
    ]
}

/// File-descriptor ceilings from the fd plan.
fn files(fds: &Fds) -> Vec<Entry> {
    let limit = fds.limit_nofile;
    vec![
        entry(
            "fs.file-max",
            "min",
            fds.file_max,
            format!(
                "System-wide open files: 2 x LimitNOFILE {limit} (server plus a proxy or load \
             generator)."
            ),
        ),
        entry(
            "fs.nr_open",
            "min",
            fds.nr_open,
            format!(
                "Highest RLIMIT_NOFILE; must be >= the unit's LimitNOFILE={limit} (else exit \
             205/LIMITS)."
            ),
        ),
    ]
}

/// Outbound ports and closing: a drain closes every connection at once.
fn closing(conns: f64) -> Vec<Entry> {
    let n = num(conns);
    vec![
        entry(
            "net.ipv4.ip_local_port_range",
            "range",
            "10000 65535",
            "Outbound only (proxy -> wiresocket, wiresocket -> Redis, load generator): 55,536 \
             ports per source IP and destination.",
        ),
        entry(
            "net.ipv4.tcp_tw_reuse",
            "eq",
            1,
            "New outbound connections may reuse TIME_WAIT ports (safe with TCP timestamps).",
        ),
        entry(
            "net.ipv4.tcp_max_tw_buckets",
            "min",
            next_pow2(2.0 * conns),
            format!(
                "TIME_WAIT sockets (256 B each, 60 s): a drain closing all {n} connections, 2x."
            ),
        ),
        entry(
            "net.ipv4.tcp_fin_timeout",
            "max",
            15,
            "Seconds a socket the server closed waits in FIN_WAIT_2 for a vanished client.",
        ),
        entry(
            "net.ipv4.tcp_max_orphans",
            "min",
            next_pow2(conns),
            format!("Closed-but-unfinished sockets: a drain orphans all {n} connections."),
        ),
    ]
}

/// Socket buffer memory: `tcp_mem` from the RAM plan, per-socket sizes pinned.
fn buffers(mem: [u64; 3], pages: f64) -> Vec<Entry> {
    let gib = |p: u64| num((p as f64 * PAGE / GIB * 100.0).round() / 100.0);
    let why = format!(
        "TCP pages low/pressure/max = {}/{}/{} GiB: pressure = 1 page each way on {} sockets, \
         whole GiB.",
        gib(mem[0]),
        gib(mem[1]),
        gib(mem[2]),
        num(pages)
    );
    vec![
        entry(
            "net.ipv4.tcp_mem",
            "min",
            format!("{} {} {}", mem[0], mem[1], mem[2]),
            why,
        ),
        entry(
            "net.ipv4.tcp_rmem",
            "max",
            "4096 16384 4194304",
            "Receive buffer min/default/max: clients send little; 16 KiB until autotuning sees \
             a bulk sender.",
        ),
        entry(
            "net.ipv4.tcp_wmem",
            "max",
            "4096 16384 4194304",
            "Send buffer min/default/max (kernel defaults); wiresocket's bounded queue holds the \
             rest.",
        ),
    ]
}

/// The conntrack table, written optional: the key exists only while nf_conntrack is loaded.
fn conntrack(conns: f64) -> Entry {
    let why = format!(
        "Only with nf_conntrack loaded (better: NOTRACK the port): {} clients plus outbound, 2x.",
        num(conns)
    );
    Entry {
        optional: true,
        ..entry(
            "net.netfilter.nf_conntrack_max",
            "min",
            next_pow2(2.0 * conns),
            why,
        )
    }
}

/// The sysctl.d file: a header, then `# [tag] why` and `key = value` per entry.
fn snippet(t: &Target, entries: &[Entry]) -> String {
    let mut s = format!(
        "# /etc/sysctl.d/99-wiresocket.conf for {} connections per host \
         (wiresocket-bench capacity).\n\
         # Check: tuning/check.sh --conf THIS_FILE --target {}; install: tuning/apply.sh \
         (after replacing\n\
         # tuning/99-wiresocket.conf with this file). Tags: see tuning/99-wiresocket.conf.\n",
        num(t.conns),
        t.conns as u64
    );
    for e in entries {
        let dash = if e.optional { "-" } else { "" };
        s.push_str(&format!(
            "# [{}] {}\n{dash}{} = {}\n",
            e.tag, e.why, e.key, e.value
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::tests::{sample_plan, target};
    use super::*;

    /// (tag, key, value, optional) per key of a sysctl file in the conf format.
    fn parse_conf(text: &str) -> Vec<(String, String, String, bool)> {
        let mut tag = String::new();
        let mut out = Vec::new();
        for l in text.lines().map(str::trim) {
            if let Some(rest) = l.strip_prefix("# [") {
                tag = rest.split(']').next().unwrap().to_string();
            } else if !l.is_empty() && !l.starts_with('#') {
                let (k, v) = l.split_once('=').unwrap();
                let optional = k.starts_with('-');
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                let key = k.trim().trim_start_matches('-').to_string();
                out.push((std::mem::take(&mut tag), key, v, optional));
            }
        }
        out
    }

    #[test]
    fn default_500k_reproduces_the_shipped_conf() {
        let conf = include_str!("../../../tuning/99-wiresocket.conf");
        let plan = sample_plan(&[]);
        assert_eq!(parse_conf(&plan.sysctl.snippet), parse_conf(conf));
    }

    #[test]
    fn tcp_mem_rounds_to_whole_gib() {
        assert_eq!(tcp_mem(500_000.0), [786_432, 1_048_576, 1_572_864]);
        assert_eq!(tcp_mem(1_000_000.0), [1_572_864, 2_097_152, 3_145_728]);
        assert_eq!(tcp_mem(10.0), [196_608, 262_144, 393_216]);
    }

    #[test]
    fn scales_with_target() {
        let plan = sample_plan(&["--conns", "2000000", "--reconnect-window-s", "10"]);
        let get = |k: &str| {
            let e = plan.sysctl.entries.iter().find(|e| e.key == k).unwrap();
            e.value.clone()
        };
        assert_eq!(get("net.core.somaxconn"), "200000");
        assert_eq!(get("net.ipv4.tcp_max_orphans"), "2097152");
        assert_eq!(get("net.ipv4.tcp_max_tw_buckets"), "4194304");
        assert_eq!(get("fs.nr_open"), "8388608");
        assert_eq!(get("net.ipv4.tcp_mem"), "3145728 4194304 6291456");
        assert!(plan
            .sysctl
            .snippet
            .contains("-net.netfilter.nf_conntrack_max = 4194304"));
        assert_eq!(target(&["--conns", "2000000"]).conns, 2e6);
    }

    #[test]
    fn check_sh_reads_the_snippet() {
        let plan = sample_plan(&["--conns", "100000"]);
        let dir = std::env::temp_dir().join(format!("wsb-capacity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("99-test.conf");
        std::fs::write(&file, &plan.sysctl.snippet).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/check.sh");
        let out = std::process::Command::new("bash")
            .args([script, "--plan", "--conf"])
            .arg(&file)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().count(),
            plan.sysctl.entries.len(),
            "{stdout}"
        );
        assert!(
            stdout.contains("net.ipv4.tcp_mem\tmin\t196608 262144 393216"),
            "{stdout}"
        );
    }
}
