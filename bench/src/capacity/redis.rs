//! Redis load of cluster mode, DERIVED FROM THE DESIGN (/work/shared/ARCHITECTURE.md: Redis
//! holds history streams, presence, sessions; nodes subscribe to channels they have subscribers
//! for; the command sequence a Centrifugo-style Redis engine issues), except where measured
//! costs exist (`wiresocket-cluster` runs, see bench/README.md): commands per publication, Redis
//! memory per connection, and with presence off the commands per connect and per idle
//! connection (`measured_per_connection`).
//!
//! Assumed commands per event (one round trip per Lua script or command):
//! - publish: one script = HINCRBY offset + XADD MAXLEN history_size + EXPIRE stream + EXPIRE
//!   meta + PUBLISH -> 5 commands; Redis then pushes it to every node subscribed to the channel.
//! - connect: SET session EX; per channel a presence script (ZADD + HSET + 2 EXPIRE) and the
//!   stream position read (HMGET) for recovery -> 1 + 5 x channels commands, 1 + 2 x channels
//!   round trips.
//! - disconnect: DEL session; per channel ZREM + HDEL -> 1 + 2 x channels, 1 + channels trips.
//! - keepalive every presence refresh (25 s heartbeat period when presence is off): one script
//!   per connection refreshing the session TTL and each channel's presence -> 1 + 4 x channels.

use super::costs::Costs;
use super::model::num;
use super::traffic::Traffic;
use super::Target;
use serde::Serialize;

/// RESP framing + command name + key of a simple command.
const CMD_BYTES: f64 = 64.0;
/// EVALSHA + 40-character SHA + key names + numeric arguments, payload not included.
const SCRIPT_BYTES: f64 = 160.0;
/// A presence entry (ClientInfo JSON: user, client id, conn_info).
const CLIENT_INFO_BYTES: f64 = 200.0;
/// A session record.
const SESSION_BYTES: f64 = 200.0;
/// Publication wrapper stored in the stream and PUBLISHed: offset, epoch, info.
const PUB_ENVELOPE_BYTES: f64 = 96.0;
/// A small reply (integer, OK, short bulk).
const REPLY_BYTES: f64 = 16.0;
/// Redis per-entry overhead: stream entry 48 B, hash/zset entry 64 B, key 96 B.
const STREAM_ENTRY_OVERHEAD: f64 = 48.0;
const HASH_ENTRY_OVERHEAD: f64 = 64.0;
const KEY_OVERHEAD: f64 = 96.0;
/// Heartbeat period: keepalive interval when presence is off.
const HEARTBEAT_S: f64 = 25.0;
/// Very rough single-Redis-process budget of small commands/s, for the warning.
pub const ONE_REDIS_CMDS_PER_S: f64 = 100_000.0;

/// One kind of Redis traffic: its event rate and cost per event.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub item: String,
    /// Events/s caused by this host.
    pub per_node: f64,
    /// Events/s in the whole cluster.
    pub cluster: f64,
    pub cmds: f64,
    pub round_trips: f64,
    /// Bytes node -> Redis and Redis -> node per event.
    pub up_bytes: f64,
    pub down_bytes: f64,
    pub formula: String,
}

/// Totals, each per node and for the cluster.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Pair {
    pub per_node: f64,
    pub cluster: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Redis {
    pub activities: Vec<Activity>,
    /// Steady state (without the storm).
    pub commands_per_s: Pair,
    /// Steady state plus one node's clients reconnecting within the window.
    pub peak_commands_per_s: Pair,
    pub round_trips_per_s: Pair,
    pub up_bytes_per_s: Pair,
    pub down_bytes_per_s: Pair,
    pub memory_bytes: f64,
    pub memory_formula: String,
}

fn activity(item: &str, per_node: f64, cluster: f64, cost: [f64; 4], formula: String) -> Activity {
    let [cmds, round_trips, up_bytes, down_bytes] = cost;
    Activity {
        item: item.to_string(),
        per_node,
        cluster,
        cmds,
        round_trips,
        up_bytes,
        down_bytes,
        formula,
    }
}

