//! The outbound queue of one connection and its vectored, non-blocking write.
//!
//! Frames are shared `Bytes`; a write gathers up to [`MAX_IOV`] of them into
//! one `sendmsg` (MSG_DONTWAIT | MSG_NOSIGNAL), so frames that are ready
//! together leave in one syscall and, usually, one TCP segment. The queue's
//! storage is released whenever it empties, keeping idle sessions small.
//!
//! Control frames count against the same byte budget as data. Pongs are
//! coalesced: RFC 6455 §5.5.3 lets an endpoint answer only the most recent ping,
//! so at most one not-yet-started pong waits here, replaced by each newer one (a
//! client that floods pings without reading holds one pong, not gigabytes).
//! Byte counters are 64-bit.
//!
//! Invariant: a frame is either written whole or not at all, except the front
//! frame once its first byte left; [`Outbound::abandon`] keeps that partial frame so
//! a final close frame is never spliced into the middle of another frame.

use bytes::Bytes;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd};

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
pub fn send_now(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, ()> {
    loop {
        // SAFETY: `bytes` is a live slice for the duration of the call.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
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
    /// A pong not yet started; written at the next frame boundary, replaced by newer pongs
    /// (boxed: rare, and this struct is in every idle session).
    pong: Option<Box<Bytes>>,
    /// Bytes of the front frame already written (frames are below 4 GiB: message limits).
    front_written: u32,
    /// The front frame is a pong moved there from `pong` (replaceable while unstarted).
    front_is_pong: bool,
    /// Bytes of all queued frames and the pending pong, written or not.
    queued: u64,
    /// When the queue last made progress or became non-empty (`exec::now_ms`).
    progress_ms: u64,
}

impl Outbound {
    pub fn push(&mut self, frame: Bytes) {
        if self.is_empty() {
            self.progress_ms = crate::exec::now_ms();
        }
        self.queued += frame.len() as u64;
        self.frames.push_back(frame);
    }

    /// Queues a pong, replacing a pending one that has not started.
    pub fn push_pong(&mut self, frame: Bytes) {
        if self.is_empty() {
            self.progress_ms = crate::exec::now_ms();
        }
        if self.front_is_pong && self.front_written == 0 {
            // the previous pong waits unstarted at the front: answer the latest ping instead
            let old = std::mem::replace(&mut self.frames[0], frame);
            self.queued -= old.len() as u64;
            self.queued += self.frames[0].len() as u64;
            return;
        }
        if let Some(old) = self.pong.replace(Box::new(frame)) {
            self.queued -= old.len() as u64;
        }
        self.queued += self.pong.as_ref().map_or(0, |p| p.len() as u64);
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.pong.is_none()
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> u64 {
        self.queued - u64::from(self.front_written)
    }

    /// The unsent rest of the front frame, for an asynchronous write. From here on the
    /// front frame counts as started (the writer may hold its bytes), so a newer pong no
    /// longer replaces it.
    pub fn front(&mut self) -> Option<&[u8]> {
        self.take_pong_at_boundary();
        self.front_is_pong = false;
        self.frames
            .front()
            .map(|f| &f[self.front_written as usize..])
    }

    pub fn stalled_for_ms(&self, now_ms: u64) -> Option<u64> {
        (!self.is_empty()).then(|| now_ms.saturating_sub(self.progress_ms))
    }

    pub fn clear(&mut self) {
        *self = Outbound::default();
    }

    /// Drops everything not yet started, keeping the rest of a partly written front
    /// frame (so the peer can still parse a close frame queued after it).
    pub fn abandon(&mut self) {
        let keep = (self.front_written > 0)
            .then(|| self.frames.pop_front())
            .flatten();
        let (written, was_pong) = (self.front_written, self.front_is_pong);
        self.clear();
        if let Some(front) = keep {
            self.push(front);
            self.front_written = written;
            self.front_is_pong = was_pong;
        }
    }

    /// Moves the pending pong to the front when no frame is partly written.
    fn take_pong_at_boundary(&mut self) {
        if self.front_written == 0 {
            if let Some(p) = self.pong.take() {
                // its bytes stay counted in `queued`: it only moves into the frame queue
                self.frames.push_front(*p);
                self.front_is_pong = true;
            }
        }
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        if n > 0 {
            self.progress_ms = crate::exec::now_ms();
        }
        while n > 0 {
            let front_left = self.frames[0].len() - self.front_written as usize;
            if n < front_left {
                self.front_written += n as u32;
                return;
            }
            n -= front_left;
            self.queued -= self.frames[0].len() as u64;
            self.front_written = 0;
            self.front_is_pong = false;
            self.frames.pop_front();
        }
        if self.frames.is_empty() {
            // release the storage: an idle session keeps no queue memory (one allocation
            // per write burst is noise next to the syscall that drained it)
            self.frames = VecDeque::new();
        }
    }

    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> FlushOutcome {
        loop {
            self.take_pong_at_boundary();
            if self.frames.is_empty() {
                return FlushOutcome::Done;
            }
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
                libc::sendmsg(
                    fd.as_raw_fd(),
                    &msg,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

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
    fn pongs_coalesce_and_wait_for_a_frame_boundary() {
        let mut o = Outbound::default();
        o.push(Bytes::from_static(b"data1"));
        o.advance(2); // "data1" partly written
        for i in 0..1000u32 {
            o.push_pong(Bytes::from(format!("pong{i:04}")));
        }
        assert_eq!(o.queued(), 3 + 8, "one pong kept, not a thousand");
        assert_eq!(
            o.front(),
            Some(&b"ta1"[..]),
            "the partial frame finishes first"
        );
        o.advance(3);
        assert_eq!(
            o.front(),
            Some(&b"pong0999"[..]),
            "then only the latest pong"
        );
        o.advance(8);
        assert_eq!(o.queued(), 0);
    }

    #[test]
    fn an_unstarted_front_pong_is_replaced_between_synchronous_flushes() {
        let mut fds = [0; 2];
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        let (a, _b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let fd = std::os::fd::AsFd::as_fd(&a);
        let mut o = Outbound::default();
        o.push(Bytes::from(vec![b'x'; 1 << 20])); // fills the socket: flushes block
        assert_eq!(o.flush(fd), FlushOutcome::Blocked);
        let started = o.queued();
        for i in 0..100u32 {
            o.push_pong(Bytes::from(format!("p{i:03}")));
            let _ = o.flush(fd);
        }
        assert!(
            o.queued() <= started + 2 * 4,
            "at most two pongs wait, not a hundred"
        );
    }

    #[test]
    fn abandon_keeps_only_a_partly_written_front() {
        let mut o = Outbound::default();
        o.push(Bytes::from_static(b"0123456789"));
        o.push(Bytes::from_static(b"next"));
        o.abandon();
        assert_eq!(o.queued(), 0, "nothing started: all dropped");
        o.push(Bytes::from_static(b"0123456789"));
        o.push(Bytes::from_static(b"next"));
        o.advance(4);
        o.abandon();
        assert_eq!(o.front(), Some(&b"456789"[..]));
        assert_eq!(o.queued(), 6);
    }

    #[test]
    fn flushes_through_a_socketpair() {
        let mut fds = [0; 2];
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut o = Outbound::default();
        o.push(Bytes::from_static(b"hello "));
        o.push_pong(Bytes::from_static(b"P"));
        o.push(Bytes::from_static(b"world"));
        assert_eq!(o.flush(std::os::fd::AsFd::as_fd(&a)), FlushOutcome::Done);
        let mut buf = [0u8; 32];
        let n = unsafe { libc::read(b.as_raw_fd(), buf.as_mut_ptr() as *mut _, 32) };
        assert_eq!(&buf[..n as usize], b"Phello world");
    }
}
