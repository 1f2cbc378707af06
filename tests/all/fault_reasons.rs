//! Every fault gets the reason that says what happened, with plain text: a bad input buffer is
//! `bad_input_buffer` (not a malformed result), a WASI `proc_exit` is `guest_exit` and a bad
//! pointer handed to WASI is `bad_pointer` (not `host_error`, and never Rust debug text), in a
//! one-rule module and in a rule of a pack; a metadata decode error names the field.

use rulebox_runtime::{Alert, BatchOutcome, LoadError, Reason, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{LoadReply, PackMetadata};

use crate::common::{process, runtime};
use crate::wat::{Pack, Rule, metadata};

const WASI: &str = r#"
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))"#;

/// Runs one event through `module` (beside a good rule) and returns the record of its quarantine.
fn quarantine_of(
    rt: &Runtime,
    thread: &SandboxThread,
    module: &[u8],
) -> std::sync::Arc<rulebox_runtime::QuarantineRecord> {
    let mut set = RuleSet::new(rt);
    set.load(thread, &Rule::firing("good").build(), "good.wat")
        .unwrap();
    set.load(thread, module, "hostile.wat")
        .unwrap_or_else(|r| panic!("{}", r.message));
    let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
    assert_eq!(outcome.detections.len(), 1, "the good rule still reported");
    assert!(set.is_active("good"));
    match &outcome.alerts[..] {
        [Alert::RuleQuarantined(record)] => record.clone(),
        other => panic!("{other:?}"),
    }
}

/// No Rust debug text (`Region {`, `I32Exit(`, `GuestError`) in a message.
fn assert_plain(message: &str) {
    for debug in ["Region", "I32Exit", "GuestError", "{ ", "PtrOutOfBounds"] {
        assert!(!message.contains(debug), "`{debug}` in: {message}");
    }
}

#[test]
fn a_bad_input_buffer_is_bad_input_buffer_not_a_malformed_result() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        for (input, needle) in [
            ("i32.const 0", "null buffer"),
            ("i32.const 0x7ffffff0", "outside the rule's"),
        ] {
            let mut rule = Rule::firing("bad-input");
            rule.input =
                format!(r#"(func (export "rulebox_input") (param i32) (result i32) {input})"#);
            let record = quarantine_of(&rt, thread, &rule.build());
            assert_eq!(record.reason, Reason::BadInputBuffer, "{}", record.message);
            assert!(record.message.contains(needle), "{}", record.message);
        }
        // A pack whose input buffer is outside its memory: the pack's own fault (no rule was open).
        let mut pack = Pack::new("bad-input-pack", &[("a", &Pack::hand_over())]);
        pack.input =
            r#"(func (export "rulebox_input") (param i32) (result i32) i32.const 0x7ffffff0)"#
                .to_owned();
        let compiled = rt.compile(&pack.build(), "bad-input-pack.wat").unwrap();
        let mut set = RuleSet::new(&rt);
        set.add_module(thread, &compiled, &[], None).unwrap();
        let mut out = BatchOutcome::default();
        set.process_batch(thread, &[process("a.exe", "", "")], &mut out);
        let alerts = &out.get(0).unwrap().unwrap().alerts;
        let [Alert::RuleQuarantined(record)] = &alerts[..] else {
            panic!("{alerts:?}");
        };
        assert_eq!(record.reason, Reason::BadInputBuffer, "{}", record.message);
        assert_eq!(set.quarantine_reason("a"), Some(Reason::BadInputBuffer));
    });
}

#[test]
fn a_wasi_proc_exit_is_guest_exit_in_plain_words() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        // 200 is outside WASI's exit statuses, which wasmtime-wasi reports as a bare host error.
        for code in [3, 200] {
            let mut rule = Rule::new(
                "exits",
                &format!("(call $exit (i32.const {code})) i64.const 0"),
            );
            rule.imports = WASI.to_owned();
            let record = quarantine_of(&rt, thread, &rule.build());
            assert_eq!(record.reason, Reason::GuestExit, "{}", record.message);
            assert!(
                record.message.contains(&format!("proc_exit({code})")),
                "{}",
                record.message
            );
            assert_plain(&record.message);
        }
        // In a pack: the open rule's fault alone.
        let mut pack = Pack::new(
            "exiting-pack",
            &[
                ("before", &Pack::hand_over()),
                ("exits", "(call $exit (i32.const 1))"),
                ("after", &Pack::hand_over()),
            ],
        );
        pack.imports = WASI.to_owned();
        let record = pack_rule_fault(&rt, thread, &pack, "exits");
        assert_eq!(record.reason, Reason::GuestExit, "{}", record.message);
        assert_plain(&record.message);
    });
}

