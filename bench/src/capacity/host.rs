//! RAM, CPU cores and file descriptors of one host: [`Traffic`] x measured [`Costs`].
//!
//! Model (quoted in the formulas):
//! - Kernel figures measured over loopback count both ends of each connection: the server's share
//!   is half. Idle sockets hold no buffer pages; a socket with data queued holds whole 4 KiB pages
//!   until the peer ACKs (one RTT), and the plan reserves at least one page per socket (one
//!   broadcast reaching every client), matching `tcp_mem` in tuning/99-wiresocket.conf.
//! - Slow readers: `slow_fraction` of connections hold a full outbound queue; frames shared
//!   between subscribers are counted once per queue (upper bound). Other queues drain per batch.
//! - CPU: steady state (deliveries + publications + idle heartbeats) plus a reconnect storm of
//!   all this host's clients within the window on top (e.g. a rolling restart while serving).
//!   The per-delivery cost holds for `costs.msg_bytes`; larger payloads add an estimated copy cost.
//! - Missing costs fall back (see `costs::used`) and warn; the formulas mark them NOT MEASURED.

use super::costs::{used, Costs, Used};
use super::model::{line, next_pow2, num, Line, Unit, GIB, PAGE};
use super::traffic::Traffic;
use super::Target;
use serde::Serialize;

/// fds wiresocket's preflight keeps aside beyond the connections (tuning/check.sh FD_HEADROOM).
pub const FD_RESERVE: f64 = 1024.0;
/// Kernel objects per connection outside slab deltas: TIME_WAIT bucket after a drain (256 B) and a
/// conntrack entry when nf_conntrack is loaded (256 B) — /proc/slabinfo object sizes.
pub const TW_CONNTRACK_BYTES: f64 = 512.0;
/// Fallback slab per connection when not measured: 2 x (TCP 2368 + sock_inode_cache 832 + filp
/// 192 + dentry 192) B from /proc/slabinfo, for both loopback ends like a measured value.
pub const SLAB_FALLBACK_BYTES: f64 = 7168.0;
/// Estimated CPU per extra payload byte above the measured size: the kernel's copy into the
/// socket buffer plus checksum, ~1 GB/s (conservative; loopback also pays the receiver's copy).
pub const COPY_NS_PER_BYTE: f64 = 1.0;
/// Common RAM sizes (GiB) a plan is rounded up to.
const HOST_SIZES_GIB: [u64; 18] = [
    2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
];

/// RAM for one host.
#[derive(Debug, Clone, Serialize)]
pub struct Ram {
    pub lines: Vec<Line>,
    pub total_bytes: f64,
    pub with_headroom_bytes: f64,
    /// `with_headroom_bytes` rounded up to whole GiB.
    pub plan_gib: u64,
    /// The smallest common host RAM size >= `plan_gib`.
    pub host_gib: u64,
    /// Socket buffer pages reserved (one direction); `tcp_mem` is derived from it.
    pub buffer_pages: f64,
}

/// Socket buffer pages to reserve: the steady state of the message rate, at least one page per
/// socket. Returns (steady pages, reserved pages).
pub fn buffer_pages(t: &Target, tr: &Traffic) -> (f64, f64) {
    let busy = (t.msg_rate * t.rtt_ms / 1000.0).min(1.0);
    let pages_per_msg = (tr.frame_bytes / PAGE).ceil().max(1.0);
    let steady = (t.conns * busy * pages_per_msg).ceil();
    (steady, steady.max(t.conns))
}

/// User space + kernel + baseline, then headroom and rounding.
pub fn ram(t: &Target, tr: &Traffic, c: &Costs, w: &mut Vec<String>) -> Ram {
    let mut lines = user_space(t, c, w);
    let (kernel, reserved) = kernel(t, tr, c, w);
    lines.extend(kernel);
    lines.push(line(
        "OS, process baseline, buffer pools, page cache",
        t.base_ram_gib * GIB,
        Unit::Bytes,
        format!("--base-ram-gib {}", num(t.base_ram_gib)),
    ));
    let total: f64 = lines.iter().map(|l| l.value).sum();
    finish_ram(t, lines, total, reserved)
}

