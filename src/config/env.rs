//! Environment overrides `WIRESOCKET_<SECTION>__<FIELD>=value` as a figment provider.
//!
//! Used only by `Config::load`, merged after the TOML file. Wraps figment's `Env` for key
//! handling (prefix, `__` nesting, lower-casing) and error metadata (messages name the variable),
//! but types values itself.
//! Invariant: a value for a string-typed field is kept verbatim, so a secret such as `12345` or
//! `1e10` stays a string; other values are parsed like TOML values (numbers, booleans, arrays).
//! `WIRESOCKET_CONFIG` is never a field: it names the file and is skipped here.

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::{CONFIG_PATH_ENV, ENV_PREFIX, SECTIONS};

/// Figment provider for `WIRESOCKET_*` variables.
pub(crate) struct EnvSource {
    env: Env,
}

impl EnvSource {
    pub(crate) fn new() -> Self {
        let config_key = CONFIG_PATH_ENV
            .trim_start_matches(ENV_PREFIX)
            .to_ascii_lowercase();
        let env = Env::prefixed(ENV_PREFIX).ignore(&[&config_key]).split("__");
        EnvSource { env }
    }
}

impl Provider for EnvSource {
    fn metadata(&self) -> Metadata {
        self.env.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for (key, raw) in self.env.iter() {
            let raw = raw.trim();
            let value = if is_string_field(key.as_str()) {
                Value::from(raw)
            } else {
                raw.parse::<Value>().unwrap_or_else(|never| match never {})
            };
            if let Value::Dict(_, dict) = figment::util::nest(key.as_str(), value) {
                merge(&mut root, dict);
            }
        }
        Ok(Profile::Default.collect(root))
    }
}

/// True when `section.field` is declared as `String` or `Option<String>`.
pub(crate) fn is_string_field(key: &str) -> bool {
    let Some((section, field)) = key.split_once('.') else {
        return false;
    };
    SECTIONS
        .iter()
        .filter(|s| s.key == section)
        .flat_map(|s| s.fields.iter())
        .filter(|f| f.name == field)
        .any(|f| {
            let ty: String = f.ty.chars().filter(|c| !c.is_whitespace()).collect();
            ty == "String" || ty == "Option<String>"
        })
}

/// Deep-merges `from` into `into`; on conflict the later value wins.
fn merge(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
