//! Re-exports the Wasmtime C API so that `cargo build` emits it as one static library, plus what
//! the C API lacks for Stateroom: trapping sandbox limits, and a typed call of the per-event guest
//! function. The added names follow the C API's (`stateroom_..._t`).
#![allow(non_camel_case_types)]
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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasmtime_c_api::wasmtime::{Func, TypedFunc};

/// A guest function of type `(i32, i32) -> ()` (`stateroom_recv`), its type checked once. Calling
/// it skips what `wasmtime_func_call_async` does on every call: the type check against the
/// engine's type registry and the marshalling of arguments through a heap vector.
pub struct stateroom_typed_func_t(TypedFunc<(i32, i32), ()>);

/// The typed handle of `func`, or null when `func` is not of type `(i32, i32) -> ()`.
#[no_mangle]
pub extern "C" fn stateroom_typed_func_new(
    context: WasmtimeStoreContext<'_>,
    func: &Func,
) -> Option<Box<stateroom_typed_func_t>> {
    func.typed::<(i32, i32), ()>(&context)
        .ok()
        .map(|typed| Box::new(stateroom_typed_func_t(typed)))
}

#[no_mangle]
pub extern "C" fn stateroom_typed_func_delete(_func: Box<stateroom_typed_func_t>) {}

/// A call in flight, polled like `wasmtime_call_future_t`.
pub struct stateroom_call_t<'a> {
    future: Pin<Box<dyn Future<Output = ()> + 'a>>,
}

/// Starts `func(a, b)` on the store's fiber; nothing runs until the first poll. A failure (a trap
/// included) is stored in `error_ret`.
#[no_mangle]
pub extern "C" fn stateroom_typed_func_call_async<'a>(
    mut store: WasmtimeStoreContextMut<'a>,
    func: &'a stateroom_typed_func_t,
    a: i32,
    b: i32,
    error_ret: &'a mut *mut wasmtime_error_t,
) -> Box<stateroom_call_t<'a>> {
    let future = async move {
        if let Err(error) = func.0.call_async(&mut store, (a, b)).await {
            *error_ret = Box::into_raw(Box::new(wasmtime_error_t::from(error)));
        }
    };
    Box::new(stateroom_call_t {
        future: Box::pin(future),
    })
}

/// Runs the call until it finishes (true) or yields at an epoch deadline (false).
#[no_mangle]
pub extern "C" fn stateroom_call_poll(call: &mut stateroom_call_t<'_>) -> bool {
    matches!(
        call.future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(())
    )
}

/// Drops a call; an unfinished one unwinds the guest's stack first.
#[no_mangle]
pub extern "C" fn stateroom_call_delete(_call: Box<stateroom_call_t<'_>>) {}
