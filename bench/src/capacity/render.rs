//! Text form of a capacity [`Plan`]: the answer first (SUMMARY), then inputs, the costs used,
//! each derived section with one line per number and its formula underneath, the sysctl.d
//! snippet, the Redis estimate, notes and warnings. Plain ASCII apart from what the inputs bring,
//! so it pastes into tuning/README.md as is.

use super::model::{num, Line, Unit, GIB, KIB, MIB};
use super::redis::{Activity, Pair};
use super::Plan;
use std::fmt::Write;

/// The whole plan as text.
pub fn text(p: &Plan) -> String {
    let mut s = String::new();
    header(&mut s, p);
    summary(&mut s, p);
    inputs(&mut s, p);
    costs(&mut s, p);
    section(&mut s, "TRAFFIC", &p.traffic.lines);
    section(&mut s, "RAM (one host)", &p.ram.lines);
    section(&mut s, "CPU (one host)", &p.cpu.lines);
    section(&mut s, "FILE DESCRIPTORS", &p.fds.lines);
    let _ = write!(s, "\nSYSCTL (ready to paste)\n{}", p.sysctl.snippet);
    redis(&mut s, p);
    list(&mut s, "NOTES", &p.notes);
    list(&mut s, "WARNINGS", &p.warnings);
    s
}

fn header(s: &mut String, p: &Plan) {
    let t = &p.target;
    let _ = writeln!(
        s,
        "wiresocket capacity plan: {} connections per host, {} node(s)",
        num(t.conns),
        num(t.nodes)
    );
    let m = &p.meta;
    let _ = writeln!(
        s,
        "costs of {:?} from {} (date {}, machine {}, commit {})",
        p.system, p.results, m.date, m.machine, m.commit
    );
}

fn summary(s: &mut String, p: &Plan) {
    let _ = writeln!(s, "\nSUMMARY");
    let r = &p.ram;
    let _ = writeln!(
        s,
        "  RAM    {} GiB host ({:.1} GiB with {}% headroom)",
        r.host_gib,
        r.with_headroom_bytes / GIB,
        num(p.target.headroom * 100.0)
    );
    let _ = writeln!(
        s,
        "  CPU    {} cores ({:.2} with headroom)",
        p.cpu.cores, p.cpu.with_headroom_cores
    );
    let f = &p.fds;
    let _ = writeln!(
        s,
        "  fds    LimitNOFILE={}, fs.nr_open={}, fs.file-max={}",
        f.limit_nofile, f.nr_open, f.file_max
    );
    let m = p.sysctl.tcp_mem;
    let _ = writeln!(
        s,
        "  sysctl net.ipv4.tcp_mem = {} {} {} (all keys below)",
        m[0], m[1], m[2]
    );
    let _ = writeln!(
        s,
        "  Redis  {} commands/s per node steady, {} in a reconnect storm (see REDIS for what is measured)",
        num(p.redis.commands_per_s.per_node.round()),
        num(p.redis.peak_commands_per_s.per_node.round())
    );
}

fn inputs(s: &mut String, p: &Plan) {
    let a = &p.inputs;
    let publish = match a.publish_rate {
        Some(v) => num(v),
        None => "derived".to_string(),
    };
    let rows = [
        ("--conns", num(a.conns as f64)),
        ("--msg-rate", num(a.msg_rate)),
        ("--msg-bytes", num(a.msg_bytes as f64)),
        ("--channels-per-client", num(a.channels_per_client as f64)),
        (
            "--subscribers-per-channel",
            num(a.subscribers_per_channel as f64),
        ),
        ("--publish-rate", publish),
        ("--nodes", num(a.nodes as f64)),
        ("--headroom", num(a.headroom)),
        ("--reconnect-window-s", num(a.reconnect_window_s)),
        ("--outbound-queue-bytes", num(a.outbound_queue_bytes as f64)),
        ("--slow-fraction", num(a.slow_fraction)),
        ("--rtt-ms", num(a.rtt_ms)),
        ("--base-ram-gib", num(a.base_ram_gib)),
        ("--presence-refresh-s", num(a.presence_refresh_s)),
        ("--session-lifetime-s", num(a.session_lifetime_s)),
        ("--history-size", num(a.history_size as f64)),
    ];
    let _ = writeln!(s, "\nINPUTS");
    for (flag, v) in rows {
        let _ = writeln!(s, "  {flag:<28} {v:>12}");
    }
}

