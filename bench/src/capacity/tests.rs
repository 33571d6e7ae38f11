//! Plan arithmetic on the sample results file (bench/src/testdata/compare-sample.json) against
//! hand-computed values, plus helpers (`args`, `target`, `sample_plan`) the submodules' tests use.

use super::*;
use clap::Parser;

pub const SAMPLE: &str = include_str!("../testdata/compare-sample.json");

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: CapacityArgs,
}

/// Args as the command line would give them, with `--results sample.json` first.
pub fn args(extra: &[&str]) -> CapacityArgs {
    let base = ["capacity", "--results", "sample.json"];
    Cli::parse_from(base.iter().chain(extra)).a
}

pub fn target(extra: &[&str]) -> Target {
    Target::from_args(&args(extra), &mut Vec::new()).unwrap()
}

/// The plan for the sample file's `wiresocket` costs.
pub fn sample_plan(extra: &[&str]) -> Plan {
    let a = args(extra);
    let (meta, costs) = costs::parse(SAMPLE, &a.system).unwrap();
    build(&a, meta, costs).unwrap()
}

fn value(lines: &[Line], item: &str) -> f64 {
    lines
        .iter()
        .find(|l| l.item.starts_with(item))
        .unwrap_or_else(|| panic!("{item}"))
        .value
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn traffic_for_the_default_target() {
    let t = sample_plan(&[]).traffic;
    assert_eq!(t.deliveries_per_s, 500_000.0);
    assert_eq!(t.publications_per_s, 500.0);
    assert_eq!(t.channels, 500.0);
    assert_eq!(t.frame_bytes, 268.0); // 200 + 64 + 4
    assert!(close(t.storm_connects_per_s, 500_000.0 / 60.0));
    assert_eq!(t.egress_bytes_per_s, 167_000_000.0); // 500,000 x (268 + 66)
    assert_eq!((t.node_reach, t.redis_publications_per_s), (1.0, 0.0));
}

#[test]
fn ram_for_the_sample() {
    let r = sample_plan(&[]).ram;
    assert_eq!(value(&r.lines, "user space: connections"), 940_000_000.0);
    assert_eq!(value(&r.lines, "user space: extra"), 0.0);
    assert_eq!(value(&r.lines, "user space: send queues"), 1_310_720_000.0);
    assert_eq!(value(&r.lines, "kernel: socket objects"), 2_500_000_000.0);
    assert_eq!(value(&r.lines, "kernel: TCP memory"), 17_500_000.0);
    assert_eq!(value(&r.lines, "kernel: socket buffers"), 2_048_000_000.0);
    assert_eq!(value(&r.lines, "kernel: TIME_WAIT"), 256_000_000.0);
    assert_eq!(r.total_bytes, 9_219_703_648.0);
    assert!(close(r.with_headroom_bytes, 11_985_614_742.4));
    assert_eq!((r.plan_gib, r.host_gib), (12, 16));
    // 9,219,703,648 - 2,048,000,000 + 1,572,864 pages x 4096
    assert_eq!(value(&r.lines, "worst case"), 13_614_154_592.0);
}

#[test]
fn cpu_and_fds_for_the_sample() {
    let p = sample_plan(&[]);
    let c = &p.cpu;
    assert!(close(c.delivery_us, 1.14)); // 1.0 + (200 - 60) x 1 ns
    assert!(close(value(&c.lines, "deliveries"), 0.57));
    assert!(close(value(&c.lines, "publications"), 0.015));
    assert!(close(value(&c.lines, "idle"), 1.0));
    assert!(close(value(&c.lines, "reconnect storm"), 0.55));
    assert!(close(c.total_cores, 2.135));
    assert!(close(c.with_headroom_cores, 2.7755));
    assert_eq!(c.cores, 3);
    assert!(close(c.full_reconnect_s, 11.0));
    assert_eq!(p.fds.needed, 501_024);
    assert_eq!(
        (p.fds.limit_nofile, p.fds.nr_open, p.fds.file_max),
        (1 << 20, 1 << 21, 1 << 21)
    );
}

#[test]
fn redis_for_the_sample() {
    let r = sample_plan(&[]).redis;
    // publish 500 x 5 + churn 138.9 x (6 + 3) + keepalive 20,000 x 5
    assert!(close(r.commands_per_s.per_node, 103_750.0));
    // + storm 8,333.3 x 6
    assert!(close(r.peak_commands_per_s.per_node, 153_750.0));
    // 500 x 360 + 20,000 x 360 + 138.9 x 688 + 138.9 x 224
    assert!(close(r.up_bytes_per_s.per_node, 7_506_666.666_666_667));
    // 500 x 16 + 500 x 296 + 20,000 x 16 + 138.9 x 48 + 138.9 x 32
    assert!(close(r.down_bytes_per_s.per_node, 487_111.111_111_111));
    // 500 x 100 x 344 + 500,000 x 328 + 500,000 x 296
    assert_eq!(r.memory_bytes, 329_200_000.0);
    let three = sample_plan(&["--nodes", "3"]).redis;
    assert!(close(three.commands_per_s.cluster, 3.0 * 103_750.0));
    let no_presence = sample_plan(&["--presence-refresh-s", "0"]).redis;
    // publish 2,500 + churn 138.9 x (2 + 1) + keepalive 20,000 x 1
    assert!(close(
        no_presence.commands_per_s.per_node,
        22_916.666_666_666_67
    ));
}

#[test]
fn cluster_splits_publications() {
    let p = sample_plan(&["--nodes", "4", "--subscribers-per-channel", "2"]);
    let t = &p.traffic;
    assert_eq!(t.publications_per_s, 1_000_000.0); // 2M clients x 1 / 2
    assert_eq!(t.api_publications_per_s, 250_000.0);
    assert_eq!(t.node_reach, 1.0 - 0.75f64.powi(2));
    assert!(close(t.redis_publications_per_s, 437_500.0));
}

#[test]
fn missing_costs_fall_back_with_warnings() {
    let a = args(&["--system", "node-ws", "--channels-per-client", "3"]);
    let (meta, costs) = costs::parse(SAMPLE, "node-ws").unwrap();
    let p = build(&a, meta, costs).unwrap();
    let joined = p.warnings.join("\n");
    for key in [
        "rss_per_sub_bytes",
        "slab_per_conn_bytes",
        "kernel_per_conn_bytes",
        "cpu_us_per_publish",
    ] {
        assert!(joined.contains(key), "no warning for {key}: {joined}");
    }
    assert_eq!(
        value(&p.ram.lines, "kernel: socket objects"),
        500_000.0 * 3584.0
    );
    assert_eq!(value(&p.cpu.lines, "publications"), 0.0);
    assert!(p.ram.lines[1].formula.contains("NOT MEASURED"));
    let text = render::text(&p);
    assert!(
        text.contains("NOT MEASURED") && text.contains("WARNINGS"),
        "{text}"
    );
}

#[test]
fn json_output_parses_and_has_the_numbers() {
    let p = sample_plan(&[]);
    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&p).unwrap()).unwrap();
    assert_eq!(v["cpu"]["cores"], 3);
    assert_eq!(v["ram"]["host_gib"], 16);
    assert_eq!(v["fds"]["limit_nofile"], 1_048_576);
    assert_eq!(v["inputs"]["conns"], 500_000);
    assert_eq!(v["costs"]["rss_per_conn_bytes"], 1880.0);
    assert!(v["sysctl"]["snippet"]
        .as_str()
        .unwrap()
        .contains("net.core.somaxconn = 65535"));
    assert_eq!(v["sysctl"]["tcp_mem"][1], 1_048_576);
}

