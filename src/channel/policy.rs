//! The decision function: [`Policy::resolve`] finds a channel's namespace and checks its name,
//! [`Resolved::allows`] decides one operation for one caller, [`Policy::can`] does both.
//!
//! Built once per core by `runtime::core::Core::new`; asked by `session::dispatch` and `api`.
//! Invariant: pure (no I/O, no clock, no interior mutability); lookups are one hash probe by
//! namespace name and, where a namespace sets `channel_regex`, one regex match. The rules are
//! written out in the `channel` module doc.

use ahash::AHashMap;
use regex::Regex;

use super::name::{ChannelName, Markers};
use super::ChannelError;
use crate::config::{ChannelOptions, ChannelsConfig};

/// What is asked of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `subscribe` (client) or `/api/subscribe`.
    Subscribe,
    /// `publish` (client) or `/api/publish`.
    Publish,
    /// `history` (client) or `/api/history`.
    History,
    /// `presence` / `presence_stats`.
    Presence,
    /// Recovering missed publications while subscribing (asked after `Subscribe` passed).
    Recover,
}

/// Who asks: the verified facts the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    /// The connection's user id; empty for an anonymous client.
    pub user: &'a str,
    /// The session is subscribed to the channel.
    pub subscribed: bool,
    /// The request carries a subscription token that `auth` verified for this channel and user.
    pub token: bool,
    /// The server API (already authenticated by its key).
    pub api: bool,
}

impl Who<'static> {
    /// The server API: may do everything on a known namespace.
    pub const API: Who<'static> = Who {
        user: "",
        subscribed: false,
        token: false,
        api: true,
    };
}

impl<'a> Who<'a> {
    /// A client session of `user`, subscribed to the channel or not, without a token.
    pub fn client(user: &'a str, subscribed: bool) -> Self {
        Who {
            user,
            subscribed,
            token: false,
            api: false,
        }
    }

    /// The same caller, holding a verified subscription token for the channel.
    pub fn with_token(self) -> Self {
        Who {
            token: true,
            ..self
        }
    }
}

/// One namespace, ready to answer.
#[derive(Debug, Clone)]
struct Namespace {
    options: ChannelOptions,
    regex: Option<Regex>,
}

impl Namespace {
    fn build(name: &str, options: &ChannelOptions) -> Result<Self, ChannelError> {
        let regex = match options.channel_regex.as_str() {
            "" => None,
            re => Some(Regex::new(re).map_err(|source| ChannelError::Regex {
                namespace: name.to_owned(),
                source,
            })?),
        };
        Ok(Namespace {
            options: options.clone(),
            regex,
        })
    }
}

/// The channel rules of one core (cloning gives each core its own regex caches).
#[derive(Debug, Clone)]
pub struct Policy {
    markers: Markers,
    default: Namespace,
    namespaces: AHashMap<String, Namespace>,
}

/// A channel whose namespace is known and whose name passed the rules.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'p, 'c> {
    /// The parts of the name.
    pub name: ChannelName<'c>,
    /// Its namespace's options.
    pub options: &'p ChannelOptions,
    markers: &'p Markers,
}

impl Policy {
    /// Compiles the `[channels]` section; fails only on a bad `channel_regex`, which config
    /// validation reports first (naming the field).
    pub fn from_config(cfg: &ChannelsConfig) -> Result<Policy, ChannelError> {
        let namespaces = cfg
            .namespaces
            .iter()
            .map(|ns| Ok((ns.name.clone(), Namespace::build(&ns.name, &ns.options)?)))
            .collect::<Result<_, ChannelError>>()?;
        Ok(Policy {
            markers: Markers::from_config(cfg),
            default: Namespace::build("", &cfg.default)?,
            namespaces,
        })
    }

    /// Finds the namespace of `channel` (102 when unknown) and checks the name rules (107).
    pub fn resolve<'p, 'c>(&'p self, channel: &'c str) -> Result<Resolved<'p, 'c>, ChannelError> {
        if channel.is_empty() {
            return Err(ChannelError::BadName("empty"));
        }
        let name = self.markers.parse(channel);
        let ns = if name.namespace.is_empty() {
            &self.default
        } else {
            self.namespaces
                .get(name.namespace)
                .ok_or(ChannelError::UnknownNamespace)?
        };
        if channel.len() > ns.options.max_channel_length {
            return Err(ChannelError::BadName("longer than max_channel_length"));
        }
        if name.name.is_empty() {
            return Err(ChannelError::BadName("empty name after the namespace"));
        }
        match &ns.regex {
            Some(re) if !re.is_match(name.name) => {
                return Err(ChannelError::BadName("does not match channel_regex"))
            }
            Some(_) => {}
            None if !channel
                .bytes()
                .all(|b| b.is_ascii() && !b.is_ascii_control()) =>
            {
                return Err(ChannelError::BadName("non-ASCII or control character"))
            }
            None => {}
        }
        Ok(Resolved {
            name,
            options: &ns.options,
            markers: &self.markers,
        })
    }

    /// May `who` do `op` on `channel`? `Ok` carries the namespace's options.
    pub fn can(
        &self,
        who: &Who<'_>,
        channel: &str,
        op: Op,
    ) -> Result<&ChannelOptions, ChannelError> {
        self.resolve(channel)?.allows(who, op)
    }
}

impl<'p> Resolved<'p, '_> {
    /// Decides `op` for `who` on this channel (rules in the module doc).
    pub fn allows(&self, who: &Who<'_>, op: Op) -> Result<&'p ChannelOptions, ChannelError> {
        let o = self.options;
        match op {
            Op::History | Op::Recover if o.history_size == 0 => {
                return Err(ChannelError::NotAvailable)
            }
            Op::Presence if !o.presence => return Err(ChannelError::NotAvailable),
            _ => {}
        }
        if who.api {
            return Ok(o);
        }
        let named = !who.user.is_empty();
        // user-limited: listed users are let in; everyone else needs a token (or subscription)
        let limited = self.name.users.filter(|_| o.allow_user_limited_channels);
        let listed = limited.is_some_and(|users| self.markers.lists_user(users, who.user));
        // channels whose client-level grants apply to anyone: neither private nor user-limited
        let open = !self.name.private && limited.is_none();
        let allowed = match op {
            Op::Subscribe => {
                who.token
                    || listed
                    || (open
                        && o.allow_subscribe_for_client
                        && (named || o.allow_subscribe_for_anonymous))
            }
            Op::Publish => {
                (named || o.allow_publish_for_anonymous)
                    && ((o.allow_publish_for_client && (open || listed || who.subscribed))
                        || (o.allow_publish_for_subscriber && who.subscribed))
            }
            Op::History => Self::reads(
                who,
                open || listed,
                o.allow_history_for_client,
                o.allow_history_for_subscriber,
            ),
            Op::Presence => Self::reads(
                who,
                open || listed,
                o.allow_presence_for_client,
                o.allow_presence_for_subscriber,
            ),
            Op::Recover => {
                o.allow_recovery
                    || Self::reads(
                        &Who {
                            subscribed: true,
                            ..*who
                        },
                        open || listed,
                        o.allow_history_for_client,
                        o.allow_history_for_subscriber,
                    )
            }
        };
        if allowed {
            Ok(o)
        } else {
            Err(ChannelError::PermissionDenied)
        }
    }

    /// History/presence reads: subscribers with the subscriber grant, or named clients with
    /// the client grant on a channel open to them.
    fn reads(who: &Who<'_>, open: bool, for_client: bool, for_subscriber: bool) -> bool {
        (for_subscriber && who.subscribed) || (for_client && open && !who.user.is_empty())
    }
}
