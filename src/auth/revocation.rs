//! Token revocation: by token id (`jti`) and by user for tokens issued before a time (`iat`),
//! as Centrifugo's `revoke_token` / `invalidate_user_tokens` server API methods.
//!
//! The API handlers (`api::revoke`) write through the [`Revocations`] trait; the verifier reads
//! it on every connect, refresh and subscription token ([`Revocations::check`]). One store
//! serves the whole node: [`MemoryRevocations`] keeps it node-local; the Redis engine will back
//! the same trait (writes go to Redis and to the local copy, reads stay local and in memory).
//!
//! Why `papaya`: every core reads the store on every token and the API writes to it from
//! whichever core took the call. papaya's maps are lock-free (readers never wait for a writer,
//! reclamation by epochs), so a core never blocks on another — `Mutex`/`RwLock` and sharded-lock
//! maps such as `dashmap` would. A per-core copy updated over the mesh would also work but needs
//! a message per core per write; with writes rare and reads cheap, one shared map is simpler.
//!
//! Invariants: every entry has an expiry and is ignored once past it; the store never holds
//! more than `max_entries` (expired entries are dropped first, then a write is refused).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

type Map<V> = papaya::HashMap<Box<str>, V, ahash::RandomState>;

/// Why a revocation could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The store is at `auth.max_revocations` live entries.
    #[error("revocation store is full ({0} entries)")]
    Full(usize),
}

/// Why a token is refused by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its `jti` was revoked.
    Token,
    /// Its user's tokens issued before a time were invalidated, and it was (or has no `iat`).
    User,
}

/// Revocation state shared by every core of the node (and, later, of the cluster).
pub trait Revocations: Send + Sync {
    /// Refuses the token with id `jti` until `expire_at` (unix seconds).
    fn revoke_token(&self, jti: &str, expire_at: u64) -> Result<(), RevocationError>;
    /// Refuses `user`'s tokens whose `iat` is before `issued_before` (and those without
    /// `iat`) until `expire_at`. A later call for the same user keeps the later times.
    fn invalidate_user_tokens(
        &self,
        user: &str,
        issued_before: u64,
        expire_at: u64,
    ) -> Result<(), RevocationError>;
    /// Whether a token with these claims is refused at `now`.
    fn check(&self, jti: Option<&str>, user: &str, iat: Option<u64>, now: u64) -> Option<Revoked>;
    /// Live (token ids, users) entries, for metrics.
    fn counts(&self) -> (usize, usize);
}

/// The node-local store: two lock-free maps with expiring entries.
pub struct MemoryRevocations {
    /// jti -> expire_at.
    tokens: Map<u64>,
    /// user -> (issued_before, expire_at).
    users: Map<(u64, u64)>,
    max_entries: usize,
    /// Writes since the last sweep of expired entries.
    writes: AtomicU64,
}

/// Writes between two sweeps of expired entries (also swept whenever the store is full).
const SWEEP_EVERY: u64 = 1024;

impl MemoryRevocations {
    pub fn new(max_entries: usize) -> Self {
        MemoryRevocations {
            tokens: Map::with_hasher(ahash::RandomState::new()),
            users: Map::with_hasher(ahash::RandomState::new()),
            max_entries,
            writes: AtomicU64::new(0),
        }
    }

    /// Makes room for one new entry: sweeps expired entries now and then, and when full.
    fn admit(&self, now: u64) -> Result<(), RevocationError> {
        if self.writes.fetch_add(1, Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        if self.tokens.len() + self.users.len() >= self.max_entries {
            self.sweep(now);
            let n = self.tokens.len() + self.users.len();
            if n >= self.max_entries {
                return Err(RevocationError::Full(n));
            }
        }
        Ok(())
    }

    /// Drops every entry whose expiry has passed.
    pub fn sweep(&self, now: u64) {
        self.tokens.pin().retain(|_, exp| *exp > now);
        self.users.pin().retain(|_, (_, exp)| *exp > now);
    }
}

impl Revocations for MemoryRevocations {
    fn revoke_token(&self, jti: &str, expire_at: u64) -> Result<(), RevocationError> {
        let tokens = self.tokens.pin();
        if tokens.get(jti).is_none() {
            self.admit(now())?;
        }
        tokens.update_or_insert(jti.into(), |old| (*old).max(expire_at), expire_at);
        Ok(())
    }

