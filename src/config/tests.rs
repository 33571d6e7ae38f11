//! Unit tests of the configuration tree: defaults, loading (file + env), validation, cores, example.
//!
//! Every test that calls `Config::load` runs inside `figment::Jail`, which serialises access to
//! the process environment and the working directory.

// `Jail::expect_with` closures must return figment's (large) error type; that is figment's API.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::{Figment, Jail};

use super::cores::parse_cpu_list;
use super::*;

fn with_secret() -> Config {
    let mut config = Config::default();
    config.auth.hmac_secret = "s3cret".into();
    config
}

fn invalid_field(config: &Config) -> String {
    match config.validate() {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn defaults_with_a_secret_are_valid() {
    with_secret().validate().unwrap();
    let mut anonymous = Config::default();
    anonymous.auth.allow_anonymous = true;
    anonymous.validate().unwrap();
}

#[test]
fn bare_defaults_need_a_secret() {
    assert_eq!(invalid_field(&Config::default()), "auth.hmac_secret");
}

#[test]
fn validate_names_the_field() {
    let mut c = with_secret();
    c.server.retry_after_min_s = 11;
    assert_eq!(invalid_field(&c), "server.retry_after_min_s");
    let mut c = with_secret();
    c.websocket.max_message_bytes = c.websocket.outbound_queue_bytes + 1;
    assert_eq!(invalid_field(&c), "websocket.max_message_bytes");
    let mut c = with_secret();
    c.websocket.ping_interval_ms = 0;
    assert_eq!(invalid_field(&c), "websocket.ping_interval_ms");
    let mut c = with_secret();
    c.auth.algorithms = vec!["RS256".into()];
    assert_eq!(invalid_field(&c), "auth.algorithms");
    let mut c = with_secret();
    c.server.cores = CoresSpec::Count(0);
    assert_eq!(invalid_field(&c), "server.cores");
    let mut c = with_secret();
    c.log.level = "info,=[".into();
    assert_eq!(invalid_field(&c), "log.level");
}

#[test]
fn auth_keys_are_checked() {
    // a public-key algorithm needs public_keys or a jwks_url
    let mut c = with_secret();
    c.auth.algorithms = vec!["HS256".into(), "EdDSA".into()];
    assert_eq!(invalid_field(&c), "auth.algorithms");
    c.auth.public_keys = vec!["/etc/ws/k1.pub.pem".into()];
    c.validate().unwrap();
    let mut c = with_secret();
    c.auth.algorithms = vec!["RS256".into(), "ES384".into(), "PS256".into()];
    c.auth.jwks_url = Some("https://idp.example/.well-known/jwks.json".into());
    c.validate().unwrap();
    c.auth.jwks_url = Some("ftp://idp.example/jwks".into());
    assert_eq!(invalid_field(&c), "auth.jwks_url");
    c.auth.jwks_url = Some("http://idp.example/jwks".into());
    c.auth.jwks_refresh_s = 0;
    assert_eq!(invalid_field(&c), "auth.jwks_refresh_s");
    // public keys only: no HMAC secret needed when no HS algorithm is allowed
    let mut c = Config::default();
    c.auth.algorithms = vec!["RS256".into()];
    c.auth.public_keys = vec!["/etc/ws/k1.pub.pem".into()];
    c.validate().unwrap();
    // a second secret alone is enough for HS256; an empty one is refused
    let mut c = Config::default();
    c.auth.hmac_secrets = vec!["next".into()];
    c.validate().unwrap();
    c.auth.hmac_secrets.push(String::new());
    assert_eq!(invalid_field(&c), "auth.hmac_secrets[1]");
    let mut c = with_secret();
    c.auth.public_keys = vec![" ".into()];
    assert_eq!(invalid_field(&c), "auth.public_keys[0]");
    let mut c = with_secret();
    c.auth.max_revocations = 0;
    assert_eq!(invalid_field(&c), "auth.max_revocations");
    let mut c = with_secret();
    c.auth.algorithms = vec!["none".into()];
    assert_eq!(invalid_field(&c), "auth.algorithms");
}

#[test]
fn auth_key_lists_load_from_toml_and_env() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ws.toml",
            "[auth]\nhmac_secrets = [\"a\", \"b\"]\npublic_keys = [\"/k/one.pem\"]\njwks_url = \"https://idp/jwks\"\n",
        )?;
        jail.set_env("WIRESOCKET_AUTH__ALGORITHMS", "RS256,EdDSA");
        let c = Config::load(Some(Path::new("ws.toml"))).unwrap();
        assert_eq!(c.auth.hmac_secrets, ["a", "b"]);
        assert_eq!(c.auth.public_keys, ["/k/one.pem"]);
        assert_eq!(c.auth.jwks_url.as_deref(), Some("https://idp/jwks"));
        assert_eq!(c.auth.algorithms, ["RS256", "EdDSA"]);
        Ok(())
    });
}