/// The server process: connections, extra subscriptions, slow readers' queues.
fn user_space(t: &Target, c: &Costs, w: &mut Vec<String>) -> Vec<Line> {
    let understated = "RAM for connections is left out (understated)";
    let rss = used(
        "rss_per_conn_bytes",
        c.rss_per_conn_bytes,
        0.0,
        understated,
        w,
    );
    let sub = sub_cost(t, c, w);
    let (n, extra) = (num(t.conns), t.channels - 1.0);
    vec![
        line(
            "user space: connections",
            t.conns * rss.value,
            Unit::Bytes,
            format!("conns x rss_per_conn_bytes = {n} x {}", rss.show("B")),
        ),
        line(
            "user space: extra subscriptions",
            t.conns * extra * sub.value,
            Unit::Bytes,
            format!(
                "conns x (channels_per_client - 1) x rss_per_sub_bytes = {n} x {} x {}",
                num(extra),
                sub.show("B")
            ),
        ),
        line(
            "user space: send queues of slow readers",
            t.conns * t.slow_fraction * t.outbound_queue_bytes,
            Unit::Bytes,
            format!(
                "conns x slow_fraction x outbound_queue_bytes = {n} x {} x {} B \
                 (full queues, frames not shared)",
                num(t.slow_fraction),
                num(t.outbound_queue_bytes)
            ),
        ),
    ]
}

/// The per-subscription cost; only warned about when clients have more than one channel.
fn sub_cost(t: &Target, c: &Costs, w: &mut Vec<String>) -> Used {
    if t.channels > 1.0 {
        let affects = "RAM for extra subscriptions is left out (understated)";
        return used("rss_per_sub_bytes", c.rss_per_sub_bytes, 0.0, affects, w);
    }
    let v = c.rss_per_sub_bytes.filter(|v| v.is_finite() && *v >= 0.0);
    Used {
        value: v.unwrap_or(0.0),
        measured: v.is_some(),
    }
}

/// Kernel memory of the server's sockets; also returns the reserved buffer pages.
fn kernel(t: &Target, tr: &Traffic, c: &Costs, w: &mut Vec<String>) -> (Vec<Line>, f64) {
    let slab_fallback = "kernel socket objects use /proc/slabinfo object sizes";
    let slab = used(
        "slab_per_conn_bytes",
        c.slab_per_conn_bytes,
        SLAB_FALLBACK_BYTES,
        slab_fallback,
        w,
    );
    let idle_fallback = "idle sockets are assumed to hold no buffer pages (as measured before)";
    let kmem = used(
        "kernel_per_conn_bytes",
        c.kernel_per_conn_bytes,
        0.0,
        idle_fallback,
        w,
    );
    let (share, div, why) = if c.loopback.unwrap_or(true) {
        (0.5, " / 2", " (loopback: both ends were on the host)")
    } else {
        (1.0, "", " (real NIC: server end only)")
    };
    let n = num(t.conns);
    let (steady, reserved) = buffer_pages(t, tr);
    let pages_per_msg = (tr.frame_bytes / PAGE).ceil().max(1.0);
    let lines = vec![
        line(
            "kernel: socket objects (slab)",
            t.conns * slab.value * share,
            Unit::Bytes,
            format!(
                "conns x slab_per_conn_bytes{div} = {n} x {}{div}{why}",
                slab.show("B")
            ),
        ),
        line(
            "kernel: TCP memory of idle sockets",
            t.conns * kmem.value * share,
            Unit::Bytes,
            format!(
                "conns x kernel_per_conn_bytes{div} = {n} x {}{div}{why}",
                kmem.show("B")
            ),
        ),
        line(
            "kernel: socket buffers",
            reserved * PAGE,
            Unit::Bytes,
            format!(
                "max(steady, 1 page per socket) x 4 KiB = max({}, {n}) pages; steady = conns x \
                 min(1, msg_rate x rtt) x pages per frame = {n} x min(1, {} x {} s) x {}",
                num(steady),
                num(t.msg_rate),
                num(t.rtt_ms / 1000.0),
                num(pages_per_msg)
            ),
        ),
        line(
            "kernel: TIME_WAIT after a drain + conntrack",
            t.conns * TW_CONNTRACK_BYTES,
            Unit::Bytes,
            format!(
                "conns x (256 + 256) B = {n} x {} B (slabinfo)",
                num(TW_CONNTRACK_BYTES)
            ),
        ),
    ];
    (lines, reserved)
}

