//! The publisher: posts benchmark payloads over HTTP (wiresocket `POST /api/publish`, peers
//! `POST /publish/<channel>`, both with `X-API-Key`; see `dialect`) over several HTTP/1.1
//! keep-alive connections, on an open-loop schedule (publication i is due at start + i/rate,
//! to channel i mod channel count). Each payload carries its **scheduled** CLOCK_MONOTONIC send
//! time (start + i/rate), not the moment it was written: when the server (or the publisher's
//! connections) fall behind, the wait counts as latency instead of hiding it (no coordinated
//! omission). How late requests actually left is reported as `lag`. With several API targets
//! (the nodes of a cluster) connection k talks to target k mod n, so publications are spread
//! over the nodes.
//!
//! Invariant: a phase is bounded — nothing is sent after `secs * 1.5 + 2` s even when the
//! server falls behind; unsent publications are counted as `skipped`, never silently dropped.

use crate::client::ChannelPlan;
use crate::dialect::Dialect;
use crate::hist::{new_hist, record_ns};
use crate::net::{self, Target};
use crate::proto::payload;
use crate::sys::mono_ns;
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

pub struct PubCfg {
    /// Base URLs of the HTTP API (its path is the prefix of every request path); one per node
    /// of a cluster.
    pub targets: Vec<Target>,
    pub api_key: String,
    pub dialect: Dialect,
    pub channels: ChannelPlan,
    pub pad: usize,
}

/// What one publish phase did.
pub struct PhaseResult {
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    pub errors: BTreeMap<String, u64>,
    /// HTTP request round trips, µs.
    pub rtt: Histogram<u64>,
    /// How late each request was written after its scheduled time, µs.
    pub lag: Histogram<u64>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One keep-alive HTTP/1.1 connection to the API.
struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    async fn open(t: &Target) -> Result<HttpConn> {
        Ok(HttpConn {
            stream: net::connect(t.addr, None, None).await?,
            buf: Vec::with_capacity(1024),
        })
    }

    /// POSTs `body`; returns (status, response body, keep-alive).
    async fn post(
        &mut self,
        t: &Target,
        path: &str,
        key: &str,
        body: &str,
    ) -> Result<(u16, String, bool)> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            t.host_header,
            body.len()
        );
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        loop {
            if let Some(r) = parse_response(&self.buf)? {
                return Ok(r);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed mid-response");
            }
            if self.buf.len() > 1 << 20 {
                bail!("response larger than 1 MiB");
            }
        }
    }
}

/// A complete response in `buf` as (status, body, keep-alive), or `None` if more is needed.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, String, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).context("bad HTTP response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        bail!("chunked API responses are not supported by the bench publisher");
    }
    let len: usize = header("content-length")
        .context("API response without Content-Length")?
        .trim()
        .parse()
        .context("bad Content-Length")?;
    if buf.len() < head + len {
        return Ok(None);
    }
    let keep = !header("connection").is_some_and(|v| v.contains("close"));
    let body = String::from_utf8_lossy(&buf[head..head + len]).into_owned();
    Ok(Some((resp.code.unwrap_or(0), body, keep)))
}

struct Shared {
    next: Cell<u64>,
    ok: Cell<u64>,
    failed: Cell<u64>,
    skipped: Cell<u64>,
    errors: RefCell<BTreeMap<String, u64>>,
    rtt: RefCell<Histogram<u64>>,
    lag: RefCell<Histogram<u64>>,
}

impl Shared {
    fn error(&self, e: String) {
        self.failed.set(self.failed.get() + 1);
        *self
            .errors
            .borrow_mut()
            .entry(e.chars().take(160).collect())
            .or_default() += 1;
    }
}

