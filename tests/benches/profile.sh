#!/usr/bin/env bash
# Profiles the service during one load-benchmark scenario only: `perf record` attached to the
# `switchyard serve` process from its first ingested event, for a few seconds, so start-up,
# migrations and the bundled plugins' compile are not in the profile.
#
#   cargo build --release -p switchyard && cargo bench -p switchyard-tests --bench load --no-run
#   tests/benches/profile.sh slack 2 /tmp/slack.data     # scenario, LOAD_SCALE, output
#   perf report -i /tmp/slack.data --sort dso,sym
#
# SWITCHYARD_BIN picks another binary (its file name is how the process is found); PROFILE_SECONDS
# (default 2) how long to record. Needs perf.
#
# PROFILE_STAT=EVENTS counts instead of sampling: `perf stat --per-thread` of those events into
# the output file, e.g. each thread's CPU and the writer's system calls:
#   PROFILE_STAT=task-clock,context-switches,syscalls:sys_enter_pwrite64,syscalls:sys_enter_pread64,syscalls:sys_enter_fdatasync \
#     tests/benches/profile.sh e2e 2 /tmp/e2e.stat
# followed by the service's event and attempt counters before and after the count.
set -euo pipefail
scenario=$1 scale=$2 out=$3 secs=${PROFILE_SECONDS:-2}
cd "$(dirname "$0")/../.."
bin=${SWITCHYARD_BIN:-$PWD/target/release/switchyard}
bench=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
SWITCHYARD_BIN=$bin LOAD_ONLY=$scenario LOAD_SCALE=$scale "$bench" > "$out.txt" 2>&1 &
runner=$!
name=$(basename "$bin")
pid=
for _ in $(seq 1 6000); do
  pid=$(pgrep -n -f "$name serve" || true)
  port=
  if [[ -n $pid ]]; then
    port=$(ss -ltnpH | grep "pid=$pid," | grep -o '127.0.0.1:[0-9]*' | head -1 || true)
  fi
  if [[ -n $port ]]; then
    n=$(curl -s "http://$port/metrics" | awk '/^switchyard_events_ingested_total /{print $2}')
    [[ -n $n && ${n%.*} -gt 0 ]] && break
  fi
  sleep 0.05
done
if [[ -n ${PROFILE_STAT:-} ]]; then
  counters() { curl -s "http://$port/metrics" | grep -E '^switchyard_(events_ingested|attempts)_total' | sed "s/^/$1 /"; }
  before=$(counters before)
  perf stat -e "$PROFILE_STAT" --per-thread -p "$pid" -o "$out" -- sleep "$secs" > /dev/null 2>&1
  { echo "$before"; counters after; } >> "$out"
else
  perf record ${PERF_ARGS:-} -F ${PERF_FREQ:-1999} -p "$pid" -o "$out" -- sleep "$secs" > /dev/null 2>&1
fi
wait "$runner"
grep -E '^\| ' "$out.txt"
