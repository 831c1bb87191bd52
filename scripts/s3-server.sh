#!/usr/bin/env bash
# A real S3 server for the tests: Ceph RGW on one node (mon + one memstore OSD + radosgw),
# all on 127.0.0.1, from Debian's packages. No systemd, no mgr, auth off inside the cluster
# (S3 requests are still signed and checked against the user's keys).
#
#   scripts/s3-server.sh start ENV_FILE   start a fresh server; writes AWS_* variables to ENV_FILE
#   scripts/s3-server.sh stop ENV_FILE    stop the daemons by PID and remove the data directory
#   scripts/s3-server.sh env ENV_FILE     print the variables (for `eval`)
#
# ENV_FILE also records the PIDs and the data directory, so `stop` needs nothing else.
set -euo pipefail

ACCESS_KEY=usnaptestaccesskey
SECRET_KEY=usnaptestsecretkey0123456789abcdefghij
WAIT_SECONDS=${USNAP_S3_WAIT_SECONDS:-60}

die() {
  echo "s3-server: $*" >&2
  exit 1
}

install_ceph() {
  if command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && command -v radosgw >/dev/null && command -v radosgw-admin >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "Ceph is not installed and installing it needs root: apt-get install ceph-mon ceph-osd radosgw ceph-common"
  echo "s3-server: installing Ceph (ceph-mon ceph-osd radosgw ceph-common)..." >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ceph-mon ceph-osd radosgw ceph-common >&2
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

show_logs() {
  for f in "$DIR"/log/*.log; do
    [ -f "$f" ] || continue
    echo "---- $f (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
}

fail_start() {
  echo "s3-server: $*" >&2
  show_logs
  stop_daemons
  rm -rf "$DIR"
  exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail_start "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

stop_daemons() {
  local pids=()
  for n in radosgw osd mon; do
    [ -f "$DIR/$n.pid" ] && pids+=("$(cat "$DIR/$n.pid")")
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 20); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
  done
}

# S3 answers ListAllMyBuckets signed with our keys (another server on the port must not pass).
s3_ready() {
  node -e '
    const { S3Client, ListBucketsCommand } = require("@aws-sdk/client-s3");
    const c = new S3Client({ endpoint: process.argv[1], region: "us-east-1", forcePathStyle: true, maxAttempts: 1,
      credentials: { accessKeyId: process.argv[2], secretAccessKey: process.argv[3] } });
    c.send(new ListBucketsCommand({})).then(() => process.exit(0), () => process.exit(1));
  ' "$1" "$ACCESS_KEY" "$SECRET_KEY"
}

start() {
  local envfile=$1
  install_ceph
  local t0=$SECONDS
  DIR=$(mktemp -d /tmp/usnap-s3.XXXXXX)
  mkdir -p "$DIR/mon" "$DIR/osd" "$DIR/log" "$DIR/run" "$DIR/rgw"
  local monport rgwport fsid
  monport=$(free_port)
  rgwport=$(free_port)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  local conf="$DIR/ceph.conf"
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$monport
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
run dir = $DIR/run
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
paxos propose interval = 0.05
mon data avail crit = 1
[mon.a]
mon data = $DIR/mon
[osd.0]
osd data = $DIR/osd
osd objectstore = memstore
memstore device bytes = 4294967296
osd fast shutdown = false
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgwport
rgw data = $DIR/rgw
rgw dns name = 127.0.0.1
EOF
  # Before anything can fail, so that `stop` can clean up.
  cat >"$envfile" <<EOF
USNAP_S3_DIR=$DIR
EOF
  monmaptool --create --addv a "[v1:127.0.0.1:$monport]" --fsid "$fsid" "$DIR/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mkfs.log" 2>&1 || fail_start "ceph-mon --mkfs failed"
  ceph-mon -c "$conf" -i a --pid-file "$DIR/mon.pid" 2>>"$DIR/log/daemons.log" || fail_start "ceph-mon did not start"
  wait_for 20 "the pid file of ceph-mon" test -s "$DIR/mon.pid"
  local osd_uuid osd_id
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_id=$(timeout 30 ceph -c "$conf" osd new "$osd_uuid" 2>>"$DIR/log/client.log") || fail_start "ceph osd new failed (is the monitor up?)"
  [ "$osd_id" = 0 ] || fail_start "expected osd id 0, got '$osd_id'"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/mkfs.log" 2>&1 || fail_start "ceph-osd --mkfs failed"
  ceph-osd -c "$conf" -i 0 --pid-file "$DIR/osd.pid" 2>>"$DIR/log/daemons.log" || fail_start "ceph-osd did not start"
  wait_for "$WAIT_SECONDS" "osd.0 to be up" sh -c "ceph -c '$conf' osd dump 2>/dev/null | grep -q '^osd.0 up'"
  radosgw -c "$conf" -n client.rgw --pid-file "$DIR/radosgw.pid" 2>>"$DIR/log/daemons.log" || fail_start "radosgw did not start"
  wait_for 20 "the pid file of radosgw" test -s "$DIR/radosgw.pid"
  # The user can be created once RGW has made its pools; it answers S3 only after that.
  wait_for "$WAIT_SECONDS" "radosgw-admin user create" timeout 20 radosgw-admin -c "$conf" -n client.rgw user create \
    --uid=usnap-test --display-name=usnap-test --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY"
  local endpoint="http://127.0.0.1:$rgwport"
  wait_for "$WAIT_SECONDS" "S3 at $endpoint to answer ListAllMyBuckets" s3_ready "$endpoint"
  cat >"$envfile" <<EOF
USNAP_S3_DIR=$DIR
USNAP_S3_PIDS="$(cat "$DIR/mon.pid") $(cat "$DIR/osd.pid") $(cat "$DIR/radosgw.pid")"
USNAP_S3_RGW_PID=$(cat "$DIR/radosgw.pid")
USNAP_S3_CONF=$conf
AWS_ENDPOINT_URL=$endpoint
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
EOF
  echo "s3-server: S3 ready at $endpoint in $((SECONDS - t0))s (data in $DIR)" >&2
}

stop() {
  local envfile=$1
  [ -f "$envfile" ] || return 0
  DIR=$(sed -n 's/^USNAP_S3_DIR=//p' "$envfile")
  [ -n "$DIR" ] && [ -d "$DIR" ] || return 0
  stop_daemons
  rm -rf "$DIR"
  rm -f "$envfile"
}

cmd=${1:-}
envfile=${2:-}
[ -n "$envfile" ] || die "usage: $0 start|stop|env ENV_FILE"
cd "$(dirname "$0")/.."  # node resolves @aws-sdk/client-s3 from the repository
case "$cmd" in
  start)
    # A start on a loaded machine has been seen to fail once in a while (an OSD refused by its
    # monitor); each attempt is a fresh cluster in a fresh directory.
    for attempt in 1 2 3; do
      (start "$envfile") && exit 0
      echo "s3-server: start attempt $attempt failed" >&2
    done
    exit 1
    ;;
  stop) stop "$envfile" ;;
  env) sed -n 's/^\(AWS_[A-Z_]*=.*\)/export \1/p' "$envfile" ;;
  *) die "usage: $0 start|stop|env ENV_FILE" ;;
esac
