# Shared by start-cluster.sh and rolling-restart.sh (sourced, not run).
#
# Sets root, config (from $1, default cluster.toml), run ($TASKRAFT_RUN,
# default run/) and bin ($TASKRAFT_BIN, else target/release/taskraft, built
# first), and defines start_master ID.

root=$(cd "$(dirname "$0")/.." && pwd)
config=$(realpath "${1:-$root/cluster.toml}")
run=${TASKRAFT_RUN:-$root/run}
bin=${TASKRAFT_BIN:-$root/target/release/taskraft}

if [ -z "${TASKRAFT_BIN:-}" ]; then
  echo "building taskraft (release)..."
  (cd "$root" && cargo build --release --quiet -p taskraft-cli)
fi
bin=$(realpath "$bin")
mkdir -p "$run/logs" "$run/pids"

# Starts master ID in the background, in the run folder (relative data_dirs
# land in run/data/), appending to run/logs/nodeID.log, its pid in run/pids/.
# The masters share this machine, so each runs on one thread unless
# TASKRAFT_MASTER_THREADS says otherwise (0: one per core).
start_master() {
  local id=$1
  (cd "$run" && TASKRAFT_MASTER_THREADS="${TASKRAFT_MASTER_THREADS:-1}" \
    exec "$bin" master --config "$config" --id "$id" >>"$run/logs/node$id.log" 2>&1) &
  echo $! >"$run/pids/node$id.pid"
}
