//! Renders every chart kind into a temp dir and checks the SVG: well-formed envelope, titles,
//! series and category names, value labels, palette colours; empty, zero and NaN inputs.

use super::*;
use std::path::PathBuf;

/// A fresh directory under the system temp dir, unique per test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wsb-chart-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes a test's directory (left in place when an assertion failed before, for inspection).
fn clean(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
}

fn read(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(
        s.len() > 1000,
        "{} is only {} bytes",
        path.display(),
        s.len()
    );
    assert!(
        s.starts_with("<svg"),
        "not an SVG: {}",
        &s[..40.min(s.len())]
    );
    assert!(s.trim_end().ends_with("</svg>"));
    s
}

#[test]
fn bars_have_title_names_values_and_unit() {
    let p = temp_dir("bars").join("rss.svg");
    let values = vec![
        ("wiresocket".to_string(), 1880.0),
        ("centrifugo".to_string(), 9120.0),
        ("node-ws".to_string(), f64::NAN),
    ];
    bars_svg(&p, "RSS per connection", "bytes", &values).unwrap();
    let s = read(&p);
    for needle in [
        "RSS per connection",
        "wiresocket",
        "centrifugo",
        "node-ws",
        "bytes",
    ] {
        assert!(s.contains(needle), "missing {needle}");
    }
    assert!(s.contains("1880") && s.contains("9120"), "value labels");
    assert!(s.contains("n/a"), "NaN value is labelled, not drawn");
    assert!(s.contains("fill=\"#1F77B4\""), "first palette colour");
    clean(p.parent().unwrap());
}

#[test]
fn grouped_bars_linear_and_log() {
    let d = temp_dir("grouped");
    let cats: Vec<String> = ["p50", "p90", "p99", "p99.9"].map(String::from).to_vec();
    let series = vec![
        ("wiresocket".to_string(), vec![120.0, 300.0, 900.0, 4000.0]),
        ("centrifugo".to_string(), vec![250.0, f64::NAN, 2500.0]),
    ];
    for log in [false, true] {
        let p = d.join(format!("lat-{log}.svg"));
        grouped_bars_svg(&p, "Fan-out latency", "µs", &cats, &series, log).unwrap();
        let s = read(&p);
        for needle in [
            "Fan-out latency",
            "p99.9",
            "p50",
            "wiresocket",
            "centrifugo",
        ] {
            assert!(s.contains(needle), "log={log}: missing {needle}");
        }
        assert!(s.contains("#FF7F0E"), "second series colour");
    }
    clean(&d);
}

#[test]
fn lines_skip_nan_and_name_axes() {
    let p = temp_dir("lines").join("rate.svg");
    let series = vec![
        (
            "wiresocket".to_string(),
            vec![(100.0, 1.0), (1000.0, 2.0), (f64::NAN, 3.0), (5000.0, 9.0)],
        ),
        ("centrifugo".to_string(), vec![(100.0, 2.0), (1000.0, 6.5)]),
    ];
    lines_svg(&p, "p99 vs rate", "publications/s", "p99 ms", &series).unwrap();
    let s = read(&p);
    for needle in [
        "p99 vs rate",
        "publications/s",
        "p99 ms",
        "wiresocket",
        "centrifugo",
    ] {
        assert!(s.contains(needle), "missing {needle}");
    }
    clean(p.parent().unwrap());
}

#[test]
fn empty_and_zero_inputs_do_not_panic() {
    let d = temp_dir("empty");
    bars_svg(&d.join("a.svg"), "empty", "B", &[]).unwrap();
    bars_svg(&d.join("b.svg"), "zeros", "B", &[("x".into(), 0.0)]).unwrap();
    grouped_bars_svg(&d.join("c.svg"), "none", "µs", &[], &[], true).unwrap();
    let zero = vec![("x".to_string(), vec![0.0, 0.0])];
    let cats = vec!["p50".to_string(), "p99".to_string()];
    grouped_bars_svg(&d.join("d.svg"), "zero log", "µs", &cats, &zero, true).unwrap();
    lines_svg(&d.join("e.svg"), "no lines", "x", "y", &[]).unwrap();
    let single = vec![("one".to_string(), vec![(5.0, 5.0)])];
    lines_svg(&d.join("f.svg"), "one point", "x", "y", &single).unwrap();
    assert!(read(&d.join("a.svg")).contains("no data"));
    assert!(read(&d.join("e.svg")).contains("no data"));
    assert!(read(&d.join("f.svg")).contains("one point"));
    clean(&d);
}

#[test]
fn ranges_and_runs() {
    assert_eq!(padded_range(&[], 1.1), 0.0..1.0);
    assert_eq!(padded_range(&[0.0, 0.0], 1.1), 0.0..1.0);
    assert_eq!(padded_range(&[10.0, 50.0], 1.2), 0.0..60.0);
    assert_eq!(padded_range(&[-10.0, f64::NAN], 2.0), -20.0..0.0);
    assert_eq!(legend_pad(2), 1.26);
    assert_eq!(log_range(&[3.0, 450.0]), 1.0..10_000.0);
    assert_eq!(log_range(&[0.0, f64::NAN]), 1.0..10.0);
    assert_eq!(span(&[2.0, 2.0]), 1.5..2.5);
    let pts = [(1.0, 1.0), (f64::NAN, 0.0), (2.0, 2.0), (3.0, 3.0)];
    let runs = finite_runs(&pts);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1], &[(2.0, 2.0), (3.0, 3.0)]);
    assert_eq!(category_name(["a", "b"].into_iter(), slot_at(1, 0.5)), "b");
    assert_eq!(category_name(["a", "b"].into_iter(), slot_at(2, 0.5)), "");
    assert_eq!(slot_at(2, 0.25), 2250);
}

#[test]
fn human_numbers() {
    assert_eq!(human(1880.0), "1880");
    assert_eq!(human(4.5), "4.5");
    assert_eq!(human(0.1234), "0.123");
    assert_eq!(human(12_345.0), "12.3k");
    assert_eq!(human(2_500_000.0), "2.5M");
    assert_eq!(human(3e9), "3G");
    assert_eq!(human(0.0), "0");
    assert_eq!(human(-250.0), "-250");
}
