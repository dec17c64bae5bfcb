//! Re-exports the Wasmtime C API so that `cargo build` emits it as one static library, plus the one
//! function the C API lacks for Stateroom's sandbox limits.
pub use wasmtime_c_api::*;

use wasmtime_c_api::wasmtime::StoreLimitsBuilder;

/// Caps a store's linear memories at `memory_size` bytes and its tables at `table_elements`
/// elements (negative: no cap) such that a growth past a cap *traps* instead of returning -1, so a
/// guest that runs out of its allowance fails visibly. Call it after `wasmtime_store_limiter`,
/// which installs the limiter this function configures.
#[no_mangle]
pub extern "C" fn stateroom_store_limits_trapping(
    mut context: WasmtimeStoreContextMut<'_>,
    memory_size: i64,
    table_elements: i64,
) {
    let mut limits = StoreLimitsBuilder::new().trap_on_grow_failure(true);
    if memory_size >= 0 {
        limits = limits.memory_size(memory_size as usize);
    }
    if table_elements >= 0 {
        limits = limits.table_elements(table_elements as usize);
    }
    context.data_mut().store_limits = limits.build();
}
