#!/usr/bin/env bash
# Stop the processes scripts/rgw-up.sh started under DIR (and only those).
#   scripts/rgw-down.sh DIR [--purge]     --purge also removes DIR
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [--purge]" >&2; exit 2; }
DIR=$1
[ -f "$DIR/pids" ] || { echo "rgw-down: no $DIR/pids: nothing to stop" >&2; exit 0; }
# Stop in reverse start order: rgw, osd, mon.
tac "$DIR/pids" | while read -r name pid; do
  # Only a process whose command line names this cluster's config is ours to stop.
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$DIR/ceph.conf"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
done
: > "$DIR/pids"
if [ "${2:-}" = "--purge" ]; then rm -rf "$DIR"; fi
exit 0
