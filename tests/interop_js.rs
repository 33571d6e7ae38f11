//! Interop with the official JavaScript SDK: runs `tests/js/interop.mjs` (npm `centrifuge`
//! 5.7.4, unmodified, over the `ws` package) under Node against a real server.
//!
//! The script connects a subscriber and a publisher, publishes through the client protocol
//! and the HTTP API, checks an invalid token is refused with the terminal 3500, then prints
//! `READY_FOR_SHUTDOWN`; this test answers with SIGTERM and the script checks every client
//! sees the 3001 "shutdown" reconnect advice. Passes only if Node and the server both exit 0.
//!
//! Needs Node.js 20+ and npm on PATH (CI installs them); installs `tests/js/node_modules`
//! with `npm ci` from the committed lock file when it is missing.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Server, API_KEY};

/// Upper bound for the whole Node script; it has its own 30 s global timeout.
const NODE_DEADLINE: Duration = Duration::from_secs(60);

fn js_dir() -> PathBuf {
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
fn ensure_node_deps(dir: &Path) {
    tool_version("node").unwrap_or_else(|| {
        panic!("`node` not found on PATH: the JS interop test needs Node.js 20+ and npm (CI installs them)")
    });
    if dir
        .join("node_modules")
        .join("centrifuge")
        .join("package.json")
        .exists()
        && dir
            .join("node_modules")
            .join("ws")
            .join("package.json")
            .exists()
    {
        return;
    }
    tool_version("npm").unwrap_or_else(|| {
        panic!("`npm` not found on PATH: the JS interop test needs Node.js 20+ and npm (CI installs them)")
    });
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
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
struct NodeRun {
    status: Option<ExitStatus>,
    stdout: Vec<String>,
    stderr: String,
    sigterm_sent: bool,
}

/// Spawns `node interop.mjs`, forwards its stdout lines, and sends SIGTERM to the server
/// when the script asks for it. Kills Node if it runs past `NODE_DEADLINE`.
fn run_node(server: &Server, dir: &Path) -> NodeRun {
    let mut child = Command::new("node")
        .arg("interop.mjs")
        .current_dir(dir)
        .env("WS_URL", server.ws_url())
        .env("API_URL", server.http_url())
        .env("API_KEY", API_KEY)
        .env("TOKEN_A", server.token("alice", 3600))
        .env("TOKEN_B", server.token("bob", 3600))
        .env("SCENARIO", "all")
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

    let deadline = Instant::now() + NODE_DEADLINE;
    let mut run = NodeRun {
        status: None,
        stdout: vec![],
        stderr: String::new(),
        sigterm_sent: false,
    };
    // Read stdout until Node closes it (exit) or the deadline passes.
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("[node] {line}");
                if line.trim() == "READY_FOR_SHUTDOWN" && !run.sigterm_sent {
                    server.sigterm();
                    run.sigterm_sent = true;
                }
                run.stdout.push(line);
            }
            Err(_) => break,
        }
    }
    run.status = wait_child(&mut child, deadline);
    if run.status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    run.stderr = stderr_thread.join().unwrap_or_default();
    run
}

fn wait_child(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything the server printed so far (drains the harness's log channel).
fn server_log(server: &mut Server) -> String {
    server.wait_log("\u{0}never-logged\u{0}", Duration::from_millis(300));
    server.log.join("\n")
}

#[test]
fn js_sdk_pubsub_bad_token_and_shutdown() {
    let dir = js_dir();
    ensure_node_deps(&dir);
    let mut server = Server::start();
    let run = run_node(&server, &dir);
    let server_exit = if run.sigterm_sent {
        server.wait_exit(Duration::from_secs(15))
    } else {
        None
    };

    let node_ok = run.status.is_some_and(|s| s.success());
    let server_ok = server_exit.is_some_and(|s| s.success());
    if !(node_ok && run.sigterm_sent && server_ok) {
        let log = server_log(&mut server);
        panic!(
            "JS SDK interop failed\n\
             node exit: {node}\n\
             READY_FOR_SHUTDOWN seen (SIGTERM sent): {sent}\n\
             server exit after SIGTERM: {srv}\n\
             --- node stdout ---\n{out}\n\
             --- node stderr ---\n{err}\n\
             --- server log ---\n{log}",
            node = run
                .status
                .map_or("killed after 60 s".to_string(), |s| s.to_string()),
            sent = run.sigterm_sent,
            srv = server_exit.map_or("not exited".to_string(), |s| s.to_string()),
            out = run.stdout.join("\n"),
            err = run.stderr,
        );
    }
    assert!(
        run.stdout.iter().any(|l| l == "ok: done"),
        "script did not finish: {:?}",
        run.stdout
    );
}
