//! Zero-downtime hand-over of the listening port to a successor process.
//!
//! Restart procedure (documented in README, "Running in production"):
//! 1. start the new process with `wiresocket serve --takeover` (same config);
//!    it binds the port beside the old one (SO_REUSEPORT) instead of refusing;
//! 2. once it prints its `listening on` line, send SIGTERM to the old one.
//!
//! The draining old process then stops taking connections at once: at drain
//! start, and every [`POLL`] afterwards while it drains, it asks the kernel
//! (`sock_diag`, [`super::listening`]; `/proc/net/tcp{,6}` as a fallback) for a
//! LISTEN socket on its address whose inode is not one of its own listeners. When there is one, it shuts its listeners down
//! (`shutdown(SHUT_RD)`: the sockets leave the SO_REUSEPORT group, so the
//! kernel sends every new connection to the successor) and sets the node's
//! `successor` flag, on which each core's accept loop drops its listener.
//! Connections already queued on the old listeners are reset, or moved to the
//! successor when `net.ipv4.tcp_migrate_req = 1` (Linux 5.14+, see
//! `tuning/`). Its existing clients get 3001 over `drain_window_ms` as in any
//! drain, and reconnect to the successor. Without a successor the listeners
//! stay open, so `/health` keeps answering 503 to load balancers.
//!
//! Why ask the kernel and not wait for a signal or socket from the successor: it
//! needs no protocol between versions, and it sees the successor exactly when
//! the kernel does (a LISTEN socket in the same group).
//!
//! Invariant: the listener fds are only shut down here, never closed; the
//! cores close them only after the `successor` flag is set, which happens
//! after the shutdowns, so an fd is never shut down after its number could
//! have been reused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use crate::node::NodeState;

/// How often a draining process looks for a successor.
pub const POLL: Duration = Duration::from_millis(50);

/// What the drain needs to find a successor and stop listening.
#[derive(Debug)]
pub struct Handover {
    addr: SocketAddr,
    fds: Vec<RawFd>,
    /// Socket inodes of our own listeners.
    ours: Vec<u64>,
}

impl Handover {
    /// Records our listeners (before they move to the executors).
    pub fn new(addr: SocketAddr, listeners: &[socket2::Socket]) -> Handover {
        let fds: Vec<RawFd> = listeners.iter().map(|s| s.as_raw_fd()).collect();
        let ours = fds.iter().filter_map(|fd| inode_of(*fd)).collect();
        Handover { addr, fds, ours }
    }

    /// Whether another socket, not ours, listens on our address (`sock_diag`; `/proc`
    /// where netlink is not available).
    pub fn successor_listening(&self) -> bool {
        let other = |(addr, inode): &(SocketAddr, u64)| {
            !self.ours.contains(inode) && same_address(*addr, self.addr)
        };
        let diag = [libc::AF_INET, libc::AF_INET6]
            .iter()
            .map(|f| super::listening::listeners(*f))
            .collect::<std::io::Result<Vec<_>>>();
        if let Ok(families) = diag {
            return families.iter().flatten().any(other);
        }
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|path| {
            std::fs::read_to_string(path)
                .map(|table| {
                    listeners_in(&table).any(|(addr, inode)| {
                        !self.ours.contains(&inode) && same_address(addr, self.addr)
                    })
                })
                .unwrap_or(false)
        })
    }

    /// Takes our listeners out of the port's SO_REUSEPORT group, then tells the cores.
    fn stop_listening(&self, node: &NodeState) {
        for fd in &self.fds {
            // SAFETY: plain syscall on an fd we own and keep open (see the invariant above).
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
        node.set_successor();
    }
}

/// Called once when the drain starts (on the signal thread): hands the port over now if a
/// successor already listens, else keeps looking from a thread of its own while draining.
pub fn on_drain(node: Arc<NodeState>, handover: Handover) {
    if check(&node, &handover) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            while !node.all_drained() {
                std::thread::sleep(POLL);
                if check(&node, &handover) {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for a successor; keeping the listeners");
    }
}

fn check(node: &NodeState, handover: &Handover) -> bool {
    if !handover.successor_listening() {
        return false;
    }
    handover.stop_listening(node);
    tracing::info!(addr = %handover.addr, "a successor listens on our address: stopped accepting");
    true
}

fn inode_of(fd: RawFd) -> Option<u64> {
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|m| m.ino())
}

/// `(local address, inode)` of each LISTEN row of a `/proc/net/tcp{,6}` table.
fn listeners_in(table: &str) -> impl Iterator<Item = (SocketAddr, u64)> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            return None;
        }
        let (ip, port) = f[1].split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some((SocketAddr::new(parse_ip(ip)?, port), f[9].parse().ok()?))
    })
}

/// The kernel prints each 32-bit word of the address in host byte order.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Same port, and the same address or a wildcard on either side (they would share
/// connections).
fn same_address(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip().is_unspecified()
            || b.ip().is_unspecified()
            || a.ip().to_canonical() == b.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_rows() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0 20 4 30 10 -1\n";
        let rows: Vec<_> = listeners_in(table).collect();
        let local = SocketAddr::from(([127, 0, 0, 1], 8000));
        assert_eq!(rows, vec![(local, 4242)], "established rows are skipped");
        let v6 = "sl local rem st\n 0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 77 1\n";
        let rows: Vec<_> = listeners_in(v6).collect();
        assert_eq!(rows[0], (SocketAddr::from(([0u16; 8], 8000)), 77));
        assert!(same_address(rows[0].0, local));
        assert!(!same_address(
            local,
            SocketAddr::from(([127, 0, 0, 1], 8001))
        ));
        assert!(!same_address(
            local,
            SocketAddr::from(([10, 0, 0, 1], 8000))
        ));
    }

    #[test]
    fn sees_another_listener_but_not_its_own() {
        let ours = crate::net::listener::bind_all("127.0.0.1:0".parse().unwrap(), 2, 16).unwrap();
        let addr = ours[0].local_addr().unwrap().as_socket().unwrap();
        let h = Handover::new(addr, &ours);
        assert_eq!(h.ours.len(), 2);
        assert!(!h.successor_listening());
        let other = crate::net::listener::bind_all(addr, 1, 16).unwrap();
        assert!(h.successor_listening());
        drop(other);
        assert!(!h.successor_listening());
    }
}
