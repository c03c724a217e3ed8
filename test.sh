#!/usr/bin/env bash
# Runs every test: unit tests, the bundled plugins' tests, the end-to-end suite (which
# builds the plugins for wasm32-wasip2 itself), then the heavy fault-injection tests on their
# own, and the API contract checked by outside tools (tests/contract/run.sh:
# openapi-spec-validator, a generated client's flow, schemathesis; installed pinned into
# target/contract/venv; SWITCHYARD_SKIP_CONTRACT=1 skips them).
# Installs the wasm target if it is missing. Ends with one summary line over everything.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
# The pinned JavaScript and Python toolchains the example-plugin tests build with
# (componentize-js/-qjs by `npm ci` from examples/plugins/js/package-lock.json, componentize-py
# in a venv; both under target/plugin-toolchains). Without node/npm or python3 those tests
# skip with a message, or fail when CI=true.
examples/plugins/build.sh --install || {
    code=$?
    if [[ $code -ne 77 || ${CI:-} == true ]]; then
        echo "test.sh: installing the example plugins' toolchains failed" >&2
        exit "$code"
    fi
    echo "test.sh: the example plugins' toolchains are not available here; their tests skip" >&2
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test "$@" 2>&1 | tee "$log" || status=$?
# The fault-injection tests that load the machine (a kill -9 loop, an idle-CPU measurement, a
# slow plugin beside fast subscriptions) and one that times plugin calls run afterwards, one at a time: run beside the rest they
# would starve other tests' 100 ms plugin deadlines, and their own timings would measure the
# other tests. Skipped when arguments pick something else.
if [ "$#" -eq 0 ]; then
  # (No `-p switchyard`: that resolves the workspace's features anew and rebuilt rusqlite and
  # the service, a minute or more, for the same tests.)
  cargo test --test e2e -- --ignored --test-threads=1 \
    fairness:: parked::an_idle queue_faults::killed plugin_hardening::pool::overlapping_calls 2>&1 | tee -a "$log" || status=$?
fi
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{ n += $1 } END { print n + 0 }'; }
passed=$(count passed)
failed=$(count failed)
if [[ ${SWITCHYARD_SKIP_CONTRACT:-} != 1 ]]; then
    echo
    if tests/contract/run.sh; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        status=1
    fi
fi
echo
echo "all tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
