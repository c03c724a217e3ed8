#!/usr/bin/env bash
# A/B of release builds on the load benchmark, alternated in one window (this VM's speed drifts
# by up to 2x between runs, so only same-window comparisons mean anything):
#
#   cargo build --release -p switchyard && cp target/release/switchyard /tmp/sy-a   # build A
#   ...change, build again... && cp target/release/switchyard /tmp/sy-b             # build B
#   cargo bench -p switchyard-tests --bench load --no-run
#   tests/benches/ab.sh /tmp/ab 3 /tmp/sy-a /tmp/sy-b     # out folder, pairs, binaries
#
# Runs `pairs` rounds of every binary in turn (LOAD_SCALE, default 0.5; LOAD_ONLY, default
# ceiling,e2e,slack,fan-out,drain), one output file per run, then prints per binary and
# scenario the share of the same-run null router and the service's CPU per delivery (its mean
# CPU over the scenario divided by its rate: steadier than the shares from run to run).
# LOAD_BENCH picks the benchmark executable (default: the newest target/release/deps/load-*).
set -euo pipefail
out=$1 pairs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
bench=${LOAD_BENCH:-$(ls -t "$here"/../../target/release/deps/load-* | grep -v '\.d$' | head -1)}
mkdir -p "$out"
for round in $(seq 1 "$pairs"); do
  for bin in "$@"; do
    SWITCHYARD_BIN=$bin LOAD_SCALE=${LOAD_SCALE:-0.5} \
      LOAD_ONLY=${LOAD_ONLY:-ceiling,e2e,slack,fan-out,drain} \
      "$bench" --bench > "$out/$(basename "$bin")-$round.txt" 2>&1
    echo "ab: $(basename "$bin") round $round done" >&2
  done
done
python3 "$here/ab_summary.py" "$out"
