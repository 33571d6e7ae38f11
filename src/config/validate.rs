//! Value checks for a loaded [`Config`]: ranges, cross-field consistency, known algorithms.
//!
//! Called by the CLI after loading (and after it injects dev secrets), before anything starts;
//! `check-config` reports its verdict. Invariant: a config that passes can be handed to the
//! runtime without further checks except `server.cores`, which `CoresSpec::resolve` checks
//! against the machine. Every error names the offending field by its dotted key.

use super::{
    ApiConfig, AuthConfig, ChannelOptions, ChannelsConfig, Config, ConfigError, EngineConfig,
    EngineKind, LogConfig, MeshConfig, RedisConfig, RedisSentinelConfig, ServerConfig,
    WebsocketConfig,
};

/// Token algorithms the verifier accepts in `auth.algorithms` (issue 9's allow-list).
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// Largest accepted `auth.leeway_s` (one day): more would make `exp` meaningless.
const MAX_LEEWAY_S: u64 = 86_400;

impl Config {
    /// Checks every section; returns the first problem found, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.websocket.validate()?;
        self.auth.validate()?;
        self.api.validate()?;
        self.channels.validate()?;
        self.engine.validate()?;
        self.shedding.validate()?;
        self.regions.validate(&self.channels)?;
        self.mesh.validate()?;
        self.log.validate()
    }
}

impl crate::config::SheddingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let fraction = |v: f64| v > 0.0 && v <= 1.0;
        if !fraction(self.high_water) {
            return Err(ConfigError::invalid(
                "shedding.high_water",
                "must be in (0, 1]",
            ));
        }
        if !fraction(self.low_water) || self.low_water >= self.high_water {
            return Err(ConfigError::invalid(
                "shedding.low_water",
                "must be in (0, 1] and below shedding.high_water",
            ));
        }
        positive("shedding.check_interval_ms", self.check_interval_ms)
    }
}

fn positive(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(field, "must be greater than 0"));
    }
    Ok(())
}

impl ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

/// Largest per-connection queue: sessions count queued bytes in 32 bits.
pub const MAX_QUEUE_BYTES: usize = 1 << 30;

impl WebsocketConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("websocket.max_message_bytes", self.max_message_bytes as u64)?;
        positive(
            "websocket.outbound_queue_bytes",
            self.outbound_queue_bytes as u64,
        )?;
        positive("websocket.write_timeout_ms", self.write_timeout_ms)?;
        positive("websocket.ping_interval_ms", self.ping_interval_ms)?;
        positive("websocket.pong_timeout_ms", self.pong_timeout_ms)?;
        positive("websocket.read_buffer_bytes", self.read_buffer_bytes as u64)?;
        positive("websocket.buffer_pool_size", self.buffer_pool_size as u64)?;
        positive(
            "websocket.subscribe_buffer_frames",
            self.subscribe_buffer_frames as u64,
        )?;
        if self.outbound_queue_bytes > MAX_QUEUE_BYTES {
            return Err(ConfigError::invalid(
                "websocket.outbound_queue_bytes",
                format!(
                    "{} is above the maximum of {MAX_QUEUE_BYTES} (1 GiB)",
                    self.outbound_queue_bytes
                ),
            ));
        }
        if self.max_message_bytes > self.outbound_queue_bytes {
            return Err(ConfigError::invalid(
                "websocket.max_message_bytes",
                format!(
                    "{} is above websocket.outbound_queue_bytes ({}): one message must fit the queue",
                    self.max_message_bytes, self.outbound_queue_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid("auth.algorithms", "list is empty"));
        }
        if let Some(alg) = self
            .algorithms
            .iter()
            .find(|a| !SUPPORTED_ALGORITHMS.contains(&a.as_str()))
        {
            return Err(ConfigError::invalid(
                "auth.algorithms",
                format!("unsupported algorithm {alg:?} (supported: {SUPPORTED_ALGORITHMS:?})"),
            ));
        }
        if let Some(i) = self.hmac_secrets.iter().position(|s| s.is_empty()) {
            return Err(ConfigError::invalid(
                format!("auth.hmac_secrets[{i}]"),
                "empty: an empty HMAC key would let anyone sign tokens",
            ));
        }
        if let Some(i) = self.public_keys.iter().position(|p| p.trim().is_empty()) {
            return Err(ConfigError::invalid(
                format!("auth.public_keys[{i}]"),
                "empty path",
            ));
        }
        let has_secret = !self.hmac_secret.is_empty() || !self.hmac_secrets.is_empty();
        let needs_secret = self.algorithms.iter().any(|a| a.starts_with("HS"));
        if needs_secret && !has_secret && !self.allow_anonymous {
            return Err(ConfigError::invalid(
                "auth.hmac_secret",
                "empty, but HS* algorithms are allowed and allow_anonymous is false: no client could connect",
            ));
        }
        let has_public = !self.public_keys.is_empty() || self.jwks_url.is_some();
        if let Some(alg) = self.algorithms.iter().find(|a| !a.starts_with("HS")) {
            if !has_public {
                return Err(ConfigError::invalid(
                    "auth.algorithms",
                    format!("{alg} is allowed but neither auth.public_keys nor auth.jwks_url is set: no key could verify it"),
                ));
            }
        }
        if let Some(url) = &self.jwks_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "auth.jwks_url",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            positive("auth.jwks_refresh_s", self.jwks_refresh_s)?;
            positive("auth.jwks_timeout_ms", self.jwks_timeout_ms)?;
            positive("auth.jwks_max_bytes", self.jwks_max_bytes as u64)?;
        }
        if self.audience.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "auth.audience",
                "empty string (omit it to disable the check)",
            ));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "auth.issuer",
                "empty string (omit it to disable the check)",
            ));
        }
        if self.leeway_s > MAX_LEEWAY_S {
            return Err(ConfigError::invalid(
                "auth.leeway_s",
                format!("{} exceeds the maximum of {MAX_LEEWAY_S}", self.leeway_s),
            ));
        }
        positive("auth.max_revocations", self.max_revocations as u64)?;
        positive("auth.revocation_ttl_s", self.revocation_ttl_s)
    }
}

