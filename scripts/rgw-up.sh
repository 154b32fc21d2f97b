#!/usr/bin/env bash
# Start a throw-away single-node Ceph (1 mon, 1 memstore OSD, radosgw/beast) under DIR,
# listening on 127.0.0.1:PORT only. No systemd, no mgr; every path lives in DIR.
# Writes DIR/env (endpoint and S3 keys to source) and DIR/pids (what rgw-down.sh stops).
# With DRCTL_RGW_TLS_PORT set, radosgw also serves HTTPS there, with a certificate for
# localhost/127.0.0.1 from a throw-away CA (DIR/tls/ca.pem).
#
#   scripts/rgw-up.sh DIR PORT [MEMSTORE_BYTES]
set -euo pipefail

# The daemons started here outlive whoever ran this script: they must hold none of its open
# files (a pipe someone waits to see closed would never close). Everything beyond 0-2 is closed
# first; 255 is bash's own handle on this script, close-on-exec already.
for fd in $(ls /proc/$$/fd); do
  case $fd in 0|1|2|255) ;; *) eval "exec $fd>&-" ;; esac
done
usage() { echo "usage: $0 DIR PORT [MEMSTORE_BYTES]" >&2; exit 2; }
[ $# -ge 2 ] || usage
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
PORT=$2
MEMSTORE_BYTES=${3:-$((4 * 1024 * 1024 * 1024))}
ACCESS_KEY=${DRCTL_RGW_ACCESS_KEY:-DRCTLTESTACCESS00001}
SECRET_KEY=${DRCTL_RGW_SECRET_KEY:-drctl+test/secret+key+not+for+production0}

for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph python3 curl; do
  command -v "$bin" >/dev/null || { echo "rgw-up: $bin not found; run scripts/install-deps.sh" >&2; exit 1; }
done
if [ -s "$DIR/pids" ]; then
  echo "rgw-up: $DIR/pids exists: a cluster may be running there; run scripts/rgw-down.sh $DIR first" >&2
  exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MON_PORT=$(free_port)
FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')
CONF="$DIR/ceph.conf"
FRONTEND="beast endpoint=127.0.0.1:$PORT"
if [ -n "${DRCTL_RGW_TLS_PORT:-}" ]; then
  mkdir -p "$DIR/tls"
  (
    cd "$DIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=drctl test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
  )
  FRONTEND="$FRONTEND ssl_endpoint=127.0.0.1:$DRCTL_RGW_TLS_PORT ssl_certificate=$DIR/tls/server.pem ssl_private_key=$DIR/tls/server.key"
fi
mkdir -p "$DIR"/{run,log,crash,mon,osd,rgw}
: > "$DIR/pids"

cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
crash dir = $DIR/crash
exporter sock dir = $DIR/run
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
[mon]
mon data = $DIR/mon/\$cluster-\$id
# Proposals every 50 ms instead of every second: boot in seconds, not tens of seconds.
paxos propose interval = 0.05
mon data avail warn = 1
mon data avail crit = 0
[osd]
osd data = $DIR/osd/\$cluster-\$id
osd max object name len = 460
osd max object namespace len = 64
[client]
# With auth none radosgw must still be told to use crc mode, or it loops on
# "get_initial_auth_request returned -13".
ms mon client mode = crc
rgw frontends = $FRONTEND
rgw data = $DIR/rgw
rgw dns name = localhost
# Free deleted objects' data quickly: the OSD keeps everything in memory.
rgw gc obj min wait = 10
rgw gc processor period = 10
keyring = $DIR/keyring
CONF
CEPH="-c $CONF"

record() { # NAME PIDFILE
  for _ in $(seq 1 100); do [ -s "$2" ] && break; sleep 0.05; done
  [ -s "$2" ] || { echo "rgw-up: $1 did not start; see $DIR/log" >&2; exit 1; }
  echo "$1 $(cat "$2")" >> "$DIR/pids"
}

monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DIR/monmap" >/dev/null
ceph-mon $CEPH --mkfs -i a --monmap "$DIR/monmap" >/dev/null 2>"$DIR/log/mkfs-mon.err"
ceph-mon $CEPH -i a </dev/null >>"$DIR/log/mon.stderr" 2>&1
record mon "$DIR/run/mon.a.pid"

OSD_ID=$(ceph $CEPH --connect-timeout 30 osd create)
mkdir -p "$DIR/osd/ceph-$OSD_ID"
ceph-osd $CEPH -i "$OSD_ID" --mkfs >/dev/null 2>"$DIR/log/mkfs-osd.err"
ceph-osd $CEPH -i "$OSD_ID" </dev/null >>"$DIR/log/osd.stderr" 2>&1
record osd "$DIR/run/osd.$OSD_ID.pid"

radosgw $CEPH -n client.rgw </dev/null >>"$DIR/log/rgw.stderr" 2>&1
record rgw "$DIR/run/client.rgw.pid"

for i in $(seq 1 600); do
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/" && break
  [ "$i" = 600 ] && { echo "rgw-up: radosgw did not answer on 127.0.0.1:$PORT; see $DIR/log" >&2; exit 1; }
  sleep 0.1
done

radosgw-admin $CEPH -n client.admin user create --uid drctl --display-name "drctl tests" \
  --access-key "$ACCESS_KEY" --secret "$SECRET_KEY" >/dev/null

cat > "$DIR/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY='$SECRET_KEY'
export AWS_REGION=us-east-1
ENV
if [ -n "${DRCTL_RGW_TLS_PORT:-}" ]; then
  echo "export DRCTL_RGW_TLS_ENDPOINT=https://localhost:$DRCTL_RGW_TLS_PORT" >> "$DIR/env"
  echo "export DRCTL_RGW_CA=$DIR/tls/ca.pem" >> "$DIR/env"
fi
echo "rgw-up: radosgw on http://127.0.0.1:$PORT (source $DIR/env for its keys)"