/// Publishes `rate`/s for `secs` seconds tagged with `phase`, over `conns` connections. Must run inside a `LocalSet`.
pub async fn run_phase(
    cfg: Rc<PubCfg>,
    conns: usize,
    phase: u32,
    rate: u64,
    secs: f64,
) -> PhaseResult {
    let total = (rate as f64 * secs).round() as u64;
    let sh = Rc::new(Shared {
        next: Cell::new(0),
        ok: Cell::new(0),
        failed: Cell::new(0),
        skipped: Cell::new(0),
        errors: RefCell::default(),
        rtt: RefCell::new(new_hist()),
        lag: RefCell::new(new_hist()),
    });
    let start = Instant::now();
    let start_ns = mono_ns();
    let cutoff = start + Duration::from_secs_f64(secs * 1.5 + 2.0);
    let gap_ns = 1_000_000_000 / rate.max(1);
    let sched = Schedule {
        phase,
        total,
        start,
        start_ns,
        gap_ns,
        cutoff,
    };
    let tasks: Vec<_> = (0..conns.max(1))
        .map(|k| {
            let (cfg, sh) = (cfg.clone(), sh.clone());
            tokio::task::spawn_local(async move {
                let target = &cfg.targets[k % cfg.targets.len()];
                conn_loop(&cfg, target, &sh, sched).await
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let end_ns = mono_ns();
    let sh = Rc::try_unwrap(sh).ok().expect("publisher tasks finished");
    PhaseResult {
        ok: sh.ok.get(),
        failed: sh.failed.get(),
        skipped: sh.skipped.get(),
        errors: sh.errors.into_inner(),
        rtt: sh.rtt.into_inner(),
        lag: sh.lag.into_inner(),
        start_ns,
        end_ns,
    }
}

/// The open-loop schedule of one phase (shared by its connections).
#[derive(Clone, Copy)]
struct Schedule {
    phase: u32,
    total: u64,
    start: Instant,
    /// `start` on CLOCK_MONOTONIC, ns.
    start_ns: u64,
    gap_ns: u64,
    cutoff: Instant,
}

async fn conn_loop(cfg: &PubCfg, target: &Target, sh: &Shared, sc: Schedule) {
    let Schedule {
        phase,
        total,
        start,
        start_ns,
        gap_ns,
        cutoff,
    } = sc;
    let mut conn: Option<HttpConn> = None;
    loop {
        let i = sh.next.get();
        if i >= total {
            return;
        }
        sh.next.set(i + 1);
        sleep_until(start + Duration::from_nanos(i * gap_ns)).await;
        if Instant::now() > cutoff {
            sh.skipped.set(sh.skipped.get() + 1);
            continue;
        }
        if conn.is_none() {
            match timeout(Duration::from_secs(5), HttpConn::open(target)).await {
                Ok(Ok(c)) => conn = Some(c),
                Ok(Err(e)) => {
                    sh.error(format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => {
                    sh.error("connect: timeout".into());
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let channel = cfg.channels.for_publication(i);
        let scheduled = start_ns + i * gap_ns;
        let data = payload(phase, i, scheduled, cfg.pad);
        let (path, body) = cfg.dialect.publish_request(&target.path, &channel, &data);
        let sent = mono_ns();
        record_ns(&mut sh.lag.borrow_mut(), sent.saturating_sub(scheduled));
        match timeout(
            Duration::from_secs(5),
            c.post(target, &path, &cfg.api_key, &body),
        )
        .await
        {
            Ok(Ok((status, resp, keep))) => {
                record_ns(&mut sh.rtt.borrow_mut(), mono_ns() - sent);
                if cfg.dialect.publish_ok(status, &resp) {
                    sh.ok.set(sh.ok.get() + 1);
                } else {
                    sh.error(format!("HTTP {status}: {}", resp.trim()));
                }
                if !keep {
                    conn = None;
                }
            }
            Ok(Err(e)) => {
                sh.error(format!("request: {e:#}"));
                conn = None;
            }
            Err(_) => {
                sh.error("request: timeout 5 s".into());
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keepalive_response() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"result\":1";
        assert_eq!(parse_response(&r[..20]).unwrap(), None);
        let (s, b, k) = parse_response(r).unwrap().unwrap();
        assert_eq!((s, b.as_str(), k), (200, "{\"result\":1", true));
        let c = b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(c).unwrap(),
            Some((401, String::new(), false))
        );
    }
}
