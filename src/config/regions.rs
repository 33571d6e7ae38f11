//! `[regions]`: this node's WebSocket region, every region's public URL, the license-region
//! Redis servers (by `dbCode`) that hold document pins, and the pin timings; plus their checks.
//!
//! Read by `region::Regions::start` (off by default: a single node needs none of it) and by
//! `Config::validate`, which calls [`RegionsConfig::validate`]. Maps accept a TOML table or,
//! for environment overrides, one string `name=value,name=value` (region names hold `-`,
//! which environment variable names cannot).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ChannelsConfig, ConfigError, FieldDoc};

config_section! {
    /// Document pinning across WebSocket regions (see docs/REGIONS.md): a channel of a namespace
    /// with `pinned = true` is a *document*, served by one region at a time; connections that
    /// reach another region are closed with 4009 and the pinned region's URL, and
    /// `GET /discovery` names the region before connecting.
    pub struct RegionsConfig {
        /// Pin documents (needs `name`, `url` and a pin Redis). Off: `pinned` namespaces are
        /// refused by `check-config`, `/discovery` and `/connection/websocket/<doc>` answer 404.
        /// Default: `false`.
        pub enabled: bool = false,
        /// This node's WebSocket region, `{region-name}-{cluster-id}` (e.g. `eu-central-1`);
        /// every node of one region (one cluster) has the same. Env
        /// `WIRESOCKET_REGIONS__NAME`. Default: `""`.
        pub name: String = String::new(),
        /// This region's public WebSocket URL, as clients reach it through the region's load
        /// balancer (e.g. `wss://eu-central-1.example.net/connection/websocket`); a redirect or
        /// discovery answer is this URL, `/`, and the URL-encoded document. Default: `""`.
        pub url: String = String::new(),
        /// Every region's public URL by region name (`{ eu-central-1 = "wss://..." }`, or from
        /// the environment `"eu-central-1=wss://...,us-east-1=wss://..."`), so discovery can
        /// answer a token's `regionCode`. This region's own entry may be left out. Default: `{}`.
        #[serde(deserialize_with = "map_or_pairs")]
        pub urls: BTreeMap<String, String> = BTreeMap::new(),
        /// The license-region Redis holding each app's document pins, by the token's `dbCode`
        /// (`{ aws-eu-west-1 = "redis://10.0.0.5:6379/0" }`, `rediss://` for TLS, ACL user and
        /// password in the URL; from the environment `"code=url,code=url"`). A token whose
        /// `dbCode` is not listed cannot open documents (103 / close 3507). Default: `{}`.
        #[serde(deserialize_with = "map_or_pairs")]
        pub pin_redis: BTreeMap<String, String> = BTreeMap::new(),
        /// The pin Redis of tokens without a `dbCode`. `""`: such tokens cannot open
        /// documents. Default: `""`.
        pub default_pin_redis: String = String::new(),
        /// PEM file of a private CA for `rediss://` pin servers. Default: `""` (system roots).
        pub tls_ca: String = String::new(),
        /// After the last connection on a document leaves (in the whole region), how long the
        /// pin stays before the document may be pinned anywhere else. Default: `10_000` ms.
        pub pin_grace_ms: u64 = 10_000,
        /// Lease of a pin and of each node's hold on it: renewed every `renew_interval_ms`
        /// while a connection is on the document; a node that dies stops renewing and its
        /// hold (and the pin, if it was the last holder) expires after this. Default: `30_000` ms.
        pub pin_lease_ms: u64 = 30_000,
        /// How often each core renews the pins of the documents it serves, in one pipeline
        /// per pin Redis. Must be below `pin_lease_ms` (a third of it is a good value).
        /// Default: `10_000` ms.
        pub renew_interval_ms: u64 = 10_000,
        /// Deadline of one pin command (connect included); beyond it, or while the pin Redis is
        /// unreachable, opening a document fails with the temporary error 100 (connect: close
        /// 3004, the SDK reconnects). Default: `2_000` ms.
        pub timeout_ms: u64 = 2_000,
        /// Prefix of the pin keys (`<prefix>{<document>}` and its holders set). Default:
        /// `"wiresocket:pin:"`.
        pub key_prefix: String = "wiresocket:pin:".to_owned(),
    }
}

