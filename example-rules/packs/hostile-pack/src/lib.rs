//! **Hostile content: a rule pack that breaks the ABI on command.**
//!
//! This module does not use the SDK's export macros: it writes ABI 3's exports by hand
//! (`rulebox_abi_version`, `rulebox_input`, `rulebox_load`, `rulebox_on_events`) and calls the
//! host's `event_begin`, `rule_begin` and `rule_end` itself, so that it can call them wrongly. Its
//! rule data (text) says how many rules it has and which misbehave:
//!
//! ```text
//! rules 1000        rules `good-0` … `good-999`: each fires on a process start whose command line
//!                   holds `#all#`
//! garbage 500       rule 500 (`garbage-result`) returns the faulty set's garbage (64 bytes of 0xFF)
//! bad-pointer 7     rule 7 (`bad-pointer`) returns a result pointer outside its memory
//! duplicate-ids     two rules share an id (the metadata is refused)
//! ```
//!
//! Besides, an event whose command line holds one of these words makes the pack break the calling
//! sequence on it (each is a protocol violation or a fault of the pack's own code, never of a rule):
//! `@event-twice@` (event_begin of the same event again), `@event-out-of-range@`,
//! `@rules-backwards@` (rule 1 begins, then rule 0), `@rule-out-of-range@`, `@end-without-begin@`,
//! `@end-twice@` (rule_end twice for one rule), `@bad-return@` (returns 7), `@trap-outside@` (traps
//! between rules), `@spin-outside@` (loops between rules).
//!
//! Natively the crate is just the parsing of its data and triggers, which its tests check.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::vec::Vec;

/// What the rule data asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// The number of good rules.
    pub rules: u32,
    /// Rule indices that return garbage (these rules are `garbage-result` rather than `good-i`).
    pub garbage: Vec<u32>,
    /// Rule indices that return a pointer outside memory.
    pub bad_pointer: Vec<u32>,
    /// Two rules share an id.
    pub duplicate_ids: bool,
}

impl Script {
    /// Reads the rule data; `None` if it is not the format above.
    pub fn parse(data: &[u8]) -> Option<Script> {
        let text = core::str::from_utf8(data).ok()?;
        let mut script = Script::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (
                words.next(),
                words.next().and_then(|w| w.parse::<u32>().ok()),
            ) {
                (None, _) => {}
                (Some("rules"), Some(n)) => script.rules = n,
                (Some("garbage"), Some(i)) => script.garbage.push(i),
                (Some("bad-pointer"), Some(i)) => script.bad_pointer.push(i),
                (Some("duplicate-ids"), None) => script.duplicate_ids = true,
                _ => return None,
            }
        }
        Some(script)
    }
}

/// The ways an event can make the pack break the calling sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `event_begin` of the same event again.
    EventTwice,
    /// `event_begin` past the batch.
    EventOutOfRange,
    /// Rule 1 begins, then rule 0.
    RulesBackwards,
    /// `rule_begin` past the pack's rules.
    RuleOutOfRange,
    /// `rule_end` with no rule open.
    EndWithoutBegin,
    /// `rule_end` twice for one rule.
    EndTwice,
    /// `rulebox_on_events` returns 7.
    BadReturn,
    /// A trap between rules.
    TrapOutside,
    /// An endless loop between rules.
    SpinOutside,
}

/// The triggers, with the words that set them off.
pub const TRIGGERS: [(&str, Trigger); 9] = [
    ("@event-twice@", Trigger::EventTwice),
    ("@event-out-of-range@", Trigger::EventOutOfRange),
    ("@rules-backwards@", Trigger::RulesBackwards),
    ("@rule-out-of-range@", Trigger::RuleOutOfRange),
    ("@end-without-begin@", Trigger::EndWithoutBegin),
    ("@end-twice@", Trigger::EndTwice),
    ("@bad-return@", Trigger::BadReturn),
    ("@trap-outside@", Trigger::TrapOutside),
    ("@spin-outside@", Trigger::SpinOutside),
];

/// The trigger `text` (a command line) holds, if any.
pub fn trigger(text: &str) -> Option<Trigger> {
    TRIGGERS
        .iter()
        .find(|(word, _)| text.contains(word))
        .map(|(_, t)| *t)
}

