//! Splitting a channel name into namespace, name, private flag and user list.
//!
//! Pure string work on the `[channels]` markers; used by [`super::Policy::resolve`]. Invariant:
//! every part borrows from the channel string, nothing is allocated, and the parse never fails
//! (whether the parts are acceptable is the policy's question).

use crate::config::ChannelsConfig;

/// The markers of the channel syntax (`[channels]` `private_prefix`, `namespace_boundary`,
/// `user_boundary`, `user_separator`), all non-empty after config validation.
#[derive(Debug, Clone)]
pub struct Markers {
    /// Starts a private name (`$`).
    pub private_prefix: String,
    /// Ends the namespace (`:`).
    pub namespace_boundary: String,
    /// Starts the user list (`#`).
    pub user_boundary: String,
    /// Separates users in the list (`,`).
    pub user_separator: String,
}

/// The parts of one channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelName<'a> {
    /// Namespace (`chat` of `chat:room`); empty for the default namespace.
    pub namespace: &'a str,
    /// The name after the namespace boundary, without a private prefix (`room`).
    pub name: &'a str,
    /// Written with the private prefix, at the start (`$chat:room`) or after the namespace
    /// (`chat:$room`).
    pub private: bool,
    /// What follows the last user boundary (`42,43` of `dialog#42,43`), if there is one.
    pub users: Option<&'a str>,
}

impl Markers {
    /// The markers configured in `[channels]`.
    pub fn from_config(cfg: &ChannelsConfig) -> Self {
        Markers {
            private_prefix: cfg.private_prefix.clone(),
            namespace_boundary: cfg.namespace_boundary.clone(),
            user_boundary: cfg.user_boundary.clone(),
            user_separator: cfg.user_separator.clone(),
        }
    }

    /// Splits `channel`; see [`ChannelName`].
    pub fn parse<'a>(&self, channel: &'a str) -> ChannelName<'a> {
        let prefix = self.private_prefix.as_str();
        let (leading_private, body) = match channel.strip_prefix(prefix) {
            Some(rest) => (true, rest),
            None => (false, channel),
        };
        let (namespace, rest) = body
            .split_once(self.namespace_boundary.as_str())
            .unwrap_or(("", body));
        let (inner_private, name) = match rest.strip_prefix(prefix) {
            Some(name) if !leading_private => (true, name),
            _ => (false, rest),
        };
        let users = name
            .rsplit_once(self.user_boundary.as_str())
            .map(|(_, users)| users);
        ChannelName {
            namespace,
            name,
            private: leading_private || inner_private,
            users,
        }
    }

    /// True when `user` (non-empty) is one of the `users` listed in a user-limited name.
    pub fn lists_user(&self, users: &str, user: &str) -> bool {
        !user.is_empty() && users.split(self.user_separator.as_str()).any(|u| u == user)
    }
}
