//! The JWKS key set: fetched from `auth.jwks_url` on a thread of its own, read lock-free by the
//! verifier on every core.
//!
//! [`Jwks::start`] fetches once synchronously (start-up waits at most `jwks_timeout_ms`; a
//! failure is logged and the set stays empty), then spawns the `ws-jwks` thread, which fetches
//! every `jwks_refresh_s` and whenever [`Jwks::request_refresh`] asks early. The HTTP client is
//! blocking (`ureq`): it runs only on that thread, never on a glommio executor.
//!
//! Invariants: readers see a whole key set (`ArcSwap` replaces it atomically) and never wait;
//! a failed or invalid fetch keeps the last good set; early refreshes (a token with an unknown
//! `kid`) happen at most once per `jwks_unknown_kid_refresh_s`, however many tokens ask; the
//! thread ends once the verifier that owns the set is gone. While the last fetch has failed,
//! a token with an unknown `kid` is refused as temporarily unverifiable (error 100, the SDK
//! retries) rather than invalid (3500, the SDK gives up).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::keys::{from_jwks, KeySet};
use super::stats::AuthStats;
use crate::config::AuthConfig;

/// A JWKS key set and the means to refresh it.
pub struct Jwks {
    url: String,
    refresh: Duration,
    early_min_s: u64,
    max_bytes: u64,
    agent: ureq::Agent,
    keys: ArcSwap<KeySet>,
    /// Unix seconds of the last early refresh granted (0: none yet).
    last_early: AtomicU64,
    /// Set by `request_refresh`, taken by the thread.
    early: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// Whether the last fetch succeeded.
    healthy: AtomicBool,
    stats: Arc<AuthStats>,
}

impl Jwks {
    /// Fetches the set once, then starts the refresh thread. `None` when no URL is configured.
    pub fn start(cfg: &AuthConfig, stats: Arc<AuthStats>) -> Option<Arc<Jwks>> {
        let url = cfg.jwks_url.clone()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.jwks_timeout_ms)))
            .build()
            .into();
        let jwks = Arc::new(Jwks {
            url,
            refresh: Duration::from_secs(cfg.jwks_refresh_s.max(1)),
            early_min_s: cfg.jwks_unknown_kid_refresh_s,
            max_bytes: cfg.jwks_max_bytes as u64,
            agent,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_early: AtomicU64::new(0),
            early: AtomicBool::new(false),
            thread: OnceLock::new(),
            healthy: AtomicBool::new(false),
            stats,
        });
        jwks.refresh_now();
        let weak = Arc::downgrade(&jwks);
        let spawned = std::thread::Builder::new()
            .name("ws-jwks".into())
            .spawn(move || run(weak));
        match spawned {
            Ok(handle) => {
                let _ = jwks.thread.set(handle.thread().clone());
            }
            Err(e) => tracing::error!(error = %e, "cannot start the JWKS refresh thread"),
        }
        Some(jwks)
    }

    /// The current key set (lock-free).
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Whether the last fetch succeeded: when it did not, an unknown `kid` may be a key the
    /// node could not fetch, so the verifier answers with a temporary error instead of 3500.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Asks for an early fetch (a token named an unknown `kid`). Granted at most once per
    /// `jwks_unknown_kid_refresh_s`; returns whether this call was the one granted.
    pub fn request_refresh(&self) -> bool {
        let now = jsonwebtoken::get_current_timestamp();
        let last = self.last_early.load(Relaxed);
        if last != 0 && now < last.saturating_add(self.early_min_s) {
            return false;
        }
        if self
            .last_early
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            return false; // another core got it
        }
        self.stats.jwks_early_refreshes.fetch_add(1, Relaxed);
        self.early.store(true, Relaxed);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
        true
    }

    /// Fetches and installs the set; on failure keeps the old one and logs why.
    fn refresh_now(&self) {
        match self.fetch() {
            Ok((set, skipped)) => {
                tracing::debug!(url = %self.url, keys = set.len(), skipped, "JWKS loaded");
                if set.is_empty() {
                    tracing::warn!(url = %self.url, skipped, "JWKS holds no usable signing key");
                }
                self.stats.jwks_keys.store(set.len() as u64, Relaxed);
                self.stats.jwks_fetches_ok.fetch_add(1, Relaxed);
                self.keys.store(Arc::new(set));
                self.healthy.store(true, Relaxed);
            }
            Err(e) => {
                self.stats.jwks_fetches_failed.fetch_add(1, Relaxed);
                self.healthy.store(false, Relaxed);
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the previous key set");
            }
        }
    }

    fn fetch(&self) -> Result<(KeySet, usize), String> {
        let mut resp = self
            .agent
            .get(&self.url)
            .call()
            .map_err(|e| e.to_string())?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.max_bytes)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        from_jwks(&body).map_err(|e| e.to_string())
    }
}

/// The refresh loop: fetch when due or asked early; end when the set's owner is gone.
fn run(jwks: Weak<Jwks>) {
    let Some(refresh) = jwks.upgrade().map(|j| j.refresh) else {
        return;
    };
    let mut due = Instant::now() + refresh;
    loop {
        std::thread::park_timeout(due.saturating_duration_since(Instant::now()));
        let Some(j) = jwks.upgrade() else { return };
        let early = j.early.swap(false, Relaxed);
        if early || Instant::now() >= due {
            j.refresh_now();
            due = Instant::now() + refresh;
        }
    }
}