#[cfg(target_arch = "wasm32")]
#[allow(
    clippy::cast_possible_truncation,
    reason = "wasm32 pointers and lengths are 32 bits wide"
)]
mod guest {
    use alloc::borrow::Cow;
    use alloc::format;
    use alloc::vec::Vec;
    use core::cell::UnsafeCell;

    use rulebox_sdk::abi::{MAX_INPUT_LEN, PACK_ABI_VERSION, SCHEMA_VERSION, pack};
    use rulebox_sdk::batch::BatchView;
    use rulebox_sdk::{
        Detections, EventKind, EventKinds, EventView, LoadReply, PackMetadata, RuleMetadata,
        Severity,
    };

    use super::{Script, Trigger, trigger};

    #[link(wasm_import_module = "rulebox")]
    unsafe extern "C" {
        #[link_name = "event_begin"]
        fn host_event_begin(event: u32) -> u32;
        #[link_name = "rule_begin"]
        fn host_rule_begin(rule: u32) -> u32;
        #[link_name = "rule_end"]
        fn host_rule_end(ptr: u32, len: u32);
    }

    fn event_begin(event: u32) -> u32 {
        // SAFETY: a host function taking and returning integers.
        unsafe { host_event_begin(event) }
    }

    fn rule_begin(rule: u32) -> u32 {
        // SAFETY: a host function taking and returning integers.
        unsafe { host_rule_begin(rule) }
    }

    fn rule_end(ptr: u32, len: u32) {
        // SAFETY: the host reads (and checks) `len` bytes at `ptr` during the call only; a bad range
        // is refused, never followed.
        unsafe { host_rule_end(ptr, len) }
    }

    struct State {
        input: Vec<u8>,
        reply: Vec<u8>,
        script: Script,
        detections: Detections,
    }

    struct Cell(UnsafeCell<State>);

    // SAFETY: the module is built without threads; the host calls one export at a time and no export
    // calls another, so there is never more than one reference to the state.
    unsafe impl Sync for Cell {}

    static STATE: Cell = Cell(UnsafeCell::new(State {
        input: Vec::new(),
        reply: Vec::new(),
        script: Script {
            rules: 0,
            garbage: Vec::new(),
            bad_pointer: Vec::new(),
            duplicate_ids: false,
        },
        detections: Detections::new("", Severity::Low),
    }));

