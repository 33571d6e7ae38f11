#!/usr/bin/env bash
# Compares a host's live kernel settings and process limits with what wiresocket needs for
# --target connections, prints a table and exits 1 listing every check that falls short.
#
# Wanted sysctl values come from 99-wiresocket.conf beside this script (its [min]/[max]/[eq]/[range]
# tags say how to compare). Limits are those of this shell, or of a running process (--pid).
# Used by operators, by the systemd unit's ExecStartPre (fatal), and by apply.sh (--plan).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$here/99-wiresocket.conf"
target=500000
target_set=0
pid=""
config=""
plan=0
FD_HEADROOM=1024          # wiresocket's preflight keeps this many fds aside (listeners, rings, logs)
MEMLOCK_PER_CORE_KIB=512  # preflight: io_uring rings per executor at the default ring_depth

usage() {
  cat <<EOF
Usage: $(basename "$0") [--target N | --config FILE] [--pid PID] [--conf FILE]

Checks the live sysctl values, kernel.io_uring_disabled, and the file-descriptor and locked-memory
limits against what wiresocket needs for N concurrent connections (and that the secrets in the
environment are not the example file's change-me placeholders). Prints a table; exit status 0
when everything is met, 1 when something falls short (listed at the end), 2 on usage errors.

  --target N     connections to size the fd checks for (default 500000; needs N + $FD_HEADROOM fds)
  --config FILE  take N from server.max_connections in this wiresocket config
                 (WIRESOCKET_SERVER__MAX_CONNECTIONS overrides it, as in the server); --target wins
  --pid PID      check the limits of a running process (/proc/PID/limits) instead of this shell
  --conf FILE    sysctl file with the wanted values (default: 99-wiresocket.conf beside this script)
  --plan         machine-readable sysctl rows for apply.sh (tab-separated:
                 key kind wanted live merged status required|optional); no limit checks
  -h, --help     this text
EOF
}

die() { echo "check.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --target) [ $# -ge 2 ] || die "--target needs a value"; target=$2; target_set=1; shift 2 ;;
    --config) [ $# -ge 2 ] || die "--config needs a file"; config=$2; shift 2 ;;
    --pid) [ $# -ge 2 ] || die "--pid needs a value"; pid=$2; shift 2 ;;
    --conf) [ $# -ge 2 ] || die "--conf needs a file"; conf=$2; shift 2 ;;
    --plan) plan=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# Connection target from the wiresocket config (same precedence as the server: env over file).
if [ -n "$config" ] && [ "$target_set" = 0 ]; then
  [ -r "$config" ] || die "cannot read $config"
  target=${WIRESOCKET_SERVER__MAX_CONNECTIONS:-$(awk '
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
    section == "[server]" && /^[[:space:]]*max_connections[[:space:]]*=/ {
      v = $0; sub(/^[^=]*=/, "", v); sub(/#.*/, "", v); gsub(/[[:space:]_"]/, "", v); print v; exit
    }' "$config")}
  [ -n "$target" ] || target=100000  # the server's default when the key is absent
fi
is_uint "$target" || die "target must be a number of connections, got '$target'"
if [ -n "$pid" ]; then
  is_uint "$pid" || die "--pid needs a numeric process id"
  [ -r "/proc/$pid/limits" ] || die "cannot read /proc/$pid/limits (no such process, or not allowed)"
fi
[ -r "$conf" ] || die "cannot read $conf"
need_fds=$((target + FD_HEADROOM))

# Wanted sysctl values: one "kind<TAB>key<TAB>value<TAB>required|optional" line per key.
conf_entries() {
  awk '
    /^#[[:space:]]*\[(min|max|eq|range)\]/ { match($0, /\[[a-z]+\]/); kind = substr($0, RSTART + 1, RLENGTH - 2); next }
    /^[[:space:]]*([#;]|$)/ { next }
    {
      line = $0; need = "required"
      if (sub(/^[[:space:]]*-/, "", line)) need = "optional"
      key = substr(line, 1, index(line, "=") - 1); val = substr(line, index(line, "=") + 1)
      gsub(/^[[:space:]]+|[[:space:]]+$/, "", key); gsub(/^[[:space:]]+|[[:space:]]+$/, "", val)
      gsub(/[[:space:]]+/, " ", val)
      if (kind == "") { print "untagged key " key " in " FILENAME > "/dev/stderr"; exit 1 }
      print kind "\t" key "\t" val "\t" need; kind = ""
    }' "$conf"
}

# Live value of a sysctl key (whitespace normalised), or nothing when the key does not exist.
live_sysctl() {
  local path="/proc/sys/${1//.//}"
  [ -r "$path" ] || return 0
  tr -s ' \t' '  ' <"$path"
}

# satisfied KIND LIVE WANTED: does the live value meet the wanted one?
satisfied() {
  local kind=$1 i
  local -a l w
  read -ra l <<<"$2"
  read -ra w <<<"$3"
  [ "${#l[@]}" -eq "${#w[@]}" ] || return 1
  for i in "${!w[@]}"; do
    if ! is_uint "${l[i]}" || ! is_uint "${w[i]}"; then [ "${l[i]}" = "${w[i]}" ] || return 1; continue; fi
    case $kind in
      min) (( l[i] >= w[i] )) || return 1 ;;
      max) (( l[i] <= w[i] )) || return 1 ;;
      eq) (( l[i] == w[i] )) || return 1 ;;
      range) if (( i == 0 )); then (( l[i] <= w[i] )) || return 1; else (( l[i] >= w[i] )) || return 1; fi ;;
    esac
  done
}

# merged KIND LIVE WANTED: the value apply.sh writes — wanted, but never worse than the live one.
merged() {
  local kind=$1 i out=()
  local -a l w
  read -ra l <<<"$2"
  read -ra w <<<"$3"
  if [ "$kind" = eq ] || [ "${#l[@]}" -ne "${#w[@]}" ]; then echo "$3"; return; fi
  for i in "${!w[@]}"; do
    if ! is_uint "${l[i]}" || ! is_uint "${w[i]}"; then out+=("${w[i]}"); continue; fi
    case $kind in
      min) out+=("$(( l[i] > w[i] ? l[i] : w[i] ))") ;;
      max) out+=("$(( l[i] < w[i] ? l[i] : w[i] ))") ;;
      range) if (( i == 0 )); then out+=("$(( l[i] < w[i] ? l[i] : w[i] ))"); else out+=("$(( l[i] > w[i] ? l[i] : w[i] ))"); fi ;;
    esac
  done
  echo "${out[*]}"
}

