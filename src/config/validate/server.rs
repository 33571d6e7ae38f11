//! Checks of `[server]`: addresses, limits, trusted proxies, allowed origins.

use super::positive;
use crate::config::{ConfigError, ServerConfig};

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.cores.check_shape()?;
        positive("server.backlog", self.backlog.into())?;
        positive("server.max_connections", self.max_connections as u64)?;
        positive(
            "server.max_pending_connections_per_core",
            self.max_pending_connections_per_core as u64,
        )?;
        positive("server.header_timeout_ms", self.header_timeout_ms)?;
        positive("server.body_timeout_ms", self.body_timeout_ms)?;
        positive("server.max_header_bytes", self.max_header_bytes as u64)?;
        positive("server.max_body_bytes", self.max_body_bytes as u64)?;
        positive("server.retry_after_max_s", self.retry_after_max_s.into())?;
        positive("server.ring_depth", self.ring_depth as u64)?;
        positive("server.drain_batches", self.drain_batches as u64)?;
        self.validate_edge()?;
        if self.retry_after_min_s > self.retry_after_max_s {
            return Err(ConfigError::invalid(
                "server.retry_after_min_s",
                format!(
                    "{} is above server.retry_after_max_s ({})",
                    self.retry_after_min_s, self.retry_after_max_s
                ),
            ));
        }
        Ok(())
    }
}

/// Parses CIDR entries (`10.0.0.0/8`, or a bare address for one host), as in
/// `server.trusted_proxies` and `server.limits_exempt`.
pub fn parse_nets(entries: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .iter()
        .map(|e| {
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{e}` is not an address or CIDR block"))
        })
        .collect()
}

/// An `allowed_origins` entry: `*`, or `scheme://host[:port]` with at most one `*`.
pub fn check_origin_pattern(p: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    let Some((scheme, rest)) = p.split_once("://") else {
        return Err(format!("`{p}` is not `*` or `scheme://host[:port]`"));
    };
    if scheme.is_empty() || rest.is_empty() || rest.contains('/') || p.matches('*').count() > 1 {
        return Err(format!(
            "`{p}` must be `scheme://host[:port]` with at most one `*` and no path"
        ));
    }
    Ok(())
}

impl ServerConfig {
    /// Origins, proxies, exemptions, limits and the internal listener.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        for o in &self.allowed_origins {
            check_origin_pattern(o)
                .map_err(|reason| ConfigError::invalid("server.allowed_origins", reason))?;
        }
        parse_nets(&self.trusted_proxies)
            .map_err(|reason| ConfigError::invalid("server.trusted_proxies", reason))?;
        parse_nets(&self.limits_exempt)
            .map_err(|reason| ConfigError::invalid("server.limits_exempt", reason))?;
        positive("server.limits_table_size", self.limits_table_size as u64)?;
        if self.limits_table_size > 1 << 24 {
            return Err(ConfigError::invalid(
                "server.limits_table_size",
                "at most 16777216 (each table is allocated at this size)",
            ));
        }
        for (rate, burst, field) in [
            (
                self.connect_rate_per_ip,
                self.connect_burst_per_ip,
                "server.connect_burst_per_ip",
            ),
            (
                self.connect_rate_per_node,
                self.connect_burst_per_node,
                "server.connect_burst_per_node",
            ),
            (
                self.publish_rate_per_user,
                self.publish_burst_per_user,
                "server.publish_burst_per_user",
            ),
            (
                self.publish_rate_per_channel,
                self.publish_burst_per_channel,
                "server.publish_burst_per_channel",
            ),
        ] {
            if rate > 0 && burst == 0 {
                return Err(ConfigError::invalid(
                    field,
                    "must be greater than 0 when its rate is set",
                ));
            }
            if burst > 4_000_000 {
                return Err(ConfigError::invalid(field, "at most 4000000"));
            }
        }
        if let Some(internal) = self.internal_listen {
            if internal.port() != 0 && internal.port() == self.listen.port() {
                return Err(ConfigError::invalid(
                    "server.internal_listen",
                    format!("must use another port than server.listen ({})", self.listen),
                ));
            }
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "server.tls.key",
                    "must be set with server.tls.cert",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "server.tls.cert",
                    "must be set with server.tls.key",
                ))
            }
            _ => {}
        }
        positive(
            "server.tls.handshake_timeout_ms",
            self.tls.handshake_timeout_ms,
        )?;
        Ok(())
    }
}
