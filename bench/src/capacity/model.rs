//! Shared vocabulary of the capacity plan: [`Line`] (one derived number with its formula),
//! [`Unit`], byte constants and number formatting. The arithmetic lives in `traffic` (rates from
//! the target) and `host` (RAM, CPU, fds from rates x measured costs); `sysctl` and `redis` build
//! on both. Every formula is a string with the numbers filled in, so the printed plan shows how
//! each value was reached.

use serde::Serialize;

pub const KIB: f64 = 1024.0;
pub const MIB: f64 = KIB * KIB;
pub const GIB: f64 = MIB * KIB;
/// Kernel page size: TCP buffer memory is charged in whole pages.
pub const PAGE: f64 = 4096.0;

/// How a line's value is displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Bytes,
    BytesPerSecond,
    Count,
    PerSecond,
    Cores,
    Micros,
    Seconds,
    Ratio,
}

/// One derived number: what it is, its value, and the formula with the numbers used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub item: String,
    pub value: f64,
    pub unit: Unit,
    pub formula: String,
}

pub fn line(item: &str, value: f64, unit: Unit, formula: String) -> Line {
    Line {
        item: item.to_string(),
        value,
        unit,
        formula,
    }
}

/// The smallest power of two >= `x` (at least 1).
pub fn next_pow2(x: f64) -> u64 {
    (x.max(1.0).ceil() as u64).next_power_of_two()
}

/// A number for formulas: thousands separators; whole numbers without decimals, others with
/// 1 (>= 100), 2 (>= 1) or 3 decimals, trailing zeros dropped.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    let digits = match a {
        _ if a.fract() == 0.0 => 0,
        _ if a >= 100.0 => 1,
        _ if a >= 1.0 => 2,
        _ => 3,
    };
    let s = format!("{a:.digits$}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let frac = frac.trim_end_matches('0');
    let zero = int == "0" && frac.is_empty();
    let sign = if v < 0.0 && !zero { "-" } else { "" };
    let int = group(int);
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// `"1234567"` -> `"1,234,567"`.
fn group(digits: &str) -> String {
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
