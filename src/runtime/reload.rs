//! SIGHUP: reload what can change without a restart. Today that is the TLS certificate
//! and key (`net::tls`): a good new pair serves every later handshake, a bad one is
//! logged and the old pair stays; open connections are never touched. Without TLS the
//! signal is logged and ignored (the default action, ending the process, would turn a
//! `systemctl reload` into an outage).

use std::sync::Arc;

use crate::net::tls::Tls;

/// Starts the thread that handles SIGHUP for the life of the process.
pub fn install(tls: Option<Arc<Tls>>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match &tls {
                    None => tracing::info!("SIGHUP: nothing to reload (no [server.tls])"),
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
