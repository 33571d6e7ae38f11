//! The one table of every way a connection can end: WebSocket close codes and
//! Centrifugo disconnect codes (see `shared/PROTOCOL.md`), with the reason text
//! sent to the client and whether the SDK may reconnect.
//!
//! Every close the server initiates names one of these constants; metrics count
//! closes by `code` using [`Disconnect::index`], so the table and the metric
//! labels cannot drift apart.

/// A reason to end a connection, as sent in the `disconnect` push and close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: &'static str,
    pub reconnect: bool,
}

macro_rules! table {
    ($($name:ident = $code:literal, $reason:literal, $reconnect:literal;)*) => {
        impl Disconnect {
            $(pub const $name: Disconnect = Disconnect { code: $code, reason: $reason, reconnect: $reconnect };)*
            /// Every known code, in table order (the metric label order).
            pub const ALL: &'static [Disconnect] = &[$(Disconnect::$name),*];
        }
    };
}

table! {
    NORMAL = 1000, "normal closure", true;
    GOING_AWAY = 1001, "going away", true;
    PROTOCOL_ERROR = 1002, "protocol error", true;
    ABNORMAL = 1006, "abnormal closure", true;
    INVALID_UTF8 = 1007, "invalid utf-8", true;
    MESSAGE_TOO_BIG = 1009, "message too big", true;
    SERVER_ERROR = 1011, "server error", true;
    CONNECTION_CLOSED = 3000, "connection closed", true;
    SHUTDOWN = 3001, "shutdown", true;
    INTERNAL = 3004, "internal server error", true;
    EXPIRED = 3005, "connection expired", true;
    SUBSCRIPTION_EXPIRED = 3006, "subscription expired", true;
    SLOW = 3008, "slow", true;
    WRITE_ERROR = 3009, "write error", true;
    INSUFFICIENT_STATE = 3010, "insufficient state", true;
    FORCE_RECONNECT = 3011, "force reconnect", true;
    NO_PONG = 3012, "no pong", true;
    TOO_MANY_REQUESTS = 3013, "too many requests", true;
    INVALID_TOKEN = 3500, "invalid token", false;
    BAD_REQUEST = 3501, "bad request", false;
    STALE = 3502, "stale", false;
    FORCE_DISCONNECT = 3503, "force disconnect", false;
    CONNECTION_LIMIT = 3504, "connection limit", false;
    CHANNEL_LIMIT = 3505, "channel limit", false;
    INAPPROPRIATE_PROTOCOL = 3506, "inappropriate protocol", false;
    PERMISSION_DENIED = 3507, "permission denied", false;
    NOT_AVAILABLE = 3508, "not available", false;
    TOO_MANY_ERRORS = 3509, "too many errors", false;
    REDIRECT = 4009, "redirect", true;
}

impl Disconnect {
    /// Position in [`Disconnect::ALL`]; codes a client sends that are not in the
    /// table count as [`Disconnect::NORMAL`].
    pub fn index(code: u16) -> usize {
        Self::ALL.iter().position(|d| d.code == code).unwrap_or(0)
    }

    /// Whether this is a Centrifugo-level disconnect (sent as a `disconnect` push first).
    pub fn is_protocol_level(&self) -> bool {
        self.code >= 3000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_indexed() {
        for (i, d) in Disconnect::ALL.iter().enumerate() {
            assert_eq!(Disconnect::index(d.code), i, "{d:?}");
            assert!(
                d.reason.len() <= 123,
                "close reason must fit a control frame"
            );
        }
        const { assert!(!Disconnect::INVALID_TOKEN.reconnect && Disconnect::SHUTDOWN.reconnect) };
    }
}