fn finish_ram(t: &Target, mut lines: Vec<Line>, total: f64, reserved: f64) -> Ram {
    let with = total * (1.0 + t.headroom);
    let plan_gib = (with / GIB).ceil().max(1.0) as u64;
    let host_gib = HOST_SIZES_GIB
        .into_iter()
        .find(|g| *g >= plan_gib)
        .unwrap_or(plan_gib);
    let sum = "sum of the above".to_string();
    lines.push(line("total", total, Unit::Bytes, sum));
    let formula = format!(
        "total x (1 + headroom) = {:.2} GiB x {} -> plan {plan_gib} GiB, host size {host_gib} GiB",
        total / GIB,
        num(1.0 + t.headroom)
    );
    lines.push(line("total with headroom", with, Unit::Bytes, formula));
    Ram {
        lines,
        total_bytes: total,
        with_headroom_bytes: with,
        plan_gib,
        host_gib,
        buffer_pages: reserved,
    }
}

/// CPU cores for one host.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub lines: Vec<Line>,
    /// Per-delivery cost at the target's message size.
    pub delivery_us: f64,
    pub total_cores: f64,
    pub with_headroom_cores: f64,
    /// Cores to plan: `with_headroom_cores` rounded up (at least 1).
    pub cores: u64,
    /// Seconds to reconnect every client of this host on `cores` cores with nothing else to do.
    pub full_reconnect_s: f64,
}

/// Steady state + reconnect storm, in cores (CPU-seconds per second).
pub fn cpu(t: &Target, tr: &Traffic, c: &Costs, w: &mut Vec<String>) -> Cpu {
    let mut cost = |key: &str, v: Option<f64>| used(key, v, 0.0, "CPU is understated", w);
    let del = cost("cpu_us_per_delivery", c.cpu_us_per_delivery);
    let publish = cost("cpu_us_per_publish", c.cpu_us_per_publish);
    let connect = cost("cpu_us_per_connect", c.cpu_us_per_connect);
    let idle = cost("idle_cpu_us_per_conn_s", c.idle_cpu_us_per_conn_s);
    let (delivery_us, delivery_formula) = delivery_cost(t, c, del, w);
    let pubs = tr.api_publications_per_s + tr.redis_publications_per_s;
    let storm = tr.storm_connects_per_s;
    let lines = vec![
        line(
            "CPU per delivery at msg_bytes",
            delivery_us,
            Unit::Micros,
            delivery_formula,
        ),
        line(
            "deliveries",
            tr.deliveries_per_s * delivery_us / 1e6,
            Unit::Cores,
            format!(
                "deliveries/s x per-delivery = {} x {} us",
                num(tr.deliveries_per_s),
                num(delivery_us)
            ),
        ),
        line(
            "publications",
            pubs * publish.value / 1e6,
            Unit::Cores,
            format!(
                "(API + from Redis)/s x cpu_us_per_publish = {} x {} \
                 (Redis ingest assumed as costly as an API publish)",
                num(pubs),
                publish.show("us")
            ),
        ),
        line(
            "idle connections (heartbeats)",
            t.conns * idle.value / 1e6,
            Unit::Cores,
            format!(
                "conns x idle_cpu_us_per_conn_s = {} x {}",
                num(t.conns),
                idle.show("us")
            ),
        ),
        line(
            "reconnect storm",
            storm * connect.value / 1e6,
            Unit::Cores,
            format!(
                "conns / reconnect_window_s x cpu_us_per_connect = {} x {}",
                num(storm),
                connect.show("us")
            ),
        ),
    ];
    let total: f64 = lines[1..].iter().map(|l| l.value).sum();
    finish_cpu(t, lines, total, delivery_us, connect)
}

