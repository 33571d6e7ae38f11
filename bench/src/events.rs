//! The worker -> parent wire: one JSON object per stdout line. Parent -> worker control is plain
//! text lines on the worker's stdin (`count`, `report`, `stop`). Shared by `worker` (writer) and `pool`
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
        elapsed_ms: u64,
        failures: BTreeMap<String, u64>,
    },
    /// Answer to `report` (or sent on the worker's own deadline).
    Report(Box<Report>),
    /// Answer to `count`: publications received so far (all phases), for the final settle.
    Count { id: usize, total: u64 },
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
    pub proc: ProcSample,
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
