//! End-to-end smoke test of the comparison: `wiresocket-bench compare` at a tiny scale against
//! the real wiresocket binary (every scenario) and every peer in `bench/peers/` (fan-out and
//! reconnect storm), then `capacity` on the results file it wrote. Checks that each system was
//! driven for real (every expected delivery arrived, every client came back after the storm)
//! and that the report, ratios, costs and charts were produced.
//!
//! Needs the peers installed (`bench/peers/install.sh`, which `scripts/test.sh` runs) and the
//! workspace binaries built (`cargo build --workspace`, also done by `scripts/test.sh`), so it
//! is built only with the bench crate's `peer-smoke` feature: `cargo test --workspace` skips
//! it, and `scripts/test.sh` runs it after the main suite with
//! `cargo test -p wiresocket-bench --features peer-smoke --test compare_smoke`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wiresocket-bench"))
}

/// A binary of the same profile as this test's bench binary.
fn sibling(name: &str) -> PathBuf {
    let p = bench_bin().parent().unwrap().join(name);
    assert!(
        p.exists(),
        "{} missing: build the workspace first (scripts/test.sh does)",
        p.display()
    );
    p
}

fn compare(systems: &str, only: &str, out: &Path, name: &str) -> Value {
    let status = Command::new(bench_bin())
        .current_dir(repo())
        .env("TOKIO_WS_BIN", sibling("tokio-ws-peer"))
        .args(["compare", "--systems", systems, "--only", only])
        .args(["--scale", "0.02", "--time-scale", "0.1", "--procs", "1"])
        .arg("--wiresocket-bin")
        .arg(sibling("wiresocket"))
        .arg("--out-dir")
        .arg(out)
        .args(["--name", name])
        .status()
        .expect("running wiresocket-bench compare");
    assert!(status.success(), "compare exited with {status}");
    let text = std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn result<'a>(doc: &'a Value, scenario: &str, system: &str) -> &'a Value {
    let r = &doc["results"][scenario]["systems"][system];
    assert!(
        r.is_object() && r.get("error").is_none(),
        "{scenario} on {system}: {r}"
    );
    r
}

fn assert_all_delivered(r: &Value, what: &str) {
    let phases = r["phases"].as_array().expect("phases");
    assert!(!phases.is_empty(), "{what}: no phases");
    for p in phases {
        let expected = p["expected_deliveries"].as_u64().unwrap();
        assert!(expected > 0, "{what}: nothing published: {p}");
        assert_eq!(p["received"].as_u64(), Some(expected), "{what}: {p}");
        assert!(p["latency_us"]["p99_us"].as_u64().unwrap() > 0, "{what}");
    }
}

fn assert_storm_recovered(r: &Value, what: &str) {
    let dropped = r["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{what}: nobody dropped");
    assert_eq!(r["reconnected"].as_u64(), Some(dropped), "{what}: {r}");
    assert_eq!(r["all_back"], true, "{what}");
    assert!(r["storm"]["drop_to_ready_us"]["count"].as_u64() == Some(dropped));
}

