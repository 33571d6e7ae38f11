//! The per-connection command rate limit: a token bucket refilled at
//! `websocket.command_rate_per_s` up to `websocket.command_burst`. A command
//! arriving with the bucket empty is refused with error 111 (temporary); a client
//! that keeps going while refused (`websocket.command_burst` refusals in a row) is
//! disconnected with 3013 "too many requests".
//!
//! 16 bytes per session, no timer: the bucket refills lazily when a command comes.

/// What to do with one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer error 111.
    Refuse,
    /// Disconnect 3013.
    Disconnect,
}

/// Rate and burst of the bucket (from config).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_s: f32,
    pub burst: f32,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    tokens: f32,
    /// When the bucket was last refilled; 0: never used (starts full).
    at_ms: u64,
    strikes: u32,
}

impl Bucket {
    pub fn take(&mut self, now_ms: u64, rate: Rate) -> Verdict {
        if rate.per_s <= 0.0 {
            return Verdict::Allow; // disabled
        }
        if self.at_ms == 0 {
            self.tokens = rate.burst;
        } else {
            let elapsed = now_ms.saturating_sub(self.at_ms) as f32 / 1000.0;
            self.tokens = (self.tokens + elapsed * rate.per_s).min(rate.burst);
        }
        self.at_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes as f32 >= rate.burst.max(1.0) {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_then_disconnects_and_refills() {
        let rate = Rate {
            per_s: 10.0,
            burst: 5.0,
        };
        let mut b = Bucket::default();
        for _ in 0..5 {
            assert_eq!(b.take(1000, rate), Verdict::Allow);
        }
        for _ in 0..4 {
            assert_eq!(b.take(1000, rate), Verdict::Refuse);
        }
        assert_eq!(b.take(1000, rate), Verdict::Disconnect);
        // 100 ms later one token is back
        let mut b2 = Bucket::default();
        for _ in 0..5 {
            b2.take(1, rate);
        }
        assert_eq!(b2.take(1, rate), Verdict::Refuse);
        assert_eq!(b2.take(101, rate), Verdict::Allow);
        let mut off = Bucket::default();
        let none = Rate {
            per_s: 0.0,
            burst: 0.0,
        };
        for _ in 0..1000 {
            assert_eq!(off.take(1, none), Verdict::Allow);
        }
    }
}