declare -a failures=()
table_row() { printf '%-34s %-28s %-24s %s\n' "$1" "$2" "$3" "$4"; }
record() { # name wanted live status
  table_row "$@"
  [ "$4" != FAIL ] || failures+=("$1 (wanted $2, live $3)")
}
op_for() { case $1 in min) echo ">=" ;; max) echo "<=" ;; eq) echo "=" ;; range) echo "covers" ;; esac; }

entries=$(conf_entries)
[ "$plan" = 1 ] || table_row CHECK WANTED LIVE STATUS

while IFS=$'\t' read -r kind key want need; do
  # The fd ceilings must also cover the target (e.g. --target 2000000).
  case $key in fs.file-max|fs.nr_open) (( want >= need_fds )) || want=$need_fds ;; esac
  live=$(live_sysctl "$key")
  if [ -z "$live" ]; then
    status=$([ "$need" = optional ] && echo n/a || echo FAIL)
    after=$want
  else
    status=$(satisfied "$kind" "$live" "$want" && echo ok || echo FAIL)
    after=$(merged "$kind" "$live" "$want")
  fi
  if [ "$plan" = 1 ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$kind" "$want" "${live:--}" "$after" "$status" "$need"
  else
    record "$key" "$(op_for "$kind") $want" "${live:-(absent)}" "$status"
  fi
done <<<"$entries"
[ "$plan" = 0 ] || exit 0

# io_uring: 0 = allowed, 1 = only for kernel.io_uring_group, 2 = disabled (key exists since 6.6).
uring=$(live_sysctl kernel.io_uring_disabled)
if [ -z "$uring" ]; then
  record kernel.io_uring_disabled "= 0" "(absent)" ok
elif [ "$uring" = 0 ]; then
  record kernel.io_uring_disabled "= 0" "$uring" ok
else
  group=$(live_sysctl kernel.io_uring_group)
  if [ -n "$pid" ]; then groups=$(awk '/^(Gid|Groups):/ { $1 = ""; print }' "/proc/$pid/status" 2>/dev/null || true)
  else groups=$(id -G); fi
  if [ "$uring" = 1 ] && [ -n "$group" ] && [[ " $groups " == *" ${group// /} "* ]]; then
    record kernel.io_uring_disabled "= 0 (or 1 + group)" "$uring (in group $group)" ok
  else
    record kernel.io_uring_disabled "= 0" "$uring" FAIL
  fi
fi

# Process limits. The server raises its nofile soft limit to the hard limit at start, so for this
# shell the hard limit is what it will get; a running process (--pid) has done that already.
cores=$(nproc)
need_memlock=$((MEMLOCK_PER_CORE_KIB * cores))
if [ -n "$pid" ]; then
  limits="/proc/$pid/limits"
  nofile=$(awk '/^Max open files/ { print $4 }' "$limits")
  memlock=$(awk '/^Max locked memory/ { print $4 }' "$limits")
  [ "$memlock" = unlimited ] || memlock=$((memlock / 1024))
  who="pid $pid"
  nofile_label="file descriptors (nofile soft)"
else
  nofile=$(ulimit -Hn)
  memlock=$(ulimit -Sl)
  who="this shell"
  nofile_label="file descriptors (nofile hard)"
fi
nofile_ok=FAIL
{ [ "$nofile" = unlimited ] || (( nofile >= need_fds )); } && nofile_ok=ok
record "$nofile_label" ">= $need_fds" "$nofile" "$nofile_ok"
memlock_ok=FAIL
{ [ "$memlock" = unlimited ] || (( memlock >= need_memlock )); } && memlock_ok=ok
record "locked memory KiB (memlock soft)" ">= $need_memlock ($cores cores)" "$memlock" "$memlock_ok"

# Placeholder secrets from the example env file (the unit loads it before this check runs).
for var in WIRESOCKET_AUTH__HMAC_SECRET WIRESOCKET_API__KEY; do
  case ${!var:-} in change-me*) record "$var" "a real secret" "change-me placeholder" FAIL ;; esac
done

echo
echo "target: $target connections; limits of $who; wanted sysctl values from $conf"
if [ "${#failures[@]}" -gt 0 ]; then
  echo "FAILED: ${#failures[@]} check(s) fall short:"
  printf '  - %s\n' "${failures[@]}"
  echo "Fix: sysctl: apply.sh; limits: LimitNOFILE=/LimitMEMLOCK= (systemd) or limits.conf (login shells);"
  echo "secrets: /etc/wiresocket/wiresocket.env. Details: README.md beside this script."
  exit 1
fi
echo "OK: all checks pass."
