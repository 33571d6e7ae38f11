//! Environment overrides `WIRESOCKET_<SECTION>__<FIELD>=value` as a figment provider.
//!
//! Used only by `Config::load`, merged after the TOML file. Wraps figment's `Env` for key
//! handling (prefix, `__` nesting, lower-casing) and error metadata (messages name the variable),
//! but types values itself.
//! Invariant: a value for a string-typed field is kept verbatim, so a secret such as `12345` or
//! `1e10` stays a string; other values are parsed like TOML values (numbers, booleans, arrays).
//! Nested tables work the same way (`WIRESOCKET_CHANNELS__DEFAULT__CHANNEL_REGEX=^[0-9]+$` stays
//! a string); arrays of tables (`[[channels.namespaces]]`) are TOML-only.
//! `WIRESOCKET_CONFIG` is never a field: it names the file and is skipped here.

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::channels::nested_table;
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

/// True when `section.field` (or `section.table.field` for a nested table such as
/// `channels.default.channel_regex`) is declared as `String` or `Option<String>`.
pub(crate) fn is_string_field(key: &str) -> bool {
    let mut parts = key.split('.');
    let Some(section) = parts.next() else {
        return false;
    };
    let Some(mut fields) = SECTIONS.iter().find(|s| s.key == section).map(|s| s.fields) else {
        return false;
    };
    let Some(mut name) = parts.next() else {
        return false;
    };
    loop {
        let Some(field) = fields.iter().find(|f| f.name == name) else {
            return false;
        };
        let ty: String = field.ty.chars().filter(|c| !c.is_whitespace()).collect();
        match parts.next() {
            None => return ty == "String" || ty == "Option<String>",
            Some(next) => match nested_table(&ty) {
                Some((_, nested)) => (fields, name) = (nested, next),
                None => return false,
            },
        }
    }
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