impl ApiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.key.trim() != self.key {
            return Err(ConfigError::invalid(
                "api.key",
                "has leading or trailing whitespace",
            ));
        }
        positive(
            "api.max_broadcast_channels",
            self.max_broadcast_channels as u64,
        )?;
        Ok(())
    }
}

impl ChannelsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let syntax = [
            ("channels.private_prefix", &self.private_prefix),
            ("channels.namespace_boundary", &self.namespace_boundary),
            ("channels.user_boundary", &self.user_boundary),
            ("channels.user_separator", &self.user_separator),
        ];
        for (i, (field, value)) in syntax.iter().enumerate() {
            if value.is_empty() {
                return Err(ConfigError::invalid(*field, "empty"));
            }
            if let Some((other, _)) = syntax[..i].iter().find(|(_, v)| v == value) {
                return Err(ConfigError::invalid(
                    *field,
                    format!("{value:?} is also {other}: each marker must differ"),
                ));
            }
        }
        positive(
            "channels.max_subscriptions_per_client",
            self.max_subscriptions_per_client as u64,
        )?;
        self.default.validate("channels.default")?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            let at = format!("channels.namespaces[{i}]");
            self.check_namespace_name(&at, &ns.name)?;
            if self.namespaces[..i].iter().any(|n| n.name == ns.name) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("duplicate namespace {:?}", ns.name),
                ));
            }
            ns.options.validate(&at)?;
        }
        Ok(())
    }

    fn check_namespace_name(&self, at: &str, name: &str) -> Result<(), ConfigError> {
        let field = || format!("{at}.name");
        if name.is_empty() {
            return Err(ConfigError::invalid(field(), "empty"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(ConfigError::invalid(
                field(),
                format!("{name:?} contains {c:?}: use letters, digits, '_', '-', '.'"),
            ));
        }
        for marker in [
            &self.namespace_boundary,
            &self.private_prefix,
            &self.user_boundary,
        ] {
            if name.contains(marker.as_str()) {
                return Err(ConfigError::invalid(
                    field(),
                    format!("{name:?} contains the channel marker {marker:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl ChannelOptions {
    /// `at` is the table's dotted key (`channels.default`, `channels.namespaces[0]`).
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.max_channel_length == 0 {
            return Err(ConfigError::invalid(
                field("max_channel_length"),
                "must be greater than 0",
            ));
        }
        if self.history_size > 0 && self.history_ttl_s == 0 {
            return Err(ConfigError::invalid(
                field("history_ttl_s"),
                "0 with history_size > 0: history would expire at once",
            ));
        }
        if self.join_leave && !self.presence {
            return Err(ConfigError::invalid(
                field("join_leave"),
                "needs presence = true",
            ));
        }
        if !self.channel_regex.is_empty() {
            regex::Regex::new(&self.channel_regex)
                .map_err(|e| ConfigError::invalid(field("channel_regex"), e.to_string()))?;
        }
        Ok(())
    }
}

impl EngineConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.history_size > 0 {
            positive("engine.history_ttl_s", self.history_ttl_s)?;
        }
        positive("engine.max_channels", self.max_channels as u64)?;
        positive("engine.idempotency_ttl_s", self.idempotency_ttl_s)?;
        if self.kind == EngineKind::Redis {
            self.redis.validate()?;
        }
        Ok(())
    }
}

impl RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let tls = match self.url.split_once("://").map(|(scheme, _)| scheme) {
            Some("redis") => false,
            Some("rediss") => true,
            _ => {
                return Err(ConfigError::invalid(
                    "engine.redis.url",
                    "expected redis://[user][:password@]host:port/db or rediss://...",
                ))
            }
        };
        if self.url.contains('#') {
            return Err(ConfigError::invalid(
                "engine.redis.url",
                "URL fragments (#insecure) are not accepted: the server certificate is always \
                 checked; trust a private CA with engine.redis.tls_ca",
            ));
        }
        redis::parse_redis_url(&self.url)
            .ok_or_else(|| ConfigError::invalid("engine.redis.url", "not a valid Redis URL"))?;
        let sentinel_tls = self.sentinel.as_ref().is_some_and(|s| s.tls);
        let cluster_tls = self.validate_cluster()?;
        if !self.tls_ca.is_empty() && !tls && !sentinel_tls && !cluster_tls {
            return Err(ConfigError::invalid(
                "engine.redis.tls_ca",
                "applies to a rediss:// url, rediss:// cluster nodes or engine.redis.sentinel.tls only",
            ));
        }
        if let Some(s) = &self.sentinel {
            s.validate(self)?;
        }
        if self.prefix.is_empty() {
            return Err(ConfigError::invalid(
                "engine.redis.prefix",
                "must not be empty",
            ));
        }
        positive("engine.redis.timeout_ms", self.timeout_ms)?;
        positive("engine.redis.meta_ttl_s", self.meta_ttl_s)?;
        positive("engine.redis.presence_ttl_s", self.presence_ttl_s)?;
        positive("engine.redis.core_queue", self.core_queue as u64)?;
        positive("engine.redis.pending_limit", self.pending_limit as u64)?;
        positive("engine.redis.health_check_ms", self.health_check_ms)?;
        positive(
            "engine.redis.reconnect_max_delay_ms",
            self.reconnect_max_delay_ms,
        )
    }
}

impl RedisConfig {
    /// Checks `engine.redis.cluster`; returns whether its nodes use TLS.
    fn validate_cluster(&self) -> Result<bool, ConfigError> {
        if self.cluster.is_empty() {
            return Ok(false);
        }
        let field = "engine.redis.cluster";
        if self.sentinel.is_some() {
            return Err(ConfigError::invalid(
                field,
                "exclusive with engine.redis.sentinel (a Redis Cluster fails over by itself)",
            ));
        }
        if self.url != RedisConfig::default().url {
            return Err(ConfigError::invalid(
                field,
                "exclusive with engine.redis.url: the cluster nodes replace it",
            ));
        }
        let (mut auth, mut tls) = (None, None);
        for url in &self.cluster {
            let shown = crate::engine::redis::redacted(url);
            let scheme_tls = match url.split_once("://").map(|(scheme, _)| scheme) {
                Some("redis") => false,
                Some("rediss") => true,
                _ => {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{shown} is not a redis://host:port or rediss://host:port URL"),
                    ))
                }
            };
            let Some(parsed) = redis::parse_redis_url(url).filter(|_| !url.contains('#')) else {
                return Err(ConfigError::invalid(
                    field,
                    format!("{shown} is not a valid Redis URL (no #fragment)"),
                ));
            };
            let this = (
                parsed.username().to_owned(),
                parsed.password().map(str::to_owned),
            );
            if *auth.get_or_insert_with(|| this.clone()) != this {
                return Err(ConfigError::invalid(
                    field,
                    "the cluster nodes must share one user and password",
                ));
            }
            if *tls.get_or_insert(scheme_tls) != scheme_tls {
                return Err(ConfigError::invalid(
                    field,
                    "the cluster nodes must all be redis:// or all rediss://",
                ));
            }
        }
        Ok(tls.unwrap_or(false))
    }
}

