//! **Faulty content: a null-pointer-style wild write.**
//!
//! On every process event the rule writes through a pointer that points nowhere valid, as C code
//! does when it writes through a null or dangling pointer, so the host sees an *out of bounds memory
//! access* trap.
//!
//! Address `0` is **valid** memory in WebAssembly: it is the first byte of the module's own linear
//! memory (for Rust modules, the bottom of the shadow stack), so a literal null write would silently
//! corrupt the module instead of trapping. The rule therefore writes to `0xFFFF_FFF0`, 16 bytes below
//! 4 GiB: far past the end of any memory a host allows a rule (the host caps memory at a few MiB, and
//! 4 GiB is the wasm32 maximum), which is what "null" means to a sandboxed wasm module: an address
//! that is not mapped.
//!
//! The write is compiled for `wasm32` only (`#[cfg(target_arch = "wasm32")]`): natively it would be a
//! real segfault of the test process, so natively the rule does nothing.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// The wild address written to: outside any linear memory a host allows.
pub const WILD_ADDRESS: usize = 0xFFFF_FFF0;

/// Writes through a wild pointer on every process event (wasm only).
#[derive(Default)]
pub struct NullDeref;

impl Rule for NullDeref {
    const META: RuleMeta = RuleMeta {
        id: "faulty-null-deref",
        name: "Faulty: writes through a wild pointer",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, _out: &mut Detections) {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = event;
        #[cfg(target_arch = "wasm32")]
        if event.kind() == EventKind::ProcessStart {
            let wild = core::ptr::with_exposed_provenance_mut::<u32>(WILD_ADDRESS);
            // SAFETY: none: this is the fault this rule exists to commit. In wasm the store is bounds
            // checked by the engine and traps; it cannot reach anything outside the sandbox.
            unsafe { wild.write_volatile(0xDEAD_BEEF) };
        }
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(NullDeref);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_harmless() {
        let ev = Event::new(EventData::ProcessStart(ProcessStart::default()));
        assert!(run_native(&mut NullDeref, &ev).is_empty());
        const { assert!(WILD_ADDRESS > 64 << 20) };
    }
}
