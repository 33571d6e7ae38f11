//! `wiresocket-bench tls`: what TLS termination (`[server.tls]`) costs on one core.
//!
//! Starts the wiresocket binary twice on one core, plain and with a throwaway certificate
//! (rcgen CA + leaf, ECDSA P-256), and measures:
//! - **handshakes/s on one core**: `--handshakes` full TLS handshakes (no resumption), from
//!   `--threads` client threads, each a new TCP connection closed right after; with the
//!   server CPU time they used (µs per handshake, from `/proc/<pid>/stat`);
//! - **idle memory per connection**: server RSS growth for `--connections` connected
//!   sessions (WebSocket upgrade and `connect` done, then idle), plain vs TLS.
//!
//! Client and server share the machine: quote the plain/TLS ratio, not the absolute rate.

use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use serde_json::json;

#[derive(clap::Args)]
pub struct TlsArgs {
    /// The wiresocket binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/wiresocket")]
    server_bin: PathBuf,
    /// Idle connections held for the memory measurement (each mode).
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Full handshakes for the rate measurement.
    #[arg(long, default_value_t = 3000)]
    handshakes: usize,
    /// Client threads.
    #[arg(long, default_value_t = 8)]
    threads: usize,
}

const SECRET: &str = "bench-tls-secret-0123456789abcdef0123";

struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, dir: &Path, tls: Option<(&Path, &Path)>) -> Result<Node> {
    let tls = match tls {
        Some((c, k)) => format!(
            "[server.tls]\ncert = {:?}\nkey = {:?}\n",
            c.display().to_string(),
            k.display().to_string()
        ),
        None => String::new(),
    };
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncores = 1\nmax_pending_connections_per_core = 100000\n\
         connect_rate_per_ip = 0\nconnect_rate_per_node = 0\nmax_connections_per_ip = 0\n{tls}\n\
         [auth]\nhmac_secret = \"{SECRET}\"\n[api]\nkey = \"k\"\n"
    );
    let path = dir.join(if tls.is_empty() {
        "plain.toml"
    } else {
        "tls.toml"
    });
    std::fs::write(&path, cfg)?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let out = child.stdout.take().context("stdout")?;
    for line in BufReader::new(out).lines() {
        let line = line?;
        if let Some(at) = line
            .split("://")
            .nth(1)
            .filter(|_| line.contains("listening on"))
        {
            return Ok(Node {
                child,
                addr: at.trim().parse()?,
            });
        }
    }
    bail!("{} exited before listening", bin.display())
}

fn cpu_us(pid: u32) -> u64 {
    crate::sys::proc_sample(pid).map_or(0, |s| s.cpu_ms) * 1_000
}

fn rss_kb(pid: u32) -> u64 {
    crate::sys::proc_sample(pid).map_or(0, |s| s.rss_kb)
}

/// A certificate for 127.0.0.1 and the client config trusting it (no resumption).
fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf, Arc<rustls::ClientConfig>)> {
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = params.self_signed(&key)?;
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok((c, k, Arc::new(cfg)))
}

fn handshake(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    let conn =
        rustls::ClientConnection::new(cfg.clone(), ServerName::try_from("localhost")?.to_owned())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Upgrades `stream` and sends `connect`; returns the open WebSocket.
fn session<S: std::io::Read + std::io::Write>(
    stream: S,
    addr: SocketAddr,
    scheme: &str,
    user: &str,
) -> Result<tungstenite::WebSocket<S>> {
    let url = format!("{scheme}://localhost:{}/connection/websocket", addr.port());
    let (mut ws, _) =
        tungstenite::client(url, stream).map_err(|e| anyhow::anyhow!("upgrade: {e}"))?;
    let token = crate::jwt::connection_token(SECRET, user, 3600);
    ws.send(tungstenite::Message::text(
        json!({"id": 1, "connect": {"token": token}}).to_string(),
    ))?;
    let reply = ws.read()?;
    if !reply.to_string().contains("\"connect\"") {
        bail!("connect refused: {reply}");
    }
    Ok(ws)
}

/// An open session, kept only to hold its connection.
type Held = Box<dyn std::any::Any + Send>;

/// Opens `n` idle sessions from `threads` threads; returns them (to keep them open).
fn hold(
    addr: SocketAddr,
    n: usize,
    threads: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Vec<Held>> {
    let per = n.div_ceil(threads);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let tls = tls.clone();
            std::thread::spawn(move || -> Result<Vec<Held>> {
                let mut v = Vec::new();
                for i in 0..per.min(n.saturating_sub(t * per)) {
                    let user = format!("u{t}-{i}");
                    v.push(match &tls {
                        Some(cfg) => {
                            Box::new(session(handshake(addr, cfg)?, addr, "wss", &user)?) as Held
                        }
                        None => {
                            let tcp = TcpStream::connect(addr)?;
                            Box::new(session(tcp, addr, "ws", &user)?) as Held
                        }
                    });
                }
                Ok(v)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(
            w.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    Ok(all)
}

/// RSS growth per held session, in bytes.
fn idle_cost(
    node: &Node,
    n: usize,
    threads: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<f64> {
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kb(node.child.id());
    let held = hold(node.addr, n, threads, tls)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kb(node.child.id());
    drop(held);
    Ok((after as f64 - before as f64) * 1024.0 / n as f64)
}

pub fn run(a: TlsArgs) -> Result<()> {
    crate::sys::raise_nofile();
    let dir = std::env::temp_dir().join(format!("wiresocket-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key, client) = certificate(&dir)?;

    let plain = start(&a.server_bin, &dir, None)?;
    let plain_b = idle_cost(&plain, a.connections, a.threads, None)?;
    drop(plain);

    let tls = start(&a.server_bin, &dir, Some((&cert, &key)))?;
    let pid = tls.child.id();
    let (cpu0, t0) = (cpu_us(pid), Instant::now());
    let per = a.handshakes.div_ceil(a.threads);
    let workers: Vec<_> = (0..a.threads)
        .map(|_| {
            let (cfg, addr) = (client.clone(), tls.addr);
            std::thread::spawn(move || -> Result<()> {
                for _ in 0..per {
                    let mut s = handshake(addr, &cfg)?;
                    s.conn.send_close_notify();
                    let _ = s.flush();
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_us(pid) - cpu0);
    let done = per * a.threads;
    let tls_b = idle_cost(&tls, a.connections, a.threads, Some(client))?;
    let out = json!({
        "handshakes": done,
        "handshakes_per_s_one_core": done as f64 / secs,
        "server_cpu_us_per_handshake": cpu as f64 / done as f64,
        "connections": a.connections,
        "idle_rss_bytes_per_conn_plain": plain_b,
        "idle_rss_bytes_per_conn_tls": tls_b,
        "tls_extra_bytes_per_conn": tls_b - plain_b,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
