//! Black-box tests of the operations kit: the systemd unit (`systemd-analyze verify`), the tuning
//! scripts (`apply.sh --dry-run`, `check.sh` table vs exit status), `scripts/install.sh --root`
//! into a scratch directory, and the example production config with its env file.
//!
//! Nothing here changes the host: apply.sh only runs with `--dry-run`, install.sh only with
//! `--root` (no user creation, no systemctl). `systemd-analyze` comes from the Debian package
//! `systemd`, which scripts/test.sh installs when missing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wiresocket-ops-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command with no WIRESOCKET_* variables inherited from the test's environment.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let mut cmd = Command::new(program.as_ref());
    cmd.args(args).current_dir(repo());
    for (key, _) in std::env::vars() {
        if key.starts_with("WIRESOCKET_") {
            cmd.env_remove(key);
        }
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", program.as_ref()))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Keys of tuning/99-wiresocket.conf (without systemd's optional-key '-' prefix).
fn sysctl_keys() -> Vec<String> {
    fs::read_to_string(repo().join("tuning/99-wiresocket.conf"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let key = l.split('=').next().unwrap().trim();
            key.trim_start_matches('-').to_owned()
        })
        .collect()
}

/// `systemd-analyze verify` on a unit; returns its output lines that mention the unit.
fn verify_unit(unit: &Path) -> Vec<String> {
    let out = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: install the Debian package `systemd` \
             (scripts/test.sh does this before running the tests)"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let (stdout, stderr) = text(&out);
    let name = unit.file_name().unwrap().to_str().unwrap();
    let mut problems: Vec<String> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains(name))
        .map(str::to_owned)
        .collect();
    if !out.status.success() {
        problems.push(format!("exit status {}: {stderr}", out.status));
    }
    problems
}

#[test]
fn systemd_unit_verifies_without_errors() {
    let source = fs::read_to_string(repo().join("systemd/wiresocket.service")).unwrap();
    let check = repo().join("tuning/check.sh");
    let bin = env!("CARGO_BIN_EXE_wiresocket");
    // The installed paths do not exist here: point the commands at the repo's script and the
    // freshly built binary so verify judges the unit's syntax and directives, not this host.
    let unit = source
        .replace("/usr/lib/wiresocket/check.sh", check.to_str().unwrap())
        .replace("/usr/local/bin/wiresocket", bin);
    assert!(!unit.contains("/usr/lib/wiresocket/check.sh") && !unit.contains("/usr/local/bin/"));
    let dir = scratch("unit");
    let path = dir.join("wiresocket.service");
    fs::write(&path, &unit).unwrap();
    let problems = verify_unit(&path);
    assert!(
        problems.is_empty(),
        "systemd-analyze verify:\n{}",
        problems.join("\n")
    );

    // The detection above is not vacuous: verify does report a broken directive.
    let broken = dir.join("broken-wiresocket.service");
    fs::write(
        &broken,
        unit.replace("LimitNOFILE=1048576", "LimitNOFILE=lots\nNoSuchKey=1"),
    )
    .unwrap();
    assert!(
        verify_unit(&broken).len() >= 2,
        "verify must flag the broken copy"
    );

    // The settings the server relies on.
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    for wanted in [
        "Type=exec",
        "LimitNOFILE=1048576",
        "LimitMEMLOCK=infinity",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30s",
        "Restart=on-failure",
        "CapabilityBoundingSet=",
        "SystemCallFilter=io_uring_setup io_uring_enter io_uring_register",
    ] {
        assert!(lines.contains(&wanted), "unit lacks `{wanted}`");
    }
    assert!(
        lines.contains(&"ExecReload=/bin/kill -HUP $MAINPID"),
        "reload (TLS certificate) is SIGHUP"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ExecStartPre=/usr/lib/wiresocket/check.sh ")),
        "the tuning check must be a fatal ExecStartPre (no '-' prefix)"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn apply_dry_run_prints_before_and_after_for_every_key() {
    let installed = Path::new("/etc/sysctl.d/99-wiresocket.conf");
    let existed = installed.exists();
    let out = run(repo().join("tuning/apply.sh"), &["--dry-run"]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "apply.sh --dry-run failed:\n{stdout}\n{stderr}"
    );
    for key in sysctl_keys() {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{stdout}"));
        assert!(line.contains(" -> "), "not a before -> after line: {line}");
    }
    assert!(
        stdout.contains("/etc/sysctl.d/99-wiresocket.conf: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("/etc/security/limits.d/wiresocket.conf: "),
        "{stdout}"
    );
    assert_eq!(
        installed.exists(),
        existed,
        "a dry run must not install anything"
    );
}

/// Runs check.sh and asserts its exit status matches its table; returns (status, rows, stdout).
fn check_sh(args: &[&str]) -> (i32, BTreeMap<String, String>, String) {
    let out = run(repo().join("tuning/check.sh"), args);
    let (stdout, stderr) = text(&out);
    let code = out.status.code().expect("check.sh exited by a signal");
    assert!(
        code == 0 || code == 1,
        "check.sh {args:?} exit {code}:\n{stdout}\n{stderr}"
    );
    let mut lines = stdout.lines();
    assert!(
        lines.next().unwrap_or("").starts_with("CHECK"),
        "no table header:\n{stdout}"
    );
    let rows: BTreeMap<String, String> = lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let status = l.split_whitespace().last().unwrap().to_owned();
            let name = l[..34].trim().to_owned();
            (name, status)
        })
        .collect();
    let failed: Vec<&String> = rows
        .iter()
        .filter(|(_, s)| *s == "FAIL")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        code == 1,
        !failed.is_empty(),
        "exit {code} vs table:\n{stdout}"
    );
    for name in &failed {
        assert!(
            stdout.contains(&format!("  - {name} (wanted")),
            "{name} not listed:\n{stdout}"
        );
    }
    if failed.is_empty() {
        assert!(stdout.contains("OK: all checks pass."), "{stdout}");
    }
    for status in rows.values() {
        assert!(
            ["ok", "FAIL", "n/a"].contains(&status.as_str()),
            "status {status}:\n{stdout}"
        );
    }
    (code, rows, stdout)
}

