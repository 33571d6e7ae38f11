//! The process basics every harness here is built on: a free loopback port, a private
//! temp directory, polling until a condition holds (bounded), `redis-cli` calls, and
//! [`RedisProcess`]: any `redis-server` / `redis-sentinel` with chosen arguments,
//! waited for until its port accepts connections and killed with SIGKILL when dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A free loopback port (bound once and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh private directory `wiresocket-<what>-<pid>-<n>` under the system temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wiresocket-{what}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Calls `check` every 50 ms until it is true; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (10 s at most) until `port` on loopback accepts TCP connections.
pub(crate) fn wait_listening(program: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{program} did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `redis-cli -p port` with `commands` (one per line, on one connection);
/// returns stdout.
pub fn redis_cli(port: u16, commands: &str) -> String {
    redis_cli_with(port, &[], commands)
}

/// [`redis_cli`] with more `redis-cli` arguments (`--tls`, `--cacert …`).
pub fn redis_cli_with(port: u16, args: &[String], commands: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-cli is needed by this test: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("redis-cli output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `redis-cli -p port [options] args…` (one command as arguments); returns its
/// trimmed stdout.
pub fn redis_cli_args(port: u16, options: &[String], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(options)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli is needed (apt-get install redis-tools): {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `redis-server` or `redis-sentinel` process listening on `port`.
pub struct RedisProcess {
    child: Child,
    pub port: u16,
}

impl RedisProcess {
    /// Runs `program args…` and waits until `port` accepts connections.
    pub fn spawn(program: &str, args: &[String], port: u16) -> RedisProcess {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} is needed by this test (apt-get install redis-server redis-sentinel; scripts/test.sh installs them): {e}")
            });
        wait_listening(program, port);
        RedisProcess { child, port }
    }

    /// A plain `redis-server` (no persistence) on `port` with `extra` arguments.
    pub fn server(port: u16, extra: &[&str]) -> RedisProcess {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn("redis-server", &args, port)
    }

    /// Sends `signal` (`STOP`, `CONT`, `9`, …) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Calls of `command` (lower case, e.g. `publish`, `evalsha`) on the server on `port` since
/// it started or its last `CONFIG RESETSTAT`, from `INFO commandstats`; 0 when never called.
pub fn command_calls(port: u16, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    redis_cli_args(port, &[], &["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}
