#!/usr/bin/env bash
# install.sh — install what the benchmark's peer servers need; safe to run again.
#   * Debian packages (only when missing): redis-server, nginx, libnginx-mod-nchan, curl,
#     and nodejs + npm when there is no node on the PATH.
#     Their system services are stopped and disabled afterwards: run.sh launches private
#     instances, and nothing may hold ports or memory during a benchmark.
#   * npm ci in bench/peers/node (versions pinned in package-lock.json).
#   * cargo build --release -p tokio-ws-peer (honours CARGO_TARGET_DIR).
# Set SKIP_APT=1, SKIP_NPM=1 or SKIP_CARGO=1 to leave a step out.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
say() { echo "install.sh: $*"; }

SUDO=()
if [[ $(id -u) != 0 ]]; then
	command -v sudo >/dev/null || {
		echo "install.sh: not root and no sudo" >&2
		exit 1
	}
	SUDO=(sudo)
fi

# ---- Debian packages -------------------------------------------------------------
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

stop_system_service() { # SERVICE PIDFILE PROGRAM
	local svc=$1 pidfile=$2 prog=$3 pid
	if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
		"${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
	else
		"${SUDO[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
		"${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
	fi
	# Whatever the init system, make sure the packaged instance is gone.
	if [[ -f $pidfile ]]; then
		pid=$(cat "$pidfile" 2>/dev/null || true)
		if [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$prog"* ]]; then
			say "stopping system $svc (pid $pid)"
			"${SUDO[@]}" kill -TERM "$pid" 2>/dev/null || true
		fi
	fi
}

if [[ ${SKIP_APT:-0} != 1 ]]; then
	missing=()
	for pkg in redis-server redis-tools nginx libnginx-mod-nchan curl; do
		installed "$pkg" || missing+=("$pkg")
	done
	command -v node >/dev/null || missing+=(nodejs)
	command -v npm >/dev/null || missing+=(npm)
	if ((${#missing[@]})); then
		say "apt-get install ${missing[*]}"
		"${SUDO[@]}" apt-get update -qq
		# policy-rc.d exit 101 tells maintainer scripts not to start the services.
		policy=/usr/sbin/policy-rc.d
		own_policy=0
		if [[ ! -e $policy ]]; then
			printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
			"${SUDO[@]}" chmod 755 "$policy"
			own_policy=1
		fi
		rc=0
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends "${missing[@]}" || rc=$?
		((own_policy)) && "${SUDO[@]}" rm -f "$policy"
		((rc == 0)) || exit "$rc"
		stop_system_service redis-server /run/redis/redis-server.pid redis-server
		stop_system_service nginx /run/nginx.pid nginx
	else
		say "Debian packages already installed: redis-server nginx libnginx-mod-nchan curl"
	fi
	say "$(redis-server --version | cut -d' ' -f1-3)"
	say "$(nginx -v 2>&1), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan)"
fi

# ---- Node packages -----------------------------------------------------------------
if [[ ${SKIP_NPM:-0} != 1 ]]; then
	command -v npm >/dev/null || {
		echo "install.sh: npm not found (Node.js >= 18 is required)" >&2
		exit 1
	}
	lock=$HERE/node/package-lock.json
	stamp=$HERE/node/node_modules/.install-stamp
	if [[ -f $stamp ]] && cmp -s "$lock" "$stamp"; then
		say "node_modules up to date (node $(node -v))"
	else
		say "npm ci in bench/peers/node (node $(node -v))"
		(cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error)
		cp "$lock" "$stamp"
	fi
	(cd "$HERE/node" && npm ls --depth=0 2>/dev/null | tail -n +2 | grep -v '^[[:space:]]*$' | sed 's/^/install.sh:   /')
fi

# ---- Rust peer ---------------------------------------------------------------------
if [[ ${SKIP_CARGO:-0} != 1 ]]; then
	say "cargo build --release -p tokio-ws-peer (target dir ${CARGO_TARGET_DIR:-$REPO/target})"
	(cd "$REPO" && cargo build --release -p tokio-ws-peer)
	say "built ${CARGO_TARGET_DIR:-$REPO/target}/release/tokio-ws-peer"
fi
say "done"
