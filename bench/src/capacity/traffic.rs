//! Rates one host and the cluster must carry, from the target alone (no measured costs):
//! deliveries, publications (API share and Redis ingest), channels, frame size, NIC egress,
//! connect rates of a reconnect storm and of steady churn.
//!
//! A publication reaches `subscribers_per_channel` connections, so the cluster takes
//! `conns x nodes x msg_rate / subscribers_per_channel` publications/s unless `--publish-rate`
//! is given; each node accepts an even share over its HTTP API and, in a cluster, receives from
//! Redis every publication of a channel it has a subscriber of.

use super::model::{line, num, Line, Unit};
use super::Target;
use serde::Serialize;

/// Bytes of the Centrifugo push JSON around a payload (`{"push":{"channel":..,"pub":{"data":..,
/// "offset":..}}}` with a ~16-character channel name).
pub const PUSH_ENVELOPE_BYTES: f64 = 64.0;
/// Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12 bytes per packet (one message per packet).
pub const PACKET_OVERHEAD_BYTES: f64 = 66.0;

/// Rates this host (and the cluster) must carry.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub lines: Vec<Line>,
    /// Messages/s written to this host's connections.
    pub deliveries_per_s: f64,
    /// Publications/s entering the whole cluster.
    pub publications_per_s: f64,
    /// Publications/s this host accepts over its HTTP API (an even share).
    pub api_publications_per_s: f64,
    /// Publications/s this host receives from Redis (cluster only).
    pub redis_publications_per_s: f64,
    /// Fraction of nodes that have a subscriber of a given channel.
    pub node_reach: f64,
    /// Channels in the cluster.
    pub channels: f64,
    /// Bytes of one WebSocket frame carrying a message.
    pub frame_bytes: f64,
    /// Connects/s while all this host's clients reconnect within the window.
    pub storm_connects_per_s: f64,
    /// Connects/s (and disconnects/s) in steady state from session lifetimes.
    pub churn_connects_per_s: f64,
    /// Client-facing NIC egress.
    pub egress_bytes_per_s: f64,
}

/// Traffic from the target alone (no costs involved).
pub fn traffic(t: &Target) -> Traffic {
    let clients = t.conns * t.nodes;
    let deliveries = t.conns * t.msg_rate;
    let derived_pubs = clients * t.msg_rate / t.subscribers_per_channel;
    let pubs = t.publish_rate.unwrap_or(derived_pubs);
    let reach = 1.0 - (1.0 - 1.0 / t.nodes).powf(t.subscribers_per_channel);
    let api = pubs / t.nodes;
    let from_redis = if t.nodes > 1.0 { pubs * reach } else { 0.0 };
    let channels = clients * t.channels / t.subscribers_per_channel;
    let payload = t.msg_bytes + PUSH_ENVELOPE_BYTES;
    let frame = payload + ws_header_bytes(payload);
    let storm = t.conns / t.reconnect_window_s;
    let churn = t.conns / t.session_lifetime_s;
    let egress = deliveries * (frame + PACKET_OVERHEAD_BYTES);
    let pubs_formula = match t.publish_rate {
        Some(p) => format!(
            "--publish-rate {} (derived would be {})",
            num(p),
            num(derived_pubs)
        ),
        None => format!(
            "conns x nodes x msg_rate / subscribers_per_channel = {} x {} x {} / {}",
            num(t.conns),
            num(t.nodes),
            num(t.msg_rate),
            num(t.subscribers_per_channel)
        ),
    };
    let lines = vec![
        line(
            "deliveries (this host)",
            deliveries,
            Unit::PerSecond,
            format!("conns x msg_rate = {} x {}", num(t.conns), num(t.msg_rate)),
        ),
        line(
            "publications (cluster)",
            pubs,
            Unit::PerSecond,
            pubs_formula,
        ),
        line(
            "publications accepted over the HTTP API (this host)",
            api,
            Unit::PerSecond,
            format!("publications / nodes = {} / {}", num(pubs), num(t.nodes)),
        ),
        line(
            "share of nodes a channel reaches",
            reach,
            Unit::Ratio,
            format!(
                "1 - (1 - 1/nodes)^subscribers_per_channel = 1 - (1 - 1/{})^{}",
                num(t.nodes),
                num(t.subscribers_per_channel)
            ),
        ),
        line(
            "publications received from Redis (this host)",
            from_redis,
            Unit::PerSecond,
            if t.nodes > 1.0 {
                format!("publications x reach = {} x {}", num(pubs), num(reach))
            } else {
                "0: one node uses the memory engine".to_string()
            },
        ),
        line(
            "channels (cluster)",
            channels,
            Unit::Count,
            format!(
                "conns x nodes x channels_per_client / subscribers_per_channel = {} x {} x {} / {}",
                num(t.conns),
                num(t.nodes),
                num(t.channels),
                num(t.subscribers_per_channel)
            ),
        ),
        line(
            "WebSocket frame per message",
            frame,
            Unit::Bytes,
            format!(
                "msg_bytes + push JSON + frame header = {} + {} + {}",
                num(t.msg_bytes),
                num(PUSH_ENVELOPE_BYTES),
                num(ws_header_bytes(payload))
            ),
        ),
        line(
            "client egress (NIC)",
            egress,
            Unit::BytesPerSecond,
            format!(
                "deliveries x (frame + {} B TCP/IP/Ethernet) = {} x {}",
                num(PACKET_OVERHEAD_BYTES),
                num(deliveries),
                num(frame + PACKET_OVERHEAD_BYTES)
            ),
        ),
        line(
            "connects during a reconnect storm",
            storm,
            Unit::PerSecond,
            format!(
                "conns / reconnect_window_s = {} / {}",
                num(t.conns),
                num(t.reconnect_window_s)
            ),
        ),
        line(
            "connects in steady state (churn)",
            churn,
            Unit::PerSecond,
            format!(
                "conns / session_lifetime_s = {} / {}",
                num(t.conns),
                num(t.session_lifetime_s)
            ),
        ),
    ];
    Traffic {
        lines,
        deliveries_per_s: deliveries,
        publications_per_s: pubs,
        api_publications_per_s: api,
        redis_publications_per_s: from_redis,
        node_reach: reach,
        channels,
        frame_bytes: frame,
        storm_connects_per_s: storm,
        churn_connects_per_s: churn,
        egress_bytes_per_s: egress,
    }
}

/// Bytes of the WebSocket header of an unmasked server frame with `payload` bytes.
fn ws_header_bytes(payload: f64) -> f64 {
    if payload < 126.0 {
        2.0
    } else if payload < 65536.0 {
        4.0
    } else {
        10.0
    }
}