fn costs(s: &mut String, p: &Plan) {
    let c = &p.costs;
    let rows = [
        ("rss_per_conn_bytes", c.rss_per_conn_bytes),
        ("rss_per_sub_bytes", c.rss_per_sub_bytes),
        ("kernel_per_conn_bytes", c.kernel_per_conn_bytes),
        ("slab_per_conn_bytes", c.slab_per_conn_bytes),
        ("cpu_us_per_delivery", c.cpu_us_per_delivery),
        ("cpu_us_per_publish", c.cpu_us_per_publish),
        ("cpu_us_per_connect", c.cpu_us_per_connect),
        ("idle_cpu_us_per_conn_s", c.idle_cpu_us_per_conn_s),
        (
            "redis_used_memory_per_conn_bytes",
            c.redis_used_memory_per_conn_bytes,
        ),
        (
            "redis_used_memory_per_channel_bytes",
            c.redis_used_memory_per_channel_bytes,
        ),
        ("redis_cmds_per_connect", c.redis_cmds_per_connect),
        ("redis_cmds_per_conn_s", c.redis_cmds_per_conn_s),
        ("redis_ops_per_publication", c.redis_ops_per_publication),
        (
            "redis_cpu_us_per_publication",
            c.redis_cpu_us_per_publication,
        ),
        ("msg_bytes", c.msg_bytes),
    ];
    let _ = writeln!(s, "\nMEASURED COSTS (results file, costs.{})", p.system);
    if let Some(m) = &p.inputs.memory_results {
        let _ = writeln!(
            s,
            "  memory costs (rss, kernel, slab, redis per connection) from {} costs.{}",
            m.display(),
            p.inputs.memory_system
        );
    }
    if let Some(r) = &p.inputs.redis_results {
        let _ = writeln!(
            s,
            "  redis costs (per publication, per channel) from {} costs.{}",
            r.display(),
            p.inputs.redis_system
        );
    }
    for (key, v) in rows {
        let shown = v.map_or("NOT MEASURED".to_string(), num);
        let _ = writeln!(s, "  {key:<36} {shown:>12}");
    }
    if let Some(src) = c.source.as_object() {
        for (k, v) in src {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let _ = writeln!(s, "  source.{k}: {v}");
        }
    }
}

/// A titled list of lines: item and value, the formula below.
fn section(s: &mut String, title: &str, lines: &[Line]) {
    let _ = writeln!(s, "\n{title}");
    for l in lines {
        let _ = writeln!(s, "  {:<52} {:>22}", l.item, value(l.value, l.unit));
        let _ = writeln!(s, "      = {}", l.formula);
    }
}

fn redis(s: &mut String, p: &Plan) {
    let r = &p.redis;
    let _ = writeln!(
        s,
        "\nREDIS (cluster mode; {})",
        if p.costs.redis_ops_per_publication.is_some()
            || p.costs.redis_used_memory_per_conn_bytes.is_some()
            || p.costs.redis_cmds_per_connect.is_some()
        {
            "MEASURED where noted, the rest derived from the design"
        } else {
            "DERIVED FROM THE DESIGN, NOT MEASURED"
        }
    );
    let _ = writeln!(
        s,
        "  {:<44} {:>26} {:>26} {:>9}",
        "events/s", "per node", "cluster", "commands"
    );
    for a in &r.activities {
        activity(s, a);
    }
    let rows = [
        ("commands/s, steady", r.commands_per_s, Unit::PerSecond),
        (
            "commands/s, during a reconnect storm",
            r.peak_commands_per_s,
            Unit::PerSecond,
        ),
        (
            "round trips/s, steady (unpipelined)",
            r.round_trips_per_s,
            Unit::PerSecond,
        ),
        (
            "network node -> Redis, steady",
            r.up_bytes_per_s,
            Unit::BytesPerSecond,
        ),
        (
            "network Redis -> node, steady",
            r.down_bytes_per_s,
            Unit::BytesPerSecond,
        ),
    ];
    for (item, pair, unit) in rows {
        pair_row(s, item, pair, unit);
    }
    let _ = writeln!(
        s,
        "  {:<44} {:>53}\n      = {}",
        "memory (cluster, upper bound)",
        bytes(r.memory_bytes),
        r.memory_formula
    );
}