fn finish_cpu(
    t: &Target,
    mut lines: Vec<Line>,
    total: f64,
    delivery_us: f64,
    connect: Used,
) -> Cpu {
    let with = total * (1.0 + t.headroom);
    let cores = with.ceil().max(1.0) as u64;
    let full = t.conns * connect.value / 1e6 / cores as f64;
    let sum = "sum of the above".to_string();
    lines.push(line("total", total, Unit::Cores, sum));
    let formula = format!(
        "total x (1 + headroom) = {total:.3} x {} -> plan {cores} cores",
        num(1.0 + t.headroom)
    );
    lines.push(line("total with headroom", with, Unit::Cores, formula));
    let formula = format!(
        "conns x cpu_us_per_connect / cores = {} x {} / {cores} (nothing else running)",
        num(t.conns),
        connect.show("us")
    );
    let item = "reconnecting every client on the planned cores";
    lines.push(line(item, full, Unit::Seconds, formula));
    Cpu {
        lines,
        delivery_us,
        total_cores: total,
        with_headroom_cores: with,
        cores,
        full_reconnect_s: full,
    }
}

/// The per-delivery cost at the target size: measured at `costs.msg_bytes`, plus an estimated
/// copy cost for each byte above it (never less than measured).
fn delivery_cost(t: &Target, c: &Costs, del: Used, w: &mut Vec<String>) -> (f64, String) {
    let Some(measured_at) = c.msg_bytes.filter(|b| b.is_finite() && *b >= 0.0) else {
        w.push("cost msg_bytes is not measured: per-delivery CPU is used unscaled".to_string());
        let formula = format!("cpu_us_per_delivery = {} (size unknown)", del.show("us"));
        return (del.value, formula);
    };
    let extra = (t.msg_bytes - measured_at).max(0.0);
    let (at, size, copy) = (num(measured_at), num(t.msg_bytes), num(COPY_NS_PER_BYTE));
    if extra > 0.0 {
        w.push(format!(
            "per-delivery CPU was measured with {at} B payloads; {size} B adds an estimated \
             {copy} ns/B copy cost"
        ));
    }
    let us = del.value + extra * COPY_NS_PER_BYTE / 1000.0;
    let formula = format!(
        "cpu_us_per_delivery + (msg_bytes - measured msg_bytes) x {copy} ns/B = {} + ({size} - \
         {at}) B x {copy} ns/B (estimate above the measured size)",
        del.show("us")
    );
    (us, formula)
}

/// File-descriptor limits for one host.
#[derive(Debug, Clone, Serialize)]
pub struct Fds {
    pub lines: Vec<Line>,
    pub needed: u64,
    pub limit_nofile: u64,
    pub nr_open: u64,
    pub file_max: u64,
}

/// Connections + preflight reserve, with headroom, rounded to a power of two for LimitNOFILE;
/// `fs.nr_open` and `fs.file-max` twice that (never below the kernel default 1,048,576).
pub fn fds(t: &Target) -> Fds {
    let needed = t.conns + FD_RESERVE;
    let with = (needed * (1.0 + t.headroom)).ceil();
    let limit = next_pow2(with);
    let nr_open = (2 * limit).max(1 << 20);
    let lines = vec![
        line(
            "needed by the server",
            needed,
            Unit::Count,
            format!(
                "conns + {} reserved by preflight = {} + {}",
                num(FD_RESERVE),
                num(t.conns),
                num(FD_RESERVE)
            ),
        ),
        line(
            "LimitNOFILE (systemd unit)",
            limit as f64,
            Unit::Count,
            format!(
                "next power of two >= needed x (1 + headroom) = {} x {} = {}",
                num(needed),
                num(1.0 + t.headroom),
                num(with)
            ),
        ),
        line(
            "fs.nr_open",
            nr_open as f64,
            Unit::Count,
            format!(
                "max(2 x LimitNOFILE, 1,048,576) = max(2 x {}, 1,048,576): room to raise the limit",
                num(limit as f64)
            ),
        ),
        line(
            "fs.file-max",
            nr_open as f64,
            Unit::Count,
            "as fs.nr_open: the server plus a proxy or load generator on the host".to_string(),
        ),
    ];
    Fds {
        lines,
        needed: needed as u64,
        limit_nofile: limit,
        nr_open,
        file_max: nr_open,
    }
}
