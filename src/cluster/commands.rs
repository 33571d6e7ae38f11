//! The node commands and surveys of the server API and how one core applies them to its
//! sessions.
//!
//! A command names a user and, optionally, one client id; it applies to that user's
//! connected sessions on the core (a scan of the core's session table: commands are rare
//! next to deliveries). Subscribing runs the same `establish` as a client subscribe, then
//! sends the Centrifugo `subscribe` push; unsubscribing sends the `unsubscribe` push (code
//! 2000, the SDK stays unsubscribed); disconnecting closes with the given code of the close
//! table (`ws::close`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::rc::Rc;

use crate::mesh::Mesh;
use crate::protocol::push::Unsubscribe;
use crate::session::{Env, Phase, Session};
use crate::ws::close::Disconnect;

/// A command for a user's connections on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Close the user's connections (only `client`, when given) with `code`.
    Disconnect {
        user: String,
        client: Option<String>,
        code: u16,
        /// Client ids left connected.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        whitelist: Vec<String>,
    },
    /// Subscribe the user's connections to `channel` (a `subscribe` push each).
    Subscribe {
        user: String,
        channel: String,
        client: Option<String>,
        /// JSON sent in the push's `data`.
        #[serde(default)]
        data: Option<String>,
        /// Recover publications after this position (offset, epoch).
        #[serde(default)]
        recover_since: Option<(u64, String)>,
    },
    /// Unsubscribe the user's connections from `channel` (an `unsubscribe` push each).
    Unsubscribe {
        user: String,
        channel: String,
        client: Option<String>,
    },
    /// Set the connections' expiry (`expire_at`, unix seconds), or end them as expired.
    Refresh {
        user: String,
        client: Option<String>,
        expired: bool,
        expire_at: Option<u64>,
    },
}

/// A question every node answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Survey {
    /// Channels with subscribers on the node (names matching `pattern`, `*` any run of
    /// characters), answered as `{"channel": num_clients, ...}`.
    Channels { pattern: Option<String> },
}

/// The connected sessions of `user` (only `client`, when given) on this core.
fn sessions_of(env: &Env, user: &str, client: Option<&str>) -> Vec<Rc<Session>> {
    let mut out = Vec::new();
    env.sessions.for_each(|s| {
        if s.phase.get() == Phase::Connected
            && *s.identity.borrow().user == *user
            && client.is_none_or(|c| c == s.client_id())
        {
            out.push(s.clone());
        }
    });
    out
}

/// Applies `cmd` on this core.
pub(super) fn apply(env: &Rc<Env>, cmd: &Command) {
    match cmd {
        Command::Disconnect {
            user,
            client,
            code,
            whitelist,
        } => {
            let d = Disconnect::ALL
                .iter()
                .find(|d| d.code == *code)
                .copied()
                .unwrap_or(Disconnect::FORCE_DISCONNECT);
            for s in sessions_of(env, user, client.as_deref()) {
                if !whitelist.contains(&s.client_id()) {
                    s.request_close(d);
                }
            }
        }
        Command::Subscribe {
            user,
            channel,
            client,
            data,
            recover_since,
        } => {
            let ask = crate::session::dispatch::ServerSubscribe {
                data: data.clone(),
                since: recover_since
                    .clone()
                    .map(|(offset, epoch)| crate::engine::StreamPosition {
                        offset,
                        epoch: epoch.into(),
                    }),
            };
            for s in sessions_of(env, user, client.as_deref()) {
                let (env, channel, ask) = (env.clone(), channel.clone(), ask.clone());
                crate::exec::spawn(async move {
                    let r = crate::session::dispatch::server_subscribe(&env, &s, &channel, ask);
                    if let Err(e) = r.await {
                        tracing::debug!(session = s.id, %channel, error = %e, "server subscribe failed");
                    }
                });
            }
        }
        Command::Unsubscribe {
            user,
            channel,
            client,
        } => {
            for s in sessions_of(env, user, client.as_deref()) {
                if let Some(sub) = s.subscriptions().get(channel) {
                    env.hub.drop_subscriber(channel, s.id, Unsubscribe::SERVER);
                    env.release_subscription(&s, &sub);
                }
            }
        }
        Command::Refresh {
            user,
            client,
            expired,
            expire_at,
        } => {
            for s in sessions_of(env, user, client.as_deref()) {
                if *expired {
                    s.request_close(Disconnect::EXPIRED);
                } else if let Some(at) = expire_at {
                    s.expires_at.set((*at).min(u32::MAX as u64) as u32);
                } else {
                    s.expires_at.set(0);
                }
            }
        }
    }
}

/// This node's answer to a survey (JSON).
pub(super) async fn answer(mesh: &Mesh, survey: Survey) -> Bytes {
    match survey {
        Survey::Channels { pattern } => {
            let pattern = std::sync::Arc::new(pattern);
            let per_core = super::on_every_core(mesh, move |env| {
                env.hub
                    .local_channel_counts()
                    .into_iter()
                    .filter(|(c, _)| pattern.as_deref().is_none_or(|p| glob(p, c)))
                    .map(|(c, n)| (c.to_string(), n as u64))
                    .collect::<Vec<_>>()
            })
            .await;
            let mut all: HashMap<String, u64> = HashMap::new();
            for (c, n) in per_core.into_iter().flatten() {
                *all.entry(c).or_default() += n;
            }
            Bytes::from(serde_json::to_vec(&all).unwrap_or_default())
        }
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars() {
        assert!(glob("news", "news") && !glob("news", "news2"));
        assert!(glob("*", "") && glob("*", "abc"));
        assert!(glob("chat:*", "chat:room") && !glob("chat:*", "news:room"));
        assert!(glob("*:room", "chat:room") && glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy") && !glob("ab*ba", "aba"));
    }

    #[test]
    fn commands_round_trip_as_json() {
        let c = Command::Disconnect {
            user: "u".into(),
            client: None,
            code: 3503,
            whitelist: Vec::new(),
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"op":"disconnect","user":"u","client":null,"code":3503}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
    }
}
