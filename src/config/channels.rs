//! The `[channels]` section: channel-name syntax, per-client limits, the options of channels
//! without a namespace (`[channels.default]`) and of each namespace (`[[channels.namespaces]]`).
//!
//! Declared here with `config_section!` like every other section; read by
//! [`crate::channel::Policy::from_config`] (built once per core) and nowhere else at run time.
//! Invariant: a namespace entry is exactly `name` plus the keys of [`ChannelOptions`]; any other
//! key is an error naming it (serde's `flatten` cannot deny unknown keys, hence the hand-written
//! `Deserialize` of [`NamespaceConfig`]). `[[channels.namespaces]]` is settable from TOML only;
//! `[channels.default]` options also from the environment
//! (`WIRESOCKET_CHANNELS__DEFAULT__HISTORY_SIZE=10`).
//!
//! Deprecated keys of the pre-namespace shape (`allow_client_subscribe`,
//! `allow_anonymous_subscribe`, `allow_client_publish`) are still accepted and mapped onto
//! `[channels.default]` by [`Config::apply_deprecated`]; [`Config::deprecations`] lists them for
//! a start-up warning.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Config, FieldDoc};

config_section! {
    /// Channel names, limits and permissions. A channel `ns:name` takes its options from the
    /// `[[channels.namespaces]]` entry named `ns` (an unknown namespace is error 102); a channel
    /// without the namespace boundary takes them from `[channels.default]`.
    pub struct ChannelsConfig {
        /// A name (after the namespace, `ns:$name`, or at the very start, `$ns:name`) starting
        /// with this prefix is private: clients subscribe only with a subscription token, and
        /// `*_for_client` grants do not apply to it. Default: `"$"`.
        pub private_prefix: String = "$".to_owned(),
        /// Separates the namespace from the rest of the name (`chat:room`). Default: `":"`.
        pub namespace_boundary: String = ":".to_owned(),
        /// Starts the list of users allowed in a user-limited channel (`dialog#42,43`), where
        /// the namespace enables `allow_user_limited_channels`. Default: `"#"`.
        pub user_boundary: String = "#".to_owned(),
        /// Separates the user ids of that list. Default: `","`.
        pub user_separator: String = ",".to_owned(),
        /// Subscriptions one client may hold; beyond it subscribe fails with error 106.
        /// Default: `128`.
        pub max_subscriptions_per_client: usize = 128,
        /// Options of channels without a namespace: the `[channels.default]` table (its keys
        /// are listed there). Default: each option's own default.
        pub default: ChannelOptions = ChannelOptions::default(),
        /// Namespaces: `[[channels.namespaces]]` tables, each a `name` plus any keys of
        /// `[channels.default]` (missing keys take the option defaults, not the values of
        /// `[channels.default]`). TOML only, not settable from the environment.
        /// Default: `[]` (no namespace: `ns:x` is error 102).
        pub namespaces: Vec<NamespaceConfig> = Vec::new(),
        /// Deprecated: use `channels.default.allow_subscribe_for_client`. Default: unset.
        pub allow_client_subscribe: Option<bool> = None,
        /// Deprecated: use `channels.default.allow_subscribe_for_anonymous`. Default: unset.
        pub allow_anonymous_subscribe: Option<bool> = None,
        /// Deprecated: use `channels.default.allow_publish_for_client`. Default: unset.
        pub allow_client_publish: Option<bool> = None,
    }
}

config_section! {
    /// Options of one namespace (or of `[channels.default]`).
    pub struct ChannelOptions {
        /// Publications kept per channel for `history` and recovery; `0` keeps none (`history`
        /// answers 108). Default: `0`. Set it (for example 100) so reconnecting clients recover
        /// missed messages.
        pub history_size: usize = 0,
        /// How long history is kept after the last publication in a channel. Default: `300` s.
        pub history_ttl_s: u64 = 300,
        /// Subscribers may recover missed publications (`recover: true` with epoch/offset)
        /// even without history permission. Default: `true`. Only matters with history.
        pub allow_recovery: bool = true,
        /// Every subscription to a channel with history is recoverable: its reply carries
        /// `recoverable`, `epoch` and `offset` (so SDKs track positions and recover after a
        /// reconnect) even when the client did not ask with `recoverable: true`; this also
        /// covers server-side subscriptions (token `channels`). Default: `true` (wiresocket
        /// keeps what history is for; Centrifugo's default is `false`). Ignored without history.
        pub force_recovery: bool = true,
        /// Keep online presence for the channel (`presence`, `presence_stats`); off: 108.
        /// Default: `false`.
        pub presence: bool = false,
        /// Send join/leave pushes to subscribers that ask for them (needs `presence`).
        /// Default: `false`.
        pub join_leave: bool = false,
        /// Clients with a user id may subscribe without a subscription token (never to private
        /// or, where enabled, user-limited channels). Default: `true`. Disable to require a
        /// subscription token for every channel of the namespace.
        pub allow_subscribe_for_client: bool = true,
        /// With `allow_subscribe_for_client`, anonymous clients (empty user) may subscribe too.
        /// Default: `false`. Enable for public read-only feeds.
        pub allow_subscribe_for_anonymous: bool = false,
        /// Clients may publish with the `publish` command, except into private and user-limited
        /// channels they are not subscribed to. Publications carry the publisher's ClientInfo.
        /// Default: `false` (103). Enable only when clients are trusted to write (chat-like apps).
        pub allow_publish_for_client: bool = false,
        /// Subscribers of a channel may publish into it. Default: `false` (103).
        pub allow_publish_for_subscriber: bool = false,
        /// The publish grants above extend to anonymous clients. Default: `false`.
        pub allow_publish_for_anonymous: bool = false,
        /// Clients with a user id may read the history of channels they are not subscribed to
        /// (never of private or user-limited ones). Default: `false` (103).
        pub allow_history_for_client: bool = false,
        /// Subscribers may read the channel's history with the `history` command.
        /// Default: `true`.
        pub allow_history_for_subscriber: bool = true,
        /// Clients with a user id may read presence of channels they are not subscribed to
        /// (never of private or user-limited ones). Default: `false` (103).
        pub allow_presence_for_client: bool = false,
        /// Subscribers may read the channel's presence. Default: `true`.
        pub allow_presence_for_subscriber: bool = true,
        /// A name ending in `#u1,u2` (see `user_boundary`) may be subscribed only by the listed
        /// users, without a token. Default: `false` (then `#` has no meaning).
        pub allow_user_limited_channels: bool = false,
        /// Regular expression (Rust `regex` syntax) the name after the namespace must match,
        /// else 107; anchor it (`^[a-z0-9_-]+$`) to match the whole name. Empty: any ASCII name
        /// without control characters. Default: `""`.
        pub channel_regex: String = String::new(),
        /// Longest accepted channel name in bytes, namespace included; longer is 107.
        /// Default: `255`.
        pub max_channel_length: usize = 255,
        /// Largest publication (`data`, as JSON bytes) accepted into the namespace's
        /// channels, from a client `publish` or the API; larger is error 106 "limit
        /// exceeded" (API: HTTP 200 with the error, as other method-level errors), counted in
        /// `wiresocket_limit_refused_total{reason="publication_size"}`. `0`: only the
        /// transport limits apply (`websocket.max_message_bytes`, `server.max_body_bytes`).
        /// Default: `0`. Set it to what your application's messages need.
        pub max_publication_bytes: usize = 0,
        /// The namespace's channels are *documents* pinned to one WebSocket region at a time
        /// (needs `[regions]`; see docs/REGIONS.md). Default: `false`.
        pub pinned: bool = false,
    }
}

