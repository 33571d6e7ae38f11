//! [`RedisServer`]: a plain private `redis-server` (no persistence) on a free loopback
//! port, restartable on the same port after a kill, killed when dropped. Its working
//! directory (where a replica's full sync writes an RDB file) is a private temp dir.

use crate::process::{free_port, redis_cli_args, temp_dir, RedisProcess};

pub struct RedisServer {
    process: RedisProcess,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::on_port(free_port())
    }

    /// Starts (or restarts, after a kill) a server on `port`.
    pub fn on_port(port: u16) -> RedisServer {
        let dir = temp_dir("redis");
        let process = RedisProcess::server(port, &["--dir", dir.to_str().expect("utf-8 dir")]);
        RedisServer { process, port, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` with `args` (one command) against this server; returns its
    /// trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli_args(self.port, &[], args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.process.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
