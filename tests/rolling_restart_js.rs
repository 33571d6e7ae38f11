//! The official JS SDK across a rolling restart behind HAProxy (issue 10 item 4): the same
//! fleet and restart as `rolling_restart.rs` (`rolling_support::Fleet`), with the clients of
//! `tests/js/fleet.mjs` (`MODE=haproxy`, `ONLY_CODE=3001`; half with a client-side
//! subscription, half server-side) connected through HAProxy. The SDK reconnects on 3001 and
//! recovers by itself; the script fails on any other disconnect code and on a resubscribe
//! that did not recover. Asserted: 0 lost acknowledged publications, none twice, in order;
//! every client lost its connection at least once, always with 3001; HAProxy had each node
//! DOWN before its first 3001. The timeline is printed (`--nocapture`).

mod common;
mod redis_support;
mod rolling_support;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::delivery::expand;
use common::node::run_script;
use common::{Overrides, Server};
use rolling_support::{
    check_received, try_publish, Fleet, Published, Publisher, Restart, BETWEEN, CHANNEL,
};

/// JS SDK clients of `fleet.mjs`.
const JS_CLIENTS: usize = 6;
/// Upper bound for the Node script (its own global timeout is 90 s).
const NODE_DEADLINE: Duration = Duration::from_secs(120);

/// What the JS run produced.
struct JsOutcome {
    fleet: Fleet,
    t0: Instant,
    restarts: Vec<Restart>,
    published: Published,
    /// (when the line arrived, client, code) of every lost connection.
    lost: Vec<(Instant, String, u16)>,
    recovered: usize,
    offsets: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Follows `fleet.mjs`: once every client is subscribed, publishes and restarts the three
/// nodes in turn, ends with `{n: 0}` and collects what each client received.
fn drive_js(
    mut fleet: Fleet,
    lines: mpsc::Receiver<(Instant, String)>,
) -> Result<JsOutcome, String> {
    let next = |what: &str| {
        lines
            .recv_timeout(NODE_DEADLINE)
            .map_err(|e| format!("no line from fleet.mjs while waiting for {what} ({e})"))
    };
    while !next("READY")?.1.starts_with("READY ") {}
    let t0 = Instant::now();
    let publisher = Publisher::start(fleet.addrs.clone(), fleet.up.clone());
    publisher.wait_more(BETWEEN);
    let restarts = fleet.roll(&publisher);
    let mut published = publisher.finish();
    let (offset, _) = try_publish(fleet.addrs[0], 0)
        .ok_or("the last publication ({n: 0}) was not acknowledged")?;
    published.acked.insert(offset, 0);
    let (mut lost, mut recovered, mut offsets) = (Vec::new(), 0, BTreeMap::new());
    loop {
        let (at, line) = next("the script's end")?;
        if line == "ok: done" {
            break;
        }
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "LOST" => lost.push((at, f[1].to_owned(), f[2].parse().map_err(|_| line.clone())?)),
            "RECOVERED" => recovered += 1,
            "OFFSETS" => {
                let (o, n) = (expand(f[2])?, expand(f[3])?);
                offsets.insert(f[1].to_owned(), o.into_iter().zip(n).collect());
            }
            _ => {}
        }
    }
    Ok(JsOutcome {
        fleet,
        t0,
        restarts,
        published,
        lost,
        recovered,
        offsets,
    })
}

#[test]
fn js_sdk_through_haproxy_recovers_across_a_rolling_restart() {
    // the Node harness names a server; this one stays up and serves nobody
    let anchor = Server::start_with(&Overrides {
        cores: Some(1),
        ..Overrides::default()
    });
    let fleet = Fleet::start();
    let env = vec![
        ("MODE", "haproxy".to_owned()),
        ("CHANNEL", CHANNEL.to_owned()),
        ("CLIENTS", JS_CLIENTS.to_string()),
        ("WS_URL", fleet.proxy.ws_url()),
        ("ONLY_CODE", "3001".to_owned()),
    ];
    let (tx, rx) = mpsc::channel();
    let driver = std::thread::spawn(move || drive_js(fleet, rx));
    let run = run_script(&anchor, "fleet.mjs", &env, NODE_DEADLINE, |line| {
        let _ = tx.send((Instant::now(), line.to_owned()));
    });
    drop(tx);
    let o = match driver.join() {
        Ok(Ok(o)) if run.passed() => o,
        Ok(Err(e)) => panic!("fleet.mjs: {e}\n{}", run.report(NODE_DEADLINE)),
        Err(_) => panic!(
            "fleet.mjs: the driver panicked\n{}",
            run.report(NODE_DEADLINE)
        ),
        Ok(Ok(_)) => panic!("fleet.mjs failed\n{}", run.report(NODE_DEADLINE)),
    };
    let closes: Vec<Instant> = o.lost.iter().map(|l| l.0).collect();
    o.fleet.print_timeline(o.t0, &o.restarts, &closes);
    println!(
        "rolling restart (JS SDK): {} acknowledged publications, {} lost connections (codes {:?}), {} recoveries",
        o.published.acked.len(),
        o.lost.len(),
        o.lost.iter().map(|l| l.2).collect::<std::collections::BTreeSet<_>>(),
        o.recovered,
    );
    assert_eq!(o.offsets.len(), JS_CLIENTS, "{:?}", o.offsets.keys());
    for (client, received) in &o.offsets {
        check_received(client, received, &o.published);
        assert!(
            o.lost.iter().any(|l| &l.1 == client),
            "{client}: its node was restarted but it lost no connection"
        );
    }
    assert!(o.lost.iter().all(|l| l.2 == 3001), "{:?}", o.lost);
    assert!(o.recovered >= JS_CLIENTS, "{} recoveries", o.recovered);
    o.fleet.assert_out_before_first_close(&o.restarts, &closes);
}
