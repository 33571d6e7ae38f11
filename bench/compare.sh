#!/usr/bin/env bash
# One command for the whole comparison: installs the peers (Debian packages, npm ci), builds the
# release binaries, runs every scenario in bench/scenarios/ against wiresocket and every peer in
# the same run, and writes bench/results/compare-<UTC date-time>.{json,md} plus charts.
#
#   bench/compare.sh                       # everything, full size (about 30-40 min on 2 cores)
#   SCALE=0.1 TIME_SCALE=0.3 bench/compare.sh   # quick look
#   SYSTEMS=wiresocket,nchan ONLY=fanout,idle-hold bench/compare.sh
#   PROFILE=1 SYSTEMS=wiresocket bench/compare.sh   # also record perf profiles (see profile.sh)
#
# Env: SYSTEMS, ONLY, SCALE, TIME_SCALE, CORES (per system, default 2), SRC_IPS, PROCS,
#      SKIP_INSTALL=1, SKIP_BUILD=1, OUT_DIR, NAME, PROFILE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[compare] %s\n' "$*" >&2; }

SYSTEMS=${SYSTEMS:-wiresocket,node-ws,socketio,nchan,tokio-ws}
SCALE=${SCALE:-1}
TIME_SCALE=${TIME_SCALE:-1}
CORES=${CORES:-2}
SRC_IPS=${SRC_IPS:-127.0.0.2-127.0.0.200}
PROCS=${PROCS:-0}
OUT_DIR=${OUT_DIR:-bench/results}
NAME=${NAME:-compare-$(date -u +%Y%m%d-%H%M%S)}
TARGET=${CARGO_TARGET_DIR:-target}

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  log "installing peers (bench/peers/install.sh)"
  bench/peers/install.sh >&2
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building release binaries"
  cargo build --release --locked -p wiresocket -p wiresocket-bench -p tokio-ws-peer >&2
fi

extra=()
if [[ -n "${ONLY:-}" ]]; then extra+=(--only "$ONLY"); fi
if [[ "${PROFILE:-0}" == 1 ]]; then extra+=(--profile "$OUT_DIR/$NAME-profile"); fi

ver() { "$@" 2>/dev/null | head -n1 | tr -d '\r' || echo "not installed"; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo " (uncommitted changes)" || true)

log "running scenarios against: $SYSTEMS (scale $SCALE, time scale $TIME_SCALE)"
"$TARGET/release/wiresocket-bench" compare \
  --systems "$SYSTEMS" --scenarios bench/scenarios --scale "$SCALE" --time-scale "$TIME_SCALE" \
  --cores "$CORES" --wiresocket-bin "$TARGET/release/wiresocket" --peers-dir bench/peers \
  --out-dir "$OUT_DIR" --name "$NAME" --src-ips "$SRC_IPS" --procs "$PROCS" "${extra[@]}" \
  --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --meta "commit=$commit$dirty" \
  --meta "machine=$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); server, peers and load generator share the machine" \
  --meta "command=SCALE=$SCALE TIME_SCALE=$TIME_SCALE SYSTEMS=$SYSTEMS ${ONLY:+ONLY=$ONLY }bench/compare.sh" \
  --meta "node=$(ver node --version); redis=$(redis-server --version 2>/dev/null | sed 's/.*v=\([^ ]*\).*/\1/'); nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')" \
  --meta "nchan=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo n/a); peers' npm packages: bench/peers/node/package-lock.json"
log "report: $OUT_DIR/$NAME.md"