#[test]
fn wiresocket_runs_every_scenario_and_capacity_reads_the_result() {
    let out = std::env::temp_dir().join(format!("ws-smoke-a-{}", std::process::id()));
    let doc = compare(
        "wiresocket",
        "connect-storm,idle-hold,fanout,many-channels,reconnect-storm,slow-consumers",
        &out,
        "smoke",
    );
    let c = result(&doc, "connect-storm", "wiresocket");
    assert_eq!(c["connect"]["failed"], 0);
    assert_eq!(c["connect"]["ready"], c["connect"]["requested"]);
    let idle = result(&doc, "idle-hold", "wiresocket");
    assert!(idle["memory"]["rss_per_conn_bytes"].is_number());
    assert_all_delivered(result(&doc, "fanout", "wiresocket"), "fanout");
    assert_all_delivered(result(&doc, "many-channels", "wiresocket"), "many-channels");
    assert_storm_recovered(result(&doc, "reconnect-storm", "wiresocket"), "storm");
    let slow = result(&doc, "slow-consumers", "wiresocket");
    assert_eq!(
        slow["phases"][1]["loss_pct"], 0.0,
        "healthy clients lost nothing"
    );
    assert!(slow["slow"]["clients"].as_u64().unwrap() > 0);
    assert!(doc["costs"]["wiresocket"]["rss_per_conn_bytes"].is_number());
    for chart in [
        "connect-storm-rate.svg",
        "fanout-latency.svg",
        "reconnect-storm-live.svg",
    ] {
        let svg = std::fs::read_to_string(out.join("smoke").join(chart)).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("wiresocket"),
            "{chart}"
        );
    }
    let md = std::fs::read_to_string(out.join("smoke.md")).unwrap();
    assert!(md.contains("## slow-consumers (v1)") && md.contains("capacity"));

    let plan = Command::new(bench_bin())
        .args(["capacity", "--results"])
        .arg(out.join("smoke.json"))
        .args(["--conns", "500000", "--json"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("capacity --json output");
    assert!(plan.is_object());
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn every_peer_is_driven_for_real() {
    let out = std::env::temp_dir().join(format!("ws-smoke-b-{}", std::process::id()));
    let peers = ["node-ws", "socketio", "nchan", "tokio-ws"];
    let doc = compare(
        &format!("wiresocket,{}", peers.join(",")),
        "fanout,reconnect-storm",
        &out,
        "peers",
    );
    for sys in std::iter::once("wiresocket").chain(peers) {
        let f = result(&doc, "fanout", sys);
        assert_eq!(f["connect"]["failed"], 0, "{sys}");
        assert_all_delivered(f, sys);
        assert_storm_recovered(result(&doc, "reconnect-storm", sys), sys);
    }
    let metrics = doc["metrics"].as_array().unwrap();
    let row = metrics
        .iter()
        .find(|m| {
            m["scenario"] == "fanout" && m["metric"].as_str().unwrap().ends_with(": deliveries/s")
        })
        .expect("deliveries metric");
    for p in peers {
        assert!(
            row["ratio_wiresocket_over_peer"][p].is_number(),
            "{p}: {row}"
        );
    }
    let md = std::fs::read_to_string(out.join("peers.md")).unwrap();
    for p in peers {
        assert!(md.contains(&format!("ws/{p}")), "{p} column");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn cluster_delivers_across_nodes_and_redis_is_read() {
    let out = std::env::temp_dir().join(format!("ws-smoke-c-{}", std::process::id()));
    let doc = compare(
        "wiresocket-cluster,socketio",
        "fanout,many-channels,reconnect-storm",
        &out,
        "cluster",
    );
    let f = result(&doc, "fanout", "wiresocket-cluster");
    // Clients are spread over the three nodes and the publisher's connections too: every
    // subscriber getting every publication means publications crossed nodes through Redis.
    assert_eq!(f["connect"]["failed"], 0);
    assert_all_delivered(f, "cluster fanout");
    assert_all_delivered(
        result(&doc, "many-channels", "wiresocket-cluster"),
        "cluster many",
    );
    assert_storm_recovered(
        result(&doc, "reconnect-storm", "wiresocket-cluster"),
        "cluster storm",
    );
    for sys in ["wiresocket-cluster", "socketio"] {
        let f = result(&doc, "fanout", sys);
        assert_all_delivered(f, sys);
        for p in f["phases"].as_array().unwrap() {
            // Every accepted publication went through Redis at least once.
            let ops = p["redis"]["ops_per_publication"].as_f64();
            assert!(ops.is_some_and(|o| o >= 1.0), "{sys}: {p}");
        }
        assert!(
            f["redis"]["used_memory_per_conn_bytes"].is_number(),
            "{sys}"
        );
    }
    // Three nodes (plus the Redis) are the cluster's processes; each node holds Redis
    // connections.
    assert!(f["redis"]["after_connect"]["connected_clients"].as_u64() >= Some(3));
    let row = doc["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["scenario"] == "fanout" && m["metric"].as_str().unwrap().ends_with("deliveries/s")
        })
        .expect("deliveries metric");
    assert!(
        row["ratio_wiresocket_over_peer"]["socketio"].is_number(),
        "{row}"
    );
    let md = std::fs::read_to_string(out.join("cluster.md")).unwrap();
    assert!(
        md.contains("Ratios are wiresocket-cluster / peer")
            && md.contains("Redis commands per publication")
    );
    let _ = std::fs::remove_dir_all(out);
}
