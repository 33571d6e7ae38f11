//! The fixed TLS test keys of the repository's `tests/keys/` (a CA and a certificate for
//! 127.0.0.1 that `redis-server` serves) and the arguments of a TLS-only `redis-server`.

/// The path of test key file `name` in `tests/keys/`.
pub fn key(name: &str) -> String {
    format!("{}/../tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `redis-server` arguments serving TLS only on `port` with the test server
/// certificate (clients need no certificate; replication uses TLS too).
pub fn tls_server_args(port: u16) -> Vec<String> {
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &key("redis-server.crt.pem"),
        "--tls-key-file",
        &key("redis-server.key.pem"),
        "--tls-ca-cert-file",
        &key("redis-ca.crt.pem"),
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
    ]
    .map(|s| s.to_string())
    .to_vec()
}

/// `redis-cli` options reaching a server of [`tls_server_args`] (`--tls`, the test CA).
pub fn tls_cli_options() -> Vec<String> {
    vec!["--tls".into(), "--cacert".into(), key("redis-ca.crt.pem")]
}
