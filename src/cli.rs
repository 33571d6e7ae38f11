//! Command line: `serve`, `check-config`, `gen-token`, `genconfig`.
//!
//! Called from `main.rs` through [`run`], the binary's only entry into the library. Owns argument
//! parsing (clap derive), the choice of configuration source, logger set-up for `serve`, and the
//! developer conveniences (random dev secrets, [`dev_token_hint`]). The server itself starts in
//! `crate::runtime::serve`.
//! Invariant: `serve` hands the runtime a validated `Config` whose token secret is never empty
//! unless anonymous-only; secrets are generated from the OS random source (`getrandom`) and are
//! only generated when no config file and no secret in the environment were given.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::auth;
use crate::config::{
    example_toml, AuthConfig, Config, EngineKind, LogConfig, LogFormat, CONFIG_PATH_ENV,
};

/// Where the configuration handed to the runtime came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The named TOML file, plus `WIRESOCKET_*` environment overrides.
    File(PathBuf),
    /// No file and no secret in the environment: defaults (plus environment overrides) with an
    /// HMAC secret and API key generated for this run. The runtime should log
    /// [`dev_token_hint`].
    Defaults,
    /// No file, but the environment supplied `WIRESOCKET_AUTH__HMAC_SECRET`: defaults plus
    /// environment overrides, nothing generated. Nothing secret should be logged.
    Environment,
}

/// wiresocket: realtime WebSocket server speaking the Centrifugo client protocol.
#[derive(Debug, Parser)]
#[command(name = "wiresocket", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Load and validate a configuration and print a summary; exit status 1 on error.
    CheckConfig(ConfigArgs),
    /// Print a connection token (JWT) for a user on stdout.
    GenToken(GenTokenArgs),
    /// Write a fully commented example config with a fresh secret and API key.
    Genconfig(GenconfigArgs),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Config file (TOML). Without one: built-in defaults plus WIRESOCKET_* environment overrides.
    #[arg(long, short, value_name = "PATH", env = CONFIG_PATH_ENV)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Start even though another process listens on the address, sharing the port with it
    /// until it drains: for zero-downtime restarts (start the new process with this flag,
    /// then send SIGTERM to the old one, which hands the port over). Without it, a busy
    /// address is an error.
    #[arg(long)]
    takeover: bool,
}

#[derive(Debug, Args)]
struct GenTokenArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// HMAC secret to sign with; takes precedence over the config's auth.hmac_secret.
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// User id (`sub` claim).
    #[arg(long, short, value_name = "U")]
    user: String,
    /// Lifetime in seconds (`exp` = now + ttl); 0 = the token never expires.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    ttl: u64,
    /// Connection info (`info` claim), any JSON value.
    #[arg(long, value_name = "JSON")]
    info: Option<String>,
    /// Server-side subscription (`channels` claim); repeat for several.
    #[arg(long = "channel", value_name = "C")]
    channels: Vec<String>,
}

#[derive(Debug, Args)]
struct GenconfigArgs {
    /// File to create (never overwritten); stdout when absent.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// Parses the command line and runs the chosen command.
pub fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => Ok(check_config(args)),
        Command::GenToken(args) => gen_token(args),
        Command::Genconfig(args) => genconfig(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.config.clone();
    let (config, origin) = load_for_run(args.config.config)?;
    init_tracing(&config.log)?;
    for note in config.deprecations() {
        tracing::warn!("{note}");
    }
    let hint = matches!(origin, ConfigOrigin::Defaults).then(|| dev_token_hint(&config));
    crate::runtime::serve(config, path, hint, args.takeover)?;
    Ok(ExitCode::SUCCESS)
}

/// Loads the config for `serve`/`check-config`: the file if given, else defaults plus
/// environment with dev secrets generated when the environment has no secret; then validates.
fn load_for_run(path: Option<PathBuf>) -> anyhow::Result<(Config, ConfigOrigin)> {
    let mut config = Config::load(path.as_deref())?;
    let origin = match path {
        Some(path) => ConfigOrigin::File(path),
        None if config.auth.hmac_secret.is_empty() => {
            config.auth.hmac_secret = random_hex(32)?;
            if config.api.key.is_empty() {
                config.api.key = random_hex(24)?;
            }
            ConfigOrigin::Defaults
        }
        None => ConfigOrigin::Environment,
    };
    config.validate()?;
    Ok((config, origin))
}

fn init_tracing(log: &LogConfig) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).context("RUST_LOG")?,
        _ => EnvFilter::try_new(&log.level).context("log.level")?,
    };
    // A log write that fails (closed pipe, journal restart) must never panic: by default
    // tracing-subscriber reports such failures with `eprintln!`, which panics when stderr
    // is gone, and that killed whichever thread logged (the signal thread, for one).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    let installed = match log.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow!("cannot install the logger: {e}"))
}

