//! A one-shot, multi-waiter readiness flag: set once the owner core has
//! acknowledged this core's interest in a channel, so a subscribe reply is only
//! sent when every later publication is guaranteed to reach this core.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Ready {
    done: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Ready {
    pub fn set(&self) {
        self.done.set(true);
        for w in self.waiters.take() {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.done.get()
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
