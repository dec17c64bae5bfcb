#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a consumer project that
# uses find_package(stateroom), and builds a new project with the installed `stateroom` command
# and the guest SDK installed next to it.
set -euo pipefail
build_dir=$1
shift  # the rest: flags for the consumer's configure step (the sanitizer build's, say)
source_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" "$@" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer" --check
"$work/build/consumer" --check "$build_dir/wasm/counter.wasm"
echo "the installed package builds and links a consumer, and its WebAssembly host loads counter.wasm"

cd "$work"
"$work/prefix/bin/stateroom" new demo >/dev/null
(cd demo && "$work/prefix/bin/stateroom" build >/dev/null 2>&1) || { echo "stateroom build failed in the installed tree"; exit 1; }
[ -s demo/dist/server.wasm ] && [ -s demo/dist/static/index.html ] || { echo "stateroom build wrote no dist/"; exit 1; }
grep -q "^STATEROOM_GUEST_DIR:.*=$work/prefix/share/stateroom/guest$" demo/.stateroom/build/CMakeCache.txt ||
  { echo "the installed stateroom did not use the installed guest SDK"; exit 1; }
echo "the installed stateroom command builds a new project with the installed guest SDK"
