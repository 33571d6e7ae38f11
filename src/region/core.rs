//! One core's side of document pinning: how many of its connections are on each document
//! (its holds), the renewal task, and per-session facts the session code asks about (the
//! document named in the connection URL, the token's `dbCode`, a pending redirect reason).
//!
//! Called by the session code through `Env::pins` ([`CorePins::open`] before a document
//! subscription is made, [`CorePins::leave`] when one ends, [`CorePins::forget`] when the
//! session closes) and by the driver for the 4009 close reason. Single-threaded (`RefCell`):
//! a core never shares it.
//!
//! Invariant: a document's hold count is raised *before* its pin command is sent and lowered
//! only after the subscription ends (or the open failed), and a release is sent only while
//! the count is zero at send time; commands of one core reach the pin Redis in send order
//! (one queue, one connection), so a release can never overtake a later open's hold.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pin::{self, Opened, Owner, PinCtx};
use super::{RegionStats, Regions};

/// Why a document cannot be opened here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Pinned to another region: close 4009 (the reason is kept for the driver).
    Redirect,
    /// The pin Redis did not answer: a temporary error.
    Unavailable,
    /// The token's `dbCode` names no configured pin Redis.
    NoStore,
}

/// Per-session facts (only for sessions that have any).
#[derive(Default)]
struct SessionFacts {
    url_document: Option<String>,
    db_code: Option<String>,
    redirect: Option<String>,
}

/// (pin Redis URL, document).
type HoldKey = (Arc<str>, Arc<str>);

/// Called with a document this core serves that a renewal found pinned to another region, and
/// the 4009 reason for its subscribers (installed by the runtime: it closes them).
pub type OnConflict = Box<dyn Fn(&str, &str)>;

pub struct CorePins {
    regions: Arc<Regions>,
    ctx: PinCtx,
    /// Shared with the release tasks, which check it again before sending.
    holds: Rc<RefCell<HashMap<HoldKey, usize>>>,
    sessions: RefCell<HashMap<u64, SessionFacts>>,
    on_conflict: std::cell::OnceCell<OnConflict>,
}

impl CorePins {
    /// This core's pins; starts its renewal task. Runs on the core.
    pub fn new(regions: Arc<Regions>, core: usize) -> Rc<CorePins> {
        let cfg = &regions.cfg;
        let ctx = PinCtx {
            prefix: cfg.key_prefix.clone(),
            me: Owner {
                region: cfg.name.clone(),
                url: cfg.url.clone(),
            },
            holder: format!("{}:{core}", regions.node_id),
            lease_ms: cfg.pin_lease_ms,
            grace_ms: cfg.pin_grace_ms,
        };
        let pins = Rc::new(CorePins {
            regions,
            ctx,
            holds: Rc::default(),
            sessions: RefCell::default(),
            on_conflict: Default::default(),
        });
        let weak = Rc::downgrade(&pins);
        let every = Duration::from_millis(pins.regions.cfg.renew_interval_ms);
        crate::exec::spawn(async move {
            loop {
                crate::exec::sleep(every).await;
                let Some(pins) = weak.upgrade() else { return };
                pins.renew_all().await;
            }
        });
        pins
    }

    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// Sets what happens to the subscribers of a document found pinned elsewhere.
    pub fn on_conflict(&self, f: OnConflict) {
        let _ = self.on_conflict.set(f);
    }

    /// Keeps the 4009 reason for a session about to be closed with it.
    pub fn set_redirect(&self, session: u64, reason: String) {
        self.sessions
            .borrow_mut()
            .entry(session)
            .or_default()
            .redirect = Some(reason);
    }

    /// Remembers the document named in the session's connection URL.
    pub fn note_url_document(&self, session: u64, document: String) {
        self.sessions
            .borrow_mut()
            .entry(session)
            .or_default()
            .url_document = Some(document);
    }

    pub fn url_document(&self, session: u64) -> Option<String> {
        let sessions = self.sessions.borrow();
        sessions.get(&session)?.url_document.clone()
    }

    /// Remembers the token's `dbCode` (on connect).
    pub fn note_db_code(&self, session: u64, db_code: Option<String>) {
        if db_code.is_none() && !self.sessions.borrow().contains_key(&session) {
            return;
        }
        self.sessions
            .borrow_mut()
            .entry(session)
            .or_default()
            .db_code = db_code;
    }

    /// The 4009 close reason waiting for this session, taken.
    pub fn take_redirect(&self, session: u64) -> Option<String> {
        let mut sessions = self.sessions.borrow_mut();
        sessions.get_mut(&session)?.redirect.take()
    }

