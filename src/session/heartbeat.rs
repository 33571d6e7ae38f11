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
        sweep(&core, crate::runtime::now_ms());
        core.engine.housekeeping(Instant::now());
    }
}

fn sweep(core: &Core, now: u64) {
    let ws = &core.cfg.websocket;
    let unix = crate::runtime::unix_now();
    let sessions = core.sessions.borrow();
    for (_, s) in sessions.iter() {
        if s.close_requested().is_some() {
            continue;
        }
        if s.stalled_for_ms(now)
            .is_some_and(|d| d > ws.write_timeout_ms)
        {
            s.request_close(Disconnect::SLOW);
            continue;
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
                    s.send_or_enqueue(ping_frame(), &core.flusher);
                }
            }
            _ => {}
        }
    }
}
