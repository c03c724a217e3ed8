#!/usr/bin/env bash
# SQLite's instructions per delivery for the e2e scenario's writes, schema by schema: runs
# sqlite_writes.py under callgrind (Debian's valgrind), counting only inside sqlite3_step.
#
#   tests/benches/sqlite_writes.sh 0006 0007     # the schema after 0006, then after 0007
#
# Each figure is exact for the SQLite Python links (repeatable to the instruction); compare
# the schemas of one run, not figures from different machines or SQLite versions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$(python3 -c 'import sys; print(sys.executable)') # not a pyenv shim: valgrind runs it
rounds=${ROUNDS:-200}
for upto in "$@"; do
  out=$(mktemp)
  valgrind --tool=callgrind --toggle-collect=sqlite3_step --callgrind-out-file="$out" \
    "$python" "$here/sqlite_writes.py" "$upto" "$rounds" > "$out.log" 2>&1
  ir=$(grep -oE 'Collected : [0-9]+' "$out.log" | grep -oE '[0-9]+$')
  n=$(grep -oE 'deliveries [0-9]+' "$out.log" | grep -oE '[0-9]+$')
  echo "migrations up to $upto: $((ir / n)) SQLite instructions per delivery ($n deliveries)"
  rm -f "$out" "$out.log"
done
