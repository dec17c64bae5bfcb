#!/usr/bin/env bash
# Sets up everything on a Debian machine (installing what is missing) and then
#   ./run.sh demo   builds and starts the counter example on http://localhost:8080
#   ./run.sh test   builds and runs the whole test suite (release build, then the ASan + UBSan build)
#   ./run.sh install  builds and installs the stateroom command, headers, libraries and guest SDK
#                     into $PREFIX (default /usr/local)
#   ./run.sh bench  builds and runs the micro-benchmarks (the hot path without sockets; WebAssembly room
#                   start and message cost vs native; snapshot and restore costs); bench/run-peers
#                   compares whole servers
#   ./run.sh setup  only installs what is missing
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  cmake ninja-build g++ pkg-config python3 python3-pip
  libboost1.81-dev libspdlog-dev libcli11-dev libtomlplusplus-dev libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libssl-dev libzstd-dev libxxhash-dev
  # building services to WebAssembly (wasm32-wasi): clang, wasm-ld, wasi-libc, libc++
  clang lld wasi-libc libc++-14-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-14-dev-wasm32
  # the interoperability test builds a guest with the Rust stateroom-wasm crate (std rebuilt for wasm32)
  rustc-web cargo-web rust-web-src
  # the browser test: headless Chromium (driven by playwright-core from npm)
  chromium
  # the fuzz targets (fuzz/, scripts/fuzz): clang's libFuzzer and sanitizer runtimes for x86_64
  libclang-rt-14-dev
  # the remote-clients test: network namespaces and a veth pair (`ip`)
  iproute2
)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

setup() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # Node.js and npm run the browser test (a Node.js that is already there is kept).
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing Node.js and npm (for the browser test)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  # Wasmtime is built from crates.io with cargo (Rust via rustup).
  if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "error: cargo is missing: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
  fi
  if ! python3 -c 'import websockets' 2>/dev/null; then
    say "installing the Python websockets client (for the end-to-end tests)"
    python3 -m pip install -q websockets 2>/dev/null ||
      python3 -m pip install -q --break-system-packages websockets
  fi
}

build() {
  say "building ($1)"
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1"
}

run_tests() {
  say "testing ($1)"
  ctest --preset "$1" -j "$(nproc)"
}

case "${1:-}" in
  setup) setup ;;
  demo)
    setup
    build default
    say "counter demo on http://localhost:8080 (Ctrl-C stops it)"
    exec build/bin/counter-native --port "${PORT:-8080}"
    ;;
  install)
    setup
    build default
    say "installing into ${PREFIX:-/usr/local}"
    as_root cmake --install build --prefix "${PREFIX:-/usr/local}"
    say "done: try   stateroom new counter && cd counter && stateroom dev"
    ;;
  bench)
    setup
    build default
    say "micro-benchmarks (build/bin/hot_path_bench, build/bin/wasm_bench, build/bin/state_bench; run on an idle machine)"
    build/bin/hot_path_bench
    build/bin/wasm_bench
    exec build/bin/state_bench
    ;;
  test)
    setup
    build default
    run_tests default
    build asan
    run_tests asan
    ;;
  *)
    echo "usage: $0 demo|test|install|bench|setup" >&2
    exit 2
    ;;
esac
