#!/usr/bin/env bash
# Stop the PostgreSQL that scripts/pg-up.sh started under DIR.   scripts/pg-down.sh DIR [--purge]
set -uo pipefail
DIR=$1
AS=()
[ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
[ -f "$DIR/data/postmaster.pid" ] && "${AS[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1
[ "${2:-}" = "--purge" ] && rm -rf "$DIR"
exit 0
