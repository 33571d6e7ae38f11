//! The core's deferred writer: sessions that received frames are marked dirty,
//! and one task per core writes them all after the current burst of work, so
//! several publications ready together leave in one syscall per client.
//! A session whose socket is full is handed to its own driver, which waits for
//! writability; a session that is closing or closed is skipped (its driver
//! owns the last writes, and a closed session's socket is shut down).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::metrics::CoreMetrics;

use super::{FlushOutcome, Phase, Session};
use crate::exec::Notify;
use crate::ws::close::Disconnect;

pub struct Flusher {
    dirty: RefCell<Vec<Rc<Session>>>,
    notify: Notify,
    /// `websocket.outbound_queue_bytes`: the per-session queue cap enforced at enqueue.
    pub queue_limit: u64,
    /// The core's counters (frames queued, bytes written).
    pub metrics: Arc<CoreMetrics>,
}

impl Flusher {
    pub fn new(queue_limit: usize, metrics: Arc<CoreMetrics>) -> Self {
        Flusher {
            dirty: RefCell::default(),
            notify: Notify::default(),
            queue_limit: queue_limit as u64,
            metrics,
        }
    }

    pub fn mark(&self, s: Rc<Session>) {
        self.dirty.borrow_mut().push(s);
        self.notify.notify();
    }

    /// The flusher task body; runs for the life of the core.
    pub async fn run(self: Rc<Self>) {
        let mut batch = Vec::new();
        loop {
            self.notify.wait().await;
            std::mem::swap(&mut batch, &mut *self.dirty.borrow_mut());
            for (i, s) in batch.drain(..).enumerate() {
                s.clear_dirty();
                // a closing session is written by its driver only; a closed one never
                if s.is_blocked()
                    || s.close_requested().is_some()
                    || matches!(s.phase.get(), Phase::Closing | Phase::Closed)
                {
                    continue;
                }
                match s.flush() {
                    FlushOutcome::Done => {}
                    FlushOutcome::Blocked => {
                        s.set_blocked(true);
                        s.wake();
                    }
                    FlushOutcome::Failed => s.request_close(Disconnect::WRITE_ERROR),
                }
                if i % 64 == 63 {
                    // a flush to thousands of sockets must not hold up reads and the API
                    crate::exec::yield_if_needed().await;
                }
            }
        }
    }
}
