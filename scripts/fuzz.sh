#!/usr/bin/env bash
# Fuzzes wiresocket's parsers with cargo-fuzz (libFuzzer): every target in fuzz/ (or the
# ones named as arguments) for FUZZ_SECONDS each (default 120), starting from the corpus kept
# in fuzz/corpus/<target> plus the hand-written seeds in fuzz/seeds/<target>, then minimises
# the corpus back into the repository. Prints each target's executions, and exits 1 if a
# target found a crash (the input is in fuzz/artifacts/<target>/: add it as a regression test).
#
# Not part of the test suite (it runs for minutes per target). Needs cargo-fuzz (installed
# here from crates.io when missing) and, for AddressSanitizer, a nightly toolchain; without
# nightly it fuzzes on stable with `--sanitizer none` (Rust's own checks and panics still fail).
# FUZZ_SANITIZER=none on nightly trades ASan's checks for several times the executions.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-120}
# FUZZ_TARGET_DIR: a build directory of its own (e.g. for a second pass with another
# sanitizer while one runs); FUZZ_CMIN=0 skips minimising the corpus afterwards.
target_dir=()
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then target_dir=(--target-dir "$FUZZ_TARGET_DIR"); fi
targets=(http_head ws_frames client_command jwt)
if [ $# -gt 0 ]; then targets=("$@"); fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly) sanitizer=${FUZZ_SANITIZER:-address}
else
  toolchain=() sanitizer=none
fi
echo "fuzzing ${targets[*]} for ${seconds}s each (toolchain: ${toolchain[*]:-stable}, sanitizer: $sanitizer)"

mkdir -p fuzz/logs
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  log="fuzz/logs/$t.log"
  rc=0
  (cd fuzz && cargo "${toolchain[@]}" fuzz run "${target_dir[@]}" --sanitizer "$sanitizer" "$t" "corpus/$t" "${seeds[@]/#fuzz\//}" -- \
      -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096) >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "$t: FAILED after ${execs:-?} executions (exit $rc); see $log and fuzz/artifacts/$t/"
  else
    echo "$t: ${execs:-?} executions in ${seconds}s, no crash"
  fi
  if [ "${FUZZ_CMIN:-1}" != 0 ]; then
    (cd fuzz && cargo "${toolchain[@]}" fuzz cmin "${target_dir[@]}" --sanitizer "$sanitizer" "$t" "corpus/$t") >>"$log" 2>&1 || true
  fi
done
exit $failed
