//! Checks of `[channels]`: the default options, namespaces, name rules.

use super::positive;
use crate::config::{ChannelOptions, ChannelsConfig, ConfigError};

impl ChannelsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
    pub(super) fn validate(&self, at: &str) -> Result<(), ConfigError> {
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
