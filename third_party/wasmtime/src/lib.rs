//! Re-exports the Wasmtime C API so that `cargo build` emits it as one static library, plus what
//! the C API lacks for Stateroom: trapping sandbox limits with a memory budget shared by all rooms,
//! and a typed call of the per-event guest function. The added names follow the C API's (`stateroom_..._t`).
#![allow(non_camel_case_types)]
pub use wasmtime_c_api::*;

pub mod globals;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime_c_api::wasmtime::{Error, ResourceLimiter, Result};

/// The linear memory all rooms may have together: `used` bytes of `limit`. The host owns it (a C++
/// `std::atomic<uint64_t>` and a `uint64_t`, in this order) and keeps it alive longer than every
/// store limited by it.
#[repr(C)]
pub struct stateroom_memory_budget_t {
    used: AtomicU64,
    limit: u64,
}

impl stateroom_memory_budget_t {
    /// Takes `bytes` from the budget; false (nothing taken) when they do not fit.
    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Called when the budget refuses a growth to `desired` bytes, before the growth traps.
pub type stateroom_budget_refused_t = extern "C" fn(env: *mut c_void, desired: u64);

/// A room's limits: its own memory and table caps, and its part of the shared budget. Its one
/// linear memory is what it holds of the budget; the store gives it back when it goes.
struct RoomLimiter {
    memory_size: usize,
    table_elements: usize,
    budget: *const stateroom_memory_budget_t,
    refused: Option<stateroom_budget_refused_t>,
    refused_env: *mut c_void,
    held: u64,
}

// The budget is shared by design (atomics only); `refused_env` is used on the store's thread.
unsafe impl Send for RoomLimiter {}
unsafe impl Sync for RoomLimiter {}

impl RoomLimiter {
    fn budget(&self) -> Option<&stateroom_memory_budget_t> {
        // Safety: the host keeps the budget alive longer than the store (stateroom_store_limiter).
        unsafe { self.budget.as_ref() }
    }
}

impl ResourceLimiter for RoomLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> Result<bool> {
        // A store has one memory (memories() below), so `current` is all it has: anything held
        // beyond it was taken for a growth that then failed.
        let current = current as u64;
        if self.held > current {
            if let Some(budget) = self.budget() {
                budget.give_back(self.held - current);
            }
            self.held = current;
        }
        if desired > self.memory_size {
            return Err(Error::msg(format!("forcing trap when growing memory to {desired} bytes")));
        }
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false); // past the module's own maximum: memory.grow returns -1
        }
        let extra = (desired as u64).saturating_sub(current);
        if let Some(budget) = self.budget() {
            if !budget.take(extra) {
                if let Some(refused) = self.refused {
                    refused(self.refused_env, desired as u64);
                }
                return Err(Error::msg(format!(
                    "the memory budget of all rooms refused growing memory to {desired} bytes"
                )));
            }
        }
        self.held = current + extra;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: Error) -> Result<()> {
        Err(error.context("forcing a memory growth failure to be a trap"))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> Result<bool> {
        if desired > self.table_elements {
            return Err(Error::msg(format!("forcing trap when growing table to {desired} elements")));
        }
        Ok(!maximum.is_some_and(|max| desired > max))
    }

    fn table_grow_failed(&mut self, error: Error) -> Result<()> {
        Err(error.context("forcing a table growth failure to be a trap"))
    }

    fn memories(&self) -> usize {
        1
    }
}

impl Drop for RoomLimiter {
    fn drop(&mut self) {
        if let Some(budget) = self.budget() {
            budget.give_back(self.held);
        }
    }
}

// The C API keeps a store's `Store` as the one field of `wasmtime_store_t`; that it is the whole
// of it (so at its start) is checked here, for the Wasmtime version Cargo.lock pins.
const _: () = assert!(
    std::mem::size_of::<wasmtime_store_t>() == std::mem::size_of::<WasmtimeStore>()
        && std::mem::align_of::<wasmtime_store_t>() == std::mem::align_of::<WasmtimeStore>()
);

/// Limits a store: its linear memory to `memory_size` bytes and its tables to `table_elements`
/// elements, both trapping when a growth would pass them (instead of returning -1), and, when
/// `budget` is not null, its memory to what `budget` has left: a growth the budget cannot hold
/// calls `refused(refused_env, desired)` (when given) and traps. What the store's memory holds of
/// the budget goes back when the store is deleted. A store limited here has one linear memory at
/// most. Replaces `wasmtime_store_limiter`.
///
/// # Safety
/// `budget` (when not null) must outlive the store, and `refused_env` must be valid for
/// `refused` whenever the store runs.
#[no_mangle]
pub unsafe extern "C" fn stateroom_store_limiter(
    store: &mut wasmtime_store_t,
    memory_size: u64,
    table_elements: u64,
    budget: *const stateroom_memory_budget_t,
    refused: Option<stateroom_budget_refused_t>,
    refused_env: *mut c_void,
) {
    let mut limiter = Box::new(RoomLimiter {
        memory_size: usize::try_from(memory_size).unwrap_or(usize::MAX),
        table_elements: usize::try_from(table_elements).unwrap_or(usize::MAX),
        budget,
        refused,
        refused_env,
        held: 0,
    });
    // Safety: see the size check above; the store outlives this call's borrow.
    let store = unsafe { &mut *(store as *mut wasmtime_store_t as *mut WasmtimeStore) };
    // The closure owns the limiter (dropped with the store) and lends it for each use.
    store.limiter(move |_| {
        let limiter: *mut RoomLimiter = &mut *limiter;
        // Safety: the box lives as long as the closure, and Wasmtime uses one loan at a time.
        unsafe { &mut *limiter }
    });
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
