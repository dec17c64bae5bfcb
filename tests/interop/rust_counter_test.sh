#!/usr/bin/env bash
# Usage: rust_counter_test.sh PYTHON STATEROOM OUT.wasm
#
# Interop with the Rust SDK: builds the counter written against the real crates.io crate
# stateroom-wasm 0.4 (rust-counter/) to OUT.wasm, then runs the end-to-end counter test
# (tests/e2e/counter_test.py, the one the C++ counter passes) against `STATEROOM serve OUT.wasm`.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 PYTHON STATEROOM OUT.wasm" >&2
  exit 2
fi
python=$1 stateroom=$2 wasm=$3
here=$(cd "$(dirname "$0")" && pwd)

"$here/build_rust_counter.sh" "$wasm"
exec "$python" "$here/../e2e/counter_test.py" "$stateroom" serve "$wasm"
