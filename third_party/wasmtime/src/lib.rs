//! Re-exports the Wasmtime C API so that `cargo build` emits it as one static library.
pub use wasmtime_c_api::*;
