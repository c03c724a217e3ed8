#!/usr/bin/env bash
# Runs every test: unit tests, the bundled plugins' tests, and the end-to-end suite (which
# builds the plugins for wasm32-wasip2 itself). Installs the wasm target if it is missing.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null
cargo test "$@"
