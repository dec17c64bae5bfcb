#!/usr/bin/env bash
# Usage: build_rust_counter.sh CRATE_DIR OUT.wasm
#
# Builds the cdylib crate in CRATE_DIR for wasm32-wasip1 and copies the module to OUT.wasm. The
# crates are the counters written with the Rust SDK from crates.io: tests/interop/rust-counter
# (stateroom-wasm 0.4, interface v2) and tests/interop/rust-counter-v1 (stateroom-wasm 0.2, the
# legacy interface v1). Each crate's own settings are in its Cargo.toml and .cargo/config.toml; its
# dependencies are the ones of its Cargo.lock (--locked).
#
# Toolchain: Debian's rustc-web + cargo-web + rust-web-src (bookworm-security, 1.96) from apt. They
# ship no wasm32 standard library, so std is rebuilt from rust-web-src with -Zbuild-std
# (RUSTC_BOOTSTRAP=1), linked by Debian's wasm-ld (lld) against Debian's wasi-libc. rustup's cargo
# and rustc (~/.cargo/bin, usually first in PATH) are never used: they have no wasm32 target, and
# adding one would fetch it from static.rust-lang.org.
#
# Cargo's target directory is a cache outside the build tree, shared by every build directory and
# clone on the machine (and by every crate: each has its own artifacts in it, std is rebuilt once),
# so every build after the first is a no-op:
#   ${STATEROOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stateroom}/rust-guest-target
#
# Overrides (for testing the script itself): STATEROOM_RUST_WEB_BINDIR (default /usr/bin: where
# cargo-web and rustc-web install cargo and rustc), STATEROOM_WASM_LD (default /usr/bin/wasm-ld),
# STATEROOM_WASI_LIBC_DIR (default /usr/lib/wasm32-wasi).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 CRATE_DIR OUT.wasm" >&2
  exit 2
fi
[ -f "$1/Cargo.toml" ] || { echo "error: $1 is not a crate directory (no Cargo.toml)" >&2; exit 2; }
crate_dir=$(cd "$1" && pwd)
out=$2
# The module is named after the package (the first `name =` of Cargo.toml, in [package]), with `-`
# made `_`, as cargo names a cdylib.
package=$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$crate_dir/Cargo.toml" | head -n 1)
[ -n "$package" ] || { echo "error: no package name in $crate_dir/Cargo.toml" >&2; exit 2; }

bindir=${STATEROOM_RUST_WEB_BINDIR:-/usr/bin}
cargo=$bindir/cargo
rustc=$bindir/rustc
wasm_ld=${STATEROOM_WASM_LD:-/usr/bin/wasm-ld}
wasi_libc=${STATEROOM_WASI_LIBC_DIR:-/usr/lib/wasm32-wasi}
target_dir=${STATEROOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stateroom}/rust-guest-target

missing() {
  echo "error: $1 is missing; the Rust guest needs the Debian packages" \
    "rustc-web cargo-web rust-web-src lld wasi-libc (apt-get install them)" >&2
  exit 1
}
[ -x "$cargo" ] || missing "cargo of the Rust toolchain for WebAssembly ($cargo)"
[ -x "$rustc" ] || missing "rustc of the Rust toolchain for WebAssembly ($rustc)"
sysroot=$("$rustc" --print sysroot) || missing "a working $rustc"
[ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] ||
  missing "the Rust standard library source ($sysroot/lib/rustlib/src/rust/library)"
[ -x "$wasm_ld" ] || missing "the WebAssembly linker ($wasm_ld)"
[ -f "$wasi_libc/libc.a" ] || missing "wasi-libc ($wasi_libc/libc.a)"

# Nothing from the caller's Rust environment may reach this build (a rustup toolchain override, a
# wrapper, flags meant for another target, another target directory).
unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTFLAGS CARGO_ENCODED_RUSTFLAGS \
  RUSTDOCFLAGS CARGO_BUILD_TARGET CARGO_BUILD_TARGET_DIR CARGO_BUILD_RUSTC CARGO_BUILD_RUSTC_WRAPPER \
  CARGO_BUILD_RUSTFLAGS CARGO_TARGET_WASM32_WASIP1_LINKER CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS
export PATH="$bindir:$PATH"  # anything that runs plain `cargo` or `rustc` gets these, not rustup's
export RUSTC="$rustc" CARGO="$cargo" CARGO_TARGET_DIR="$target_dir"
export RUSTC_BOOTSTRAP=1  # -Zbuild-std on a stable toolchain

echo "building $package ($crate_dir) with $("$cargo" -V) and $("$rustc" -V) (target dir $target_dir)"
start=$(date +%s)
cd "$crate_dir"  # cargo reads .cargo/config.toml from the working directory
"$cargo" build --release --locked --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
  --config "target.wasm32-wasip1.linker=\"$wasm_ld\"" \
  --config "target.wasm32-wasip1.rustflags=[\"-L\", \"native=$wasi_libc\"]"
built=$target_dir/wasm32-wasip1/release/${package//-/_}.wasm
mkdir -p "$(dirname "$out")"
cp "$built" "$out"
echo "built $out ($(stat -c %s "$out") bytes) in $(($(date +%s) - start)) s"
