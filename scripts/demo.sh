#!/usr/bin/env bash
# The whole story in one command: start the cluster of cluster.toml, submit
# 2000 tasks, start three workers, SIGKILL the leader mid-run, watch a new
# leader take over and the workers follow it, wait for every task, restart
# the killed node and watch it catch up, then print a summary.
#
#   scripts/demo.sh            (TASKRAFT_DEMO_TASKS=N to change the task count)
#
# Everything runs under run/demo/ (data, logs, pids) and is stopped on exit,
# also on Ctrl-C. Needs python3 for the summary's JSON arithmetic.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
config="$root/cluster.toml"
export TASKRAFT_RUN="$root/run/demo"
tasks=${TASKRAFT_DEMO_TASKS:-2000}
bin="$root/target/release/taskraft"
workers=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now_ms() { date +%s%3N; }
cleanup() {
  for pid in "${workers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  "$root/scripts/stop-cluster.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building"
(cd "$root" && cargo build --release --quiet -p taskraft-cli)
export TASKRAFT_BIN="$bin"

say "starting the cluster of cluster.toml (run folder $TASKRAFT_RUN)"
"$root/scripts/stop-cluster.sh" >/dev/null 2>&1 || true
rm -rf "$TASKRAFT_RUN"
"$root/scripts/start-cluster.sh" "$config"
consoles=$(sed -n 's/^http_addr = "\([^"]*\)".*/http:\/\/\1\//p' "$config")
first=$(head -n 1 <<<"$consoles")
echo
echo "web console: $first   (every master serves it: $(paste -sd' ' <<<"$consoles"))"
echo "  open it now to watch the run and the failover live; it moves to another master if its own is killed"
echo "metrics:     curl -s ${first}metrics"
tr() { "$bin" "$@" --config "$config"; }
# Every task, one JSON page per line, following each page's next_after.
all_tasks() {
  local after=0 page
  while [ -n "$after" ]; do
    page=$(tr tasks --json --limit 1000 --after "$after")
    echo "$page"
    after=$(python3 -c 'import json, sys; n = json.load(sys.stdin)["next_after"]; print("" if n is None else n)' <<<"$page")
  done
}

say "submitting $tasks tasks"
seq 1 "$tasks" | sed 's/^/task data /' | tr submit --stdin >/dev/null
tr status | tail -n 1

say "starting three workers (sleep:20 handler, 4 tasks at a time each)"
seeds=$(sed -n 's/^client_addr = "\(.*\)".*/\1/p' "$config" | paste -sd, -)
for w in w01 w02 w03; do
  "$bin" worker --seeds "$seeds" --id "$w" --handler sleep:20 --concurrency 4 \
    --exit-when-done --poll-wait 1s >"$TASKRAFT_RUN/logs/$w.log" 2>&1 &
  workers+=($!)
done

while [ "$(tr status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["completed"])')" -lt $((tasks / 4)) ]; do
  sleep 0.1
done
leader=$(tr status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"]["id"])')
say "killing the leader, node $leader, with SIGKILL"
tr status | tail -n 1
kill -KILL "$(cat "$TASKRAFT_RUN/pids/node$leader.pid")"
kill_ms=$(now_ms)   # after kill(2) returns, the old leader runs no more code

while true; do
  new=$(tr status --json --retry-for 200ms 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"]["id"])' 2>/dev/null || true)
  if [ -n "$new" ] && [ "$new" != "$leader" ]; then break; fi
  sleep 0.02
done
seen_ms=$(now_ms)
say "node $new leads now (seen $((seen_ms - kill_ms)) ms after the kill); workers follow it"
tr status

say "waiting for every task"
tr wait --timeout 120s
for pid in "${workers[@]}"; do wait "$pid" || true; done
workers=()

say "restarting node $leader on its data dir"
restart_ms=$(now_ms)
"$root/scripts/start-cluster.sh" "$config" >/dev/null
until tr status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
applied = [m["last_applied"] for m in s["members"]]
sys.exit(0 if all(m["role"] != "unreachable" for m in s["members"]) and len(set(applied)) == 1 else 1)'; do
  sleep 0.1
done
echo "node $leader caught up in $(( $(now_ms) - restart_ms )) ms"
tr status

say "summary"
all_tasks | python3 -c '
import json, re, sys, glob
tasks = [t for line in sys.stdin for t in json.loads(line)["tasks"]]
expected, kill_ms = int(sys.argv[1]), int(sys.argv[2])
completed = [t for t in tasks if t["status"] == "completed"]
after = [t["finished_ms"] for t in completed if t["finished_ms"] and t["finished_ms"] > kill_ms]
accepted = {}
for log in glob.glob(sys.argv[3] + "/w0*.log"):
    for line in open(log):
        m = re.search(r"completed.*lease=task (\d+) attempt (\d+)", line)
        if m:
            accepted[m.group(1)] = accepted.get(m.group(1), 0) + 1
print(f"tasks submitted       {expected}")
print(f"tasks completed       {len(completed)}")
print(f"failover window       {min(after) - kill_ms if after else 0} ms (kill -> first completion accepted by the new leader)")
redelivered = sum(1 for t in tasks if t["attempt"] > 1)
print(f"tasks re-delivered    {redelivered}")
print(f"lost                  {expected - len(tasks)}")
print(f"completed twice       {sum(1 for n in accepted.values() if n > 1)}")
' "$tasks" "$kill_ms" "$TASKRAFT_RUN/logs"
