//! The options of one channel as the session needs them (history, presence,
//! join/leave, recovery), resolved from configuration in one place.

use super::Env;
use crate::engine::HistoryOptions;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    pub history: HistoryOptions,
    pub presence: bool,
    pub join_leave: bool,
    /// Subscriptions are recoverable even when the client did not ask.
    pub force_recovery: bool,
}

pub fn channel_options(env: &Env, _channel: &str) -> ChannelOptions {
    let e = &env.cfg.engine;
    ChannelOptions {
        history: HistoryOptions {
            size: e.history_size,
            ttl: Duration::from_secs(e.history_ttl_s.max(1)),
        },
        presence: false,
        join_leave: false,
        force_recovery: true,
    }
}
