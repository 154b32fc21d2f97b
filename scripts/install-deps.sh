#!/usr/bin/env bash
# Install what drctl needs to build, test and run its demo on Debian 12 (run as root).
# Installs only what is missing, so it is quick on a machine that has everything.
set -euo pipefail

PACKAGES=(
  # build: the C libraries drctl links through its system-library targets
  pkg-config libcurl4-openssl-dev libssl-dev libsqlite3-dev zlib1g-dev
  # a real Ceph RGW for tests and the demo (single node, memstore)
  ceph-mon ceph-osd radosgw ceph-common
  # test helpers
  curl python3 ca-certificates
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

if ! command -v swift >/dev/null; then
  [ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
fi
command -v swift >/dev/null || { echo "install-deps: Swift 6 toolchain not found (expected swift on PATH or /opt/swift)" >&2; exit 1; }
