//! The pack's exports (ABI 3, `docs/abi.md` "Rule packs"), for the WebAssembly build only, and
//! the program a one-rule module embeds.
//!
//! A one-rule module's program is not known when this crate is built: `rulebox_sigma::build_module`
//! adds it as a data segment past the module's initial memory and writes its address and length
//! into [`LOCATOR`]. Unpatched, the locator says "no program", and the engine takes its rules from
//! its rule data only.
#![allow(
    clippy::cast_possible_truncation,
    reason = "wasm32 pointers and lengths are 32 bits wide"
)]

use crate::pack::SigmaPack;
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

/// The program embedded in the module, if any.
pub(crate) fn embedded_program() -> Option<&'static [u8]> {
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
    Some(unsafe { core::slice::from_raw_parts(start as *const u8, len) })
}

rulebox_sdk::export_pack!(SigmaPack);