impl RedisSentinelConfig {
    fn validate(&self, redis: &RedisConfig) -> Result<(), ConfigError> {
        let defaults = RedisConfig::default();
        if redis.url != defaults.url {
            return Err(ConfigError::invalid(
                "engine.redis.sentinel",
                "exclusive with engine.redis.url: the sentinels name the master \
                 (set its username/password/db/tls in the sentinel table)",
            ));
        }
        if self.master.is_empty() {
            return Err(ConfigError::invalid(
                "engine.redis.sentinel.master",
                "the master's name is required",
            ));
        }
        if self.urls.is_empty() {
            return Err(ConfigError::invalid(
                "engine.redis.sentinel.urls",
                "at least one sentinel URL is required",
            ));
        }
        let mut auth = None;
        for url in &self.urls {
            let parsed = redis::parse_redis_url(url).filter(|_| url.starts_with("redis://"));
            let Some(parsed) = parsed else {
                return Err(ConfigError::invalid(
                    "engine.redis.sentinel.urls",
                    format!(
                        "{} is not a redis://host:port sentinel URL",
                        crate::engine::redis::redacted(url)
                    ),
                ));
            };
            let this = (
                parsed.username().to_owned(),
                parsed.password().map(str::to_owned),
            );
            if *auth.get_or_insert_with(|| this.clone()) != this {
                return Err(ConfigError::invalid(
                    "engine.redis.sentinel.urls",
                    "the sentinels must share one user and password",
                ));
            }
        }
        if self.db < 0 {
            return Err(ConfigError::invalid(
                "engine.redis.sentinel.db",
                "must not be negative",
            ));
        }
        Ok(())
    }
}

