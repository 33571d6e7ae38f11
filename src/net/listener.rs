//! Builds the listening sockets with `socket2`: one per core, all bound to the
//! same address with SO_REUSEPORT so the kernel spreads new connections across
//! cores, with the configured backlog. When the configured port is 0 the first
//! socket picks a free port and the others bind to that same port.
//!
//! Sockets are created on the main thread (so a bind error stops startup
//! before any executor runs) and handed to the executors.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// `n` listening sockets on `addr` sharing one port.
pub fn bind_all(addr: SocketAddr, n: usize, backlog: u32) -> Result<Vec<Socket>, ListenError> {
    let mut sockets = Vec::with_capacity(n);
    let mut addr_now = addr;
    for _ in 0..n {
        let s = bind_one(addr_now, backlog).map_err(|source| ListenError {
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

    #[test]
    fn shares_an_ephemeral_port() {
        let v = bind_all("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        let ports: Vec<u16> = v
            .iter()
            .map(|s| s.local_addr().unwrap().as_socket().unwrap().port())
            .collect();
        assert!(ports[0] != 0 && ports.iter().all(|p| *p == ports[0]));
    }
}
