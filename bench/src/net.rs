//! Target and source addressing: parses `ws://` / `http://` URLs, refuses any target outside the
//! loopback range (127.0.0.0/8, ::1), expands `--src-ips A-B` ranges, and opens TCP connections
//! bound to a chosen source address with `IP_BIND_ADDRESS_NO_PORT` so the kernel picks the
//! ephemeral port at connect time per 4-tuple (ports are not exhausted at tens of thousands of
//! sockets). Used by `ws` (subscribers) and `publisher` (HTTP API).

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use tokio::net::{TcpSocket, TcpStream};

/// A parsed `ws://host:port/path` or `http://host:port/path` target on this machine.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as written, for the `Host` header.
    pub host_header: String,
    pub path: String,
}

impl Target {
    /// Parses a URL with scheme `ws` or `http`; the resolved address must be loopback.
    pub fn parse(url: &str) -> Result<Target> {
        let (scheme, rest) = url.split_once("://").context("URL needs a scheme")?;
        let default_port = match scheme {
            "ws" | "http" => 80,
            other => bail!("unsupported scheme {other:?} (only ws:// and http:// on loopback)"),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {with_port}"))?
            .next()
            .context("host resolved to no address")?;
        if !addr.ip().is_loopback() {
            bail!("refusing non-loopback target {addr}: benchmarks only talk to 127.0.0.0/8");
        }
        Ok(Target {
            addr,
            host_header: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// Parses a comma-separated list of URLs (a cluster: several nodes of one system).
    pub fn parse_list(urls: &str) -> Result<Vec<Target>> {
        let list: Vec<Target> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Target::parse)
            .collect::<Result<_>>()?;
        if list.is_empty() {
            bail!("no URL in {urls:?}");
        }
        Ok(list)
    }
}

/// Expands `127.0.0.2-127.0.0.200` (or one address) into the list of loopback source addresses.
pub fn parse_src_ips(spec: &str) -> Result<Vec<Ipv4Addr>> {
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    let a: Ipv4Addr = a.trim().parse().with_context(|| format!("bad IP {a:?}"))?;
    let b: Ipv4Addr = b.trim().parse().with_context(|| format!("bad IP {b:?}"))?;
    let (lo, hi) = (u32::from(a), u32::from(b));
    if lo > hi {
        bail!("empty source range {spec}");
    }
    if !a.is_loopback() || !b.is_loopback() {
        bail!("source addresses must be in 127.0.0.0/8, got {spec}");
    }
    Ok((lo..=hi).map(Ipv4Addr::from).collect())
}

/// Connects to `target`, bound to `src` first when given (port chosen at connect time). A
/// `rcvbuf` fixes the receive buffer (and so the advertised window) before connecting, as for a
/// client on a slow link.
pub async fn connect(
    target: SocketAddr,
    src: Option<Ipv4Addr>,
    rcvbuf: Option<u32>,
) -> Result<TcpStream> {
    let sock = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let (Some(ip), true) = (src, target.is_ipv4()) {
        set_bind_no_port(&sock)?;
        sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n)?;
    }
    let stream = sock.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn set_bind_no_port(sock: &TcpSocket) -> Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: valid fd owned by `sock`; option value is a c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!(
            "IP_BIND_ADDRESS_NO_PORT: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_url() {
        let t = Target::parse("ws://127.0.0.1:8000/connection/websocket").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(t.path, "/connection/websocket");
        assert_eq!(t.host_header, "127.0.0.1:8000");
    }

    #[test]
    fn refuses_non_loopback() {
        assert!(Target::parse("ws://10.0.0.1:8000/x").is_err());
        assert!(Target::parse("https://127.0.0.1/x").is_err());
    }

    #[test]
    fn expands_ranges() {
        let v = parse_src_ips("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2], Ipv4Addr::new(127, 0, 0, 4));
        assert!(parse_src_ips("192.168.0.1-192.168.0.2").is_err());
        assert_eq!(parse_src_ips("127.0.0.9").unwrap().len(), 1);
    }
}
