#!/usr/bin/env bash
# CPU profile of wiresocket during one scenario: runs the scenario against wiresocket only with
# `perf record` attached to the server (software cpu-clock event, DWARF call graphs), then folds
# the stacks with inferno and writes a flamegraph SVG plus the top functions as text.
#
#   bench/profile.sh fanout                  # -> bench/results/profile-fanout-<date>/
#   SCALE=0.5 bench/profile.sh many-channels
#
# Needs: perf (Debian linux-perf; installed here if missing), inferno (cargo install, if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:?usage: bench/profile.sh SCENARIO   (a name from bench/scenarios/)}
SCALE=${SCALE:-1}
TIME_SCALE=${TIME_SCALE:-1}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-bench/results/profile-$SCENARIO-$(date -u +%Y%m%d-%H%M%S)}
log() { printf '[profile] %s\n' "$*" >&2; }

if ! command -v perf >/dev/null; then
  log "installing linux-perf"
  apt-get install -y -q linux-perf >&2
fi
if ! command -v inferno-flamegraph >/dev/null; then
  log "installing inferno (flamegraph renderer) from crates.io"
  cargo install --locked inferno >&2
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --locked -p wiresocket -p wiresocket-bench >&2
fi
mkdir -p "$OUT"
"$TARGET/release/wiresocket-bench" compare --systems wiresocket --only "$SCENARIO" \
  --scale "$SCALE" --time-scale "$TIME_SCALE" --wiresocket-bin "$TARGET/release/wiresocket" \
  --out-dir "$OUT" --name run --profile "$OUT" >/dev/null
data="$OUT/$SCENARIO.perf.data"
[[ -s "$data" ]] || { log "no profile recorded ($data)"; exit 1; }
log "folding stacks"
perf script -i "$data" 2>/dev/null | inferno-collapse-perf >"$OUT/stacks.folded"
inferno-flamegraph --title "wiresocket: $SCENARIO (cpu-clock)" <"$OUT/stacks.folded" >"$OUT/flamegraph.svg"
perf report -i "$data" --no-children --stdio --percent-limit 1.5 2>/dev/null \
  | grep -E '^ +[0-9]' | head -n 30 >"$OUT/top-self.txt" || true
rm -f "$data"
log "flamegraph: $OUT/flamegraph.svg; top functions (self time): $OUT/top-self.txt"
cat "$OUT/top-self.txt"
