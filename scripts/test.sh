#!/usr/bin/env bash
# Runs every test: unit tests, the integration tests that drive the real AWS SDK clients against
# the in-repo simulated endpoint, and the checks with the real Prometheus tools (promtool and a
# Prometheus server), which are installed from Debian's `prometheus` package when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "scripts/test.sh: installing Debian's prometheus package (promtool, prometheus)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

cargo test --locked --all-targets -- --include-ignored
