//! Builds the listening sockets with `socket2`: one per core, all bound to the
//! same address with SO_REUSEPORT so the kernel spreads new connections across
//! cores, with the configured backlog. When the configured port is 0 the first
//! socket picks a free port and the others bind to that same port.
//!
//! One server per port: SO_REUSEPORT would also let a second `wiresocket serve`
//! bind the same port, and the kernel would then split connections between two
//! unrelated servers. So before binding, [`ensure_free`] probes the address
//! with a socket that has SO_REUSEADDR but not SO_REUSEPORT: on Linux that bind
//! fails with EADDRINUSE exactly when something listens there (connections in
//! TIME_WAIT do not count). Startup then stops with [`ListenError::InUse`],
//! unless the operator asked for a hand-over (`serve --takeover`, see
//! `net::handover`). A listener that goes away within `server.port_wait_ms` is
//! waited for: a predecessor that just exited may hold its listening sockets a
//! moment longer, while the kernel tears down its io_uring (a restart on the
//! same port, seen in `tests/rolling_restart.rs`). Port 0 needs no probe. Two
//! servers started at the same
//! instant can both pass the probe; the guard is against the common mistake,
//! not a lock.
//!
//! Sockets are created on the main thread (so a bind error stops startup
//! before any executor runs) and handed to the executors.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "another process already listens on {addr}; refusing to share the port (the kernel \
         would split new connections between the two servers). Stop it first, or, to replace \
         it without downtime, start this one with `wiresocket serve --takeover` and then send \
         SIGTERM to the old one"
    )]
    InUse { addr: SocketAddr },
}

/// Fails with [`ListenError::InUse`] when another socket listens on `addr` and still does
/// after `wait` (port 0: never).
pub fn ensure_free(addr: SocketAddr, wait: std::time::Duration) -> Result<(), ListenError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = || -> std::io::Result<()> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(false)?;
        }
        s.bind(&addr.into())
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        match probe() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() >= deadline {
                    return Err(ListenError::InUse { addr });
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(source) => return Err(ListenError::Bind { addr, source }),
        }
    }
}

/// `n` listening sockets on `addr` sharing one port.
pub fn bind_all(addr: SocketAddr, n: usize, backlog: u32) -> Result<Vec<Socket>, ListenError> {
    let mut sockets = Vec::with_capacity(n);
    let mut addr_now = addr;
    for _ in 0..n {
        let s = bind_one(addr_now, backlog).map_err(|source| ListenError::Bind {
            addr: addr_now,
            source,
        })?;
        if addr_now.port() == 0 {
            addr_now = s
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
        }
        sockets.push(s);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?; // inherited by accepted sockets on Linux
    s.set_nonblocking(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_an_ephemeral_port() {
        let v = bind_all("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        let ports: Vec<u16> = v
            .iter()
            .map(|s| s.local_addr().unwrap().as_socket().unwrap().port())
            .collect();
        assert!(ports[0] != 0 && ports.iter().all(|p| *p == ports[0]));
    }

    #[test]
    fn probe_sees_a_listener_but_not_a_closed_one() {
        let v = bind_all("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap();
        let addr = v[0].local_addr().unwrap().as_socket().unwrap();
        let now = Duration::ZERO;
        assert!(matches!(
            ensure_free(addr, now),
            Err(ListenError::InUse { .. })
        ));
        let msg = ensure_free(addr, now).unwrap_err().to_string();
        assert!(
            msg.contains(&addr.to_string()) && msg.contains("--takeover"),
            "{msg}"
        );
        // a wildcard listener on the same port conflicts too
        let any = SocketAddr::from(([0, 0, 0, 0], addr.port()));
        assert!(ensure_free(any, now).is_err());
        drop(v);
        ensure_free(addr, now).unwrap();
        ensure_free("127.0.0.1:0".parse().unwrap(), now).unwrap();
    }

    #[test]
    fn a_listener_that_goes_away_within_the_wait_is_waited_for() {
        let v = bind_all("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap();
        let addr = v[0].local_addr().unwrap().as_socket().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(v);
        });
        let started = std::time::Instant::now();
        ensure_free(addr, Duration::from_secs(10)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
        closer.join().unwrap();
        // one that stays is refused once the wait is over
        let v = bind_all(addr, 1, 16).unwrap();
        assert!(matches!(
            ensure_free(addr, Duration::from_millis(200)),
            Err(ListenError::InUse { .. })
        ));
        drop(v);
    }
}
