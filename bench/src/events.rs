//! The worker -> parent wire: one JSON object per stdout line. Parent -> worker control is plain
//! text lines on the worker's stdin (`count`, `report`, `stop`, `drop`, `stall`, `resume`). Shared by `worker` (writer) and `pool`
//! (reader), so both sides agree on field names by construction.

use crate::sys::ProcSample;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// Periodic while connecting.
    Progress { id: usize, ready: u64, failed: u64 },
    /// Every connection attempt has finished (subscribed or failed).
    Ready {
        id: usize,
        ready: u64,
        failed: u64,
        failures: BTreeMap<String, u64>,
    },
    /// Answer to `report` (or sent on the worker's own deadline).
    Report(Box<Report>),
    /// Answer to `count`: publications received so far (all phases, for the final settle),
    /// sessions open now, and reconnects done / given up since the last `drop`.
    Count {
        id: usize,
        total: u64,
        live: u64,
        reconnected: u64,
        gave_up: u64,
    },
}

/// Everything one worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub id: usize,
    pub ready: u64,
    pub failures: BTreeMap<String, u64>,
    /// Connections that ended after being subscribed, by cause (`close:3012`, `eof`, `error`).
    pub closed: BTreeMap<String, u64>,
    /// `disconnect` pushes received, by their JSON text.
    pub disconnect_pushes: BTreeMap<String, u64>,
    /// Server heartbeats (`{}`) answered.
    pub pings: u64,
    /// Publications whose payload had no benchmark phase/timestamp.
    pub unphased_pubs: u64,
    pub phases: Vec<PhaseReport>,
    /// First-handshake latency (TCP connect to subscribed) as `[value_us, count]` pairs.
    pub connect_hist: Vec<(u64, u64)>,
    pub reconnect: ReconnectReport,
    /// Publications slow consumers read after they resumed reading.
    pub slow_received: u64,
    /// How slow consumers' sessions ended.
    pub slow_closed: BTreeMap<String, u64>,
    pub proc: ProcSample,
}

/// The reconnect storm as one worker saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconnectReport {
    pub done: u64,
    pub gave_up: u64,
    pub attempts_failed: u64,
    /// Attempts answered `503` (the server shedding load).
    pub shed_503: u64,
    pub retry_after_max_s: u64,
    pub failures: BTreeMap<String, u64>,
    /// Drop-to-subscribed latency per client.
    pub total_hist: Vec<(u64, u64)>,
    /// Latency of the successful attempt (TCP connect to subscribed).
    pub attempt_hist: Vec<(u64, u64)>,
}

/// Deliveries of one publish phase seen by one worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    pub count: u64,
    /// CLOCK_MONOTONIC ns of the first and last delivery (0 when none).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Latency histogram as `[value_us, count]` pairs.
    pub hist: Vec<(u64, u64)>,
}