fn activity(s: &mut String, a: &Activity) {
    let _ = writeln!(
        s,
        "  {:<44} {:>26} {:>26} {:>9}\n      = {}",
        a.item,
        num(round1(a.per_node)),
        num(round1(a.cluster)),
        num(a.cmds),
        a.formula
    );
}

fn pair_row(s: &mut String, item: &str, v: Pair, unit: Unit) {
    let _ = writeln!(
        s,
        "  {:<44} {:>26} {:>26}",
        item,
        value(v.per_node, unit),
        value(v.cluster, unit)
    );
}

fn list(s: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n{title}");
    for i in items {
        let _ = writeln!(s, "  - {i}");
    }
}

/// A value with its unit, rounded for reading.
pub fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => bytes(v),
        Unit::BytesPerSecond => format!("{}/s ({} Mbit/s)", bytes(v), num(round1(v * 8.0 / 1e6))),
        Unit::Count | Unit::Ratio => num((v * 1000.0).round() / 1000.0),
        Unit::PerSecond => format!("{}/s", num(round1(v))),
        Unit::Cores => format!("{v:.3} cores"),
        Unit::Micros => format!("{} us", num((v * 1000.0).round() / 1000.0)),
        Unit::Seconds => format!("{v:.1} s"),
    }
}

/// Bytes in B, KiB, MiB or GiB.
pub fn bytes(v: f64) -> String {
    match v.abs() {
        a if a >= GIB => format!("{:.2} GiB", v / GIB),
        a if a >= MIB => format!("{:.1} MiB", v / MIB),
        a if a >= KIB => format!("{:.1} KiB", v / KIB),
        _ => format!("{} B", num(v.round())),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_plan;
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(bytes(940_000_000.0), "896.5 MiB");
        assert_eq!(bytes(9_219_703_648.0), "8.59 GiB");
        assert_eq!(bytes(268.0), "268 B");
        assert_eq!(value(8333.333, Unit::PerSecond), "8,333.3/s");
        assert_eq!(
            value(167_000_000.0, Unit::BytesPerSecond),
            "159.3 MiB/s (1,336 Mbit/s)"
        );
        assert_eq!(value(2.7755, Unit::Cores), "2.776 cores");
        assert_eq!(value(1.14, Unit::Micros), "1.14 us");
    }

    #[test]
    fn text_has_every_section_and_the_answer() {
        let t = text(&sample_plan(&[]));
        for s in [
            "SUMMARY",
            "INPUTS",
            "MEASURED COSTS",
            "TRAFFIC",
            "RAM (one host)",
            "CPU (one host)",
            "FILE DESCRIPTORS",
            "SYSCTL",
            "REDIS",
            "NOTES",
            "WARNINGS",
        ] {
            assert!(t.contains(s), "missing {s}");
        }
        assert!(
            t.contains("RAM    16 GiB host (11.2 GiB with 30% headroom)"),
            "{t}"
        );
        assert!(t.contains("CPU    3 cores"), "{t}");
        assert!(t.contains("LimitNOFILE=1048576, fs.nr_open=2097152, fs.file-max=2097152"));
        assert!(
            t.contains("= conns x rss_per_conn_bytes = 500,000 x 1,880 B"),
            "{t}"
        );
        assert!(t.contains("net.ipv4.tcp_mem = 786432 1048576 1572864"));
        assert!(
            t.contains("103,750 commands/s per node steady, 153,750"),
            "{t}"
        );
    }
}