    fn state() -> &'static mut State {
        // SAFETY: see the `Sync` impl: one thread, one export at a time, and no caller keeps the
        // reference past its export.
        unsafe { &mut *STATE.0.get() }
    }

    fn packed(bytes: &[u8]) -> u64 {
        pack(bytes.as_ptr() as usize as u32, bytes.len() as u32)
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_abi_version() -> u32 {
        PACK_ABI_VERSION
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_input(len: u32) -> u32 {
        if len > MAX_INPUT_LEN {
            return 0;
        }
        let s = state();
        s.input.resize(len as usize, 0);
        s.input.as_ptr() as usize as u32
    }

    fn rule_id(script: &Script, i: u32) -> Cow<'static, str> {
        if script.garbage.contains(&i) {
            Cow::Borrowed("garbage-result")
        } else if script.bad_pointer.contains(&i) {
            Cow::Borrowed("bad-pointer")
        } else if script.duplicate_ids && i == 1 {
            Cow::Borrowed("good-0")
        } else {
            Cow::Owned(format!("good-{i}"))
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_load(len: u32) -> u64 {
        let s = state();
        let data = s.input.get(..len as usize).unwrap_or(&[]);
        let reply = match Script::parse(data) {
            Some(script) => {
                let rules = (0..script.rules)
                    .map(|i| RuleMetadata {
                        schema_version: SCHEMA_VERSION,
                        id: rule_id(&script, i),
                        name: Cow::Borrowed("hostile pack rule"),
                        version: Cow::Borrowed("1.0.0"),
                        severity: Severity::Low,
                        subscriptions: EventKinds::of(&[EventKind::ProcessStart]),
                    })
                    .collect();
                let meta = PackMetadata {
                    schema_version: SCHEMA_VERSION,
                    id: Cow::Borrowed("hostile-pack"),
                    name: Cow::Borrowed("Hostile pack"),
                    version: Cow::Borrowed("1.0.0"),
                    rules,
                };
                s.script = script;
                postcard::to_allocvec(&LoadReply::Loaded(meta))
            }
            None => postcard::to_allocvec(&LoadReply::Refused(Cow::Borrowed(
                "not a hostile-pack script",
            ))),
        };
        match reply {
            Ok(bytes) => {
                s.reply = bytes;
                packed(&s.reply)
            }
            Err(_) => 0,
        }
    }

    /// Runs rule `r` on `event` and ends it as the script says.
    fn run_rule(s: &mut State, r: u32, event: &[u8]) {
        if s.script.garbage.contains(&r) {
            let g = &faulty_garbage_result::GARBAGE;
            rule_end(g.as_ptr() as usize as u32, g.len() as u32);
            return;
        }
        if s.script.bad_pointer.contains(&r) {
            rule_end(0xFFFF_FFF0, 64);
            return;
        }
        s.detections.clear();
        if let Ok(view) = EventView::new(event)
            && let Some(p) = view.process_start()
            && p.command_line().contains("#all#")
        {
            s.detections.detect("seen by a good rule");
        }
        let result = s.detections.as_bytes();
        let (ptr, len) = if result.is_empty() {
            (0, 0)
        } else {
            (result.as_ptr() as usize as u32, result.len() as u32)
        };
        rule_end(ptr, len);
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_on_events(len: u32) -> u64 {
        let s = state();
        let input = core::mem::take(&mut s.input);
        let result = walk(s, &input, len);
        s.input = input;
        result
    }

    fn walk(s: &mut State, input: &[u8], len: u32) -> u64 {
        let Some(Ok(batch)) = input.get(..len as usize).map(BatchView::new) else {
            return u64::MAX;
        };
        let n = batch.len() as u32;
        for e in 0..n {
            let Ok(event) = batch.event(e as usize) else {
                return u64::MAX;
            };
            let line = EventView::new(event)
                .ok()
                .and_then(|v| v.process_start().map(|p| p.command_line()))
                .unwrap_or("");
            let t = trigger(line);
            if event_begin(e) == 0 {
                continue;
            }
            match t {
                Some(Trigger::EventTwice) => {
                    event_begin(e);
                }
                Some(Trigger::EventOutOfRange) => {
                    event_begin(n);
                }
                Some(Trigger::RulesBackwards) => {
                    if rule_begin(1) != 0 {
                        rule_end(0, 0);
                    }
                    rule_begin(0);
                }
                Some(Trigger::RuleOutOfRange) => {
                    rule_begin(s.script.rules);
                }
                Some(Trigger::EndWithoutBegin) => rule_end(0, 0),
                Some(Trigger::EndTwice) => {
                    rule_begin(0);
                    rule_end(0, 0);
                    rule_end(0, 0);
                }
                Some(Trigger::BadReturn) => return 7,
                Some(Trigger::TrapOutside) => core::arch::wasm32::unreachable(),
                Some(Trigger::SpinOutside) => {
                    let mut i: u64 = 0;
                    loop {
                        i = core::hint::black_box(i).wrapping_add(1);
                    }
                }
                None => {}
            }
            for r in 0..s.script.rules {
                if rule_begin(r) != 0 {
                    run_rule(s, r, event);
                }
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_triggers_parse() {
        let s = Script::parse(b"rules 10\ngarbage 3\nbad-pointer 4\n").unwrap();
        assert_eq!(
            (s.rules, &s.garbage[..], &s.bad_pointer[..]),
            (10, &[3][..], &[4][..])
        );
        assert!(Script::parse(b"duplicate-ids").unwrap().duplicate_ids);
        assert!(Script::parse(b"rules x").is_none());
        assert_eq!(trigger("a @end-twice@ b"), Some(Trigger::EndTwice));
        assert_eq!(trigger("#all#"), None);
        assert_eq!(TRIGGERS.len(), 9);
    }
}
