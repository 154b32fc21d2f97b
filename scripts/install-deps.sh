#!/usr/bin/env bash
# Install what drctl needs to build, test and run its demo on Debian 12 (run as root).
# Installs only what is missing, so it is quick on a machine that has everything.
set -euo pipefail

PACKAGES=(
  # build: the C libraries drctl links through its system-library targets
  pkg-config libcurl4-openssl-dev libssl-dev libsqlite3-dev zlib1g-dev
  # a real Ceph RGW for tests and the demo (single node, memstore)
  ceph-mon ceph-osd radosgw ceph-common
  # test helpers: promtool checks the rendered alert rules; a venv holds the Python validators
  curl python3 python3-venv ca-certificates prometheus
  # PostgreSQL 15 for restore drills and for producing real barman-cloud archives in tests
  postgresql-15 postgresql-client-15
  # drctl serve: its status page is tested in headless Chromium, CronJob metrics against a real
  # Pushgateway, and scripts/bench-serve loads it with wrk
  chromium prometheus-pushgateway wrk
  # hardening tests: a clock 20 minutes off for one process
  faketime
  # encrypted copies: Debian's age decrypts what drctl encrypts, and the other way round
  age
  # copies: rclone is the peer scripts/bench-copy measures drctl against
  rclone
  # the alert path: a real Alertmanager receives drctl's synthetic alerts in tests
  prometheus-alertmanager
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools for the tests, in a venv on Debian's python3 (kept out of git).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv-tools"
# cel-expr-python is Google's CEL (cel-cpp): the test API server evaluates admission policies with
# the semantics kube-apiserver's cel-go has.
if ! "$VENV/bin/python3" -c 'import jsonschema, yaml, kubernetes_validate, boto3, cel_expr_python.cel, google.protobuf' 2>/dev/null; then
  echo "install-deps: creating $VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "jsonschema>=4" "pyyaml>=6" "kubernetes-validate>=1.33" "boto3>=1.28" "cel-expr-python==0.1.3" "protobuf>=5"
fi

# barman-cloud 3.19.1 (the layout CNPG writes), for tests that make real archives.
"$ROOT/scripts/barman-venv.sh" >/dev/null

if ! command -v swift >/dev/null; then
  [ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
fi
command -v swift >/dev/null || { echo "install-deps: Swift 6 toolchain not found (expected swift on PATH or /opt/swift)" >&2; exit 1; }
