#!/usr/bin/env bash
# engine-bench.sh — builds wiresocket + wiresocket-bench (release), then against a fresh local
# server for each run: (a) idle connections with 2 cores, (b) fan-out with 2 cores, (c) the same
# fan-out with 1 core. Writes bench/results/engine-<date>.{json,md}. Loopback only; every run is
# bounded (timeouts below) and the server is killed on exit.
#
# Env: CONNS (15000) SUBS (10000) RATES (100,1000,5000) SECS (10 per rate) HOLD (35 s idle hold)
#      DRAIN (3 s after each rate) SRC_IPS (127.0.0.2-127.0.0.200) PORT (random free)
#       SKIP_BUILD=1 (use existing binaries) SERVER_BIN BENCH_BIN CARGO_TARGET_DIR
#       ONLY (all | idle | fanout) PROCS (0 = auto) PAYLOAD_BYTES (0) PACE_US (0 = off)
#       WAIT_IDLE_S (0: seconds to wait for the machine to go idle before starting)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CONNS=${CONNS:-15000}
SUBS=${SUBS:-10000}
RATES=${RATES:-100,1000,5000}
SECS=${SECS:-10}
HOLD=${HOLD:-35}
DRAIN=${DRAIN:-3}
SRC_IPS=${SRC_IPS:-127.0.0.2-127.0.0.200}
PROCS=${PROCS:-0}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-0}
PACE_US=${PACE_US:-0}
ONLY=${ONLY:-all}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER_BIN=${SERVER_BIN:-$TARGET_DIR/release/wiresocket}
BENCH_BIN=${BENCH_BIN:-$TARGET_DIR/release/wiresocket-bench}
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$HERE/results
WORK=$(mktemp -d /tmp/wiresocket-engine-bench.XXXXXX)
SERVER_PID=""

log() { printf '[engine-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

cleanup() {
  local rc=$?
  stop_server
  if [[ $rc -ne 0 ]]; then
    log "failed (exit $rc); server logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  if [[ -n "${PORT:-}" ]]; then echo "$PORT"; return; fi
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 10000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  log "no free port found"; exit 1
}

# machine_busy_pct: CPU busy over 2 s, % of one core (all processes); the benchmark assumes an
# otherwise idle machine, so a busy one is reported in the results header.
machine_busy_pct() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 2
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN{split(a,x," ");split(b,y," ");
    printf "%.0f", (y[2]>x[2]) ? 100*n*(y[1]-x[1])/(y[2]-x[2]) : 0}'
}

SECRET=$(rand_hex 24)
API_KEY=$(rand_hex 16)

# start_server CORES LABEL: fresh server with a generated config; sets SERVER_PID and BASE.
start_server() {
  local cores=$1 label=$2 port cfg
  port=$(pick_port)
  cfg=$WORK/server-$label.toml
  cat >"$cfg" <<TOML
[server]
listen = "127.0.0.1:$port"
cores = $cores
max_connections = 100000

[websocket]
outbound_queue_bytes = 1048576

[auth]
hmac_secret = "$SECRET"

[api]
key = "$API_KEY"

[channels]
allow_client_publish = true
TOML
  "$SERVER_BIN" serve --config "$cfg" >"$WORK/server-$label.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    if grep -qs "wiresocket listening on" "$WORK/server-$label.log"; then
      BASE="127.0.0.1:$port"
      log "server ($cores core(s), pid $SERVER_PID) listening on $BASE"
      sleep 1 # let the baseline RSS settle before it is sampled
      return
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  log "server did not start; log:"; tail -n 40 "$WORK/server-$label.log" >&2 || true
  exit 1
}

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building release binaries (workspace)"
  (cd "$ROOT" && cargo build --release --workspace)
fi
for bin in "$SERVER_BIN" "$BENCH_BIN"; do
  [[ -x "$bin" ]] || { log "missing binary $bin"; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
mkdir -p "$RESULTS"
BUSY_BEFORE=$(machine_busy_pct)
waited=0
while ((BUSY_BEFORE > 20 && waited < ${WAIT_IDLE_S:-0})); do
  log "machine ${BUSY_BEFORE}% busy; waiting for it to go idle (${waited}/${WAIT_IDLE_S} s)"
  sleep 8
  waited=$((waited + 10))
  BUSY_BEFORE=$(machine_busy_pct)
done
if ((BUSY_BEFORE > 20)); then
  log "WARNING: machine already ${BUSY_BEFORE}% busy (of $(nproc)00%) before the benchmark; results will be skewed"
  ps -eo pcpu,pid,etime,comm --sort=-pcpu | head -n 4 >&2
fi

report_args=()
idle_timeout=$((HOLD + 300))
n_rates=$(awk -F, '{print NF}' <<<"$RATES")
fan_timeout=$((340 + n_rates * (SECS * 2 + 2 + DRAIN)))

if [[ "$ONLY" == all || "$ONLY" == idle ]]; then
  start_server 2 idle
  log "idle: $CONNS connections, hold $HOLD s"
  timeout --signal=INT --kill-after=15 "$idle_timeout" "$BENCH_BIN" idle \
    --url "ws://$BASE/connection/websocket" --secret "$SECRET" --conns "$CONNS" \
    --hold-s "$HOLD" --procs "$PROCS" --src-ips "$SRC_IPS" --server-pid "$SERVER_PID" \
    --out "$WORK/idle.json"
  stop_server
  report_args+=(--idle "$WORK/idle.json")
fi

if [[ "$ONLY" == all || "$ONLY" == fanout ]]; then
  for cores in 2 1; do
    start_server "$cores" "fanout-$cores"
    log "fanout: $SUBS subscribers, rates $RATES, $SECS s each, $cores core(s)"
    timeout --signal=INT --kill-after=15 "$fan_timeout" "$BENCH_BIN" fanout \
      --url "ws://$BASE/connection/websocket" --api-url "http://$BASE" --api-key "$API_KEY" \
      --secret "$SECRET" --subs "$SUBS" --rates "$RATES" --secs-per-rate "$SECS" \
      --drain-s "$DRAIN" --procs "$PROCS" --src-ips "$SRC_IPS" --server-pid "$SERVER_PID" \
      --payload-bytes "$PAYLOAD_BYTES" --pace-us "$PACE_US" --out "$WORK/fanout-$cores.json"
    stop_server
    report_args+=(--fanout "$cores=$WORK/fanout-$cores.json")
  done
fi

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
"$BENCH_BIN" report "${report_args[@]}" \
  --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" --meta "checkout commit=$commit (the server binary may differ: see sha256)" \
  --meta "machine=$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)" \
  --meta "params=CONNS=$CONNS SUBS=$SUBS RATES=$RATES SECS=$SECS HOLD=$HOLD PAYLOAD_BYTES=$PAYLOAD_BYTES PACE_US=$PACE_US SRC_IPS=$SRC_IPS" \
  --meta "machine busy before run=${BUSY_BEFORE}% of one core (other processes; 0-5 is idle)" \
  --meta "server binary=$SERVER_BIN, sha256 $(sha256sum "$SERVER_BIN" | cut -c1-12), built $(date -u -r "$SERVER_BIN" +%Y-%m-%dT%H:%M:%SZ)" \
  --meta "server runs=fresh process per run; idle and fan-out-2 with cores=2, fan-out-1 with cores=1" \
  --out-json "$RESULTS/engine-$STAMP.json" --out-md "$RESULTS/engine-$STAMP.md"
log "wrote $RESULTS/engine-$STAMP.json and $RESULTS/engine-$STAMP.md"
cat "$RESULTS/engine-$STAMP.md"