#[test]
fn check_exit_status_matches_its_table() {
    let (_, rows, stdout) = check_sh(&["--target", "1000"]);
    for key in sysctl_keys() {
        assert!(rows.contains_key(&key), "no row for {key}:\n{stdout}");
    }
    assert!(rows.contains_key("kernel.io_uring_disabled"), "{stdout}");
    assert!(
        stdout.contains(">= 2024"),
        "fd need = target + 1024:\n{stdout}"
    );

    // The limits of a given process (this test) instead of the shell's.
    let pid = std::process::id().to_string();
    let (_, rows, _) = check_sh(&["--target", "1000", "--pid", &pid]);
    assert!(rows.contains_key("file descriptors (nofile soft)"));

    // No host has 100M file descriptors: non-zero, naming file descriptors.
    let (code, rows, stdout) = check_sh(&["--target", "100000000"]);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        rows.get("file descriptors (nofile hard)")
            .map(String::as_str),
        Some("FAIL")
    );
    assert!(
        stdout.contains("  - file descriptors (nofile hard) (wanted >= 100001024"),
        "{stdout}"
    );

    let bad = run(repo().join("tuning/check.sh"), &["--target", "many"]);
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn install_lays_out_files_and_keeps_existing_config() {
    let root = scratch("install");
    let root_s = root.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_wiresocket");
    let install = repo().join("scripts/install.sh");
    let out = run(&install, &["--root", root_s, "--bin", bin]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "install.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("skipped systemctl daemon-reload"),
        "{stdout}"
    );

    let expected: [(&str, Option<&str>, u32); 12] = [
        ("usr/local/bin/wiresocket", None, 0o755),
        (
            "usr/lib/wiresocket/check.sh",
            Some("tuning/check.sh"),
            0o755,
        ),
        (
            "usr/lib/wiresocket/apply.sh",
            Some("tuning/apply.sh"),
            0o755,
        ),
        (
            "usr/lib/wiresocket/99-wiresocket.conf",
            Some("tuning/99-wiresocket.conf"),
            0o644,
        ),
        (
            "usr/lib/wiresocket/limits.conf",
            Some("tuning/limits.conf"),
            0o644,
        ),
        (
            "usr/lib/wiresocket/README.md",
            Some("tuning/README.md"),
            0o644,
        ),
        (
            "usr/lib/wiresocket/examples/wiresocket.toml",
            Some("systemd/wiresocket.toml"),
            0o644,
        ),
        (
            "usr/lib/wiresocket/examples/wiresocket.env",
            Some("systemd/wiresocket.env"),
            0o644,
        ),
        (
            "etc/systemd/system/wiresocket.service",
            Some("systemd/wiresocket.service"),
            0o644,
        ),
        ("etc/wiresocket", None, 0o750),
        (
            "etc/wiresocket/wiresocket.toml",
            Some("systemd/wiresocket.toml"),
            0o640,
        ),
        (
            "etc/wiresocket/wiresocket.env",
            Some("systemd/wiresocket.env"),
            0o640,
        ),
    ];
    for (path, source, want) in expected {
        let full = root.join(path);
        assert_eq!(mode(&full), want, "mode of {path}: {:o}", mode(&full));
        if let Some(source) = source {
            assert_eq!(
                fs::read(&full).unwrap(),
                fs::read(repo().join(source)).unwrap(),
                "{path}"
            );
        }
    }
    assert_eq!(
        fs::read(root.join("usr/local/bin/wiresocket")).unwrap(),
        fs::read(bin).unwrap()
    );

    // The installed check finds its wanted values beside it.
    let checked = run(
        root.join("usr/lib/wiresocket/check.sh"),
        &["--target", "1000"],
    );
    assert!(
        matches!(checked.status.code(), Some(0 | 1)),
        "{:?}",
        text(&checked)
    );

    // A second run replaces package files but keeps the operator's config and secrets.
    let config = root.join("etc/wiresocket/wiresocket.toml");
    let env = root.join("etc/wiresocket/wiresocket.env");
    fs::write(&config, "# operator's config\n").unwrap();
    fs::write(&env, "WIRESOCKET_AUTH__HMAC_SECRET=real\n").unwrap();
    let again = run(&install, &["--root", root_s, "--bin", bin]);
    let (stdout, stderr) = text(&again);
    assert!(
        again.status.success(),
        "second install.sh failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "# operator's config\n"
    );
    assert_eq!(
        fs::read_to_string(&env).unwrap(),
        "WIRESOCKET_AUTH__HMAC_SECRET=real\n"
    );
    assert!(stdout.contains("wiresocket.toml exists: kept"), "{stdout}");
    assert_eq!(mode(&config), 0o640);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn example_config_passes_check_config_with_the_env_file() {
    let vars: Vec<(String, String)> = fs::read_to_string(repo().join("systemd/wiresocket.env"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value lines");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let keys: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["WIRESOCKET_AUTH__HMAC_SECRET", "WIRESOCKET_API__KEY"]
    );

    let bin = env!("CARGO_BIN_EXE_wiresocket");
    let args = ["check-config", "--config", "systemd/wiresocket.toml"];
    // Secrets are not inline: without the env file the config is rejected.
    let without = run(bin, &args);
    assert!(
        !without.status.success(),
        "secrets must come from the environment"
    );
    assert!(
        text(&without).1.contains("auth.hmac_secret"),
        "{:?}",
        text(&without)
    );

    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(repo());
    for (key, _) in std::env::vars() {
        if key.starts_with("WIRESOCKET_") {
            cmd.env_remove(key);
        }
    }
    let with = cmd.envs(vars).output().unwrap();
    let (stdout, stderr) = text(&with);
    assert!(
        with.status.success(),
        "check-config failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("config OK"), "{stdout}");
    assert!(stdout.contains("listen:  0.0.0.0:8000"), "{stdout}");
    assert!(stdout.contains("api:     enabled"), "{stdout}");
}

#[test]
fn scripts_parse_and_pass_shellcheck() {
    let scripts = ["tuning/apply.sh", "tuning/check.sh", "scripts/install.sh"];
    for script in scripts {
        let out = run("bash", &["-n", script]);
        assert!(out.status.success(), "bash -n {script}: {:?}", text(&out));
        assert_eq!(
            mode(&repo().join(script)) & 0o111,
            0o111,
            "{script} is not executable"
        );
    }
    // shellcheck is optional (not installed by scripts/test.sh); when present it must be clean.
    match Command::new("shellcheck")
        .args(scripts)
        .current_dir(repo())
        .output()
    {
        Ok(out) => assert!(out.status.success(), "shellcheck:\n{}", text(&out).0),
        Err(_) => eprintln!("shellcheck not installed: skipped (apt-get install shellcheck)"),
    }
}
