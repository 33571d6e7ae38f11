#!/usr/bin/env bash
# The whole test suite, on a new machine: installs what the tests need (Node.js
# and the pinned centrifuge JS SDK for the interop tests; redis-server and
# redis-sentinel for the cluster tests, haproxy for the fleet tests; the benchmark peers: redis-server,
# nginx + Nchan, their npm packages), builds the workspace, runs every Rust unit
# and black-box test against real servers on 127.0.0.1 (`cargo test --workspace`),
# then the benchmark's end-to-end smoke test, which is behind the bench crate's
# `peer-smoke` feature because it needs the peers installed.
# Extra arguments go to both cargo test runs (e.g. `-- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=()
if [[ $(id -u) != 0 ]] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd) # tests/ops.rs verifies the unit
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server) # cluster tests start their own
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools) # tests/redis_cluster_mode.rs: --cluster create
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl) # tests/tls.rs checks with s_client
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy) # tests/redis_fleet.rs, shedding_fleet.rs, rolling_restart*.rs: a load balancer in front of the nodes
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium) # tests/interop_browser.rs: the JS SDK in a real browser
# tests/interop_python.rs: the Python SDK in a virtualenv
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} from Debian packages"
  "${SUDO[@]}" apt-get update -qq
  # policy-rc.d exit 101 keeps maintainer scripts from starting the packaged services
  # (redis on 6379, sentinel on 26379): tests start private instances on free ports.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    own_policy=1
  fi
  rc=0
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" || rc=$?
  ((own_policy)) && "${SUDO[@]}" rm -f "$policy"
  ((rc == 0)) || exit "$rc"
fi

echo "installing the JS interop tests' packages (npm ci, pinned by tests/js/package-lock.json)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

echo "installing the Python interop test's SDK (tests/py/.venv, pinned by tests/py/requirements.txt)"
[ -x tests/py/.venv/bin/python ] || python3 -m venv tests/py/.venv
tests/py/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt

echo "installing the benchmark peers (bench/peers/install.sh: Debian packages, npm ci)"
SKIP_CARGO=1 bench/peers/install.sh

# The bench smoke test drives the debug binaries of every workspace member.
cargo build --workspace --locked

# glommio needs locked memory for its io_uring rings (512 KiB per core).
ulimit -l 8192 2>/dev/null || true

cargo test --workspace --locked "$@"

echo "benchmark smoke test (every scenario on wiresocket, fan-out and reconnect storm on every peer)"
cargo test -p wiresocket-bench --features peer-smoke --locked --test compare_smoke "$@"
