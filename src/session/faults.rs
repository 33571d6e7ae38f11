//! Fault injection for the black-box tests, compiled into debug builds only and
//! active only when the server runs with `WS_TEST_FAULTS=1` (not a config key:
//! release builds have no such command at all). A client command
//! `{"id":N,"__test_fault":"<kind>"}` injects:
//!
//! - `session-panic`: a panic inside this session's command handling (it must be
//!   contained: the session is dropped and counted, the core goes on);
//! - `core-panic`: a panic in a task spawned the way the core's loops are
//!   (`exec::spawn_critical`): the node must exit non-zero instead of answering
//!   `/health` with a broken core.
//!
//! Anything else, or without the variable, is an unknown method (104).

use crate::protocol::ErrorCode;

/// Injects `kind`; the error to answer when it does not end the session.
pub(crate) fn inject(kind: &str) -> ErrorCode {
    if std::env::var_os("WS_TEST_FAULTS").is_none() {
        return ErrorCode::METHOD_NOT_FOUND;
    }
    match kind {
        "session-panic" => panic!("injected fault: session-panic"),
        "core-panic" => {
            crate::exec::spawn_critical("injected", async { panic!("injected fault: core-panic") });
            ErrorCode::INTERNAL
        }
        _ => ErrorCode::METHOD_NOT_FOUND,
    }
}
