#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a consumer project that
# uses find_package(stateroom).
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
echo "the installed package builds and links a consumer"
