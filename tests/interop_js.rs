//! Interop with the official JavaScript SDK (npm `centrifuge` 5.7.4, unmodified, over the
//! `ws` package) under Node against a real server; the Node driving is `common::node`.
//!
//! - `tests/js/interop.mjs`: a subscriber and a publisher, publishes through the client
//!   protocol and the HTTP API, an invalid token refused with the terminal 3500, then
//!   `READY_FOR_SHUTDOWN`; this test answers with SIGTERM and the script checks every client
//!   sees the 3001 "shutdown" reconnect advice.
//! - `tests/js/recovery.mjs`, one test per scenario, each on its own server: the connect
//!   result's `node`, getState + error 112, server-side subscription recovery across a cut
//!   transport, subscription token refresh and expiry (2501).
//!
//! A test passes only if the script prints `ok: done` and exits 0 (and, for the shutdown
//! test, the server exits 0 after SIGTERM).

mod common;

use std::time::Duration;

use common::node::{run_script, NodeRun};
use common::{Overrides, Server};

/// Upper bound for one Node script; each has its own, shorter, global timeout.
const NODE_DEADLINE: Duration = Duration::from_secs(90);

/// Everything the server printed so far (drains the harness's log channel).
fn server_log(server: &mut Server) -> String {
    server.wait_log("\u{0}never-logged\u{0}", Duration::from_millis(300));
    server.log.join("\n")
}

fn assert_passed(run: &NodeRun, server: &mut Server, what: &str) {
    if !run.passed() {
        let log = server_log(server);
        panic!(
            "{what} failed\n{}\n--- server log ---\n{log}",
            run.report(NODE_DEADLINE)
        );
    }
}

#[test]
fn js_sdk_pubsub_bad_token_and_shutdown() {
    // history on: the script checks every publication carries its stream offset
    let mut server = Server::start_with(&Overrides::with_history(100));
    let mut sigterm_sent = false;
    let env = [
        ("TOKEN_A", server.token("alice", 3600)),
        ("TOKEN_B", server.token("bob", 3600)),
        ("SCENARIO", "all".to_string()),
    ];
    let run = run_script(&server, "interop.mjs", &env, NODE_DEADLINE, |line| {
        if line.trim() == "READY_FOR_SHUTDOWN" && !sigterm_sent {
            server.sigterm();
            sigterm_sent = true;
        }
    });
    let server_exit = if sigterm_sent {
        server.wait_exit(Duration::from_secs(15))
    } else {
        None
    };
    let server_ok = server_exit.is_some_and(|s| s.success());
    if !(run.passed() && sigterm_sent && server_ok) {
        let log = server_log(&mut server);
        panic!(
            "JS SDK interop failed\n\
             READY_FOR_SHUTDOWN seen (SIGTERM sent): {sigterm_sent}\n\
             server exit after SIGTERM: {srv}\n{report}\n\
             --- server log ---\n{log}",
            srv = server_exit.map_or("not exited".to_string(), |s| s.to_string()),
            report = run.report(NODE_DEADLINE),
        );
    }
}

/// Runs one scenario of `recovery.mjs` against a fresh server started with `o`.
fn recovery_scenario(scenario: &str, o: &Overrides) {
    let mut server = Server::start_with(o);
    let env = [("SCENARIO", scenario.to_string())];
    let run = run_script(&server, "recovery.mjs", &env, NODE_DEADLINE, |_| {});
    assert_passed(&run, &mut server, &format!("recovery.mjs {scenario}"));
}

/// The connect result carries `node`, a non-empty name (`server.node_name`, default
/// `hostname:port`), read off the wire under the SDK.
#[test]
fn js_sdk_connect_result_names_the_node() {
    recovery_scenario("node", &Overrides::default());
}

/// getState subscriptions send `flag` rejectUnrecovered (2): a lost position (offset behind a
/// 3-deep history, or a wrong epoch) must be answered with error 112 so the SDK calls getState
/// again, then subscribes from the fresh position and gets live publications.
#[test]
fn js_sdk_get_state_reloads_after_unrecoverable_112() {
    recovery_scenario("getstate", &Overrides::with_history(3));
}

/// A server-side subscription (token `channels`) on a history channel is recoverable; after
/// the transport is cut, a publication made during the gap arrives through `connect.subs`
/// recovery with its offset, and the SDK reports `wasRecovering`/`recovered`.
#[test]
fn js_sdk_server_side_subscription_recovers_across_a_gap() {
    recovery_scenario("serversub", &Overrides::with_history(100));
}

/// A `$doc` subscription token expiring in 3 s: `expires`/`ttl` in the reply, `sub_refresh`
/// keeps the subscriber receiving after the original `exp`; a client that refuses to refresh
/// unsubscribes itself; one that cannot is unsubscribed by the server with 2501.
#[test]
fn js_sdk_subscription_token_refresh_and_expiry() {
    recovery_scenario("subexpiry", &Overrides::with_history(10));
}

/// The SDK over `wss://` (TLS on the public listener, `[server.tls]`): Node trusts the test
/// CA through `NODE_EXTRA_CA_CERTS`, as a user with a private CA would; publications through
/// the client protocol and the HTTPS API arrive.
#[test]
fn js_sdk_over_wss_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("ws-tls-js-{}", std::process::id()));
    let ca = wiresocket_testkit::ca::Ca::new(&dir);
    let (cert, key, _) = ca.issue("server", wiresocket_testkit::ca::Kind::Valid);
    let mut o = Overrides::with_history(100);
    o.server = common::tls::server_tls(&cert, &key);
    let mut server = Server::start_with(&o);
    let port = server.addr.port();
    let env = [
        ("TOKEN_A", server.token("alice", 3600)),
        ("TOKEN_B", server.token("bob", 3600)),
        ("SCENARIO", "pubsub".to_string()),
        (
            "WS_URL",
            format!("wss://localhost:{port}/connection/websocket"),
        ),
        ("API_URL", format!("https://localhost:{port}")),
        ("NODE_EXTRA_CA_CERTS", ca.ca_path().display().to_string()),
    ];
    let run = run_script(&server, "interop.mjs", &env, NODE_DEADLINE, |_| {});
    assert_passed(&run, &mut server, "interop.mjs pubsub over wss");
    let _ = std::fs::remove_dir_all(dir);
}
