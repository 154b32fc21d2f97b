#!/usr/bin/env bash
# A throw-away PostgreSQL 15 under DIR on 127.0.0.1:PORT, run as the postgres user, with WAL
# archiving through ARCHIVE_COMMAND (e.g. barman-cloud-wal-archive into RGW).
#   scripts/pg-up.sh DIR PORT [ARCHIVE_COMMAND]      stop: scripts/pg-down.sh DIR
# PG_EXTRA_CONF (lines) is appended to postgresql.conf.
set -euo pipefail
# The daemons started here outlive whoever ran this script: they must hold none of its open
# files (a pipe someone waits to see closed would never close). Everything beyond 0-2 is closed
# first; 255 is bash's own handle on this script, close-on-exec already.
for fd in $(ls /proc/$$/fd); do
  case $fd in 0|1|2|255) ;; *) eval "exec $fd>&-" ;; esac
done
[ $# -ge 2 ] || { echo "usage: $0 DIR PORT [ARCHIVE_COMMAND]" >&2; exit 2; }
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
PORT=$2
ARCHIVE=${3:-}
BIN=/usr/lib/postgresql/15/bin
[ -x "$BIN/postgres" ] || { echo "pg-up: PostgreSQL 15 server not found in $BIN (apt-get install postgresql-15)" >&2; exit 1; }
AS=()
[ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
chown postgres: "$DIR" 2>/dev/null || true
chmod 700 "$DIR"
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres -A trust --data-checksums >/dev/null
{
  echo "listen_addresses = '127.0.0.1'"
  echo "port = $PORT"
  echo "unix_socket_directories = '$DIR'"
  echo "wal_level = replica"
  echo "max_wal_senders = 4"
  if [ -n "$ARCHIVE" ]; then
    echo "archive_mode = on"
    echo "archive_command = '${ARCHIVE//\'/\'\'}'"
    echo "archive_timeout = 60"
  fi
  [ -z "${PG_EXTRA_CONF:-}" ] || printf '%s\n' "$PG_EXTRA_CONF"
} >> "$DIR/data/postgresql.conf"
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start >/dev/null
echo "pg-up: PostgreSQL on 127.0.0.1:$PORT (socket dir $DIR)"