#[test]
fn invalid_targets_are_rejected_or_clamped() {
    let bad = |x: &[&str]| Target::from_args(&args(x), &mut Vec::new()).is_err();
    assert!(bad(&["--conns", "0"]));
    assert!(bad(&["--reconnect-window-s", "0"]));
    assert!(bad(&["--slow-fraction", "1.5"]));
    assert!(bad(&["--headroom=-0.1"]));
    let mut w = Vec::new();
    let t = Target::from_args(
        &args(&["--conns", "100", "--subscribers-per-channel", "5000"]),
        &mut w,
    )
    .unwrap();
    assert_eq!(t.subscribers_per_channel, 100.0);
    assert!(w[0].contains("exceeds"), "{w:?}");
}

#[test]
fn limits_warn() {
    let p = sample_plan(&[
        "--conns",
        "5000000",
        "--msg-rate",
        "10",
        "--msg-bytes",
        "2000",
    ]);
    let joined = p.warnings.join("\n");
    assert!(joined.contains("Gbit/s exceeds"), "{joined}");
    assert!(joined.contains("Redis would take"), "{joined}");
    assert!(joined.contains("cores for one host"), "{joined}");
    let mismatch = sample_plan(&["--publish-rate", "50"]);
    assert!(mismatch
        .warnings
        .iter()
        .any(|w| w.contains("implies 10,000 subscribers")));
    assert!(sample_plan(&[])
        .notes
        .iter()
        .any(|n| n.contains("10 source IPs")));
}

