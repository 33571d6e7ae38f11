//! The per-core timer sweep that replaces per-connection timers: once a tick
//! it sends the heartbeat `{}` to connected sessions that are due, and closes
//! sessions that missed their pong (3012), never sent `connect` (3502), let
//! their token expire without refresh (3005), or stopped reading while frames
//! were queued for longer than the write timeout (3008).
//!
//! One pass costs a few nanoseconds per session and no memory per session.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{ping_frame, Phase};
use crate::runtime::core::Core;
use crate::ws::close::Disconnect;

/// How often the sweep runs for the configured intervals (50 ms .. 1 s).
pub fn tick(core: &Core) -> Duration {
    let ws = &core.cfg.websocket;
    let shortest = ws
        .ping_interval_ms
        .min(ws.pong_timeout_ms)
        .min(ws.write_timeout_ms);
    Duration::from_millis((shortest / 4).clamp(50, 1000))
}

pub async fn run(core: Rc<Core>) {
    let period = tick(&core);
    loop {
        crate::runtime::sleep(period).await;
        sweep(&core, Instant::now());
        core.engine.housekeeping(Instant::now());
    }
}

fn sweep(core: &Core, now: Instant) {
    let ws = &core.cfg.websocket;
    let ping_every = Duration::from_millis(ws.ping_interval_ms);
    let pong_within = Duration::from_millis(ws.pong_timeout_ms);
    let write_timeout = Duration::from_millis(ws.write_timeout_ms);
    let connect_within = Duration::from_millis(core.cfg.server.header_timeout_ms);
    let unix = crate::runtime::unix_now();
    let sessions = core.sessions.borrow();
    for (_, s) in sessions.iter() {
        if s.close_requested().is_some() {
            continue;
        }
        if s.stalled_for(now).is_some_and(|d| d > write_timeout) {
            s.request_close(Disconnect::SLOW);
            continue;
        }
        match s.phase.get() {
            Phase::Open if now.duration_since(s.opened_at) > connect_within => {
                s.request_close(Disconnect::STALE)
            }
            Phase::Connected => {
                if s.pong_deadline.get().is_some_and(|d| now > d) {
                    s.request_close(Disconnect::NO_PONG);
                } else if s.identity.borrow().expires_at.is_some_and(|at| unix > at) {
                    s.request_close(Disconnect::EXPIRED);
                } else if now >= s.next_ping.get() {
                    s.next_ping.set(now + ping_every);
                    if s.pong_deadline.get().is_none() {
                        s.pong_deadline.set(Some(now + pong_within));
                    }
                    s.enqueue(ping_frame(), &core.flusher);
                }
            }
            _ => {}
        }
    }
}
