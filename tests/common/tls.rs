//! TLS test support: the testkit's throwaway CA (`Ca`: certificates made with rcgen at
//! test time, valid, expired or for another host) as `[server.tls]` lines, and a blocking
//! rustls + tungstenite client that trusts only that CA.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};
use wiresocket_testkit::ca::Ca;

pub type TlsWs = WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A client config trusting only a test [`Ca`] (from the testkit), for some TLS versions.
pub trait ClientConfigOf {
    fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig>;
}

impl ClientConfigOf for Ca {
    fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).unwrap();
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
