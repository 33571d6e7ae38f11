#!/usr/bin/env bash
# The whole test suite, on a new machine: installs what the tests need (Node.js
# and the pinned centrifuge JS SDK for the interop test; the benchmark peers:
# redis-server, nginx + Nchan, their npm packages), builds the workspace, then
# runs every Rust unit and black-box test against real servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd) # tests/ops.rs verifies the unit
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} from Debian packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

echo "installing the JS interop test's packages (npm ci, pinned by tests/js/package-lock.json)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

echo "installing the benchmark peers (bench/peers/install.sh: Debian packages, npm ci)"
SKIP_CARGO=1 bench/peers/install.sh

# The bench smoke test drives the debug binaries of every workspace member.
cargo build --workspace --locked

# glommio needs locked memory for its io_uring rings (512 KiB per core).
ulimit -l 8192 2>/dev/null || true

cargo test --workspace --locked "$@"