impl MeshConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("mesh.channel_capacity", self.channel_capacity as u64)?;
        positive("mesh.pending_limit", self.pending_limit as u64)?;
        positive("mesh.call_timeout_ms", self.call_timeout_ms)
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(drop)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))
    }
}

#[cfg(test)]
mod redis_tests {
    use super::*;

    fn redis_err(cfg: &Config) -> String {
        cfg.engine
            .validate()
            .map_or_else(|e| e.to_string(), |()| String::new())
    }

    #[test]
    fn redis_section_is_checked_only_when_selected() {
        let mut cfg = Config::default(); // only [engine] is checked here
        cfg.engine.redis.url = "http://h:6380/0".into();
        assert!(
            cfg.engine.validate().is_ok(),
            "memory engine: [engine.redis] unused"
        );
        cfg.engine.kind = EngineKind::Redis;
        let err = redis_err(&cfg);
        assert!(err.contains("engine.redis.url"), "{err}");
        cfg.engine.redis.url = "redis://user:12345@127.0.0.1:6379/2".into();
        assert!(cfg.engine.validate().is_ok());
        cfg.engine.redis.prefix.clear();
        assert!(redis_err(&cfg).contains("engine.redis.prefix"));
        // WIRESOCKET_ENGINE__REDIS__URL is kept verbatim (a numeric password stays text)
        assert!(super::super::env::is_string_field("engine.redis.url"));
        assert!(super::super::env::is_string_field(
            "engine.redis.sentinel.password"
        ));
    }

