//! Who the client is: its address from the socket, or — only when the socket's peer is a
//! trusted proxy (`server.trusted_proxies`) — from the PROXY protocol header or the
//! `X-Forwarded-For` header; and the network prefix it shares with its neighbours
//! (/24 for IPv4, /64 for IPv6, the usual unit of one subscriber or one host).
//!
//! Pure functions, called by `net::conn` and [`super::Limits`]. Invariant: an address
//! from a header is believed only when the peer is trusted; an untrusted peer's
//! `X-Forwarded-For` is never read.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `::ffff:a.b.c.d` (a dual-stack listener's view of an IPv4 client) as plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is inside one of `nets`.
pub fn within(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// The /24 (IPv4) or /64 (IPv6) network holding `ip`.
pub fn prefix(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// The client named by `X-Forwarded-For` values (all headers, in order), as seen by a
/// trusted peer: the right-most address that is not itself a trusted proxy (each proxy
/// appends the address it received the request from, so only the part added by our own
/// proxies can be believed). `None` when no entry parses.
pub fn forwarded_client(values: &[&str], trusted: &[IpNet]) -> Option<IpAddr> {
    let mut last_parsed = None;
    for entry in values.iter().flat_map(|v| v.split(',')).rev() {
        let Some(ip) = parse_entry(entry.trim()) else {
            // garbage inserted by the client: everything left of it is the client's word
            break;
        };
        last_parsed = Some(ip);
        if !within(trusted, ip) {
            return Some(ip);
        }
    }
    last_parsed
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn prefixes_and_mapped_addresses() {
        let p = prefix("203.0.113.77".parse().unwrap());
        assert_eq!(p, "203.0.113.0".parse::<IpAddr>().unwrap());
        assert_eq!(prefix("::ffff:203.0.113.9".parse().unwrap()), p);
        let v6 = prefix("2001:db8:1:2:3:4:5:6".parse().unwrap());
        assert_eq!(v6, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert!(within(
            &nets(&["127.0.0.0/8"]),
            "::ffff:127.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn forwarded_for_believes_only_what_our_proxies_added() {
        let trusted = nets(&["10.0.0.0/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            forwarded_client(&["198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // the client forged an entry on the left: the proxy's right-most entry wins
        assert_eq!(
            forwarded_client(&["1.1.1.1, 198.51.100.7, 10.0.0.2"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded_client(&["1.1.1.1", "198.51.100.7:4444"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded_client(&["[2001:db8::5]:80"], &trusted),
            ip("2001:db8::5")
        );
        assert_eq!(
            forwarded_client(&["junk, 10.0.0.3"], &trusted),
            ip("10.0.0.3")
        );
        assert_eq!(forwarded_client(&["junk"], &trusted), None);
        assert_eq!(forwarded_client(&[], &trusted), None);
    }
}
