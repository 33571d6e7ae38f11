//! The channels one session is subscribed to, with what each subscription
//! needs after the subscribe: its token expiry, and whether leaving must remove
//! a presence entry or announce a leave.
//!
//! Stored as an exact-size boxed slice: most clients hold one or two
//! subscriptions and a `Vec` would over-allocate in every idle session.

use std::cell::RefCell;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Subscription {
    pub channel: Arc<str>,
    /// Unix seconds when the subscription token expires (0: never).
    pub expires_at: u32,
    /// A presence entry was added for it.
    pub presence: bool,
    /// Leaving announces a `leave` to the channel.
    pub join_leave: bool,
    /// The stream position at subscribe (offset, epoch), where the channel keeps history;
    /// the position reached since is the hub's (`Hub::top_offset`).
    pub position: Option<(u64, Arc<str>)>,
    /// A document held in its pin (`region`): leaving releases the hold.
    pub pinned: bool,
}

#[derive(Default)]
pub struct Subscriptions(RefCell<Box<[Subscription]>>);

impl Subscriptions {
    pub fn contains(&self, channel: &str) -> bool {
        self.0.borrow().iter().any(|s| *s.channel == *channel)
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, channel: &str) -> Option<Subscription> {
        self.0
            .borrow()
            .iter()
            .find(|s| *s.channel == *channel)
            .cloned()
    }

    pub fn add(&self, sub: Subscription) {
        let mut subs = self.0.borrow_mut();
        let mut v = std::mem::take(&mut *subs).into_vec();
        v.reserve_exact(1);
        v.push(sub);
        *subs = v.into_boxed_slice();
    }

    /// Removes and returns the subscription to `channel`, if any.
    pub fn remove(&self, channel: &str) -> Option<Subscription> {
        let mut subs = self.0.borrow_mut();
        let found = subs.iter().find(|s| *s.channel == *channel).cloned()?;
        *subs = subs
            .iter()
            .filter(|s| *s.channel != *channel)
            .cloned()
            .collect();
        Some(found)
    }

    /// Updates a subscription's fields in place; false when not subscribed.
    pub fn update(&self, channel: &str, f: impl FnOnce(&mut Subscription)) -> bool {
        let mut subs = self.0.borrow_mut();
        match subs.iter_mut().find(|s| *s.channel == *channel) {
            Some(s) => {
                f(s);
                true
            }
            None => false,
        }
    }

    /// Runs `f` with every subscription (for building the session record).
    pub fn with_all<R>(&self, f: impl FnOnce(&[Subscription]) -> R) -> R {
        f(&self.0.borrow())
    }

    pub fn take_all(&self) -> Vec<Subscription> {
        std::mem::take(&mut *self.0.borrow_mut()).into_vec()
    }

    /// Channels whose subscription token expired before `unix_now`.
    pub fn expired(&self, unix_now: u64) -> Vec<Arc<str>> {
        self.0
            .borrow()
            .iter()
            .filter(|s| s.expires_at != 0 && unix_now > s.expires_at as u64)
            .map(|s| s.channel.clone())
            .collect()
    }

    /// Channels whose subscription added a presence entry.
    pub fn present(&self) -> Vec<Arc<str>> {
        self.0
            .borrow()
            .iter()
            .filter(|s| s.presence)
            .map(|s| s.channel.clone())
            .collect()
    }

    /// Whether any subscription expires before `unix_now` (cheap check for the sweep).
    pub fn any_expired(&self, unix_now: u64) -> bool {
        self.0
            .borrow()
            .iter()
            .any(|s| s.expires_at != 0 && unix_now > s.expires_at as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(ch: &str, exp: u32) -> Subscription {
        Subscription {
            channel: ch.into(),
            expires_at: exp,
            presence: false,
            join_leave: false,
            position: None,
            pinned: false,
        }
    }

    #[test]
    fn add_remove_expire() {
        let s = Subscriptions::default();
        s.add(sub("a", 0));
        s.add(sub("b", 100));
        assert!(s.contains("a") && s.len() == 2);
        assert_eq!(s.expired(101), vec![Arc::<str>::from("b")]);
        assert!(s.update("b", |x| x.expires_at = 200));
        assert!(!s.any_expired(101));
        assert!(s.remove("a").is_some() && s.remove("a").is_none());
        assert_eq!(s.take_all().len(), 1);
        assert!(s.is_empty());
    }
}