#[test]
fn file_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ws.toml",
            "[server]\nbacklog = 17\n[log]\nformat = \"json\"\n",
        )?;
        let c = Config::load(Some(Path::new("ws.toml"))).unwrap();
        assert_eq!(c.server.backlog, 17);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.websocket, WebsocketConfig::default());
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_is_rejected() {
    Jail::expect_with(|jail| {
        jail.create_file("ws.toml", "[server]\nbogus_knob = 1\n")?;
        let err = Config::load(Some(Path::new("ws.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus_knob"), "{err}");
        jail.create_file("top.toml", "[nonsense]\nx = 1\n")?;
        let err = Config::load(Some(Path::new("top.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense"), "{err}");
        Ok(())
    });
}

#[test]
fn unknown_key_in_env_is_rejected() {
    Jail::expect_with(|jail| {
        jail.set_env("WIRESOCKET_SERVER__BOGUS_KNOB", "1");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("bogus_knob"), "{err}");
        Ok(())
    });
}

#[test]
fn missing_explicit_file_is_an_error() {
    Jail::expect_with(|_| {
        let err = Config::load(Some(Path::new("absent.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::FileNotFound(_)), "{err}");
        Ok(())
    });
}

#[test]
fn env_overrides_file_and_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ws.toml",
            "[server]\nlisten = \"127.0.0.1:7000\"\nbacklog = 5\n",
        )?;
        jail.set_env("WIRESOCKET_CONFIG", "/not/a/field.toml");
        jail.set_env("WIRESOCKET_SERVER__LISTEN", "0.0.0.0:9000");
        jail.set_env("WIRESOCKET_SERVER__CORES", "2");
        jail.set_env("WIRESOCKET_AUTH__HMAC_SECRET", "12345");
        jail.set_env("WIRESOCKET_AUTH__ALGORITHMS", "HS256,HS512");
        jail.set_env("WIRESOCKET_AUTH__AUDIENCE", "app");
        jail.set_env("WIRESOCKET_API__KEY", "1e10");
        jail.set_env("WIRESOCKET_CHANNELS__DEFAULT__HISTORY_SIZE", "10");
        jail.set_env("WIRESOCKET_CHANNELS__DEFAULT__PRESENCE", "true");
        jail.set_env("WIRESOCKET_CHANNELS__DEFAULT__CHANNEL_REGEX", "12345");
        let c = Config::load(Some(Path::new("ws.toml"))).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.server.backlog, 5);
        assert_eq!(c.server.cores, CoresSpec::Count(2));
        assert_eq!(c.auth.hmac_secret, "12345");
        assert_eq!(c.auth.algorithms, ["HS256", "HS512"]);
        assert_eq!(c.auth.audience.as_deref(), Some("app"));
        assert_eq!(c.api.key, "1e10");
        assert_eq!(c.channels.default.history_size, 10);
        assert!(c.channels.default.presence);
        assert_eq!(c.channels.default.channel_regex, "12345");
        c.validate().unwrap();
        Ok(())
    });
}

