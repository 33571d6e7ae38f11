//! The official centrifuge-js SDK (5.7.4, its browser bundle) in a real browser: headless
//! Chromium (Debian package `chromium`, which `scripts/test.sh` installs) driven by
//! puppeteer-core from `tests/js/browser.mjs`. A page from an allowed origin subscribes,
//! receives API publications in order and recovers what it missed while disconnected; a page
//! from another origin cannot open a WebSocket (the server refuses its `Origin`, counted in
//! `wiresocket_limit_refused_total{reason="origin"}`).
//!
//! The test passes only if the script prints `ok: done` and exits 0, and the server counted
//! the refused origin.

mod common;

use std::time::Duration;

use common::node::run_script;
use common::{Overrides, Server};

#[test]
fn js_sdk_in_headless_chromium_receives_recovers_and_a_foreign_origin_is_refused() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is needed by this test (apt-get install chromium; scripts/test.sh installs it)"
    );
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut o = Overrides::with_history(100);
    o.env.push((
        "WIRESOCKET_SERVER__ALLOWED_ORIGINS".into(),
        format!("http://127.0.0.1:{page_port}"),
    ));
    let mut server = Server::start_with(&o);
    let env = [
        ("PAGE_PORT", page_port.to_string()),
        ("CHANNEL", "browser-chat".to_string()),
        ("CHROMIUM", chromium),
    ];
    let deadline = Duration::from_secs(90);
    let run = run_script(&server, "browser.mjs", &env, deadline, |_| {});
    if !run.passed() {
        server.wait_log("\u{0}never-logged\u{0}", Duration::from_millis(300));
        panic!(
            "the browser test failed\n{}\n--- server log ---\n{}",
            run.report(deadline),
            server.log.join("\n")
        );
    }
    assert!(
        server.metric_sum("wiresocket_limit_refused_total", &["reason=\"origin\""]) >= 1.0,
        "the foreign origin's upgrade was not refused by the server"
    );
}
