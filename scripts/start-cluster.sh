#!/usr/bin/env bash
# Starts the masters of a cluster config in the background and waits for a leader.
#
#   scripts/start-cluster.sh [CONFIG]      (default: cluster.toml)
#
# Everything goes under one run folder, $TASKRAFT_RUN (default: run/):
#   run/data/nodeN   the nodes' sled dirs (data_dir of cluster.toml, relative to run/)
#   run/logs/nodeN.log
#   run/pids/nodeN.pid
# Stop with scripts/stop-cluster.sh, which stops exactly these pids.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ids=$(sed -n 's/^[[:space:]]*id[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$config")
for id in $ids; do
  pidfile="$run/pids/node$id.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "node $id already running (pid $(cat "$pidfile"))"
    continue
  fi
  start_master "$id"
  echo "started node $id (pid $(cat "$pidfile")), log $run/logs/node$id.log"
done

for _ in $(seq 1 100); do
  if out=$("$bin" status --config "$config" --retry-for 1s 2>/dev/null); then
    echo "$out"
    exit 0
  fi
  sleep 0.2
done
echo "no leader after 20 s; see $run/logs/" >&2
exit 1