#[test]
fn env_list_syntax_for_cores() {
    Jail::expect_with(|jail| {
        jail.set_env("WIRESOCKET_SERVER__CORES", "[0, 1]");
        assert_eq!(
            Config::load(None).unwrap().server.cores,
            CoresSpec::List(vec![0, 1])
        );
        jail.set_env("WIRESOCKET_SERVER__CORES", "all");
        assert_eq!(Config::load(None).unwrap().server.cores, CoresSpec::All);
        Ok(())
    });
}

fn cores_from_toml(value: &str) -> Result<CoresSpec, figment::Error> {
    let config: Config = Figment::new()
        .merge(Toml::string(&format!("[server]\ncores = {value}\n")))
        .extract()?;
    Ok(config.server.cores)
}

#[test]
fn cores_spec_parses_all_count_and_list() {
    assert_eq!(cores_from_toml("\"all\"").unwrap(), CoresSpec::All);
    assert_eq!(cores_from_toml("2").unwrap(), CoresSpec::Count(2));
    assert_eq!(
        cores_from_toml("[0, 1]").unwrap(),
        CoresSpec::List(vec![0, 1])
    );
    assert!(cores_from_toml("\"most\"").is_err());
    assert!(cores_from_toml("-1").is_err());
    assert!(cores_from_toml("[\"a\"]").is_err());
}

#[test]
fn cores_spec_resolves_against_usable_cpus() {
    let usable = [0, 1, 2, 3];
    assert_eq!(CoresSpec::All.resolve_among(&usable).unwrap(), usable);
    assert_eq!(CoresSpec::Count(2).resolve_among(&usable).unwrap(), [0, 1]);
    assert_eq!(
        CoresSpec::List(vec![3, 1]).resolve_among(&usable).unwrap(),
        [3, 1]
    );
    assert!(CoresSpec::Count(0).resolve_among(&usable).is_err());
    assert!(CoresSpec::Count(5).resolve_among(&usable).is_err());
    assert!(CoresSpec::List(vec![]).resolve_among(&usable).is_err());
    assert!(CoresSpec::List(vec![4]).resolve_among(&usable).is_err());
    assert!(CoresSpec::List(vec![1, 1]).resolve_among(&usable).is_err());
    assert!(CoresSpec::All.resolve_among(&[]).is_err());
    assert!(!CoresSpec::All.resolve().unwrap().is_empty());
}

#[test]
fn cpu_list_format() {
    assert_eq!(
        parse_cpu_list("0-3,5,7-8\n"),
        Some(vec![0, 1, 2, 3, 5, 7, 8])
    );
    assert_eq!(parse_cpu_list("0"), Some(vec![0]));
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(parse_cpu_list("x"), None);
}

#[test]
fn example_parses_back_to_defaults() {
    let text = example_toml("the-secret", "the-key");
    let parsed: Config = Figment::new().merge(Toml::string(&text)).extract().unwrap();
    let mut expected = Config::default();
    expected.auth.hmac_secret = "the-secret".into();
    expected.api.key = "the-key".into();
    assert_eq!(parsed, expected);
    parsed.validate().unwrap();
    let has_key = |name: &str| {
        text.contains(&format!("\n{name} = ")) || text.contains(&format!("# {name} = "))
    };
    for section in SECTIONS {
        assert!(
            text.contains(&format!("\n[{}]\n", section.key)),
            "{}",
            section.key
        );
        for field in section.fields {
            if let Some((_, nested)) = channels::nested_table(field.ty) {
                let table = format!("\n[{}.{}]\n", section.key, field.name);
                assert!(text.contains(&table), "{table}");
                assert!(nested.iter().all(|f| has_key(f.name)));
            } else if field.ty.starts_with("Vec<Namespace") {
                assert!(text.contains(&format!("# [[{}.{}]]", section.key, field.name)));
            } else if example::is_deprecated(field) {
                // only this section's own lines (a nested table may reuse the name)
                let own = text
                    .split(&format!("\n[{}]\n", section.key))
                    .nth(1)
                    .and_then(|rest| rest.split("\n[").next())
                    .unwrap_or("");
                let advertised = own.contains(&format!("\n{} = ", field.name));
                assert!(!advertised, "deprecated {} advertised", field.name);
            } else {
                assert!(has_key(field.name), "{}", field.name);
            }
        }
    }
    // the commented namespace example is valid once uncommented
    let entry: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# [[channels.namespaces]]"))
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let with_ns: Config = Figment::new()
        .merge(Toml::string(&entry))
        .extract()
        .unwrap();
    assert_eq!(with_ns.channels.namespaces[0].name, "chat");
    assert_eq!(with_ns.channels.namespaces[0].options.history_size, 100);
}

