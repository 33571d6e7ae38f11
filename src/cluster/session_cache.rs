//! The per-core caches in front of the engine's session records (one per core thread, no
//! locks; nothing here waits on the engine).
//!
//! - **Written state** (`engine.redis.session_cache_size` sessions per core): session id ->
//!   the fingerprint of its record as last written, and its user. It lets the sync
//!   (`sessions::sync`) write only records that changed, and tells it which sessions left
//!   the table since the last pass, so their records are deleted. Safe because it is only
//!   ever behind by what the next write repairs: a failed write forgets its fingerprints
//!   (written again next sync), and every record is written again each third of the TTL
//!   whatever the cache says. A session beyond the bound is written every sync and its
//!   record expires by TTL after it closes (never wrong, only costlier).
//! - **Lookups** (`session_lookup_cache_size` users per core, each kept
//!   `session_lookup_cache_ms`): API `connections {user}` answers read from the engine. Safe
//!   because the answer is a snapshot anyway (the records themselves are up to
//!   `session_sync_ms` old); the cache adds at most `session_lookup_cache_ms` of staleness,
//!   as documented. When full, expired entries are dropped; if none is, nothing new is kept.
//!
//! Hits and misses are counted by the caller (`wiresocket_session_cache_*`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::RedisConfig;
use crate::engine::cluster::SessionRecord;

/// What the written-state cache says about a session in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Its record was written with this fingerprint: nothing to write.
    Unchanged,
    /// New or changed: write it (the cache now holds the new fingerprint).
    Changed,
    /// The cache is full: write it (every pass).
    Uncached,
}

struct Written {
    fingerprint: u64,
    /// The pass that last saw the session in the table.
    pass: u64,
    user: Box<str>,
}

struct Lookup {
    at: Instant,
    limit: usize,
    records: Vec<SessionRecord>,
}

#[derive(Default)]
struct Caches {
    capacity: usize,
    pass: u64,
    written: HashMap<u64, Written, ahash::RandomState>,
    lookups: HashMap<String, Lookup, ahash::RandomState>,
    lookup_ttl: Duration,
}

thread_local! {
    static CACHES: RefCell<Caches> = RefCell::default();
}

/// Sets this core's written-state bound (at the start of the core's sync).
pub fn configure(capacity: usize) {
    CACHES.with(|c| c.borrow_mut().capacity = capacity);
}

/// Starts a pass over the session table; returns its number.
pub fn begin_pass() -> u64 {
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        c.pass += 1;
        c.pass
    })
}

/// Session `id` is in the table with a record of `fingerprint`: whether it must be written.
pub fn seen(pass: u64, id: u64, fingerprint: u64, user: impl FnOnce() -> Box<str>) -> Seen {
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        let capacity = c.capacity;
        if let Some(w) = c.written.get_mut(&id) {
            w.pass = pass;
            if w.fingerprint == fingerprint {
                return Seen::Unchanged;
            }
            w.fingerprint = fingerprint;
            return Seen::Changed;
        }
        if c.written.len() >= capacity {
            return Seen::Uncached;
        }
        let user = user();
        c.written.insert(
            id,
            Written {
                fingerprint,
                pass,
                user,
            },
        );
        Seen::Changed
    })
}

/// Ends a pass: the sessions not seen in it (closed), as (user, client id), forgotten.
pub fn end_pass(pass: u64) -> Vec<(String, String)> {
    CACHES.with(|c| {
        let mut closed = Vec::new();
        c.borrow_mut().written.retain(|id, w| {
            let live = w.pass == pass;
            if !live {
                closed.push((w.user.to_string(), crate::session::client_id_of(*id)));
            }
            live
        });
        closed
    })
}

/// Their write failed: write these sessions' records at the next pass whatever they hold.
pub fn forget_written(ids: &[u64]) {
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        for id in ids {
            if let Some(w) = c.written.get_mut(id) {
                w.fingerprint = 0;
            }
        }
    })
}

/// A fresh cached answer to `connections {user}` with at least `limit` asked.
pub fn lookup(user: &str, limit: usize) -> Option<Vec<SessionRecord>> {
    CACHES.with(|c| {
        let c = c.borrow();
        let l = c.lookups.get(user)?;
        if l.at.elapsed() >= c.lookup_ttl || l.limit < limit {
            return None;
        }
        Some(l.records.iter().take(limit).cloned().collect())
    })
}

/// Keeps an answer to `connections {user}` (see the module doc for the bound).
pub fn remember(cfg: &RedisConfig, user: String, limit: usize, records: &[SessionRecord]) {
    let (size, ttl) = (
        cfg.session_lookup_cache_size,
        Duration::from_millis(cfg.session_lookup_cache_ms),
    );
    if size == 0 || ttl.is_zero() {
        return;
    }
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        c.lookup_ttl = ttl;
        if c.lookups.len() >= size && !c.lookups.contains_key(&user) {
            c.lookups.retain(|_, l| l.at.elapsed() < ttl);
            if c.lookups.len() >= size {
                return;
            }
        }
        let records = records.to_vec();
        c.lookups.insert(
            user,
            Lookup {
                at: Instant::now(),
                limit,
                records,
            },
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_state_says_what_to_write_and_what_closed() {
        configure(2);
        let p = begin_pass();
        assert_eq!(seen(p, 1, 10, || "u1".into()), Seen::Changed);
        assert_eq!(seen(p, 2, 20, || "u2".into()), Seen::Changed);
        assert_eq!(seen(p, 3, 30, || "u3".into()), Seen::Uncached, "bounded");
        assert!(end_pass(p).is_empty());
        let p = begin_pass();
        assert_eq!(seen(p, 1, 10, || unreachable!()), Seen::Unchanged);
        assert_eq!(seen(p, 2, 21, || unreachable!()), Seen::Changed);
        forget_written(&[1]);
        assert_eq!(end_pass(p), Vec::<(String, String)>::new());
        let p = begin_pass();
        assert_eq!(
            seen(p, 1, 10, || unreachable!()),
            Seen::Changed,
            "forgotten"
        );
        assert_eq!(
            end_pass(p),
            vec![("u2".to_owned(), crate::session::client_id_of(2))],
            "2 left the table"
        );
    }
}
