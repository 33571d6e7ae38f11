//! TLS test support: a throwaway CA and server certificates made with rcgen at test time
//! (valid, expired, for another host), written as PEM files for `[server.tls]`, and a
//! blocking rustls + tungstenite client that trusts only that CA.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

pub type TlsWs = WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A CA that signs the test certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: PathBuf,
}

/// Which certificate to make.
pub enum Kind {
    /// For `localhost` and 127.0.0.1, valid now.
    Valid,
    /// For `localhost`, expired yesterday.
    Expired,
    /// Valid now, but for `other.example` only.
    WrongHost,
}

impl Ca {
    pub fn new(dir: &Path) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wiresocket test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Ca {
            issuer,
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Writes `<name>.crt` (leaf then CA: a full chain) and `<name>.key`; returns both paths
    /// and the leaf's DER.
    pub fn issue(&self, name: &str, kind: Kind) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let names = match kind {
            Kind::WrongHost => vec!["other.example".to_string()],
            _ => vec!["localhost".to_string(), "127.0.0.1".to_string()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        let now = time::OffsetDateTime::now_utc();
        match kind {
            Kind::Expired => {
                params.not_before = now - time::Duration::days(30);
                params.not_after = now - time::Duration::days(1);
            }
            _ => {
                params.not_before = now - time::Duration::days(1);
                params.not_after = now + time::Duration::days(30);
            }
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (crt, keyp) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        let mut f = std::fs::File::create(&crt).unwrap();
        f.write_all(cert.pem().as_bytes()).unwrap();
        f.write_all(self.issuer.pem().as_bytes()).unwrap();
        std::fs::write(&keyp, key.serialize_pem()).unwrap();
        (crt, keyp, cert.der().clone())
    }

    /// A client config trusting only this CA, for the given TLS versions.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// The `[server]` lines turning TLS on with these files.
pub fn server_tls(cert: &Path, key: &Path) -> String {
    format!(
        "tls.cert = {:?}\ntls.key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// A TLS connection to `addr` as `localhost`, handshake done; `Err`: the handshake's error.
pub fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, rustls::Error> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            return Err(
                match e
                    .into_inner()
                    .and_then(|i| i.downcast::<rustls::Error>().ok())
                {
                    Some(e) => *e,
                    None => rustls::Error::General("handshake I/O failed".into()),
                },
            );
        }
    }
    Ok(s)
}

/// A WebSocket over TLS with `connect` done for `token`.
pub fn wss_connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, token: &str) -> TlsWs {
    let s = tls_connect(addr, cfg).expect("TLS handshake");
    let url = format!("wss://localhost:{}/connection/websocket", addr.port());
    let (mut ws, _) = tungstenite::client(url, s).expect("websocket handshake over TLS");
    let r = call(&mut ws, 1, "connect", json!({ "token": token }));
    assert!(r.get("connect").is_some(), "connect failed: {r}");
    ws
}

/// Sends command `id` and returns its reply; pushes met on the way go to `pushes`.
pub fn call(ws: &mut TlsWs, id: u32, method: &str, params: Value) -> Value {
    let mut cmd = json!({ "id": id });
    cmd[method] = params;
    ws.send(Message::text(cmd.to_string())).unwrap();
    loop {
        for v in recv(ws) {
            if v["id"] == id {
                return v;
            }
        }
    }
}

/// The JSON objects of the next text frame (answering pings).
pub fn recv(ws: &mut TlsWs) -> Vec<Value> {
    loop {
        match ws.read().expect("read over TLS") {
            Message::Text(t) => {
                return t
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}
