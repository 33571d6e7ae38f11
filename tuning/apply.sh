#!/usr/bin/env bash
# Installs and applies wiresocket's host tuning; safe to run again (idempotent).
#
#   1. renders 99-wiresocket.conf (beside this script) into /etc/sysctl.d/99-wiresocket.conf —
#      the wanted values, except that a value the host already exceeds ([min] higher, [max] lower,
#      [range] wider) is kept, so this never makes a host worse;
#   2. applies that file now with `sysctl -e -p` (it is applied at every boot by systemd-sysctl);
#   3. installs limits.conf as /etc/security/limits.d/wiresocket.conf (login shells; the systemd
#      unit sets its own LimitNOFILE/LimitMEMLOCK).
# Keys this kernel does not have (e.g. nf_conntrack not loaded) are noted, not fatal.
# Comparison rules live in check.sh (`check.sh --plan`), so apply and check always agree.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$here/99-wiresocket.conf"
limits_src="$here/limits.conf"
sysctl_dest=/etc/sysctl.d/99-wiresocket.conf
limits_dest=/etc/security/limits.d/wiresocket.conf
dry_run=0

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--help]

Installs $sysctl_dest and $limits_dest and applies the sysctl values now.
  --dry-run   print every key as "before -> after" and what would be installed; change nothing
  -h, --help  this text
Run as root (except --dry-run). Verify afterwards with: $here/check.sh
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run|-n) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "apply.sh: must run as root (or use --dry-run)" >&2
  exit 2
fi
if [ "$dry_run" = 0 ] && ! command -v sysctl >/dev/null 2>&1; then
  echo "apply.sh: the sysctl command is missing (Debian: apt-get install procps)" >&2
  exit 2
fi

absent_note() {
  case $1 in
    net.netfilter.*) echo "key absent: nf_conntrack is not loaded (no connection tracking, nothing to size); written to the file for when it is" ;;
    *) echo "key absent on this kernel or in this network namespace (container?); written to the file, skipped now" ;;
  esac
}

# key kind wanted live merged status need, one line per key (see check.sh --plan).
plan=$("$here/check.sh" --plan --conf "$conf")

[ "$dry_run" = 1 ] && echo "dry run: nothing is changed"
echo "sysctl (before -> after):"
declare -A after_of=() want_of=()
while IFS=$'\t' read -r key _kind want live after _status _need; do
  after_of[$key]=$after
  want_of[$key]=$want
  if [ "$live" = - ]; then
    echo "  $key: (absent) -> $after ($(absent_note "$key"))"
  elif [ "$live" = "$after" ] && [ "$after" != "$want" ]; then
    echo "  $key: $live -> $after (kept: the host's value is already better than $want)"
  elif [ "$live" = "$after" ]; then
    echo "  $key: $live -> $after (unchanged)"
  else
    echo "  $key: $live -> $after"
  fi
done <<<"$plan"

# The file to install: the source with each key's value replaced by its merged value.
render() {
  echo "# Rendered by wiresocket's tuning/apply.sh from 99-wiresocket.conf; values the host already"
  echo "# exceeded were kept instead of the wanted ones (noted per key). Re-run apply.sh to update."
  local line key opt
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ ^[[:space:]]*(-?)([a-z0-9_.-]+)[[:space:]]*= ]]; then
      opt=${BASH_REMATCH[1]}
      key=${BASH_REMATCH[2]}
      if [ "${after_of[$key]+set}" = set ]; then
        [ "${after_of[$key]}" = "${want_of[$key]}" ] ||
          echo "# apply.sh kept this host's better value (wanted: ${want_of[$key]})"
        echo "${opt}${key} = ${after_of[$key]}"
        continue
      fi
    fi
    echo "$line"
  done <"$conf"
}

# install_file CONTENT_FILE DEST MODE: copies only when different; says what it did (or would do).
install_file() {
  local src=$1 dest=$2 mode=$3 what
  if [ -e "$dest" ] && cmp -s "$src" "$dest"; then what="unchanged"
  elif [ -e "$dest" ]; then what="update"
  else what="install"
  fi
  if [ "$dry_run" = 1 ]; then
    [ "$what" = unchanged ] && echo "  $dest: unchanged" || echo "  $dest: would $what"
    return 0
  fi
  if [ "$what" != unchanged ]; then
    mkdir -p "$(dirname "$dest")"
    install -m "$mode" "$src" "$dest"
  fi
  case $what in install) what=installed ;; update) what=updated ;; esac
  echo "  $dest: $what"
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
render >"$tmp"
echo "files:"
install_file "$tmp" "$sysctl_dest" 0644
install_file "$limits_src" "$limits_dest" 0644

if [ "$dry_run" = 1 ]; then
  echo "dry run done; apply with: $0"
  exit 0
fi

echo "applying $sysctl_dest (sysctl -e -p):"
# -e: keys this kernel lacks are skipped silently (reported above); other errors are shown.
sysctl -e -p "$sysctl_dest" 2>&1 | sed 's/^/  /' || true

# Verify: every key present on this kernel must now meet its wanted value.
failed=0
while IFS=$'\t' read -r key _kind want live _after status _need; do
  if [ "$live" != - ] && [ "$status" = FAIL ]; then
    echo "NOT APPLIED: $key is $live, wanted $want (read-only here? containers cannot set host-wide keys)" >&2
    failed=1
  fi
done < <("$here/check.sh" --plan --conf "$conf")
if [ "$failed" = 1 ]; then
  exit 1
fi
echo "done. Login shells pick up $limits_dest at their next login. Check with: $here/check.sh"
