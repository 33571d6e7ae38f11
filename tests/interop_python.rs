//! Interop with the official Python SDK (`centrifuge-python`, pinned in
//! `tests/py/requirements.txt`, unmodified) against a real server: `tests/py/interop.py`
//! connects, subscribes with recovery, receives API publications in order with their
//! offsets, reads history, presence and presence stats, publishes from the client,
//! recovers what was published while it was disconnected, and sees an invalid token
//! refused with 3500. The SDK lives in a virtualenv, `tests/py/.venv`, made here with
//! `python3 -m venv` and `pip install -r requirements.txt` when missing (`scripts/test.sh`
//! installs `python3-venv`).
//!
//! The test passes only if the script prints `ok: done` and exits 0.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Overrides, Server, API_KEY};

fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
}

/// The virtualenv's Python, with the pinned SDK installed.
fn python() -> PathBuf {
    let dir = py_dir();
    let python = dir.join(".venv").join("bin").join("python");
    let has_sdk = || {
        Command::new(&python)
            .args(["-c", "import centrifuge"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_sdk() {
        return python;
    }
    let run = |program: &Path, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} is needed (scripts/test.sh installs python3 and python3-venv): {e}",
                    program.display()
                )
            });
        assert!(
            out.status.success(),
            "{} {args:?} failed:\n{}\n{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Path::new("python3"), &["-m", "venv", ".venv"]);
    run(
        &python,
        &["-m", "pip", "install", "--quiet", "-r", "requirements.txt"],
    );
    assert!(has_sdk(), "centrifuge-python did not install");
    python
}

#[test]
fn python_sdk_pubsub_history_presence_recovery_and_bad_token() {
    let python = python();
    let mut o = Overrides::with_history(100);
    o.env.push((
        "WIRESOCKET_CHANNELS__DEFAULT__PRESENCE".into(),
        "true".into(),
    ));
    let mut server = Server::start_with(&o);
    let mut child = Command::new(python)
        .arg(py_dir().join("interop.py"))
        .env("WS_URL", server.ws_url())
        .env("API_URL", server.http_url())
        .env("API_KEY", API_KEY)
        .env("TOKEN", server.token("alice", 3600))
        .env("CHANNEL", "py-chat")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run interop.py");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    let passed = status.is_some_and(|s| s.success()) && stdout.lines().any(|l| l == "ok: done");
    if !passed {
        server.wait_log("\u{0}never-logged\u{0}", Duration::from_millis(300));
        panic!(
            "the Python SDK interop failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
            server.log.join("\n")
        );
    }
}