fn check_config(args: ConfigArgs) -> ExitCode {
    let checked = load_for_run(args.config).and_then(|(config, origin)| {
        let cpus = config.server.cores.resolve()?;
        crate::auth::keys::static_keys(&config.auth)?; // the PEM files must load too
        Ok((config, origin, cpus))
    });
    match checked {
        Ok((config, origin, cpus)) => {
            for note in config.deprecations() {
                eprintln!("warning: {note}");
            }
            print!("config OK\n{}", summary(&config, &origin, &cpus));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn summary(config: &Config, origin: &ConfigOrigin, cpus: &[usize]) -> String {
    let source = match origin {
        ConfigOrigin::File(path) => format!("{} (+ environment)", path.display()),
        ConfigOrigin::Defaults => {
            "defaults (+ environment); serve generates a random secret and API key".to_owned()
        }
        ConfigOrigin::Environment => "defaults + environment".to_owned(),
    };
    let engine = &config.engine;
    let kind = match engine.kind {
        EngineKind::Memory => "memory",
        EngineKind::Redis => "redis",
    };
    let api = if config.api.key.is_empty() {
        "disabled (no key)"
    } else {
        "enabled"
    };
    format!(
        "  source:  {source}\n  listen:  {}\n  cores:   {} -> {cpus:?}\n  \
         engine:  {kind} (default namespace: history_size {}, history_ttl {} s)\n  \
         auth:    algorithms {:?}, anonymous {}\n  api:     {api}\n",
        config.server.listen,
        config.server.cores,
        config.channels.default.history_size,
        config.channels.default.history_ttl_s,
        config.auth.algorithms,
        config.auth.allow_anonymous,
    )
}

fn gen_token(args: GenTokenArgs) -> anyhow::Result<ExitCode> {
    let info = match &args.info {
        Some(text) => {
            Some(serde_json::from_str::<Value>(text).context("--info is not valid JSON")?)
        }
        None => None,
    };
    let config = Config::load(args.config.config.as_deref())?;
    let secret = args.secret.as_deref().unwrap_or(&config.auth.hmac_secret);
    if secret.is_empty() {
        bail!("no HMAC secret: pass --secret, or --config with auth.hmac_secret set");
    }
    let claims = auth::connect_claims_json(&args.user, args.ttl, info, &args.channels);
    let token = sign_for(&config.auth, secret, claims)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{token}")?;
    Ok(ExitCode::SUCCESS)
}

/// Signs connection claims so that a server with `auth` accepts them: its first algorithm,
/// plus `aud`/`iss` when it requires them.
fn sign_for(auth_cfg: &AuthConfig, secret: &str, mut claims: Value) -> anyhow::Result<String> {
    if let Some(aud) = &auth_cfg.audience {
        claims["aud"] = json!(aud);
    }
    if let Some(iss) = &auth_cfg.issuer {
        claims["iss"] = json!(iss);
    }
    let algorithm = auth_cfg.algorithms.first().map_or("HS256", String::as_str);
    Ok(auth::mint_with(algorithm, secret, &claims)?)
}

fn genconfig(args: GenconfigArgs) -> anyhow::Result<ExitCode> {
    let text = example_toml(&random_hex(32)?, &random_hex(24)?);
    match &args.output {
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
        Some(path) => {
            write_new_file(path, &text)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (mode 0600: it holds secrets) and writes `text`; refuses an existing file.
fn write_new_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow!(
                "{} already exists; refusing to overwrite it",
                path.display()
            )
        }
        _ => anyhow!(e).context(format!("cannot create {}", path.display())),
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `bytes` bytes from the OS random source, as lowercase hex.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("OS random source failed: {e}"))?;
    Ok(buf
        .iter()
        .fold(String::with_capacity(bytes * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        }))
}

/// Plain multi-line text telling a developer how to connect to a server started without a
/// config: a token for user "demo" (24 h), the `gen-token` command, the API key and a `curl`
/// publish example. Contains the secret and key: log it only for `ConfigOrigin::Defaults`.
pub fn dev_token_hint(cfg: &Config) -> String {
    let addr = reachable(cfg.server.listen);
    let secret = &cfg.auth.hmac_secret;
    let mut out = String::from(
        "No config file: running on defaults with a random HMAC secret and API key \
         (valid for this run only).\n",
    );
    let demo = auth::connect_claims_json("demo", 24 * 3600, None, &[]);
    match sign_for(&cfg.auth, secret, demo) {
        Ok(token) => {
            let _ = writeln!(out, "Token for user \"demo\" (valid 24 h):\n  {token}");
        }
        Err(e) => {
            let _ = writeln!(out, "No demo token: {e:#}");
        }
    }
    let _ = writeln!(
        out,
        "Token for another user:\n  wiresocket gen-token --secret {secret} --user <name>"
    );
    let _ = writeln!(
        out,
        "WebSocket endpoint:\n  ws://{addr}/connection/websocket"
    );
    let key = &cfg.api.key;
    if key.is_empty() {
        out.push_str("HTTP API disabled (api.key is empty).\n");
    } else {
        let _ = writeln!(
            out,
            "HTTP API key: {key}\n  curl -H 'X-API-Key: {key}' \
             -d '{{\"channel\":\"news\",\"data\":{{\"text\":\"hi\"}}}}' http://{addr}/api/publish"
        );
    }
    out.push_str("For a persistent setup: wiresocket genconfig --output wiresocket.toml\n");
    out
}

/// The listen address as a client on this host would dial it (wildcards become loopback).
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], listen.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use figment::Jail;

    use super::*;
    use crate::auth::Verifier;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_and_flags_parse() {
        let cli =
            Cli::try_parse_from(["wiresocket", "check-config", "--config", "a.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::CheckConfig(ConfigArgs { config: Some(p) }) if p == Path::new("a.toml"))
        );
        let argv = [
            "wiresocket",
            "gen-token",
            "--secret",
            "s",
            "--user",
            "u",
            "--channel",
            "a",
            "--channel",
            "b",
        ];
        let Command::GenToken(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!()
        };
        assert_eq!((args.ttl, args.channels.len()), (3600, 2));
        assert!(Cli::try_parse_from(["wiresocket", "gen-token", "--secret", "s"]).is_err());
        let Command::Genconfig(args) = Cli::try_parse_from(["wiresocket", "genconfig", "-o", "x"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(args.output.as_deref(), Some(Path::new("x")));
        assert!(matches!(
            Cli::try_parse_from(["wiresocket", "serve"])
                .unwrap()
                .command,
            Command::Serve(ServeArgs {
                takeover: false,
                ..
            })
        ));
        assert!(matches!(
            Cli::try_parse_from(["wiresocket", "serve", "--takeover"])
                .unwrap()
                .command,
            Command::Serve(ServeArgs { takeover: true, .. })
        ));
    }

    #[test]
    fn random_hex_is_hex_and_fresh() {
        let (a, b) = (random_hex(32).unwrap(), random_hex(32).unwrap());
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    #[allow(clippy::result_large_err)] // the Jail closure's error type is figment's
    fn no_config_generates_dev_secrets_unless_env_has_one() {
        Jail::expect_with(|jail| {
            let (config, origin) = load_for_run(None).unwrap();
            assert_eq!(origin, ConfigOrigin::Defaults);
            assert_eq!(
                (config.auth.hmac_secret.len(), config.api.key.len()),
                (64, 48)
            );
            jail.set_env("WIRESOCKET_AUTH__HMAC_SECRET", "from-env");
            let (config, origin) = load_for_run(None).unwrap();
            assert_eq!(origin, ConfigOrigin::Environment);
            assert_eq!(
                (config.auth.hmac_secret.as_str(), config.api.key.as_str()),
                ("from-env", "")
            );
            jail.create_file("ws.toml", "[auth]\nhmac_secret = \"file\"\n")?;
            let (_, origin) = load_for_run(Some("ws.toml".into())).unwrap();
            assert_eq!(origin, ConfigOrigin::File("ws.toml".into()));
            Ok(())
        });
    }

    #[test]
    fn dev_hint_has_a_working_token_and_api_example() {
        let mut cfg = Config::default();
        cfg.server.listen = "0.0.0.0:9000".parse().unwrap();
        cfg.auth.hmac_secret = "abc123".into();
        cfg.auth.audience = Some("app".into());
        cfg.api.key = "k3y".into();
        let hint = dev_token_hint(&cfg);
        let token = hint
            .lines()
            .skip_while(|l| !l.contains("\"demo\""))
            .nth(1)
            .unwrap()
            .trim();
        let claims = Verifier::new(&cfg.auth)
            .unwrap()
            .verify_connect(token)
            .unwrap();
        assert_eq!(claims.user, "demo");
        assert!(claims.exp.unwrap() >= auth_now() + 24 * 3600 - 5);
        assert!(hint.contains("wiresocket gen-token --secret abc123 --user <name>"));
        assert!(hint.contains(
            r#"curl -H 'X-API-Key: k3y' -d '{"channel":"news","data":{"text":"hi"}}' http://127.0.0.1:9000/api/publish"#
        ));
    }

    fn auth_now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn genconfig_never_overwrites() {
        let path = std::env::temp_dir().join(format!(
            "wiresocket-genconfig-{}.toml",
            random_hex(8).unwrap()
        ));
        write_new_file(&path, "a = 1\n").unwrap();
        let err = write_new_file(&path, "b = 2\n").unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 1\n");
        std::fs::remove_file(&path).unwrap();
    }
}
