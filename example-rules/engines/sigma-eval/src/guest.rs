//! The rule-module exports (the ABI of `docs/abi.md`, version `rulebox_sdk::abi::ABI_VERSION`), for
//! the WebAssembly build only.
//!
//! The module's program is not known when this crate is built: `rulebox sigma compile` adds it as a
//! data segment past the module's initial memory and writes its address and length into [`LOCATOR`].
//! Unpatched, the locator says "no program" and `rulebox_metadata` returns 0, so the host refuses the
//! bare evaluator at load (`bad_metadata`).
#![allow(
    clippy::cast_possible_truncation,
    reason = "wasm32 pointers and lengths are 32 bits wide"
)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

use rulebox_sdk::abi::{self, pack};
use rulebox_sdk::{Detections, EventView, RuleMetadata};

use crate::eval::Evaluator;
use crate::program::LOCATOR_MAGIC;

/// The magic, then the program's address and length (little-endian `u32`s), written by the compiler.
#[repr(C)]
struct Locator {
    magic: [u8; 16],
    ptr: u32,
    len: u32,
}

/// Non-zero (the magic), so it lives in a data segment the compiler can find and patch.
#[used]
static LOCATOR: Locator = Locator {
    magic: LOCATOR_MAGIC,
    ptr: 0,
    len: 0,
};

struct State {
    eval: Evaluator<'static>,
    metadata: Vec<u8>,
    input: Vec<u8>,
    detections: Detections,
}

struct Cell(UnsafeCell<Option<Option<State>>>);

// SAFETY: rule modules are built without the wasm threads proposal, so there is one thread, and the
// host calls one export at a time; no export calls another.
unsafe impl Sync for Cell {}

static STATE: Cell = Cell(UnsafeCell::new(None));

fn load() -> Option<State> {
    // SAFETY: `LOCATOR` is a valid, aligned static. The read is volatile because the compiler
    // changes its bytes after this crate is built: a plain read could be folded to the zeros above.
    let locator = unsafe { core::ptr::read_volatile(&raw const LOCATOR) };
    if locator.len == 0 {
        return None;
    }
    let start = locator.ptr as usize;
    let len = locator.len as usize;
    // Refuse a range that is not inside the memory the module was instantiated with.
    let memory_end = core::arch::wasm32::memory_size(0) * 65536;
    if start.checked_add(len)? > memory_end || start == 0 {
        return None;
    }
    // SAFETY: the range is inside linear memory (checked above). The compiler placed the program in
    // its own data segment past the module's initial data, stack and heap start, in pages the
    // allocator never hands out (it only grows memory past its size at start), so nothing else
    // writes there and the bytes live as long as the instance.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    let eval = Evaluator::from_bytes(bytes).ok()?;
    let metadata = RuleMetadata {
        schema_version: abi::SCHEMA_VERSION,
        id: eval.id().into(),
        name: eval.title().into(),
        version: eval.version().into(),
        severity: eval.severity(),
        subscriptions: eval.kinds(),
    };
    let metadata = postcard::to_allocvec(&metadata).ok()?;
    // One leak per instance, for the `'static` id `Detections` wants.
    let id: &'static str = Box::leak(eval.id().into());
    let detections = Detections::new(id, eval.severity());
    Some(State {
        eval,
        metadata,
        input: Vec::new(),
        detections,
    })
}

fn with<T>(f: impl FnOnce(&mut State) -> T, none: T) -> T {
    // SAFETY: see the `Sync` impl: one thread and no re-entry, so this is the only live reference.
    let slot = unsafe { &mut *STATE.0.get() };
    match slot.get_or_insert_with(load) {
        Some(state) => f(state),
        None => none,
    }
}

#[unsafe(no_mangle)]
extern "C" fn rulebox_abi_version() -> u32 {
    abi::ABI_VERSION
}

#[unsafe(no_mangle)]
extern "C" fn rulebox_metadata() -> u64 {
    with(
        |s| pack(s.metadata.as_ptr() as u32, s.metadata.len() as u32),
        0,
    )
}

#[unsafe(no_mangle)]
extern "C" fn rulebox_input(len: u32) -> u32 {
    if len > abi::MAX_INPUT_LEN {
        return 0;
    }
    with(
        |s| {
            s.input.resize(len as usize, 0);
            s.input.as_ptr() as u32
        },
        0,
    )
}

#[unsafe(no_mangle)]
extern "C" fn rulebox_on_event(len: u32) -> u64 {
    with(
        |s| {
            let State {
                eval,
                input,
                detections,
                ..
            } = s;
            let Some(bytes) = input.get(..len as usize) else {
                return abi::RESULT_UNDECODABLE_EVENT;
            };
            let Ok(event) = EventView::new(bytes) else {
                return abi::RESULT_UNDECODABLE_EVENT;
            };
            detections.clear();
            if !eval.detect(&event, detections) {
                return abi::RESULT_NONE;
            }
            let result = detections.as_bytes();
            pack(result.as_ptr() as u32, result.len() as u32)
        },
        abi::RESULT_UNDECODABLE_EVENT,
    )
}

#[unsafe(no_mangle)]
extern "C" fn rulebox_last_panic() -> u64 {
    abi::__private::PANIC.get()
}
