//! A one-shot, multi-waiter readiness flag carrying an outcome: set once (with
//! `Ok(())` or the error that prevented readiness), awaited by any number of
//! tasks on the same core. The hub uses it for "this core's interest in a
//! channel is acknowledged by the owner and the node's engine subscription is in
//! place" — or failed, in which case every waiting subscribe is rolled back.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

pub struct Ready<E: Clone> {
    outcome: RefCell<Option<Result<(), E>>>,
    waiters: RefCell<Vec<Waker>>,
}

impl<E: Clone> Default for Ready<E> {
    fn default() -> Self {
        Ready {
            outcome: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
        }
    }
}

impl<E: Clone> Ready<E> {
    /// Sets the outcome (the first one wins) and wakes every waiter.
    pub fn set(&self, outcome: Result<(), E>) {
        {
            let mut o = self.outcome.borrow_mut();
            if o.is_some() {
                return;
            }
            *o = Some(outcome);
        }
        for w in self.waiters.take() {
            w.wake();
        }
    }

    pub fn outcome(&self) -> Option<Result<(), E>> {
        self.outcome.borrow().clone()
    }

    pub async fn wait(&self) -> Result<(), E> {
        poll_fn(|cx| match self.outcome() {
            Some(o) => Poll::Ready(o),
            None => {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_outcome_wins_and_all_waiters_see_it() {
        let r: Ready<&'static str> = Ready::default();
        assert!(r.outcome().is_none());
        r.set(Err("engine down"));
        r.set(Ok(()));
        assert_eq!(r.outcome(), Some(Err("engine down")));
        assert_eq!(futures_lite::future::block_on(r.wait()), Err("engine down"));
    }
}
