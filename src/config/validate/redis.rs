//! Checks of `[engine]` and `[engine.redis]`: URLs, TLS, Sentinel, Cluster seeds, timeouts.

use super::positive;
use crate::config::{ConfigError, EngineConfig, EngineKind, RedisConfig, RedisSentinelConfig};

impl EngineConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        if self.wait_replicas > 0 {
            positive("engine.redis.wait_timeout_ms", self.wait_timeout_ms)?;
            if self.wait_timeout_ms >= self.timeout_ms {
                return Err(ConfigError::invalid(
                    "engine.redis.wait_timeout_ms",
                    "must be below engine.redis.timeout_ms (the deadline of the WAIT command itself)",
                ));
            }
        }
        positive("engine.redis.meta_ttl_s", self.meta_ttl_s)?;
        positive("engine.redis.presence_ttl_s", self.presence_ttl_s)?;
        positive("engine.redis.core_queue", self.core_queue as u64)?;
        positive("engine.redis.pending_limit", self.pending_limit as u64)?;
        positive("engine.redis.health_check_ms", self.health_check_ms)?;
        positive("engine.redis.session_ttl_s", self.session_ttl_s)?;
        positive("engine.redis.session_sync_ms", self.session_sync_ms)?;
        if self.session_sync_ms.saturating_mul(3) > self.session_ttl_s.saturating_mul(1000) {
            return Err(ConfigError::invalid(
                "engine.redis.session_sync_ms",
                "must be at most a third of engine.redis.session_ttl_s (records are written \
                 again each third of it, at a sync)",
            ));
        }
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
    pub(super) fn validate(&self, redis: &RedisConfig) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod redis_tests {
    use super::*;
    use crate::config::Config;

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
        assert!(crate::config::env::is_string_field("engine.redis.url"));
        assert!(crate::config::env::is_string_field(
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
