//! TEMPORARY stand-in for the CLI (replaced by the real module).
use std::path::PathBuf;
pub enum ConfigOrigin {
    File(PathBuf),
    Defaults,
}
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| PathBuf::from(&args[i + 1]));
    let cfg = crate::config::Config::load(path.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    crate::runtime::serve(
        cfg,
        path.map(ConfigOrigin::File)
            .unwrap_or(ConfigOrigin::Defaults),
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}
pub fn dev_token_hint(_c: &crate::config::Config) -> String {
    String::new()
}
