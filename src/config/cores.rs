//! `server.cores`: which CPUs get an executor, and how that choice maps onto this machine.
//!
//! Parsed from config (`"all"`, an integer N, or an array of CPU ids) and resolved by the runtime
//! at start-up ([`CoresSpec::resolve`]) into the CPU ids it pins one executor to each.
//! Invariant: a successful resolve returns a non-empty list of distinct CPU ids, each online and
//! in this process's affinity mask (so pinning cannot fail for lack of permission).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;

const FIELD: &str = "server.cores";
const ONLINE_PATH: &str = "/sys/devices/system/cpu/online";
const STATUS_PATH: &str = "/proc/self/status";

/// Which CPUs to run executors on.
///
/// serde: accepts the string `"all"`, an integer N (first N usable CPUs), or an array of CPU ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CoresSpec {
    /// Every usable CPU.
    #[default]
    All,
    /// The first N usable CPUs, in id order.
    Count(usize),
    /// Exactly these CPU ids.
    List(Vec<usize>),
}

impl CoresSpec {
    /// CPU ids to pin executors to. Usable CPUs are the online ones (parsed from
    /// `/sys/devices/system/cpu/online`, else `0..available_parallelism`) that are also in this
    /// process's affinity mask (`Cpus_allowed_list` of `/proc/self/status`, when readable).
    /// Errors on an empty list, an unusable CPU id, a duplicate id, a count of 0 or a count
    /// above the number of usable CPUs.
    pub fn resolve(&self) -> Result<Vec<usize>, ConfigError> {
        self.resolve_among(&usable_cpus())
    }

    /// [`CoresSpec::resolve`] against an explicit, ascending list of usable CPU ids.
    pub(crate) fn resolve_among(&self, usable: &[usize]) -> Result<Vec<usize>, ConfigError> {
        match self {
            CoresSpec::All if usable.is_empty() => {
                Err(ConfigError::invalid(FIELD, "no usable CPU found"))
            }
            CoresSpec::All => Ok(usable.to_vec()),
            CoresSpec::Count(0) => Err(ConfigError::invalid(FIELD, "count must be at least 1")),
            CoresSpec::Count(n) if *n > usable.len() => Err(ConfigError::invalid(
                FIELD,
                format!(
                    "count {n} exceeds the {} usable CPUs {usable:?}",
                    usable.len()
                ),
            )),
            CoresSpec::Count(n) => Ok(usable[..*n].to_vec()),
            CoresSpec::List(ids) => check_list(ids, usable),
        }
    }

    /// Static checks that need no knowledge of the machine (used by `Config::validate`).
    pub(crate) fn check_shape(&self) -> Result<(), ConfigError> {
        match self {
            CoresSpec::Count(0) => Err(ConfigError::invalid(FIELD, "count must be at least 1")),
            CoresSpec::List(ids) if ids.is_empty() => {
                Err(ConfigError::invalid(FIELD, "CPU list is empty"))
            }
            _ => Ok(()),
        }
    }
}

fn check_list(ids: &[usize], usable: &[usize]) -> Result<Vec<usize>, ConfigError> {
    if ids.is_empty() {
        return Err(ConfigError::invalid(FIELD, "CPU list is empty"));
    }
    for (i, id) in ids.iter().enumerate() {
        if !usable.contains(id) {
            return Err(ConfigError::invalid(
                FIELD,
                format!("CPU {id} is not usable (usable CPUs: {usable:?})"),
            ));
        }
        if ids[..i].contains(id) {
            return Err(ConfigError::invalid(
                FIELD,
                format!("CPU {id} listed twice"),
            ));
        }
    }
    Ok(ids.to_vec())
}

/// Online CPUs intersected with the affinity mask, ascending.
fn usable_cpus() -> Vec<usize> {
    let online = std::fs::read_to_string(ONLINE_PATH)
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        });
    match allowed_cpus() {
        Some(allowed) if !allowed.is_empty() => online
            .into_iter()
            .filter(|id| allowed.contains(id))
            .collect(),
        _ => online,
    }
}

/// This process's affinity mask, from the `Cpus_allowed_list` line of `/proc/self/status`.
fn allowed_cpus() -> Option<Vec<usize>> {
    let status = std::fs::read_to_string(STATUS_PATH).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
}

/// Parses the kernel's CPU list format (`0-3,5,7-8`) into ascending ids; `None` if malformed.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut ids = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (usize, usize) = (lo.parse().ok()?, hi.parse().ok()?);
                if lo > hi {
                    return None;
                }
                ids.extend(lo..=hi);
            }
            None => ids.push(part.parse().ok()?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

impl fmt::Display for CoresSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoresSpec::All => f.write_str("all"),
            CoresSpec::Count(n) => write!(f, "{n}"),
            CoresSpec::List(ids) => write!(f, "{ids:?}"),
        }
    }
}

impl Serialize for CoresSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CoresSpec::All => s.serialize_str("all"),
            CoresSpec::Count(n) => s.serialize_u64(*n as u64),
            CoresSpec::List(ids) => ids.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for CoresSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CoresVisitor)
    }
}

struct CoresVisitor;

impl<'de> Visitor<'de> for CoresVisitor {
    type Value = CoresSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#""all", a CPU count, or an array of CPU ids"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<CoresSpec, E> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("all") {
            return Ok(CoresSpec::All);
        }
        v.parse()
            .map(CoresSpec::Count)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<CoresSpec, E> {
        usize::try_from(v)
            .map(CoresSpec::Count)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<CoresSpec, E> {
        usize::try_from(v)
            .map(CoresSpec::Count)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CoresSpec, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(id) = seq.next_element::<usize>()? {
            ids.push(id);
        }
        Ok(CoresSpec::List(ids))
    }
}
