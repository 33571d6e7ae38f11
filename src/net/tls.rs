//! TLS termination with rustls on the public listener (`[server.tls]`).
//!
//! One [`Tls`] per node, shared by every core: the rustls `ServerConfig` (TLS 1.2 and 1.3,
//! ALPN `http/1.1`, the `ring` provider) and a certificate resolver holding the current
//! certificate chain and key behind an `ArcSwap`. Each core's connection task runs the
//! handshake ([`Tls::accept`], bounded by `server.tls.handshake_timeout_ms`) before it reads
//! a request head; the HTTP side and the WebSocket session then use the resulting
//! [`super::stream::Stream`] like a plain one.
//!
//! Reload ([`Tls::reload`], on SIGHUP): both files are read and checked again (the key must
//! match the leaf certificate); on success the new pair serves every later handshake while
//! established connections keep theirs; on failure the old pair stays and the error is
//! logged and counted. Nothing is dropped either way.
//!
//! Why kernel TLS is not used: it would keep the session's `sendmsg` write path and hold no
//! TLS state in user space while idle, but needs the `tls` ULP (`modprobe tls`), which hosts
//! such as this project's CI lack. The rustls state lives in the session's boxed stream.
//!
//! Metrics (node-wide, rendered with `/metrics`): `wiresocket_tls_handshakes_total`,
//! `wiresocket_tls_handshake_failures_total{reason="timeout"|"error"}`,
//! `wiresocket_tls_reloads_total{result="ok"|"failed"}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::stream::{Rewind, Stream};
use crate::config::TlsConfig;

/// The node's TLS setup and counters.
pub struct Tls {
    acceptor: futures_rustls::TlsAcceptor,
    certs: Arc<Certs>,
    handshake_timeout: Duration,
    handshakes: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// The certificate every handshake is answered with, replaced by a reload.
#[derive(Debug)]
struct Certs {
    current: ArcSwap<CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Tls {
    /// Builds the node's TLS from `[server.tls]`; `None` when it is off. Fails with the file
    /// and the reason when a file is missing, unreadable or does not hold what it should.
    pub fn from_config(cfg: &TlsConfig) -> anyhow::Result<Option<Arc<Tls>>> {
        let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(Certs {
            current: ArcSwap::from_pointee(load_pair(&provider, cert, key)?),
            cert: cert.clone(),
            key: key.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(Tls {
            acceptor: futures_rustls::TlsAcceptor::from(Arc::new(config)),
            certs,
            handshake_timeout: Duration::from_millis(cfg.handshake_timeout_ms),
            handshakes: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })))
    }

    /// Runs the server side of the handshake on `tcp`, whose first bytes may already sit in
    /// `read` (read while looking for a PROXY header). `None`: it failed or timed out
    /// (counted); drop the connection.
    pub async fn accept(&self, tcp: glommio::net::TcpStream, read: Vec<u8>) -> Option<Stream> {
        let handshake = self.acceptor.accept(Rewind::new(read, tcp));
        match crate::exec::timeout(self.handshake_timeout, handshake).await {
            Some(Ok(tls)) => {
                self.handshakes.fetch_add(1, Ordering::Relaxed);
                Some(Stream::Tls(Box::new(tls)))
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                self.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Reads both files again; keeps the current pair when the new one is not usable.
    pub fn reload(&self) -> anyhow::Result<()> {
        let provider = rustls::crypto::ring::default_provider();
        match load_pair(&provider, &self.certs.cert, &self.certs.key) {
            Ok(pair) => {
                self.certs.current.store(Arc::new(pair));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Appends the TLS counters to a Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP wiresocket_tls_handshakes_total TLS handshakes completed.\n\
             # TYPE wiresocket_tls_handshakes_total counter\n\
             wiresocket_tls_handshakes_total {}\n\
             # HELP wiresocket_tls_handshake_failures_total TLS handshakes that failed or timed out.\n\
             # TYPE wiresocket_tls_handshake_failures_total counter\n\
             wiresocket_tls_handshake_failures_total{{reason=\"timeout\"}} {}\n\
             wiresocket_tls_handshake_failures_total{{reason=\"error\"}} {}\n\
             # HELP wiresocket_tls_reloads_total Certificate reloads (SIGHUP), by result.\n\
             # TYPE wiresocket_tls_reloads_total counter\n\
             wiresocket_tls_reloads_total{{result=\"ok\"}} {}\n\
             wiresocket_tls_reloads_total{{result=\"failed\"}} {}\n",
            get(&self.handshakes),
            get(&self.timeouts),
            get(&self.errors),
            get(&self.reloads_ok),
            get(&self.reloads_failed),
        );
    }
}

/// Reads a certificate chain and its key, and checks that they belong together.
fn load_pair(
    provider: &rustls::crypto::CryptoProvider,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("server.tls.cert {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "server.tls.cert {}: no certificate in the file",
        cert.display()
    );
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("server.tls.key {}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .with_context(|| format!("server.tls.key {}: unsupported key", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().with_context(|| {
        format!(
            "server.tls.key {} does not belong to the certificate in {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(pair)
}