/// Runs two events through `pack`; asserts that exactly rule `faulty` was quarantined on the
/// first and that `before` and `after` reported on both. Returns the record.
fn pack_rule_fault(
    rt: &Runtime,
    thread: &SandboxThread,
    pack: &Pack,
    faulty: &str,
) -> std::sync::Arc<rulebox_runtime::QuarantineRecord> {
    let compiled = rt.compile(&pack.build(), "pack.wat").unwrap();
    let mut set = RuleSet::new(rt);
    set.add_module(thread, &compiled, &[], None)
        .unwrap_or_else(|r| panic!("{}", r.message));
    let mut out = BatchOutcome::default();
    set.process_batch(
        thread,
        &[process("a.exe", "", ""), process("b.exe", "", "")],
        &mut out,
    );
    let mut record = None;
    for (i, outcome) in out.iter().enumerate() {
        let outcome = outcome.unwrap();
        let ids: Vec<&str> = outcome
            .detections
            .iter()
            .map(|d| d.rule.id.as_str())
            .collect();
        assert_eq!(ids, ["before", "after"], "event {i}");
        match (&outcome.alerts[..], i) {
            ([Alert::RuleQuarantined(r)], 0) => record = Some(r.clone()),
            ([], 1) => {}
            (other, _) => panic!("event {i}: {other:?}"),
        }
    }
    let record = record.unwrap();
    assert_eq!(record.rule_id, faulty);
    assert!(!set.is_active(faulty));
    record
}

#[test]
fn a_bad_pointer_passed_to_wasi_is_bad_pointer_in_plain_words() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let calls = [
            // The host's own fd_write: the I/O vectors outside memory.
            "(drop (call $fd_write (i32.const 1) (i32.const 0xfffffff0) (i32.const 1) (i32.const 0)))",
            // A buffer outside memory.
            "(i32.store (i32.const 0) (i32.const 0xffff0000)) (i32.store (i32.const 4) (i32.const 64))
             (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))",
            // wasmtime-wasi's clock_time_get, writing its result outside memory.
            "(drop (call $clock (i32.const 0) (i64.const 0) (i32.const 0xfffffff0)))",
        ];
        for call in calls {
            let mut rule = Rule::new("bad-pointer", &format!("{call} i64.const 0"));
            rule.imports = WASI.to_owned();
            let record = quarantine_of(&rt, thread, &rule.build());
            assert_eq!(record.reason, Reason::BadPointer, "{call}: {}", record.message);
            assert!(record.message.contains("outside its memory"), "{}", record.message);
            assert_plain(&record.message);
        }
        let mut pack = Pack::new(
            "pointing-pack",
            &[
                ("before", &Pack::hand_over()),
                ("bad-pointer", calls[2]),
                ("after", &Pack::hand_over()),
            ],
        );
        pack.imports = WASI.to_owned();
        let record = pack_rule_fault(&rt, thread, &pack, "bad-pointer");
        assert_eq!(record.reason, Reason::BadPointer, "{}", record.message);
        assert_plain(&record.message);
    });
}

#[test]
fn a_metadata_decode_error_names_the_field() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        // A rule's metadata cut inside its version.
        let meta = postcard::to_allocvec(&metadata("cut-short", "1.0.0")).unwrap();
        let mut rule = Rule::firing("cut-short");
        rule.metadata = Some(meta[..meta.len() - 4].to_vec());
        let compiled = rt.compile(&rule.build(), "cut-short.wat").unwrap();
        let err = rulebox_runtime::LoadedRule::load(&rt, thread, &compiled).unwrap_err();
        let LoadError::BadMetadata(message) = &err else {
            panic!("{err:?}");
        };
        assert!(
            message.contains("field `version` does not decode"),
            "{message}"
        );
        // A pack whose second rule's id is not UTF-8.
        let mut pack = Pack::new("p", &[("first", ""), ("second", "")]);
        let good = LoadReply::Loaded(PackMetadata {
            schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
            id: "p".into(),
            name: "hand-written pack".into(),
            version: "1".into(),
            rules: vec![metadata("first", "1"), metadata("second", "1")],
        });
        let mut reply = postcard::to_allocvec(&good).unwrap();
        let at = reply.windows(6).position(|w| w == b"second").unwrap();
        reply[at] = 0xff;
        pack.reply = Some(reply);
        let compiled = rt.compile(&pack.build(), "p.wat").unwrap();
        let err = rulebox_runtime::LoadedPack::load(&rt, thread, &compiled, &[], None).unwrap_err();
        assert!(
            err.to_string()
                .contains("rule 1: field `id` does not decode"),
            "{err}"
        );
    });
}
