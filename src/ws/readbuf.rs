//! Per-core pool of read buffers, lent to a connection only while bytes are in
//! flight (an idle connection holds none). Buffers keep their full length
//! (zeroed once) so reads go straight into them; `filled` says how much is data.

use std::cell::RefCell;

/// A pooled read buffer: `data[..filled]` holds unread bytes.
pub struct ReadBuf {
    pub data: Vec<u8>,
    pub filled: usize,
}

pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

impl BufferPool {
    pub fn new(size: usize, keep: usize) -> Self {
        BufferPool {
            free: RefCell::new(Vec::new()),
            size: size.max(1024),
            keep,
        }
    }

    pub fn take(&self) -> ReadBuf {
        let data = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; self.size]);
        ReadBuf { data, filled: 0 }
    }

    /// Returns a buffer; oversized (grown for a big frame) or surplus buffers are freed.
    pub fn put(&self, buf: ReadBuf) {
        let mut free = self.free.borrow_mut();
        if buf.data.len() == self.size && free.len() < self.keep {
            free.push(buf.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let p = BufferPool::new(2048, 1);
        let a = p.take();
        let b = p.take();
        assert_eq!(a.data.len(), 2048);
        p.put(a);
        p.put(b);
        assert_eq!(p.free.borrow().len(), 1);
        let mut big = p.take();
        big.data.resize(10_000, 0);
        p.put(big);
        assert_eq!(p.free.borrow().len(), 0);
    }
}
