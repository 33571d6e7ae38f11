//! The core's table of open sessions (a slab), and the node-unique session ids.
//!
//! Owned by the session [`super::Env`]; the driver registers a session when a
//! WebSocket opens and removes it when the connection has ended; the heartbeat
//! sweep and the drain walk it.

use slab::Slab;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::{Flusher, Session};
use crate::net::socket::Socket;

pub struct SessionTable {
    slab: RefCell<Slab<Rc<Session>>>,
    next_id: Cell<u64>,
}

impl SessionTable {
    pub fn new(core: usize) -> Self {
        SessionTable {
            slab: RefCell::new(Slab::new()),
            // core index in the top byte, a random start below: ids are unique per node
            next_id: Cell::new(((core as u64) << 56) | (fastrand::u64(..) >> 16)),
        }
    }

    pub fn open(&self, sock: Socket, connect_by_ms: u64, flusher: Rc<Flusher>) -> Rc<Session> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut slab = self.slab.borrow_mut();
        let entry = slab.vacant_entry();
        let s = Rc::new(Session::new(
            id,
            entry.key() as u32,
            sock,
            connect_by_ms,
            flusher,
        ));
        entry.insert(s.clone());
        s
    }

    pub fn remove(&self, s: &Session) {
        self.slab.borrow_mut().try_remove(s.key as usize);
    }

    pub fn len(&self) -> usize {
        self.slab.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every session (the table must not change meanwhile).
    pub fn for_each(&self, mut f: impl FnMut(&Rc<Session>)) {
        for (_, s) in self.slab.borrow().iter() {
            f(s);
        }
    }

    /// The sessions open now.
    pub fn snapshot(&self) -> Vec<Rc<Session>> {
        self.slab.borrow().iter().map(|(_, s)| s.clone()).collect()
    }
}
