#!/usr/bin/env bash
# Installs wiresocket as a systemd service on this host, or into a staging root (--root/DESTDIR).
#
#   /usr/local/bin/wiresocket                 release binary (replaced)
#   /usr/lib/wiresocket/                      check.sh, apply.sh, 99-wiresocket.conf, limits.conf,
#                                             README.md, examples/ (replaced)
#   /etc/wiresocket/wiresocket.toml, .env     example config and secrets, 0640 root:wiresocket
#                                             (only when absent: existing ones are never touched)
#   /etc/systemd/system/wiresocket.service    the unit (replaced; customise with drop-ins)
#   system user and group "wiresocket"        (real installs only)
#
# It does not apply the kernel tuning (tuning/apply.sh) nor start the service: it prints the steps.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${DESTDIR:-}
bin=""
user=wiresocket

usage() {
  cat <<EOF
Usage: $(basename "$0") [--root DIR] [--bin FILE] [--help]

  --root DIR   install under DIR instead of / (same as DESTDIR=DIR): no user creation, no
               systemctl; for packaging and tests
  --bin FILE   binary to install (default: target/release/wiresocket, built with
               \`cargo build --release --locked\` when missing)
  -h, --help   this text
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || { usage >&2; exit 2; }; root=$2; shift 2 ;;
    --bin) [ $# -ge 2 ] || { usage >&2; exit 2; }; bin=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
if [ -n "$root" ]; then
  mkdir -p "$root"
  root=$(cd "$root" && pwd)
elif [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root, or use --root DIR to stage the files" >&2
  exit 2
fi

# The binary: given, or the release build (built here if missing; this takes a while).
if [ -z "$bin" ]; then
  bin="$repo/target/release/wiresocket"
  if [ ! -x "$bin" ]; then
    command -v cargo >/dev/null 2>&1 || {
      echo "install.sh: $bin is missing and cargo is not on PATH (build it first: cargo build --release)" >&2
      exit 1
    }
    echo "building the release binary (cargo build --release --locked)..."
    (cd "$repo" && cargo build --release --locked --bin wiresocket)
  fi
fi
[ -x "$bin" ] || { echo "install.sh: $bin is not an executable" >&2; exit 1; }

# The service user: a static system account (see the unit for why not DynamicUser).
if [ -z "$root" ]; then
  getent group "$user" >/dev/null || groupadd --system "$user"
  getent passwd "$user" >/dev/null ||
    useradd --system --gid "$user" --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment "wiresocket server" "$user"
fi
# Ownership root:wiresocket needs root and the group; a staging root may have neither.
group_owner() {
  if [ "$(id -u)" = 0 ] && getent group "$user" >/dev/null; then
    chown "root:$user" "$@"
  else
    echo "  note: group $user unknown here (or not root): $* left owned by $(id -un)"
  fi
}

# put SRC DEST MODE: install, replacing atomically (a running binary stays intact).
put() {
  mkdir -p "$(dirname "$2")"
  install -m "$3" "$1" "$2.new.$$"
  mv -f "$2.new.$$" "$2"
  echo "  $2"
}

# keep_or_put SRC DEST: installs 0640 root:wiresocket only when DEST does not exist yet.
keep_or_put() {
  if [ -e "$2" ]; then
    echo "  $2 exists: kept (new example: $lib/examples/$(basename "$1"))"
    return 0
  fi
  install -m 0640 "$1" "$2"
  group_owner "$2"
  echo "  $2 (new)"
}

lib="$root/usr/lib/wiresocket"
etc="$root/etc/wiresocket"
echo "installing into ${root:-/}:"
put "$bin" "$root/usr/local/bin/wiresocket" 0755
put "$repo/tuning/check.sh" "$lib/check.sh" 0755
put "$repo/tuning/apply.sh" "$lib/apply.sh" 0755
put "$repo/tuning/99-wiresocket.conf" "$lib/99-wiresocket.conf" 0644
put "$repo/tuning/limits.conf" "$lib/limits.conf" 0644
put "$repo/tuning/README.md" "$lib/README.md" 0644
put "$repo/systemd/wiresocket.toml" "$lib/examples/wiresocket.toml" 0644
put "$repo/systemd/wiresocket.env" "$lib/examples/wiresocket.env" 0644
put "$repo/systemd/wiresocket.service" "$root/etc/systemd/system/wiresocket.service" 0644
if [ ! -d "$etc" ]; then
  install -d -m 0750 "$etc"
  group_owner "$etc"
fi
keep_or_put "$repo/systemd/wiresocket.toml" "$etc/wiresocket.toml"
keep_or_put "$repo/systemd/wiresocket.env" "$etc/wiresocket.env"

# systemd is running when /run/systemd/system exists (what sd_booted() checks).
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "systemctl daemon-reload: done"
  reloaded=1
else
  echo "systemd is not running here${root:+ (or staging into $root)}: skipped systemctl daemon-reload"
  reloaded=0
fi

cat <<EOF

Next steps:
  1. Set real secrets in /etc/wiresocket/wiresocket.env (openssl rand -hex 32); the unit's check
     refuses the change-me placeholders. Review /etc/wiresocket/wiresocket.toml.
  2. Tune the kernel: /usr/lib/wiresocket/apply.sh --dry-run, then /usr/lib/wiresocket/apply.sh
  3. Check: /usr/lib/wiresocket/check.sh --config /etc/wiresocket/wiresocket.toml
EOF
[ "$reloaded" = 1 ] || echo "  4. systemctl daemon-reload   (where systemd runs)"
echo "  $((reloaded ? 4 : 5)). systemctl enable --now wiresocket; journalctl -u wiresocket -f"