/// Drift guard: each field's doc states its default, as the TOML value (ignoring `_` and quotes).
#[test]
fn docs_state_the_defaults() {
    let values = toml::Table::try_from(Config::default()).unwrap();
    let norm = |s: &str| s.replace(['_', '"'], "");
    let check = |path: &str, fields: &[FieldDoc], table: &toml::Table| {
        for field in fields {
            let doc = norm(&field.doc.concat());
            assert!(
                doc.contains("Default:"),
                "{path}.{} has no default",
                field.name
            );
            match table.get(field.name) {
                Some(toml::Value::Table(_)) | None => {}
                Some(value) => {
                    let value = norm(&value.to_string());
                    assert!(
                        doc.contains(&value),
                        "{path}.{}: doc lacks {value}",
                        field.name
                    );
                }
            }
        }
    };
    for section in SECTIONS {
        let table = values[section.key].as_table().unwrap();
        check(section.key, section.fields, table);
        for field in section.fields {
            if let Some((_, nested)) = channels::nested_table(field.ty) {
                let path = format!("{}.{}", section.key, field.name);
                check(&path, nested, table[field.name].as_table().unwrap());
            }
        }
    }
}

#[test]
fn string_fields_are_detected_for_env() {
    assert!(env::is_string_field("auth.hmac_secret"));
    assert!(env::is_string_field("auth.audience"));
    assert!(env::is_string_field("api.key"));
    assert!(env::is_string_field("channels.default.channel_regex"));
    assert!(!env::is_string_field("channels.default.history_size"));
    assert!(!env::is_string_field("channels.default"));
    assert!(!env::is_string_field("channels.private_prefix.x"));
    assert!(!env::is_string_field("server.cores"));
    assert!(!env::is_string_field("auth.algorithms"));
    assert!(!env::is_string_field("nope.key"));
}

const NAMESPACES: &str = r#"
[channels]
allow_client_publish = true

[channels.default]
history_size = 10

[[channels.namespaces]]
name = "chat"
presence = true
allow_publish_for_subscriber = true

[[channels.namespaces]]
name = "ids"
channel_regex = "^[0-9]+$"
"#;

#[test]
fn namespaces_load_from_toml_and_deprecated_keys_map_to_the_default() {
    Jail::expect_with(|jail| {
        jail.create_file("ws.toml", NAMESPACES)?;
        let c = Config::load(Some(Path::new("ws.toml"))).unwrap();
        let ch = &c.channels;
        assert_eq!(ch.default.history_size, 10);
        assert!(
            ch.default.allow_publish_for_client,
            "deprecated alias applied"
        );
        assert_eq!(ch.namespaces.len(), 2);
        assert_eq!(ch.namespaces[0].name, "chat");
        assert!(ch.namespaces[0].options.presence);
        assert!(ch.namespaces[0].options.allow_publish_for_subscriber);
        assert_eq!(ch.namespaces[0].options.history_size, 0, "option defaults");
        assert_eq!(ch.namespaces[1].options.channel_regex, "^[0-9]+$");
        let notes = c.deprecations();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("channels.default.allow_publish_for_client"));
        Ok(())
    });
}

