#!/usr/bin/env bash
# Stops the masters that scripts/start-cluster.sh started (the pids under $TASKRAFT_RUN/pids).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run=${TASKRAFT_RUN:-$root/run}

for pidfile in "$run"/pids/*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
done
