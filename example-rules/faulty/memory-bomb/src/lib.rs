//! **Faulty content: a memory bomb.**
//!
//! On every process event the rule allocates 1 MiB chunks and keeps every one (in the rule's own
//! state, through [`core::hint::black_box`] so the optimiser cannot drop them), forever. Each chunk
//! grows linear memory; when the host's memory cap refuses to grow it further, the allocator fails
//! and the rule traps (the SDK's panic handler records `memory allocation of 1048576 bytes failed`),
//! or the host traps the `memory.grow` itself, depending on how its limiter is configured. Either way
//! the host must quarantine the rule, not run out of memory itself.
//!
//! The chunks are reserved, not written, so the bomb costs almost no fuel per MiB: it is the memory
//! cap that stops it, not the fuel budget.
//!
//! The allocation loop is compiled for `wasm32` only (`#[cfg(target_arch = "wasm32")]`): natively it
//! would exhaust the test machine's memory, so natively the rule does nothing.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::vec::Vec;
use rulebox_sdk::prelude::*;

/// The size of each chunk.
pub const CHUNK: usize = 1 << 20;

/// Allocates without bound on every process event (wasm only).
#[derive(Default)]
pub struct MemoryBomb {
    hoard: Vec<Vec<u8>>,
}

impl MemoryBomb {
    /// How many chunks the rule holds.
    pub fn chunks(&self) -> usize {
        self.hoard.len()
    }
}

impl Rule for MemoryBomb {
    const META: RuleMeta = RuleMeta {
        id: "faulty-memory-bomb",
        name: "Faulty: allocates without bound",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, _out: &mut Detections) {
        #[cfg(target_arch = "wasm32")]
        if event.kind() == EventKind::ProcessStart {
            loop {
                let chunk = Vec::<u8>::with_capacity(core::hint::black_box(CHUNK));
                self.hoard.push(core::hint::black_box(chunk));
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = event;
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(MemoryBomb);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_harmless() {
        let mut rule = MemoryBomb::default();
        let ev = Event::new(EventData::ProcessStart(ProcessStart::default()));
        assert!(run_native(&mut rule, &ev).is_empty());
        assert_eq!(rule.chunks(), 0);
    }
}