/// [commands, round trips, bytes up, bytes down] of one connect.
fn connect_cost(t: &Target) -> [f64; 4] {
    let ch = t.channels;
    let presence = t.presence_refresh_s > 0.0;
    let (cmds, trips, up) = if presence {
        let up = CMD_BYTES + SESSION_BYTES + ch * (SCRIPT_BYTES + CLIENT_INFO_BYTES + CMD_BYTES);
        (1.0 + 5.0 * ch, 1.0 + 2.0 * ch, up)
    } else {
        (
            1.0 + ch,
            1.0 + ch,
            CMD_BYTES + SESSION_BYTES + ch * CMD_BYTES,
        )
    };
    [cmds, trips, up, trips * REPLY_BYTES]
}

/// [commands, round trips, bytes up, bytes down] of one disconnect.
fn disconnect_cost(t: &Target) -> [f64; 4] {
    let ch = if t.presence_refresh_s > 0.0 {
        t.channels
    } else {
        0.0
    };
    let trips = 1.0 + ch;
    [
        1.0 + 2.0 * ch,
        trips,
        CMD_BYTES + ch * SCRIPT_BYTES,
        trips * REPLY_BYTES,
    ]
}

/// Redis traffic and memory for the target.
pub fn plan(t: &Target, tr: &Traffic, c: &Costs) -> Redis {
    let n = t.nodes;
    let measured_pub = c
        .redis_ops_per_publication
        .filter(|v| v.is_finite() && *v >= 0.0);
    let pub_cmds = measured_pub.unwrap_or(5.0);
    let pub_note = match measured_pub {
        Some(v) => format!("{} commands each (measured)", num(v)),
        None => "5 commands each".to_string(),
    };
    let pubs = tr.publications_per_s;
    let presence = t.presence_refresh_s > 0.0;
    let keepalive_s = if presence {
        t.presence_refresh_s
    } else {
        HEARTBEAT_S
    };
    let keep_cmds = 1.0 + if presence { 4.0 * t.channels } else { 0.0 };
    let keep_up = SCRIPT_BYTES
        + if presence {
            t.channels * CLIENT_INFO_BYTES
        } else {
            0.0
        };
    let churn = tr.churn_connects_per_s;
    let fanout_node = pubs * tr.node_reach;
    let activities = vec![
        activity(
            "publish (history + PUBLISH)",
            pubs / n,
            pubs,
            [pub_cmds, 1.0, t.msg_bytes + SCRIPT_BYTES, REPLY_BYTES],
            format!(
                "publications / nodes = {} / {}; {pub_note}",
                num(pubs),
                num(n)
            ),
        ),
        activity(
            "pub/sub messages pushed to nodes",
            fanout_node,
            fanout_node * n,
            [0.0, 0.0, 0.0, t.msg_bytes + PUB_ENVELOPE_BYTES],
            format!(
                "publications x reach = {} x {} per node",
                num(pubs),
                num(tr.node_reach)
            ),
        ),
        activity(
            "connect (steady churn)",
            churn,
            churn * n,
            connect_cost(t),
            format!(
                "conns / session_lifetime_s = {} / {}",
                num(t.conns),
                num(t.session_lifetime_s)
            ),
        ),
        activity(
            "disconnect (steady churn)",
            churn,
            churn * n,
            disconnect_cost(t),
            "as connect".to_string(),
        ),
        activity(
            "keepalive (session TTL + presence refresh)",
            t.conns / keepalive_s,
            t.conns * n / keepalive_s,
            [keep_cmds, 1.0, keep_up, REPLY_BYTES],
            format!(
                "conns / {} s; 1 + 4 x channels_per_client = {} commands each",
                num(keepalive_s),
                num(keep_cmds)
            ),
        ),
    ];
    let storm = tr.storm_connects_per_s;
    let storm_act = activity(
        "reconnect storm (one node's clients)",
        storm,
        storm,
        connect_cost(t),
        format!(
            "conns / reconnect_window_s = {} / {}",
            num(t.conns),
            num(t.reconnect_window_s)
        ),
    );
    let (mut activities, mut storm_act) = (activities, storm_act);
    if !presence {
        measured_per_connection(&mut activities, &mut storm_act, c, keepalive_s);
    }
    let sum = |acts: &[Activity], f: &dyn Fn(&Activity) -> f64| Pair {
        per_node: acts.iter().map(|a| a.per_node * f(a)).sum(),
        cluster: acts.iter().map(|a| a.cluster * f(a)).sum(),
    };
    let steady = sum(&activities, &|a| a.cmds);
    let storm_cmds = sum(std::slice::from_ref(&storm_act), &|a| a.cmds);
    let (memory_bytes, memory_formula) = memory(t, tr, c);
    let mut all = activities.clone();
    all.push(storm_act);
    Redis {
        commands_per_s: steady,
        peak_commands_per_s: Pair {
            per_node: steady.per_node + storm_cmds.per_node,
            cluster: steady.cluster + storm_cmds.cluster,
        },
        round_trips_per_s: sum(&activities, &|a| a.round_trips),
        up_bytes_per_s: sum(&activities, &|a| a.up_bytes),
        down_bytes_per_s: sum(&activities, &|a| a.down_bytes),
        activities: all,
        memory_bytes,
        memory_formula,
    }
}

