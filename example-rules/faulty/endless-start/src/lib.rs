//! **Faulty content: a start routine that never returns.**
//!
//! The module exports `_initialize`, the start routine the host calls once right after instantiation
//! (before metadata or any event), and that routine loops forever. The rule itself (exported with
//! `export_rule!`) is harmless and never reports anything; the module never gets that far. The host must
//! bound `_initialize` by the same deadline and fuel as any call and refuse or quarantine the rule
//! at load, not hang.
//!
//! The loop passes its counter through [`core::hint::black_box`] so the optimiser cannot remove it.
//! `_initialize` exists in the `wasm32` build only (`#[cfg(target_arch = "wasm32")]`); natively the
//! crate is just the harmless rule.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// Harmless; the module's `_initialize` never returns, so the host never gets to call it.
#[derive(Default)]
pub struct EndlessStart;

impl Rule for EndlessStart {
    const META: RuleMeta = RuleMeta {
        id: "faulty-endless-start",
        name: "Faulty: start routine never returns",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, _event: &EventView<'_>, _out: &mut Detections) {}
}

rulebox_sdk::export_rule!(EndlessStart);

/// The start routine: never returns.
#[cfg(target_arch = "wasm32")]
#[unsafe(export_name = "_initialize")]
extern "C" fn initialize() {
    let mut n: u64 = 0;
    loop {
        n = core::hint::black_box(n).wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_harmless() {
        let ev = Event::new(EventData::ProcessStart(ProcessStart::default()));
        assert!(run_native(&mut EndlessStart, &ev).is_empty());
    }
}