impl RegionsConfig {
    /// Checks the section and its consistency with the namespaces (`pinned` needs it on).
    pub(crate) fn validate(&self, channels: &ChannelsConfig) -> Result<(), ConfigError> {
        let pinned = channels
            .namespaces
            .iter()
            .find(|n| n.options.pinned)
            .map(|n| n.name.as_str())
            .or(channels.default.pinned.then_some("(default)"));
        if !self.enabled {
            if let Some(ns) = pinned {
                return Err(ConfigError::invalid(
                    "channels.namespaces.pinned",
                    format!("namespace {ns} is pinned but [regions] enabled = false"),
                ));
            }
            return Ok(());
        }
        if self.name.is_empty() || !self.name.bytes().all(is_name_byte) {
            return Err(ConfigError::invalid(
                "regions.name",
                "must be set: letters, digits, '-', '_', '.' (e.g. eu-central-1)",
            ));
        }
        check_url("regions.url", &self.url)?;
        for (name, url) in &self.urls {
            if name.is_empty() || !name.bytes().all(is_name_byte) {
                return Err(ConfigError::invalid("regions.urls", "bad region name"));
            }
            check_url("regions.urls", url)?;
        }
        if let Some(url) = self.urls.get(&self.name) {
            if *url != self.url {
                return Err(ConfigError::invalid(
                    "regions.urls",
                    "this region's entry differs from regions.url",
                ));
            }
        }
        if self.pin_redis.is_empty() && self.default_pin_redis.is_empty() {
            return Err(ConfigError::invalid(
                "regions.pin_redis",
                "set it or regions.default_pin_redis: pins need a Redis",
            ));
        }
        for url in self
            .pin_redis
            .values()
            .chain(Some(&self.default_pin_redis).filter(|u| !u.is_empty()))
        {
            if redis::parse_redis_url(url).is_none() {
                return Err(ConfigError::invalid(
                    "regions.pin_redis",
                    "not a redis:// or rediss:// URL",
                ));
            }
        }
        if self.pin_lease_ms == 0 || self.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "regions.pin_lease_ms",
                "pin_lease_ms and timeout_ms must be greater than 0",
            ));
        }
        if self.renew_interval_ms == 0 || self.renew_interval_ms >= self.pin_lease_ms {
            return Err(ConfigError::invalid(
                "regions.renew_interval_ms",
                "must be greater than 0 and below regions.pin_lease_ms",
            ));
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::invalid("regions.key_prefix", "must be set"));
        }
        Ok(())
    }

    /// The public URL of `region`: this one's, or its `urls` entry.
    pub fn url_of(&self, region: &str) -> Option<&str> {
        if region == self.name {
            return Some(&self.url);
        }
        self.urls.get(region).map(String::as_str)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn check_url(field: &'static str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("ws://") || url.starts_with("wss://"))
        && !url.ends_with('/')
        && url.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(ConfigError::invalid(
            field,
            "must be a ws:// or wss:// URL without a trailing '/' (e.g. wss://eu-central-1.example.net/connection/websocket)",
        ));
    }
    Ok(())
}

/// A map from a TOML table, or from one string `k=v,k=v` (environment overrides).
fn map_or_pairs<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Pairs(String),
        Map(BTreeMap<String, String>),
    }
    match Either::deserialize(de)? {
        Either::Map(m) => Ok(m),
        Either::Pairs(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
                None => Err(serde::de::Error::custom(format!("{p:?} is not name=value"))),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use figment::Jail;

    use crate::config::{Config, ConfigError, NamespaceConfig};

    /// Breaks one thing in a valid config.
    type Breaker = fn(&mut Config);

    fn invalid_field(c: &Config) -> String {
        match c.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn regional() -> Config {
        let mut c = Config::default();
        c.auth.hmac_secret = "s3cret".into();
        let r = &mut c.regions;
        r.enabled = true;
        r.name = "eu-central-1".into();
        r.url = "wss://eu-central-1.example.net/connection/websocket".into();
        r.pin_redis
            .insert("aws-eu-west-1".into(), "redis://10.0.0.5:6379/0".into());
        c.channels.namespaces.push(NamespaceConfig {
            name: "docs".into(),
            options: crate::config::ChannelOptions {
                pinned: true,
                ..Default::default()
            },
        });
        c
    }

    #[test]
    fn a_consistent_regions_section_is_valid() {
        regional().validate().unwrap();
    }

    #[test]
    fn inconsistent_regions_are_refused_naming_the_field() {
        let mut c = regional();
        c.regions.enabled = false;
        assert_eq!(invalid_field(&c), "channels.namespaces.pinned");
        let cases: [(Breaker, &str); 6] = [
            (|c| c.regions.name = "eu central".into(), "regions.name"),
            (|c| c.regions.url = "https://x".into(), "regions.url"),
            (|c| c.regions.url = "wss://x/".into(), "regions.url"),
            (|c| c.regions.pin_redis.clear(), "regions.pin_redis"),
            (
                |c| c.regions.renew_interval_ms = 30_000,
                "regions.renew_interval_ms",
            ),
            (
                |c| {
                    c.regions.urls.insert(
                        "eu-central-1".into(),
                        "wss://other/connection/websocket".into(),
                    );
                },
                "regions.urls",
            ),
        ];
        for (break_it, field) in cases {
            let mut c = regional();
            break_it(&mut c);
            assert_eq!(invalid_field(&c), field);
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // `Jail::expect_with` closures return figment's error
    fn maps_load_from_toml_tables_and_env_pairs() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ws.toml",
                "[regions]\nurls = { eu-central-1 = \"wss://eu/connection/websocket\" }\n",
            )?;
            jail.set_env(
                "WIRESOCKET_REGIONS__PIN_REDIS",
                "aws-eu-west-1=redis://a:6379/0, us-1=rediss://u:p@b:6380/1",
            );
            let c = Config::load(Some(Path::new("ws.toml"))).unwrap();
            assert_eq!(
                c.regions.urls["eu-central-1"],
                "wss://eu/connection/websocket"
            );
            assert_eq!(c.regions.pin_redis["aws-eu-west-1"], "redis://a:6379/0");
            assert_eq!(c.regions.pin_redis["us-1"], "rediss://u:p@b:6380/1");
            jail.set_env("WIRESOCKET_REGIONS__URLS", "no-equals-sign");
            assert!(Config::load(Some(Path::new("ws.toml"))).is_err());
            Ok(())
        });
    }
}
