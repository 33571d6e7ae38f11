//! The per-core timer sweep that replaces per-connection timers: once a tick
//! it sends the heartbeat `{}` to connected sessions that are due, closes
//! sessions that missed their pong (3012), never sent `connect` (3502), let
//! their token expire without refresh (3005), or stopped reading while frames
//! were queued for longer than the write timeout (3008), and unsubscribes
//! subscriptions whose subscription token expired without `sub_refresh`
//! (unsubscribe push 2501, as Centrifugo: the SDK resubscribes with a new token).
//! Where the engine's presence entries expire (Redis), it also re-adds the
//! entries of this core's present clients every `presence_refresh_every`.
//!
//! One pass costs a few nanoseconds per session and no memory per session.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{ping_frame, Env, Phase, Session};
use crate::protocol::push::Unsubscribe;
use crate::ws::close::Disconnect;

/// How often the sweep runs for the configured intervals (50 ms .. 1 s).
pub fn tick(env: &Env) -> Duration {
    let ws = &env.cfg.websocket;
    let shortest = ws
        .ping_interval_ms
        .min(ws.pong_timeout_ms)
        .min(ws.write_timeout_ms);
    Duration::from_millis((shortest / 4).clamp(50, 1000))
}

pub async fn run(env: Rc<Env>) {
    let period = tick(&env);
    let refresh = env.engine.presence_refresh_every();
    let mut refreshed = Instant::now();
    loop {
        crate::exec::sleep(period).await;
        let expired = sweep(&env, crate::exec::now_ms());
        let unix = expiry_clock(&env);
        for s in expired {
            for channel in s.subscriptions().expired(unix) {
                if let Some(sub) = s.subscriptions().get(&channel) {
                    env.hub
                        .drop_subscriber(&channel, s.id, Unsubscribe::EXPIRED);
                    env.release_subscription(&s, &sub);
                }
            }
        }
        env.engine.housekeeping(Instant::now());
        if refresh.is_some_and(|every| refreshed.elapsed() >= every) {
            refreshed = Instant::now();
            refresh_presence(&env);
        }
    }
}

/// Adds every present client's entries again (engines whose entries expire), in a task of
/// its own so the sweep never waits on the engine.
fn refresh_presence(env: &Rc<Env>) {
    let mut entries = Vec::new();
    env.sessions.for_each(|s| {
        if s.phase.get() != Phase::Connected {
            return;
        }
        for sub in s.subscriptions().present() {
            entries.push((sub, env.client_info(s)));
        }
    });
    if entries.is_empty() {
        return;
    }
    let engine = env.engine.clone();
    crate::exec::spawn(async move {
        let n = entries.len();
        if let Err(e) = engine.presence_refresh(entries).await {
            tracing::debug!(entries = n, error = %e, "presence refresh failed");
        }
    });
}

/// Now minus the expiry grace: tokens count as expired only past it.
fn expiry_clock(env: &Env) -> u64 {
    crate::exec::unix_now().saturating_sub(env.cfg.websocket.expiry_grace_s)
}

/// One pass over the core's sessions; returns those with expired subscriptions.
fn sweep(env: &Env, now: u64) -> Vec<Rc<Session>> {
    let ws = &env.cfg.websocket;
    let unix = expiry_clock(env);
    let mut expired_subs = Vec::new();
    env.sessions.for_each(|s| {
        if s.close_requested().is_some() {
            return;
        }
        if s.stalled_for_ms(now)
            .is_some_and(|d| d > ws.write_timeout_ms)
        {
            s.request_close(Disconnect::SLOW);
            return;
        }
        match s.phase.get() {
            Phase::Open if now > s.next_ping_ms.get() => s.request_close(Disconnect::STALE),
            Phase::Connected => {
                let pong_due = s.pong_deadline_ms.get();
                if pong_due != 0 && now > pong_due {
                    s.request_close(Disconnect::NO_PONG);
                } else if matches!(s.expires_at.get(), at if at != 0 && unix > at as u64) {
                    s.request_close(Disconnect::EXPIRED);
                } else if now >= s.next_ping_ms.get() {
                    s.next_ping_ms.set(now + ws.ping_interval_ms);
                    if pong_due == 0 {
                        s.pong_deadline_ms.set(now + ws.pong_timeout_ms);
                    }
                    s.send_or_enqueue(ping_frame());
                }
                if s.subscriptions().any_expired(unix) {
                    expired_subs.push(s.clone());
                }
            }
            _ => {}
        }
    });
    expired_subs
}