    fn invalidate_user_tokens(
        &self,
        user: &str,
        issued_before: u64,
        expire_at: u64,
    ) -> Result<(), RevocationError> {
        let users = self.users.pin();
        if users.get(user).is_none() {
            self.admit(now())?;
        }
        users.update_or_insert(
            user.into(),
            |(before, exp)| ((*before).max(issued_before), (*exp).max(expire_at)),
            (issued_before, expire_at),
        );
        Ok(())
    }

    fn check(&self, jti: Option<&str>, user: &str, iat: Option<u64>, now: u64) -> Option<Revoked> {
        if let Some(jti) = jti.filter(|j| !j.is_empty()) {
            if self.tokens.pin().get(jti).is_some_and(|exp| *exp > now) {
                return Some(Revoked::Token);
            }
        }
        if self.users.is_empty() {
            return None;
        }
        match self.users.pin().get(user) {
            Some((before, exp)) if *exp > now && iat.is_none_or(|iat| iat < *before) => {
                Some(Revoked::User)
            }
            _ => None,
        }
    }

    fn counts(&self) -> (usize, usize) {
        (self.tokens.len(), self.users.len())
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_token_id_is_refused_until_its_entry_expires() {
        let store = MemoryRevocations::new(10);
        let t = now();
        store.revoke_token("t1", t + 100).unwrap();
        assert_eq!(
            store.check(Some("t1"), "u", Some(t), t),
            Some(Revoked::Token)
        );
        assert_eq!(store.check(Some("t2"), "u", Some(t), t), None);
        assert_eq!(store.check(None, "u", Some(t), t), None);
        assert_eq!(
            store.check(Some("t1"), "u", Some(t), t + 100),
            None,
            "expired"
        );
        // a second revocation keeps the later expiry
        store.revoke_token("t1", t + 10).unwrap();
        assert_eq!(
            store.check(Some("t1"), "u", None, t + 50),
            Some(Revoked::Token)
        );
    }

    #[test]
    fn invalidated_user_refuses_older_tokens_and_tokens_without_iat() {
        let store = MemoryRevocations::new(10);
        let t = now();
        store.invalidate_user_tokens("alice", t, t + 100).unwrap();
        assert_eq!(
            store.check(None, "alice", Some(t - 1), t),
            Some(Revoked::User)
        );
        assert_eq!(store.check(None, "alice", None, t), Some(Revoked::User));
        assert_eq!(
            store.check(None, "alice", Some(t), t),
            None,
            "issued at the cut"
        );
        assert_eq!(store.check(None, "bob", Some(t - 1), t), None);
        assert_eq!(store.check(None, "alice", Some(t - 1), t + 100), None);
        store
            .invalidate_user_tokens("alice", t - 50, t + 200)
            .unwrap();
        assert_eq!(
            store.check(None, "alice", Some(t - 10), t + 150),
            Some(Revoked::User),
            "the later cut and the later expiry are kept"
        );
    }

    #[test]
    fn a_full_store_drops_expired_entries_then_refuses() {
        let store = MemoryRevocations::new(3);
        let t = now();
        store.revoke_token("a", t + 100).unwrap();
        store.revoke_token("b", t.saturating_sub(1)).unwrap(); // already expired
        store.invalidate_user_tokens("u", t, t + 100).unwrap();
        store.revoke_token("c", t + 100).unwrap(); // room made by dropping "b"
        assert_eq!(store.counts(), (2, 1));
        assert_eq!(
            store.revoke_token("d", t + 100),
            Err(RevocationError::Full(3))
        );
        assert!(
            store.revoke_token("a", t + 500).is_ok(),
            "updating an entry needs no room"
        );
        assert_eq!(
            store.invalidate_user_tokens("v", t, t + 100),
            Err(RevocationError::Full(3))
        );
    }
}
