#!/usr/bin/env bash
# A randomized fault run (Jepsen style) against three local masters:
#
#   scripts/nemesis.sh --duration 60s [--seed N] [--skew 3:+30s] [--out DIR]
#
# Builds taskraft and the nemesis (release) unless TASKRAFT_BIN is set, then
# runs tests/src/bin/nemesis.rs: masters behind per-link TCP proxies, producers
# and workers recording every operation, seeded faults for --duration, then a
# checker over the history and the replicas. Exit 0: every guarantee held;
# 1: a violation (the summary names the seed that reproduces it); 2: bad usage.
# --skew needs Debian's faketime. Every option: --help.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${TASKRAFT_BIN:-}" ]; then
  echo "building taskraft and the nemesis (release)..."
  cargo build --release --quiet -p taskraft-cli -p taskraft-tests --bin taskraft --bin taskraft-nemesis
  bin=$root/target/release/taskraft
else
  bin=$TASKRAFT_BIN
  cargo build --release --quiet -p taskraft-tests --bin taskraft-nemesis
fi
exec "$root/target/release/taskraft-nemesis" --bin "$bin" "$@"
