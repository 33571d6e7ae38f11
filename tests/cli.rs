//! Black-box tests of the `wiresocket` binary's tool commands (gen-token, genconfig, check-config).

use std::path::PathBuf;
use std::process::{Command, Output};

use wiresocket::auth::Verifier;
use wiresocket::config::AuthConfig;

fn wiresocket(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wiresocket"))
        .args(args)
        .env_remove("WIRESOCKET_CONFIG")
        .env_remove("WIRESOCKET_AUTH__HMAC_SECRET")
        .output()
        .expect("run wiresocket")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wiresocket-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn gen_token_output_verifies() {
    let args = [
        "gen-token",
        "--secret",
        "s3cret",
        "--user",
        "alice",
        "--channel",
        "news",
    ];
    let out = stdout(&wiresocket(
        &[&args[..], &["--info", r#"{"name":"Alice"}"#]].concat(),
    ));
    let token = out.trim();
    assert_eq!(out.lines().count(), 1, "only the token on stdout");
    let cfg = AuthConfig {
        hmac_secret: "s3cret".into(),
        ..AuthConfig::default()
    };
    let claims = Verifier::new(&cfg).unwrap().verify_connect(token).unwrap();
    assert_eq!(claims.user, "alice");
    assert_eq!(claims.channels, ["news"]);
    assert_eq!(claims.info.as_deref(), Some(r#"{"name":"Alice"}"#));
    assert!(claims.exp.is_some());
    let wrong = AuthConfig {
        hmac_secret: "other".into(),
        ..AuthConfig::default()
    };
    assert!(Verifier::new(&wrong)
        .unwrap()
        .verify_connect(token)
        .is_err());
}

#[test]
fn gen_token_needs_a_secret_and_valid_info() {
    assert!(!wiresocket(&["gen-token", "--user", "u"]).status.success());
    let bad = wiresocket(&[
        "gen-token",
        "--secret",
        "s",
        "--user",
        "u",
        "--info",
        "{nope",
    ]);
    assert!(!bad.status.success());
}

#[test]
fn genconfig_then_check_config_then_gen_token_from_it() {
    let path = scratch_file("generated.toml");
    let p = path.to_str().unwrap();
    wiresocket(&["genconfig", "--output", p])
        .status
        .success()
        .then_some(())
        .unwrap();
    assert!(
        !wiresocket(&["genconfig", "--output", p]).status.success(),
        "must not overwrite"
    );
    let report = stdout(&wiresocket(&["check-config", "--config", p]));
    assert!(report.starts_with("config OK\n"), "{report}");
    assert!(
        report.contains("127.0.0.1:8000") && report.contains("engine:  memory"),
        "{report}"
    );
    let token = stdout(&wiresocket(&["gen-token", "--config", p, "--user", "bob"]));
    let text = std::fs::read_to_string(&path).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let secret = config["auth"]["hmac_secret"].as_str().unwrap();
    let cfg = AuthConfig {
        hmac_secret: secret.into(),
        ..AuthConfig::default()
    };
    assert_eq!(
        Verifier::new(&cfg)
            .unwrap()
            .verify_connect(token.trim())
            .unwrap()
            .user,
        "bob"
    );
}

#[test]
fn check_config_fails_with_status_1() {
    let path = scratch_file("bad.toml");
    std::fs::write(
        &path,
        "[server]\nretry_after_min_s = 20\n[auth]\nhmac_secret = \"x\"\n",
    )
    .unwrap();
    let out = wiresocket(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.retry_after_min_s"), "{err}");
    let missing = wiresocket(&["check-config", "--config", "/nonexistent/ws.toml"]);
    assert_eq!(missing.status.code(), Some(1));
}