    /// Drops what is kept for a closed session (after its subscriptions were released).
    pub fn forget(&self, session: u64) {
        self.sessions.borrow_mut().remove(&session);
    }

    fn db_code(&self, session: u64) -> Option<String> {
        let sessions = self.sessions.borrow();
        sessions.get(&session)?.db_code.clone()
    }

    /// Checks `document`'s pin and holds it for this session; on [`Refusal::Redirect`] the
    /// close reason `REDIRECT:<url>/<document>` is kept for the driver.
    pub async fn open(&self, session: u64, document: &str) -> Result<(), Refusal> {
        let stats = &self.regions.stats;
        let Some((store, node)) = self.regions.store(self.db_code(session).as_deref()) else {
            return Err(Refusal::NoStore);
        };
        let key: HoldKey = (store, Arc::from(document));
        *self.holds.borrow_mut().entry(key.clone()).or_insert(0) += 1;
        let started = Instant::now();
        let r = pin::open(&node, &self.ctx, document).await;
        stats
            .check_latency
            .record_us(started.elapsed().as_micros() as u64);
        match r {
            Ok(Opened::Here { acquired }) => {
                if acquired {
                    RegionStats::inc(&stats.acquired);
                }
                Ok(())
            }
            Ok(Opened::Elsewhere(owner)) => {
                self.drop_hold(key);
                RegionStats::inc(&stats.redirects);
                self.set_redirect(session, redirect_reason(&owner, document));
                Err(Refusal::Redirect)
            }
            Err(e) => {
                self.drop_hold(key);
                RegionStats::inc(&stats.errors);
                tracing::warn!(%document, error = %e, "document pin check failed");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// A subscription of `session` to `document` (opened with [`CorePins::open`]) ended.
    pub fn leave(&self, session: u64, document: &str) {
        if let Some((store, _)) = self.regions.store(self.db_code(session).as_deref()) {
            self.drop_hold((store, Arc::from(document)));
        }
    }

    /// Lowers a hold; the last one on this core releases the document.
    fn drop_hold(&self, key: HoldKey) {
        {
            let mut holds = self.holds.borrow_mut();
            let Some(n) = holds.get_mut(&key) else { return };
            *n -= 1;
            if *n > 0 {
                return;
            }
            holds.remove(&key);
        }
        let Some(node) = self.regions.store_by_url(&key.0) else {
            return;
        };
        let ctx = self.ctx.clone();
        let regions = self.regions.clone();
        let holds = self.holds.clone();
        crate::exec::spawn(async move {
            // an open on this core since then holds it again (and was sent before us)
            if holds.borrow().contains_key(&key) {
                return;
            }
            match pin::release(&node, &ctx, &key.1).await {
                Ok(true) => RegionStats::inc(&regions.stats.released),
                Ok(false) => {}
                Err(e) => {
                    RegionStats::inc(&regions.stats.errors);
                    tracing::debug!(document = %key.1, error = %e, "pin release failed (the lease will expire)");
                }
            }
        });
    }

    /// Renews every document this core holds, one pipeline per pin Redis.
    async fn renew_all(&self) {
        let mut by_store: HashMap<Arc<str>, Vec<String>> = HashMap::new();
        for (store, doc) in self.holds.borrow().keys() {
            by_store
                .entry(store.clone())
                .or_default()
                .push(doc.to_string());
        }
        let stats = &self.regions.stats;
        for (store, docs) in by_store {
            let Some(node) = self.regions.store_by_url(&store) else {
                continue;
            };
            match pin::renew(&node, &self.ctx, docs.clone()).await {
                Ok(states) => {
                    for (doc, state) in docs.iter().zip(states) {
                        match state {
                            Opened::Here { .. } => RegionStats::inc(&stats.renewed),
                            Opened::Elsewhere(owner) => {
                                RegionStats::inc(&stats.conflicts);
                                tracing::warn!(document = %doc, region = %owner.region, "a document served here is pinned to another region: redirecting its connections");
                                if let Some(f) = self.on_conflict.get() {
                                    f(doc, &redirect_reason(&owner, doc));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    RegionStats::inc(&stats.errors);
                    tracing::warn!(error = %e, "pin renewal failed");
                }
            }
        }
    }
}

/// `REDIRECT:<owner url>/<encoded document>`.
fn redirect_reason(owner: &Owner, document: &str) -> String {
    format!("REDIRECT:{}", Regions::document_url(&owner.url, document))
}
