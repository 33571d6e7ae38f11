//! TEMPORARY stand-in for the configuration tree (replaced by the real module).
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub websocket: WebsocketConfig,
    pub auth: AuthConfig,
    pub api: ApiConfig,
    pub channels: ChannelsConfig,
    pub engine: EngineConfig,
    pub mesh: MeshConfig,
    pub log: LogConfig,
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub cores: CoresSpec,
    pub backlog: u32,
    pub max_connections: usize,
    pub header_timeout_ms: u64,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub drain_window_ms: u64,
    pub retry_after_min_s: u32,
    pub retry_after_max_s: u32,
    pub conformance_echo: bool,
    pub ring_depth: usize,
}
impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".parse().unwrap(),
            cores: CoresSpec::All,
            backlog: 4096,
            max_connections: 100_000,
            header_timeout_ms: 10_000,
            max_header_bytes: 8192,
            max_body_bytes: 1 << 20,
            drain_window_ms: 10_000,
            retry_after_min_s: 1,
            retry_after_max_s: 10,
            conformance_echo: false,
            ring_depth: 128,
        }
    }
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CoresSpec {
    All,
    Count(usize),
    List(Vec<usize>),
}
impl CoresSpec {
    pub fn resolve(&self) -> Result<Vec<usize>, String> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(match self {
            CoresSpec::All => (0..n).collect(),
            CoresSpec::Count(c) => (0..*c).collect(),
            CoresSpec::List(l) => l.clone(),
        })
    }
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WebsocketConfig {
    pub max_message_bytes: usize,
    pub outbound_queue_bytes: usize,
    pub write_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub pong_timeout_ms: u64,
    pub read_buffer_bytes: usize,
    pub buffer_pool_size: usize,
}
impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 65536,
            outbound_queue_bytes: 1 << 20,
            write_timeout_ms: 10_000,
            ping_interval_ms: 25_000,
            pong_timeout_ms: 8_000,
            read_buffer_bytes: 16384,
            buffer_pool_size: 256,
        }
    }
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthConfig {
    pub hmac_secret: String,
    pub algorithms: Vec<String>,
    pub allow_anonymous: bool,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway_s: u64,
}
impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hmac_secret: String::new(),
            algorithms: vec!["HS256".into()],
            allow_anonymous: false,
            audience: None,
            issuer: None,
            leeway_s: 0,
        }
    }
}
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ApiConfig {
    pub key: String,
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ChannelsConfig {
    pub allow_client_subscribe: bool,
    pub allow_anonymous_subscribe: bool,
    pub allow_client_publish: bool,
    pub private_prefix: String,
    pub max_channel_length: usize,
    pub max_subscriptions_per_client: usize,
}
impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            allow_client_subscribe: true,
            allow_anonymous_subscribe: false,
            allow_client_publish: false,
            private_prefix: "$".into(),
            max_channel_length: 255,
            max_subscriptions_per_client: 128,
        }
    }
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct EngineConfig {
    pub kind: EngineKind,
    pub history_size: usize,
    pub history_ttl_s: u64,
}
impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kind: EngineKind::Memory,
            history_size: 0,
            history_ttl_s: 300,
        }
    }
}
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    #[default]
    Memory,
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct MeshConfig {
    pub channel_capacity: usize,
    pub pending_limit: usize,
}
impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 1024,
            pending_limit: 65536,
        }
    }
}
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
impl Config {
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, String> {
        match path {
            Some(p) => toml::from_str(&std::fs::read_to_string(p).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string()),
            None => Ok(Config::default()),
        }
    }
}
