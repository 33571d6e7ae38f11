//! The comparison report: from the raw `compare` results it derives one row per metric (value
//! per system, and the ratio wiresocket/peer with which direction is better: `metrics`), the
//! per-connection and per-message `costs` that `capacity` plans with, SVG charts and the
//! Markdown a person reads (`render`). Writes `<name>.json`, `<name>.md` and `<name>/` (charts)
//! into the results directory.

mod metrics;
mod render;
#[cfg(test)]
mod tests;

pub use metrics::{costs, metrics};
use serde_json::{json, Map, Value};
use std::path::Path;

/// One compared number.
#[derive(Debug, Clone)]
pub struct Metric {
    pub scenario: String,
    pub label: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Value per system, in the run's system order (None: failed or not measured).
    pub values: Vec<(String, Option<f64>)>,
}

impl Metric {
    pub fn value(&self, sys: &str) -> Option<f64> {
        self.values.iter().find(|(s, _)| s == sys).and_then(|v| v.1)
    }

    /// wiresocket / peer (None when either is missing or the peer is 0); "wiresocket" is the
    /// run's base system (`base_system`).
    pub fn ratio(&self, peer: &str) -> Option<f64> {
        let names: Vec<String> = self.values.iter().map(|(s, _)| s.clone()).collect();
        let (w, p) = (self.value(&base_system(&names))?, self.value(peer)?);
        (p > 0.0 && w >= 0.0).then(|| w / p)
    }

    fn to_json(&self, systems: &[String]) -> Value {
        let base = base_system(systems);
        let ratios: Map<String, Value> = systems
            .iter()
            .filter(|s| **s != base)
            .map(|s| (s.clone(), json!(self.ratio(s))))
            .collect();
        json!({
            "scenario": self.scenario, "metric": self.label, "unit": self.unit,
            "better": if self.higher_is_better { "higher" } else { "lower" },
            "values": self.values.iter().map(|(s, v)| (s.clone(), json!(v))).collect::<Map<_, _>>(),
            "ratio_wiresocket_over_peer": ratios,
        })
    }
}

/// A number at a JSON pointer.
pub fn f(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

/// The system ratios are taken against: `wiresocket` when the run has it, else the first
/// `wiresocket*` system (e.g. `wiresocket-cluster`), else the first system.
pub fn base_system(systems: &[String]) -> String {
    systems
        .iter()
        .find(|s| *s == "wiresocket")
        .or_else(|| systems.iter().find(|s| s.starts_with("wiresocket")))
        .or(systems.first())
        .cloned()
        .unwrap_or_default()
}

/// The systems of the run, in order.
pub fn systems(doc: &Value) -> Vec<String> {
    doc["systems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Rates of the phases of `scenario` as defined.
pub fn rates(doc: &Value, scenario: &str) -> Vec<u64> {
    doc["results"][scenario]["definition"]["rates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

/// Writes `<name>.json`, `<name>.md` and the charts under `<name>/`; returns the Markdown path.
/// `doc` may be raw `compare` results or a previous report (metrics and costs are recomputed).
pub fn write(doc: &Value, out_dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let ms = metrics(doc);
    let systems = systems(doc);
    let mut full = doc.clone();
    full["metrics"] = Value::Array(ms.iter().map(|m| m.to_json(&systems)).collect());
    full["costs"] = costs(doc);
    let chart_dir = out_dir.join(name);
    std::fs::create_dir_all(&chart_dir)?;
    let drawn = render::charts(&full, &ms, &chart_dir);
    std::fs::write(
        out_dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&full)? + "\n",
    )?;
    let md_path = out_dir.join(format!("{name}.md"));
    std::fs::write(&md_path, render::markdown(&full, &ms, name, &drawn))?;
    eprintln!("wrote {} and {}/", md_path.display(), chart_dir.display());
    Ok(md_path)
}
