//! **Faulty content: a panic.**
//!
//! On every process event the rule panics with the message [`MESSAGE`]. In wasm the SDK's panic
//! handler records the message (exported through `rulebox_last_panic`) and traps, so the host can
//! quarantine the rule and put the message in the quarantine record.
//!
//! Natively the panic is an ordinary Rust panic: it unwinds, and a test can catch it
//! (`#[should_panic]`), so it is not gated.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// The panic message.
pub const MESSAGE: &str = "rule bug: unexpected field layout";

/// Panics on every process event.
#[derive(Default)]
pub struct Panics;

impl Rule for Panics {
    const META: RuleMeta = RuleMeta {
        id: "faulty-panics",
        name: "Faulty: panics",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, _out: &mut Detections) {
        if event.kind() == EventKind::ProcessStart {
            panic!("{MESSAGE}");
        }
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(Panics);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "rule bug: unexpected field layout")]
    fn panics_on_process_events() {
        let ev = Event::new(EventData::ProcessStart(ProcessStart::default()));
        run_native(&mut Panics, &ev);
    }

    #[test]
    fn other_events_are_fine() {
        let ev = Event::new(EventData::DnsQuery(DnsQuery::default()));
        assert!(run_native(&mut Panics, &ev).is_empty());
    }
}
