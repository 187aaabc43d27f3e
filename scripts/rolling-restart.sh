#!/usr/bin/env bash
# Restarts the masters that scripts/start-cluster.sh started, one at a time:
# followers first, the leader last, each time waiting until the restarted
# node answers the leader again and has caught up. This is how a new build or
# a changed setting is rolled out without downtime.
#
#   scripts/rolling-restart.sh [CONFIG]      (default: cluster.toml)
#
# Same run folder ($TASKRAFT_RUN, default run/) and binary ($TASKRAFT_BIN,
# default target/release/taskraft, rebuilt first) as start-cluster.sh.
# Each master gets SIGTERM and up to 10 s to stop before SIGKILL.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

leader() {
  local list
  if ! list=$("$bin" member list --json --config "$config" --retry-for 30s); then
    echo "no leader answers; stopping the rolling restart here" >&2
    exit 1
  fi
  echo "$list" | sed -n 's/.*"leader":\([0-9][0-9]*\).*/\1/p'
}

restart() {
  local id=$1 pidfile="$run/pids/node$1.pid" pid
  pid=$(cat "$pidfile")
  echo "restarting node $id (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "node $id did not stop within 10 s; killing it"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  start_master "$id"
  # Its own answer, not its predecessor's last heartbeat, says it is back.
  "$bin" member wait "$id" --config "$config" --timeout 120s
}

pending=()
for pidfile in "$run"/pids/node*.pid; do
  [ -e "$pidfile" ] || continue
  id=$(basename "$pidfile" .pid)
  pending+=("${id#node}")
done
if [ ${#pending[@]} -eq 0 ]; then
  echo "no masters under $run/pids; start them with scripts/start-cluster.sh" >&2
  exit 1
fi

# Leadership may move while followers restart: pick again each round.
while [ ${#pending[@]} -gt 0 ]; do
  current=$(leader)
  next=""
  for id in "${pending[@]}"; do
    if [ "$id" != "$current" ]; then next=$id; break; fi
  done
  next=${next:-$current}
  restart "$next"
  rest=()
  for id in "${pending[@]}"; do [ "$id" = "$next" ] || rest+=("$id"); done
  pending=("${rest[@]+"${rest[@]}"}")
done
echo "rolling restart done; leader is node $(leader)"
