//! Error codes carried in replies (`{"id":N,"error":{code,message,temporary}}`)
//! and in server API failures. One table; nothing else invents codes.

/// A protocol error: code, message, and whether the SDK may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u32,
    pub message: &'static str,
    pub temporary: bool,
}

macro_rules! codes {
    ($($name:ident = $code:literal, $msg:literal, $tmp:literal;)*) => {
        impl ErrorCode {
            $(pub const $name: ErrorCode = ErrorCode { code: $code, message: $msg, temporary: $tmp };)*
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];
        }
    };
}

codes! {
    INTERNAL = 100, "internal server error", true;
    UNAUTHORIZED = 101, "unauthorized", false;
    UNKNOWN_CHANNEL = 102, "unknown channel", false;
    PERMISSION_DENIED = 103, "permission denied", false;
    METHOD_NOT_FOUND = 104, "method not found", false;
    ALREADY_SUBSCRIBED = 105, "already subscribed", false;
    LIMIT_EXCEEDED = 106, "limit exceeded", false;
    BAD_REQUEST = 107, "bad request", false;
    NOT_AVAILABLE = 108, "not available", false;
    TOKEN_EXPIRED = 109, "token expired", false;
    EXPIRED = 110, "expired", false;
    TOO_MANY_REQUESTS = 111, "too many requests", true;
    UNRECOVERABLE_POSITION = 112, "unrecoverable position", false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut seen: Vec<u32> = ErrorCode::ALL.iter().map(|e| e.code).collect();
        seen.dedup();
        assert_eq!(seen.len(), ErrorCode::ALL.len());
        const { assert!(ErrorCode::TOO_MANY_REQUESTS.temporary) };
    }
}
