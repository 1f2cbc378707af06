//! **Faulty content: an endless loop.**
//!
//! On every process event the rule spins forever. The loop body passes its counter through
//! [`core::hint::black_box`], so the optimiser can neither prove the loop side-effect free nor remove
//! it; the host must stop it with its fuel budget or its wall-clock deadline (epoch interruption).
//!
//! The loop is compiled for `wasm32` only (`#[cfg(target_arch = "wasm32")]`): natively it would hang
//! the test, so natively the rule does nothing.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// Spins forever on every process event (wasm only).
#[derive(Default)]
pub struct EndlessLoop;

impl Rule for EndlessLoop {
    const META: RuleMeta = RuleMeta {
        id: "faulty-endless-loop",
        name: "Faulty: loops forever",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, _out: &mut Detections) {
        #[cfg(target_arch = "wasm32")]
        if event.kind() == EventKind::ProcessStart {
            spin();
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = event;
    }
}

#[cfg(target_arch = "wasm32")]
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = core::hint::black_box(n).wrapping_add(1);
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(EndlessLoop);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_harmless() {
        let ev = Event::new(EventData::ProcessStart(ProcessStart::default()));
        assert!(run_native(&mut EndlessLoop, &ev).is_empty());
    }
}
