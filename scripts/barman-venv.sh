#!/usr/bin/env bash
# barman-cloud 3.19.1 (PyPI barman[cloud]) in a venv on Debian's python3, readable by the
# postgres user so archive_command can run it. Debian's own barman 3.4 cannot read the
# backup.info files 3.19 writes. Prints the venv's bin directory.
#   scripts/barman-venv.sh            (DRCTL_BARMAN_VENV overrides /opt/drctl-barman)
set -euo pipefail
VENV=${DRCTL_BARMAN_VENV:-/opt/drctl-barman}
VERSION=3.19.1
if ! "$VENV/bin/barman-cloud-backup" --version 2>&1 | grep -q "$VERSION"; then
  echo "barman-venv: installing barman[cloud]==$VERSION into $VENV" >&2
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "barman[cloud]==$VERSION" >&2
  chmod -R a+rX "$VENV"
fi
echo "$VENV/bin"