/// The block between `<!-- capacity:begin -->` and `<!-- capacity:end -->` in tuning/README.md
/// must be the literal output for the results file and inputs it names (it is regenerated, never
/// edited by hand): re-run them and compare.
#[test]
fn readme_example_is_literal_output() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/tuning/README.md")).unwrap();
    let block = readme
        .split("<!-- capacity:begin -->")
        .nth(1)
        .and_then(|b| b.split("<!-- capacity:end -->").next())
        .expect("capacity markers in tuning/README.md");
    let text = block
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a text block");
    let results = text
        .lines()
        .nth(1)
        .and_then(|l| l.split(" from ").nth(1))
        .and_then(|l| l.split(" (date ").next())
        .expect("the results file on the second line");
    let system = text
        .lines()
        .nth(1)
        .and_then(|l| l.split('"').nth(1))
        .unwrap();
    let mut argv: Vec<String> = ["--system", system].map(String::from).into();
    argv.extend(readme_inputs(text));
    // "  memory costs (...) from FILE costs.SYSTEM" / "  redis costs (...) from ..." when the
    // plan used --memory-results / --redis-results.
    let overlay = |what: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|l| l.split(" from ").nth(1))
            .and_then(|l| l.split_once(" costs."))
    };
    let (memory, redis) = (overlay("memory costs ("), overlay("redis costs ("));
    if let Some((_, sys)) = memory {
        argv.extend(["--memory-system".to_string(), sys.to_string()]);
    }
    if let Some((_, sys)) = redis {
        argv.extend(["--redis-system".to_string(), sys.to_string()]);
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let a = CapacityArgs {
        results: results.into(),
        memory_results: memory.map(|(f, _)| f.into()),
        redis_results: redis.map(|(f, _)| f.into()),
        ..args(&argv)
    };
    let (meta, costs) = load_costs(&CapacityArgs {
        results: format!("{root}/{results}").into(),
        memory_results: memory.map(|(f, _)| format!("{root}/{f}").into()),
        redis_results: redis.map(|(f, _)| format!("{root}/{f}").into()),
        ..a.clone()
    })
    .unwrap();
    let expected = render::text(&build(&a, meta, costs).unwrap());
    assert_eq!(
        text, expected,
        "regenerate the README block (command beside it)"
    );
}

/// `--flag value` pairs of the INPUTS section ("derived" values are left to their default).
fn readme_inputs(text: &str) -> Vec<String> {
    let section = text.split("\nINPUTS\n").nth(1).unwrap_or("");
    let rows = section.lines().take_while(|l| !l.trim().is_empty());
    rows.filter_map(|l| {
        let (flag, value) = l.trim().split_once(' ')?;
        let value = value.trim().replace(',', "");
        (value != "derived").then(|| [flag.to_string(), value])
    })
    .flatten()
    .collect()
}

#[test]
fn measured_redis_and_cluster_memory_costs_are_used() {
    let a = args(&[]);
    let (meta, costs) = costs::parse(SAMPLE, &a.system).unwrap();
    let cluster = Costs {
        rss_per_conn_bytes: Some(3000.0),
        slab_per_conn_bytes: Some(4000.0),
        redis_used_memory_per_conn_bytes: Some(2.0),
        cpu_us_per_delivery: Some(999.0),
        ..Costs::default()
    };
    let mut c = costs.clone().with_memory_of(&cluster);
    assert_eq!(c.rss_per_conn_bytes, Some(3000.0));
    assert_eq!(c.slab_per_conn_bytes, Some(4000.0));
    // CPU stays from the main results; what the memory file lacks stays too.
    assert_eq!(c.cpu_us_per_delivery, costs.cpu_us_per_delivery);
    assert_eq!(c.kernel_per_conn_bytes, costs.kernel_per_conn_bytes);
    let redis = Costs {
        redis_ops_per_publication: Some(2.0),
        redis_used_memory_per_conn_bytes: Some(77.0),
        ..Costs::default()
    };
    c = c.with_redis_of(&redis);
    // The memory file's per-connection Redis figure wins over the comparison's.
    assert_eq!(c.redis_used_memory_per_conn_bytes, Some(2.0));
    let p = build(&a, meta, c).unwrap();
    // publish 500 x 2 (measured) + churn 138.9 x (6 + 3) + keepalive 20,000 x 5
    assert!(close(p.redis.commands_per_s.per_node, 102_250.0));
    // 500 x 100 x 344 + 500,000 x 328 + 500,000 x 2 (measured per connection)
    assert_eq!(p.redis.memory_bytes, 182_200_000.0);
    assert!(p.redis.memory_formula.contains("measured used_memory"));
    assert!(render::text(&p).contains("MEASURED where noted"));
}

#[test]
fn measured_per_connection_redis_commands_apply_with_presence_off() {
    let a = args(&["--presence-refresh-s", "0"]);
    let (meta, costs) = costs::parse(SAMPLE, &a.system).unwrap();
    let c = Costs {
        redis_cmds_per_connect: Some(0.01),
        redis_cmds_per_conn_s: Some(0.0002),
        ..costs.clone()
    };
    let r = build(&a, meta.clone(), c.clone()).unwrap().redis;
    // publish 500 x 5 + churn 138.9 x (0.01 + 0.01) + keepalive 20,000 x (0.0002 x 25)
    assert!(close(r.commands_per_s.per_node, 2_602.777_777_777_778));
    let storm = r
        .activities
        .iter()
        .find(|a| a.item.starts_with("reconnect"))
        .unwrap();
    assert_eq!(storm.cmds, 0.01);
    assert!(storm.formula.contains("MEASURED"));
    // With presence on the design's commands stay (the runs measured presence off).
    let on = build(&args(&[]), meta, c).unwrap().redis;
    assert!(close(on.commands_per_s.per_node, 103_750.0));
}
