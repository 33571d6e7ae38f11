//! What a subscriber received, checked against what was acknowledged: shared by the fleet
//! tests (`redis_fleet`, `rolling_restart*`) for our Rust client and the JS SDK's reports,
//! and the `1-3,5` offset ranges the JS fleet script (`tests/js/fleet.mjs`) prints.

use std::collections::BTreeMap;

/// Checks one subscriber against the acknowledged publications: strictly increasing offsets
/// (in order, no duplicate), every acknowledged publication present with its data, and no
/// gap in the stream up to the last acknowledged offset.
pub fn check_received(who: &str, received: &[(u64, u64)], acked: &BTreeMap<u64, u64>) {
    for w in received.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "{who}: offset {} after {} (duplicate or out of order)",
            w[1].0,
            w[0].0
        );
    }
    let got: BTreeMap<u64, u64> = received.iter().copied().collect();
    let lost: Vec<u64> = acked
        .iter()
        .filter(|(o, n)| got.get(o) != Some(n))
        .map(|(o, _)| *o)
        .collect();
    assert!(
        lost.is_empty(),
        "{who}: {} acknowledged publications lost or altered, offsets {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let last = *acked.keys().last().expect("publications");
    let gaps: Vec<u64> = (1..=last).filter(|o| !got.contains_key(o)).collect();
    assert!(
        gaps.is_empty(),
        "{who}: stream offsets missing {:?}",
        &gaps[..gaps.len().min(20)]
    );
}

/// `1-3,5,0` (see `fleet.mjs`) as `[1, 2, 3, 5, 0]`; `-` is the empty list.
pub fn expand(ranges: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for r in ranges.split(',').filter(|r| *r != "-") {
        let num = |x: &str| x.parse::<u64>().map_err(|e| format!("{ranges}: {e}"));
        match r.split_once('-') {
            Some((a, b)) => out.extend(num(a)?..=num(b)?),
            None => out.push(num(r)?),
        }
    }
    Ok(out)
}
