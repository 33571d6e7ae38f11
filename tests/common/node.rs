//! Drives the JS SDK test scripts of `tests/js/` (npm `centrifuge`, pinned, unmodified) under
//! Node against a test server: installs `tests/js/node_modules` with `npm ci` when missing,
//! runs one script with the server's addresses, the test secret and API key in its env,
//! forwards its `ok:` lines, lets the caller react to lines (e.g. `READY_FOR_SHUTDOWN`), and
//! kills it past a deadline. Callers: `tests/interop_js.rs`.
//!
//! Needs Node.js 20+ and npm on PATH (`scripts/test.sh` installs them).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Server, API_KEY, SECRET};

/// `tests/js`.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

fn tool_version(tool: &str) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes sure `tests/js/node_modules` holds the pinned SDK, running `npm ci` if not.
pub fn ensure_node_deps() {
    let dir = js_dir();
    tool_version("node").unwrap_or_else(|| {
        panic!("`node` not found on PATH: the JS SDK tests need Node.js 20+ and npm (scripts/test.sh installs them)")
    });
    let has = |pkg: &str| {
        dir.join("node_modules")
            .join(pkg)
            .join("package.json")
            .exists()
    };
    if has("centrifuge") && has("ws") && has("puppeteer-core") {
        return;
    }
    tool_version("npm").unwrap_or_else(|| {
        panic!("`npm` not found on PATH: the JS SDK tests need Node.js 20+ and npm (scripts/test.sh installs them)")
    });
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .expect("run npm ci");
    assert!(
        out.status.success(),
        "npm ci in {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the Node process printed and how it ended.
pub struct NodeRun {
    /// `None`: killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl NodeRun {
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.stdout.iter().any(|l| l == "ok: done")
    }

    /// A failure report: exit, stdout, stderr (with the script's `FAIL:` line).
    pub fn report(&self, deadline: Duration) -> String {
        format!(
            "node exit: {}\n--- node stdout ---\n{}\n--- node stderr ---\n{}",
            self.status
                .map_or(format!("killed after {deadline:?}"), |s| s.to_string()),
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

/// Runs `node <script>` in `tests/js` with `WS_URL`, `API_URL`, `API_KEY`, `SECRET` for
/// `server` plus `env`; calls `on_line` with each stdout line; kills Node past `deadline`.
pub fn run_script(
    server: &Server,
    script: &str,
    env: &[(&str, String)],
    deadline: Duration,
    mut on_line: impl FnMut(&str),
) -> NodeRun {
    ensure_node_deps();
    let mut child = Command::new("node")
        .arg(script)
        .current_dir(js_dir())
        .env("WS_URL", server.ws_url())
        .env("API_URL", server.http_url())
        .env("API_KEY", API_KEY)
        .env("SECRET", SECRET)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");

    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    let until = Instant::now() + deadline;
    let mut stdout = Vec::new();
    // Read stdout until Node closes it (exit) or the deadline passes.
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("[node {script}] {line}");
                on_line(&line);
                stdout.push(line);
            }
            Err(_) => break,
        }
    }
    let status = wait_child(&mut child, until);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    NodeRun {
        status,
        stdout,
        stderr: stderr_thread.join().unwrap_or_default(),
    }
}

fn wait_child(child: &mut Child, until: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
