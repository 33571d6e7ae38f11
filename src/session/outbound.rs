//! The outbound queue of one connection and its vectored, non-blocking write.
//!
//! Frames are shared `Bytes`; a write gathers up to [`MAX_IOV`] of them into
//! one `sendmsg` (MSG_DONTWAIT | MSG_NOSIGNAL), so frames that are ready
//! together leave in one syscall and, usually, one TCP segment. The queue's
//! storage is released whenever it empties, keeping idle sessions small.

use bytes::Bytes;
use std::collections::VecDeque;
use std::os::fd::RawFd;

const MAX_IOV: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Everything was written.
    Done,
    /// The socket buffer is full; wait for writability.
    Blocked,
    /// The connection is broken.
    Failed,
}

/// One non-blocking send of `bytes`: how much went out (0 when the socket is full).
pub fn send_now(fd: RawFd, bytes: &[u8]) -> Result<usize, ()> {
    loop {
        // SAFETY: `bytes` is a live slice for the duration of the call.
        let n = unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock => return Ok(0),
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(()),
        }
    }
}

#[derive(Default)]
pub struct Outbound {
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    front_written: u32,
    /// Bytes of all queued frames (bounded by `outbound_queue_bytes`, validated < 4 GiB).
    queued: u32,
    /// When the queue last made progress or became non-empty ([`crate::runtime::now_ms`]).
    progress_ms: u64,
}

impl Outbound {
    pub fn push(&mut self, frame: Bytes) {
        if self.frames.is_empty() {
            self.progress_ms = crate::runtime::now_ms();
        }
        self.queued += frame.len() as u32;
        self.frames.push_back(frame);
    }

    pub fn queued(&self) -> usize {
        (self.queued - self.front_written) as usize
    }

    pub fn front(&self) -> Option<&[u8]> {
        self.frames
            .front()
            .map(|f| &f[self.front_written as usize..])
    }

    pub fn stalled_for_ms(&self, now_ms: u64) -> Option<u64> {
        (!self.frames.is_empty()).then(|| now_ms.saturating_sub(self.progress_ms))
    }

    pub fn clear(&mut self) {
        *self = Outbound::default();
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        if n > 0 {
            self.progress_ms = crate::runtime::now_ms();
        }
        while n > 0 {
            let front_left = self.frames[0].len() - self.front_written as usize;
            if n < front_left {
                self.front_written += n as u32;
                return;
            }
            n -= front_left;
            self.queued -= self.frames[0].len() as u32;
            self.front_written = 0;
            self.frames.pop_front();
        }
        if self.frames.is_empty() {
            // release the storage: an idle session keeps no queue memory (one allocation
            // per write burst is noise next to the syscall that drained it)
            self.frames = VecDeque::new();
        }
    }

    pub fn flush(&mut self, fd: RawFd) -> FlushOutcome {
        while !self.frames.is_empty() {
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOV];
            let mut count = 0;
            for (i, f) in self.frames.iter().take(MAX_IOV).enumerate() {
                let s = if i == 0 {
                    &f[self.front_written as usize..]
                } else {
                    &f[..]
                };
                iov[i] = libc::iovec {
                    iov_base: s.as_ptr() as *mut _,
                    iov_len: s.len(),
                };
                count += 1;
            }
            // SAFETY: msg points at `count` iovecs over live `Bytes` owned by `self.frames`.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = count;
                libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n < 0 {
                return match std::io::Error::last_os_error().kind() {
                    std::io::ErrorKind::WouldBlock => FlushOutcome::Blocked,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => FlushOutcome::Failed,
                };
            }
            self.advance(n as usize);
        }
        FlushOutcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_frames() {
        let mut o = Outbound::default();
        o.push(Bytes::from_static(b"abc"));
        o.push(Bytes::from_static(b"defg"));
        assert_eq!(o.queued(), 7);
        o.advance(4);
        assert_eq!(o.front(), Some(&b"efg"[..]));
        assert_eq!(o.queued(), 3);
        o.advance(3);
        assert_eq!(o.queued(), 0);
        assert!(o.front().is_none());
    }

    #[test]
    fn flushes_through_a_socketpair() {
        let mut fds = [0; 2];
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        let mut o = Outbound::default();
        o.push(Bytes::from_static(b"hello "));
        o.push(Bytes::from_static(b"world"));
        assert_eq!(o.flush(fds[0]), FlushOutcome::Done);
        let mut buf = [0u8; 32];
        let n = unsafe { libc::read(fds[1], buf.as_mut_ptr() as *mut _, 32) };
        assert_eq!(&buf[..n as usize], b"hello world");
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