/// One `[[channels.namespaces]]` entry: its `name` and its options.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceConfig {
    /// The `ns` of `ns:channel`: letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// Options of the namespace's channels.
    pub options: ChannelOptions,
}

impl<'de> Deserialize<'de> for NamespaceConfig {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(de)?;
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) => name,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "namespace `name` must be a string, not {}",
                    other.type_str()
                )))
            }
            None => return Err(D::Error::missing_field("name")),
        };
        let options = ChannelOptions::deserialize(toml::Value::Table(table))
            .map_err(|e| D::Error::custom(format!("namespace {name:?}: {}", e.message())))?;
        Ok(NamespaceConfig { name, options })
    }
}

impl Serialize for NamespaceConfig {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            name: &'a str,
            #[serde(flatten)]
            options: &'a ChannelOptions,
        }
        Flat {
            name: &self.name,
            options: &self.options,
        }
        .serialize(ser)
    }
}

/// Doc and field docs of a nested table type, by its Rust type name (for the example and
/// environment typing).
pub(crate) fn nested_table(ty: &str) -> Option<(&'static [&'static str], &'static [FieldDoc])> {
    match ty {
        "ChannelOptions" => Some((ChannelOptions::DOC, ChannelOptions::FIELDS)),
        "RedisConfig" => Some((super::RedisConfig::DOC, super::RedisConfig::FIELDS)),
        "TlsConfig" => Some((super::TlsConfig::DOC, super::TlsConfig::FIELDS)),
        "Option<RedisSentinelConfig>" => Some((
            super::RedisSentinelConfig::DOC,
            super::RedisSentinelConfig::FIELDS,
        )),
        _ => None,
    }
}

impl Config {
    /// Maps deprecated keys onto their replacements (a deprecated key that is present
    /// overrides its replacement, as the file that still uses it meant), and bridges history
    /// between the engine and the namespaces. Called by `Config::load`.
    pub(crate) fn apply_deprecated(&mut self) {
        self.bridge_history();
        let c = &mut self.channels;
        if let Some(v) = c.allow_client_subscribe {
            c.default.allow_subscribe_for_client = v;
        }
        if let Some(v) = c.allow_anonymous_subscribe {
            c.default.allow_subscribe_for_anonymous = v;
        }
        if let Some(v) = c.allow_client_publish {
            c.default.allow_publish_for_client = v;
        }
    }

    /// The deprecated `engine.history_size`/`history_ttl_s` (the shape before namespaces): set
    /// alone, they become `[channels.default]`'s history. The engine itself reads no history
    /// settings: each call carries the channel's namespace options.
    fn bridge_history(&mut self) {
        let (engine, channels) = (&self.engine, &mut self.channels);
        if engine.history_size > 0 && channels.default.history_size == 0 {
            channels.default.history_size = engine.history_size;
            channels.default.history_ttl_s = engine.history_ttl_s;
        }
    }

    /// One line per deprecated key in use, naming its replacement (logged at start-up).
    pub fn deprecations(&self) -> Vec<String> {
        let c = &self.channels;
        [
            (
                c.allow_client_subscribe,
                "allow_client_subscribe",
                "allow_subscribe_for_client",
            ),
            (
                c.allow_anonymous_subscribe,
                "allow_anonymous_subscribe",
                "allow_subscribe_for_anonymous",
            ),
            (
                c.allow_client_publish,
                "allow_client_publish",
                "allow_publish_for_client",
            ),
        ]
        .into_iter()
        .filter(|(v, _, _)| v.is_some())
        .map(|(_, old, new)| {
            format!("config key channels.{old} is deprecated: use channels.default.{new}")
        })
        .chain((self.engine.history_size > 0).then(|| {
            "config keys engine.history_size/history_ttl_s are deprecated: use \
             channels.default.history_size/history_ttl_s (or a namespace's)"
                .to_owned()
        }))
        .collect()
    }
}