#[test]
fn unknown_or_missing_namespace_keys_are_rejected() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ws.toml",
            "[[channels.namespaces]]\nname = \"a\"\nhistroy_size = 1\n",
        )?;
        let err = Config::load(Some(Path::new("ws.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("histroy_size"), "{err}");
        jail.create_file("ws.toml", "[[channels.namespaces]]\npresence = true\n")?;
        let err = Config::load(Some(Path::new("ws.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("name"), "{err}");
        jail.create_file("ws.toml", "[channels.default]\nbogus = 1\n")?;
        let err = Config::load(Some(Path::new("ws.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
        Ok(())
    });
}

#[test]
fn history_bridges_between_engine_and_namespaces() {
    Jail::expect_with(|jail| {
        // the old shape: engine history alone becomes the default namespace's
        jail.set_env("WIRESOCKET_ENGINE__HISTORY_SIZE", "5");
        let c = Config::load(None).unwrap();
        assert_eq!(c.channels.default.history_size, 5);
        assert!(c
            .deprecations()
            .iter()
            .any(|d| d.contains("engine.history_size")));
        // the new shape: namespaces carry their own history; the default stays without
        jail.set_env("WIRESOCKET_ENGINE__HISTORY_SIZE", "0");
        jail.create_file(
            "ws.toml",
            "[[channels.namespaces]]\nname = \"h\"\nhistory_size = 7\nhistory_ttl_s = 900\n",
        )?;
        let c = Config::load(Some(Path::new("ws.toml"))).unwrap();
        assert_eq!(c.channels.default.history_size, 0);
        assert_eq!(c.channels.namespaces[0].options.history_size, 7);
        Ok(())
    });
}

fn with_namespaces(names: &[&str]) -> Config {
    let mut c = with_secret();
    c.channels.namespaces = names
        .iter()
        .map(|n| NamespaceConfig {
            name: (*n).into(),
            options: ChannelOptions::default(),
        })
        .collect();
    c
}

#[test]
fn channel_validation_names_the_field() {
    assert_eq!(
        invalid_field(&with_namespaces(&["a", "b", "a"])),
        "channels.namespaces[2].name"
    );
    assert_eq!(
        invalid_field(&with_namespaces(&["a", ""])),
        "channels.namespaces[1].name"
    );
    assert_eq!(
        invalid_field(&with_namespaces(&["a:b"])),
        "channels.namespaces[0].name"
    );
    assert_eq!(
        invalid_field(&with_namespaces(&["$a"])),
        "channels.namespaces[0].name"
    );
    let mut c = with_namespaces(&["a", "b"]);
    c.channels.namespaces[1].options.channel_regex = "([".into();
    assert_eq!(invalid_field(&c), "channels.namespaces[1].channel_regex");
    let mut c = with_secret();
    c.channels.default.history_size = 10;
    c.channels.default.history_ttl_s = 0;
    assert_eq!(invalid_field(&c), "channels.default.history_ttl_s");
    let mut c = with_secret();
    c.channels.default.max_channel_length = 0;
    assert_eq!(invalid_field(&c), "channels.default.max_channel_length");
    let mut c = with_secret();
    c.channels.user_boundary = ":".into();
    assert_eq!(invalid_field(&c), "channels.user_boundary");
    let mut c = with_secret();
    c.channels.namespace_boundary = String::new();
    assert_eq!(invalid_field(&c), "channels.namespace_boundary");
    with_namespaces(&["chat", "a.b-c_1"]).validate().unwrap();
}

#[test]
fn session_records_are_synced_within_their_ttl() {
    let mut c = with_secret();
    c.engine.kind = EngineKind::Redis;
    c.validate().unwrap();
    c.engine.redis.session_ttl_s = 3;
    c.engine.redis.session_sync_ms = 1_000;
    c.validate().unwrap();
    c.engine.redis.session_sync_ms = 1_001;
    assert_eq!(invalid_field(&c), "engine.redis.session_sync_ms");
    c.engine.redis.session_ttl_s = 0;
    assert_eq!(invalid_field(&c), "engine.redis.session_ttl_s");
}
