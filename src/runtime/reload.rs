//! SIGHUP: reload what can change without a restart: the TLS certificate and key
//! (`net::tls`): a good new pair serves every later handshake, a bad one is logged and
//! the old pair stays; and `shedding.memory_limit_bytes`, re-read from the config file
//! (and environment) and handed to the load watcher (`load`), e.g. after a container's
//! memory was resized; a config that no longer loads or validates is logged and the old
//! limit stays. Open connections are never touched. The default action of SIGHUP,
//! ending the process, would turn a `systemctl reload` into an outage.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::net::tls::Tls;
use crate::node::NodeState;

/// Re-reads the config and hands its memory limit to the load watcher.
fn reload_memory_limit(node: &NodeState, path: Option<&std::path::Path>) {
    match Config::load(path).and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => {
            let limit = c.shedding.memory_limit_bytes;
            crate::load::set_memory_limit(node, limit);
            tracing::info!(
                memory_limit_bytes = limit,
                "SIGHUP: shedding.memory_limit_bytes reloaded"
            );
        }
        Err(e) => tracing::error!(
            error = %e,
            "SIGHUP: the config does not load; shedding.memory_limit_bytes unchanged"
        ),
    }
}

/// Starts the thread that handles SIGHUP for the life of the process.
pub fn install(
    tls: Option<Arc<Tls>>,
    node: Arc<NodeState>,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                reload_memory_limit(&node, config_path.as_deref());
                match &tls {
                    None => tracing::debug!("SIGHUP: no [server.tls] to reload"),
                    Some(tls) => match tls.reload() {
                        Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                        Err(e) => tracing::error!(
                            error = format!("{e:#}"),
                            "SIGHUP: TLS reload failed; still serving the previous certificate"
                        ),
                    },
                }
            }
        })?;
    Ok(())
}