    #[test]
    fn redis_tls_and_sentinel_are_checked() {
        let mut cfg = Config::default();
        cfg.engine.kind = EngineKind::Redis;
        cfg.engine.redis.url = "rediss://u:p@h:6380/0".into();
        assert_eq!(redis_err(&cfg), "");
        cfg.engine.redis.tls_ca = "/etc/ca.pem".into();
        assert_eq!(redis_err(&cfg), "");
        cfg.engine.redis.url = "rediss://h:6380/0#insecure".into();
        assert!(redis_err(&cfg).contains("#insecure"), "{}", redis_err(&cfg));
        cfg.engine.redis.url = "redis://h:6380/0".into();
        assert!(redis_err(&cfg).contains("engine.redis.tls_ca"));
        cfg.engine.redis.tls_ca.clear();

        let sentinel = RedisSentinelConfig {
            master: "mymaster".into(),
            urls: vec!["redis://127.0.0.1:26379".into()],
            ..Default::default()
        };
        cfg.engine.redis.sentinel = Some(sentinel.clone());
        assert!(
            redis_err(&cfg).contains("exclusive with engine.redis.url"),
            "{}",
            redis_err(&cfg)
        );
        cfg.engine.redis.url = RedisConfig::default().url;
        assert_eq!(redis_err(&cfg), "");
        cfg.engine.redis.tls_ca = "/etc/ca.pem".into();
        assert!(redis_err(&cfg).contains("engine.redis.tls_ca"));
        cfg.engine.redis.sentinel = Some(RedisSentinelConfig {
            tls: true,
            ..sentinel.clone()
        });
        assert_eq!(redis_err(&cfg), "", "TLS to the master with a private CA");
        cfg.engine.redis.tls_ca.clear();
        for (bad, field) in [
            (
                RedisSentinelConfig {
                    master: String::new(),
                    ..sentinel.clone()
                },
                "sentinel.master",
            ),
            (
                RedisSentinelConfig {
                    urls: vec![],
                    ..sentinel.clone()
                },
                "sentinel.urls",
            ),
            (
                RedisSentinelConfig {
                    urls: vec!["rediss://:secret@h:1".into()],
                    ..sentinel.clone()
                },
                "sentinel.urls",
            ),
            (
                RedisSentinelConfig {
                    urls: vec!["redis://:secret@h:1".into(), "redis://h:2".into()],
                    ..sentinel.clone()
                },
                "share one user and password",
            ),
        ] {
            cfg.engine.redis.sentinel = Some(bad);
            let err = redis_err(&cfg);
            assert!(err.contains(field), "{err}");
            assert!(!err.contains("secret"), "password shown: {err}");
        }
    }

    #[test]
    fn redis_cluster_is_checked() {
        let mut cfg = Config::default();
        cfg.engine.kind = EngineKind::Redis;
        cfg.engine.redis.cluster = vec![
            "redis://:pw@127.0.0.1:7000".into(),
            "redis://:pw@127.0.0.1:7001".into(),
        ];
        assert_eq!(redis_err(&cfg), "");
        cfg.engine.redis.url = "redis://h:1/0".into();
        assert!(redis_err(&cfg).contains("exclusive with engine.redis.url"));
        cfg.engine.redis.url = RedisConfig::default().url;
        cfg.engine.redis.sentinel = Some(RedisSentinelConfig {
            master: "m".into(),
            urls: vec!["redis://h:26379".into()],
            ..Default::default()
        });
        assert!(redis_err(&cfg).contains("exclusive with engine.redis.sentinel"));
        cfg.engine.redis.sentinel = None;
        cfg.engine.redis.tls_ca = "/etc/ca.pem".into();
        assert!(redis_err(&cfg).contains("engine.redis.tls_ca"));
        cfg.engine.redis.cluster = vec!["rediss://:pw@h:7000".into()];
        assert_eq!(redis_err(&cfg), "", "TLS cluster with a private CA");
        cfg.engine.redis.tls_ca.clear();
        for (bad, why) in [
            (vec!["http://h:1"], "not a redis://"),
            (
                vec!["rediss://:secret@h:1#insecure"],
                "not a valid Redis URL",
            ),
            (vec!["redis://:secret@h:1", "redis://h:2"], "share one user"),
            (vec!["redis://h:1", "rediss://h:2"], "all be redis://"),
        ] {
            cfg.engine.redis.cluster = bad.into_iter().map(String::from).collect();
            let err = redis_err(&cfg);
            assert!(
                err.contains("engine.redis.cluster") && err.contains(why),
                "{err}"
            );
            assert!(!err.contains("secret"), "password shown: {err}");
        }
    }
}
