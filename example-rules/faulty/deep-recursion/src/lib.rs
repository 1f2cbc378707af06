//! **Faulty content: unbounded recursion.**
//!
//! On every process event the rule calls a function that calls itself without end, until the engine
//! traps with *call stack exhausted* (its cap on the stack wasm frames may use).
//!
//! Two details make the fault come out as a stack overflow and nothing else:
//!
//! * The recursion is neither a loop nor a tail call: the result of the inner call is squared after it
//!   returns (not an associative accumulator LLVM could rewrite), and the exit condition is a
//!   volatile read of a static that is never set, which the optimiser cannot fold.
//! * Each frame lives in wasm locals only: no local has its address taken (no `black_box` of a local),
//!   so nothing goes to the Rust *shadow stack* in linear memory. A shadow-stack overflow would
//!   instead wrap the stack pointer below address 0 and trap later as an out-of-bounds store, a
//!   different fault class.
//!
//! The recursion is compiled for `wasm32` only (`#[cfg(target_arch = "wasm32")]`): natively it would
//! overflow the test thread's stack and abort the test process, so natively the rule does nothing.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// Recurses without bound on every process event (wasm only).
#[derive(Default)]
pub struct DeepRecursion;

impl Rule for DeepRecursion {
    const META: RuleMeta = RuleMeta {
        id: "faulty-deep-recursion",
        name: "Faulty: recurses without bound",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        // Never true (the recursion never returns); keeps the result observable.
        #[cfg(target_arch = "wasm32")]
        if event.kind() == EventKind::ProcessStart && descend(0) == 0 {
            out.detect("bottom reached");
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (event, out);
    }
}

/// Never set: the recursion's exit condition, read with a volatile load so it cannot be folded.
#[cfg(target_arch = "wasm32")]
static STOP: u8 = 0;

/// Calls itself with `depth + 1` until the stack runs out.
#[cfg(target_arch = "wasm32")]
#[inline(never)]
fn descend(depth: u64) -> u64 {
    // SAFETY: a volatile read of a plain static: valid, aligned, never written.
    if unsafe { core::ptr::read_volatile(&raw const STOP) } != 0 {
        return depth;
    }
    let inner = descend(depth + 1);
    inner.wrapping_mul(inner) ^ depth
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(DeepRecursion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_harmless() {
        let ev = Event::new(EventData::ProcessStart(ProcessStart::default()));
        assert!(run_native(&mut DeepRecursion, &ev).is_empty());
    }
}
