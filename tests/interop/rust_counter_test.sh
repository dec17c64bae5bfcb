#!/usr/bin/env bash
# Usage: rust_counter_test.sh PYTHON STATEROOM CRATE_DIR OUT.wasm INTERFACE
#
# Interop with the Rust SDK: builds a counter crate written against the real crates.io crate
# stateroom-wasm (rust-counter/: 0.4, rust-counter-v1/: 0.2) to OUT.wasm with build_rust_counter.sh,
# then runs the end-to-end counter test (tests/e2e/counter_test.py, the one the C++ counter passes)
# against `STATEROOM serve OUT.wasm`, and the persistence test (tests/e2e/persistence_test.py: its
# count survives a restart, hibernation and SIGKILL with --state-dir, with no code in the crate). INTERFACE (v2 or v1) is the module interface the server must
# report when it loads the module (its debug log line "loaded (module interface v1)"), so that the
# test cannot pass with a module of the other generation.
set -euo pipefail
if [ $# -ne 5 ]; then
  echo "usage: $0 PYTHON STATEROOM CRATE_DIR OUT.wasm INTERFACE" >&2
  exit 2
fi
python=$1 stateroom=$2 crate=$3 wasm=$4 interface=$5
case $interface in
  v1 | v2) ;;
  *) echo "error: INTERFACE is v1 or v2, not '$interface'" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)

"$here/build_rust_counter.sh" "$crate" "$wasm"
"$python" "$here/../e2e/counter_test.py" --expect-startup "$wasm: loaded (module interface $interface)" \
  "$stateroom" serve --log-level debug "$wasm"
exec "$python" "$here/../e2e/persistence_test.py" "$stateroom" serve "$wasm"
