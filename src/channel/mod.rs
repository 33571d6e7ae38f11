//! Channels: namespaces, name rules, and the one permission decision every command and API
//! method asks.
//!
//! [`Policy`] is built once per core from `[channels]` ([`Policy::from_config`], regexes compiled
//! there) and answers [`Policy::can`]`(who, channel, op)` for `op` in [`Op`]: subscribe, publish,
//! history, presence, and recovery on subscribe. Callers: `session::dispatch` (client commands)
//! and `api` (server API). Token verification stays in `auth` and the session: `can` takes the
//! verified fact ([`Who::token`]). Invariant: no other code decides who may touch a channel or
//! reads per-channel options; an answer is `Ok(&ChannelOptions)` (the namespace's options, for
//! the caller to apply) or one [`ChannelError`], whose [`ChannelError::code`] is the reply code.
//!
//! # Semantics (Centrifugo's, from `centrifugal/centrifugo` `internal/client/handler.go` and
//! `internal/config/container.go`, with the deviations marked)
//!
//! - **Namespace**: strip a leading `private_prefix`, split at the first `namespace_boundary`:
//!   `chat:room` and `$chat:room` are in `chat`; a name without the boundary is in
//!   `[channels.default]`. A namespace not configured is **102 unknown channel**.
//! - **Name rules** (**107 bad request**): empty channel, empty name after the namespace, longer
//!   than the namespace's `max_channel_length` (whole channel, bytes), not matching its
//!   `channel_regex` (matched against the name after the namespace and private prefix, user
//!   list included), or, without a regex, non-ASCII or control characters. Centrifugo answers
//!   102 for an empty channel and 106 for a long one; wiresocket keeps 107 for every bad name.
//! - **Private**: the name starts with `private_prefix`, at the very start (`$ns:x`, Centrifugo)
//!   or after the namespace (`ns:$x`, PROTOCOL.md). Subscribing needs a subscription token
//!   (else 103).
//! - **User-limited** (only where `allow_user_limited_channels`): a name containing
//!   `user_boundary` lists, after the last one, the users (`user_separator`-separated) who may
//!   subscribe without a token; others get 103 unless they hold a token. Where the option is off,
//!   `#` is an ordinary character (as in Centrifugo).
//! - **Subscribe**: a verified token for this channel and user; else a listed user of a
//!   user-limited channel; else `allow_subscribe_for_client` for a client with a user id
//!   (`allow_subscribe_for_anonymous` extends it to anonymous ones) on a channel that is neither
//!   private nor user-limited; else 103.
//! - **Publish**: `allow_publish_for_client`, or `allow_publish_for_subscriber` while
//!   subscribed; anonymous clients only with `allow_publish_for_anonymous`; else 103.
//!   Deviation: `allow_publish_for_client` does not open a private or user-limited channel to a
//!   client that is not subscribed (or listed): Centrifugo lets it publish there.
//! - **History**: `history_size == 0` is **108 not available** (checked before permission, as
//!   Centrifugo); then `allow_history_for_subscriber` while subscribed, or
//!   `allow_history_for_client` for a client with a user id; else 103. Deviations: subscribers
//!   may read history by default (`allow_history_for_subscriber = true`; Centrifugo's default is
//!   false), anonymous subscribers count as subscribers (Centrifugo has a separate
//!   `history_for_anonymous`), and `allow_history_for_client` does not open private or
//!   user-limited channels. The same for **presence** (`presence = false` is 108) with the
//!   `allow_presence_*` options.
//! - **Recover** (on subscribe, the caller counting as subscribed): needs history (108) and
//!   `allow_recovery` or the history permission above (103); a refused recovery makes the
//!   subscribe succeed without recovery, as Centrifugo does.
//! - **Server API** ([`Who::API`]): everything on a known namespace with a valid name; history
//!   and presence still need them enabled (108).

mod name;
mod policy;
#[cfg(test)]
mod tests;

pub use crate::config::ChannelOptions;

impl ChannelOptions {
    /// The engine's view of this namespace's history settings.
    pub fn history(&self) -> crate::engine::HistoryOptions {
        crate::engine::HistoryOptions {
            size: self.history_size,
            ttl: std::time::Duration::from_secs(self.history_ttl_s.max(1)),
        }
    }
}
pub use name::{ChannelName, Markers};
pub use policy::{Op, Policy, Resolved, Who};

use crate::protocol::ErrorCode;

/// Why a channel operation is refused, or why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The name breaks a rule (empty, too long, regex, characters): 107.
    #[error("bad channel name: {0}")]
    BadName(&'static str),
    /// The namespace is not configured: 102.
    #[error("unknown channel namespace")]
    UnknownNamespace,
    /// History or presence is off for the channel's namespace: 108.
    #[error("not available in this namespace")]
    NotAvailable,
    /// The caller may not do this on this channel: 103.
    #[error("permission denied")]
    PermissionDenied,
    /// A namespace's `channel_regex` does not compile (config validation catches it first).
    #[error("channel_regex of namespace {namespace:?}: {source}")]
    Regex {
        /// Namespace name (empty: `[channels.default]`).
        namespace: String,
        /// The regex crate's error.
        source: regex::Error,
    },
}

impl ChannelError {
    /// Metric labels of the refusals, indexed by [`ChannelError::index`].
    pub const REASONS: [&'static str; 4] = crate::metrics::CHANNEL_DENIED_REASONS;

    /// Counts this refusal in `wiresocket_channel_denied_total` and passes it on.
    pub fn counted(self, m: &crate::metrics::CoreMetrics) -> ChannelError {
        crate::metrics::CoreMetrics::inc(&m.channel_denied[self.index()]);
        self
    }

    /// The reply code a client or API caller sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChannelError::BadName(_) => ErrorCode::BAD_REQUEST,
            ChannelError::UnknownNamespace => ErrorCode::UNKNOWN_CHANNEL,
            ChannelError::NotAvailable => ErrorCode::NOT_AVAILABLE,
            ChannelError::PermissionDenied => ErrorCode::PERMISSION_DENIED,
            ChannelError::Regex { .. } => ErrorCode::INTERNAL,
        }
    }

    /// Position in [`ChannelError::REASONS`] (a config error counts as a bad name).
    pub fn index(&self) -> usize {
        match self {
            ChannelError::BadName(_) | ChannelError::Regex { .. } => 0,
            ChannelError::UnknownNamespace => 1,
            ChannelError::NotAvailable => 2,
            ChannelError::PermissionDenied => 3,
        }
    }
}
