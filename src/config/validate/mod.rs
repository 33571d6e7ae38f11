//! Value checks for a loaded [`Config`]: ranges, cross-field consistency, known algorithms.
//!
//! Called by the CLI after loading (and after it injects dev secrets), before anything starts;
//! `check-config` reports its verdict. Invariant: a config that passes can be handed to the
//! runtime without further checks except `server.cores`, which `CoresSpec::resolve` checks
//! against the machine. Every error names the offending field by its dotted key.
//!
//! One file per section: [`server`] (listener, proxies, origins), [`auth`] (tokens and the API
//! key), [`channels`] (namespaces), [`redis`] (the engine and its Redis connections); the small
//! sections are checked here.

mod auth;
mod channels;
mod redis;
mod server;

use super::{Config, ConfigError, LogConfig, MeshConfig, WebsocketConfig};

pub use auth::SUPPORTED_ALGORITHMS;
pub use server::{check_origin_pattern, parse_nets};

impl Config {
    /// Checks every section; returns the first problem found, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.websocket.validate()?;
        self.auth.validate()?;
        self.api.validate()?;
        self.channels.validate()?;
        self.engine.validate()?;
        self.shedding.validate()?;
        self.regions.validate(&self.channels)?;
        self.mesh.validate()?;
        self.log.validate()
    }
}

impl crate::config::SheddingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let fraction = |v: f64| v > 0.0 && v <= 1.0;
        if !fraction(self.high_water) {
            return Err(ConfigError::invalid(
                "shedding.high_water",
                "must be in (0, 1]",
            ));
        }
        if !fraction(self.low_water) || self.low_water >= self.high_water {
            return Err(ConfigError::invalid(
                "shedding.low_water",
                "must be in (0, 1] and below shedding.high_water",
            ));
        }
        positive("shedding.check_interval_ms", self.check_interval_ms)
    }
}

fn positive(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(field, "must be greater than 0"));
    }
    Ok(())
}
/// Largest per-connection queue: sessions count queued bytes in 32 bits.
pub const MAX_QUEUE_BYTES: usize = 1 << 30;

impl WebsocketConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("websocket.max_message_bytes", self.max_message_bytes as u64)?;
        positive(
            "websocket.outbound_queue_bytes",
            self.outbound_queue_bytes as u64,
        )?;
        positive("websocket.write_timeout_ms", self.write_timeout_ms)?;
        positive("websocket.ping_interval_ms", self.ping_interval_ms)?;
        positive("websocket.pong_timeout_ms", self.pong_timeout_ms)?;
        positive("websocket.read_buffer_bytes", self.read_buffer_bytes as u64)?;
        positive("websocket.buffer_pool_size", self.buffer_pool_size as u64)?;
        positive(
            "websocket.subscribe_buffer_frames",
            self.subscribe_buffer_frames as u64,
        )?;
        if self.outbound_queue_bytes > MAX_QUEUE_BYTES {
            return Err(ConfigError::invalid(
                "websocket.outbound_queue_bytes",
                format!(
                    "{} is above the maximum of {MAX_QUEUE_BYTES} (1 GiB)",
                    self.outbound_queue_bytes
                ),
            ));
        }
        if self.max_message_bytes > self.outbound_queue_bytes {
            return Err(ConfigError::invalid(
                "websocket.max_message_bytes",
                format!(
                    "{} is above websocket.outbound_queue_bytes ({}): one message must fit the queue",
                    self.max_message_bytes, self.outbound_queue_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl MeshConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("mesh.channel_capacity", self.channel_capacity as u64)?;
        positive("mesh.pending_limit", self.pending_limit as u64)?;
        positive("mesh.call_timeout_ms", self.call_timeout_ms)
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(drop)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))
    }
}