/// With presence off (what the cluster runs measured), replaces the design's commands per
/// connect / disconnect / keepalive by the measured ones (`redis_cmds_per_connect`,
/// `redis_cmds_per_conn_s`: upper bounds, they include the nodes' health-check PINGs and
/// registry refreshes); round trips and bytes are scaled with the commands.
fn measured_per_connection(
    acts: &mut [Activity],
    storm: &mut Activity,
    c: &Costs,
    keepalive_s: f64,
) {
    let ok = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
    let set = |a: &mut Activity, cmds: f64, how: &str| {
        let k = if a.cmds > 0.0 { cmds / a.cmds } else { 0.0 };
        a.cmds = cmds;
        a.round_trips = (a.round_trips * k).min(cmds);
        a.up_bytes *= k;
        a.down_bytes *= k;
        let rate = a.formula.split(';').next().unwrap_or_default().to_string();
        a.formula = format!("{rate}; {} commands each (MEASURED, {how})", num(cmds));
    };
    let how = "idle-hold connect step, upper bound; disconnect taken as equal";
    if let Some(m) = ok(c.redis_cmds_per_connect) {
        for a in acts.iter_mut().filter(|a| a.item.contains("connect")) {
            set(a, m, how);
        }
        set(storm, m, how);
    }
    if let Some(k) = ok(c.redis_cmds_per_conn_s) {
        for a in acts.iter_mut().filter(|a| a.item.starts_with("keepalive")) {
            set(a, k * keepalive_s, "idle-hold hold, upper bound");
        }
    }
}

/// Redis memory: full history streams, presence entries, and per connection either the
/// measured `used_memory` growth per connection or a design session record (upper bound).
fn memory(t: &Target, tr: &Traffic, c: &Costs) -> (f64, String) {
    let clients = t.conns * t.nodes;
    let entry = t.msg_bytes + PUB_ENVELOPE_BYTES + STREAM_ENTRY_OVERHEAD;
    let history = tr.channels * t.history_size * entry;
    let presence_entry = CLIENT_INFO_BYTES + 2.0 * HASH_ENTRY_OVERHEAD;
    let presence = if t.presence_refresh_s > 0.0 {
        clients * t.channels * presence_entry
    } else {
        0.0
    };
    let measured = c
        .redis_used_memory_per_conn_bytes
        .filter(|v| v.is_finite() && *v >= 0.0);
    let session = measured.unwrap_or(SESSION_BYTES + KEY_OVERHEAD);
    let what = if measured.is_some() {
        "measured used_memory per connection"
    } else {
        "sessions (design)"
    };
    let subs = if presence > 0.0 { t.channels } else { 0.0 };
    let formula = format!(
        "history channels x history_size x {e} B + presence clients x channels x {p} B + \
         {what} clients x {s} B = {} x {} x {e} + {c} x {} x {p} + {c} x {s}",
        num(tr.channels),
        num(t.history_size),
        num(subs),
        e = num(entry),
        p = num(presence_entry),
        s = num(session),
        c = num(clients),
    );
    (history + presence + clients * session, formula)
}
