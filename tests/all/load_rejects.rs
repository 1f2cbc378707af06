//! Every load-time reject: the module is refused with the right reason, and nothing else changes.

use rulebox_runtime::{Reason, RuleSet};
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{EventKind, EventKinds, RuleMetadata, Severity};

use crate::common::{process, runtime, runtime_with};

fn metadata(id: &str, schema: u32, kinds: EventKinds) -> Vec<u8> {
    let meta = RuleMetadata {
        schema_version: schema,
        id: id.into(),
        name: "hand-written".into(),
        version: "1.0.0".into(),
        severity: Severity::Low,
        subscriptions: kinds,
    };
    postcard::to_allocvec(&meta).unwrap()
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// Parts of a hand-written rule module, each replaceable by a test.
struct Wat {
    memory: String,
    abi: String,
    meta: Vec<u8>,
    on_event: String,
    extra: String,
    imports: String,
    input: String,
}

impl Default for Wat {
    fn default() -> Self {
        Wat {
            memory: r#"(memory (export "memory") 1)"#.into(),
            abi: format!(
                r#"(func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})"#
            ),
            meta: metadata(
                "wat-rule",
                SCHEMA_VERSION,
                EventKinds::of(&[EventKind::ProcessStart]),
            ),
            on_event: r#"(func (export "rulebox_on_event") (param i32) (result i64) i64.const 0)"#
                .into(),
            extra: String::new(),
            imports: String::new(),
            input: r#"(func (export "rulebox_input") (param i32) (result i32) i32.const 4096)"#
                .into(),
        }
    }
}

impl Wat {
    fn build(&self) -> Vec<u8> {
        let text = format!(
            r#"(module
                {imports}
                {memory}
                (data (i32.const 1024) "{meta}")
                {abi}
                (func (export "rulebox_metadata") (result i64) i64.const {packed})
                {input}
                {on_event}
                {extra})"#,
            imports = self.imports,
            memory = self.memory,
            meta = escape(&self.meta),
            abi = self.abi,
            packed = pack(1024, u32::try_from(self.meta.len()).unwrap()).cast_signed(),
            on_event = self.on_event,
            extra = self.extra,
            input = self.input,
        );
        wat::parse_str(&text).unwrap_or_else(|e| panic!("test WAT does not parse: {e}\n{text}"))
    }
}

/// Loads `bytes` into a set that already holds a good hand-written rule; asserts the reject reason,
/// that the message mentions `needle`, and that the good rule still runs.
fn assert_rejected(bytes: Vec<u8>, reason: Reason, needle: &str) {
    let rt = runtime();
    let needle = needle.to_owned();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let good = Wat {
            meta: metadata(
                "good",
                SCHEMA_VERSION,
                EventKinds::of(&[EventKind::ProcessStart]),
            ),
            ..Wat::default()
        };
        set.load(thread, &good.build(), "good.wat")
            .expect("the good rule loads");
        let record = set
            .load(thread, &bytes, "bad.wasm")
            .expect_err("the bad module must be refused");
        assert_eq!(record.reason, reason, "message: {}", record.message);
        assert!(
            record.message.contains(&needle),
            "message `{}` should mention `{needle}`",
            record.message
        );
        assert!(record.event.is_none());
        assert_eq!(record.source, "bad.wasm");
        assert_eq!(record.content_hash, rulebox_runtime::content_hash(&bytes));
        assert_eq!(set.active_count(), 1);
        assert_eq!(set.records().len(), 1);
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert_eq!(outcome.rules_run, 1, "the good rule still runs");
    });
}

#[test]
fn a_hand_written_rule_loads() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let info = set.load(thread, &Wat::default().build(), "ok.wat").unwrap();
        assert_eq!(info.id, "wat-rule");
        assert!(info.subscriptions.contains(EventKind::ProcessStart));
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert_eq!((outcome.rules_run, outcome.detections.len()), (1, 0));
        // Not subscribed: not called.
        let outcome = set
            .process(thread, &crate::common::empty(EventKind::DnsQuery))
            .unwrap();
        assert_eq!(outcome.rules_run, 0);
    });
}

#[test]
fn not_wasm() {
    assert_rejected(
        b"#!/bin/sh\necho hello\n".to_vec(),
        Reason::NotWasm,
        "not a WebAssembly module",
    );
    assert_rejected(Vec::new(), Reason::NotWasm, "not a WebAssembly module");
}

#[test]
fn truncated_module() {
    let mut bytes = Wat::default().build();
    bytes.truncate(bytes.len() / 2);
    assert_rejected(bytes, Reason::InvalidModule, "invalid module");
}

#[test]
fn corrupt_module() {
    let mut bytes = Wat::default().build();
    let n = bytes.len();
    for b in &mut bytes[8..n / 2] {
        *b = 0xff;
    }
    assert_rejected(bytes, Reason::InvalidModule, "invalid module");
}

#[test]
fn missing_exports() {
    let wat = Wat {
        on_event: String::new(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::MissingExport, "rulebox_on_event");
    let wat = Wat {
        memory: "(memory 1)".into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::MissingExport, "memory");
    let wat = Wat {
        abi: String::new(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::MissingExport, "rulebox_abi_version");
}

#[test]
fn wrong_export_type() {
    let wat = Wat {
        on_event: r#"(func (export "rulebox_on_event") (param i32) (result i32) i32.const 0)"#
            .into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::WrongExportType, "rulebox_on_event");
}

#[test]
fn wrong_abi_version() {
    let wat = Wat {
        abi: r#"(func (export "rulebox_abi_version") (result i32) i32.const 99)"#.into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::AbiVersion, "ABI version 99");
}

#[test]
fn wrong_schema_version() {
    let wat = Wat {
        meta: metadata(
            "old",
            SCHEMA_VERSION + 1,
            EventKinds::of(&[EventKind::ProcessStart]),
        ),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::SchemaVersion, "event-schema version");
}

#[test]
fn bad_metadata() {
    let wat = Wat {
        meta: vec![0xff; 40],
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::BadMetadata, "does not decode");
    let wat = Wat {
        meta: metadata("nothing", SCHEMA_VERSION, EventKinds::NONE),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::BadMetadata, "no event kind");
    let wat = Wat {
        meta: metadata("bad id with spaces", SCHEMA_VERSION, EventKinds::all()),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::BadMetadata, "id");
    let wat = Wat {
        meta: metadata("future", SCHEMA_VERSION, EventKinds(1 << 30)),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::BadMetadata, "unknown event kinds");
}

#[test]
fn forbidden_imports() {
    let wat = Wat {
        imports: r#"(import "env" "system" (func (param i32)))"#.into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::ForbiddenImport, "env.system");
    let wat = Wat {
        imports: r#"(import "rulebox" "log" (func (param i64)))"#.into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::ForbiddenImport, "rulebox.log");
    let wat = Wat {
        imports: r#"(import "rulebox" "spawn" (func))"#.into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::ForbiddenImport, "rulebox.spawn");
}

#[test]
fn memory_declared_over_cap() {
    // 16 MiB is the default cap; declare 32 MiB (512 pages).
    let wat = Wat {
        memory: r#"(memory (export "memory") 512)"#.into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::MemoryOverCap, "over the rule's cap");
}

#[test]
fn per_rule_memory_cap_applies_once_the_id_is_known() {
    let rt = runtime_with(|c| {
        c.rules.insert(
            "tight".into(),
            rulebox_runtime::Limits {
                memory_bytes: 64 << 10,
                ..Default::default()
            },
        );
    });
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        // Two pages (128 KiB) are fine by default but over the 64 KiB cap for `tight`.
        let wat = Wat {
            memory: r#"(memory (export "memory") 2)"#.into(),
            meta: metadata("tight", SCHEMA_VERSION, EventKinds::all()),
            ..Wat::default()
        };
        let record = set.load(thread, &wat.build(), "tight.wasm").unwrap_err();
        assert_eq!(record.reason, Reason::MemoryOverCap);
    });
}

#[test]
fn a_refusal_under_a_rules_own_limits_is_recorded_with_them_and_replays() {
    let tight = rulebox_runtime::Limits {
        memory_bytes: 64 << 10,
        ..Default::default()
    };
    let config_tight = tight.clone();
    let rt = runtime_with(move |c| {
        c.rules.insert("tight".into(), config_tight.clone());
        c.rules.insert("tight-pack".into(), config_tight);
    });
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let wat = Wat {
            memory: r#"(memory (export "memory") 2)"#.into(),
            meta: metadata("tight", SCHEMA_VERSION, EventKinds::all()),
            ..Wat::default()
        };
        let module = wat.build();
        let record = set.load(thread, &module, "tight.wasm").unwrap_err();
        assert_eq!(record.reason, Reason::MemoryOverCap);
        assert_eq!(record.rule_id, "tight");
        assert_eq!(record.rule_version, "1.0.0");
        assert_eq!(record.limits, tight, "the rule's own limits, not the defaults");
        // The record alone reproduces the refusal: replay runs under the recorded limits.
        let outcome = rulebox_runtime::replay(&crate::common::runtime(), thread, &record, &module)
            .unwrap();
        assert!(
            matches!(outcome, rulebox_runtime::ReplayOutcome::Reproduced(ref f) if f.reason == Reason::MemoryOverCap),
            "{outcome:?}"
        );

        // The same for a pack under its own limits.
        let mut pack = crate::wat::Pack::new("tight-pack", &[("in-tight-pack", "")]);
        pack.pages = 2;
        let module = pack.build();
        let record = set.load(thread, &module, "tight-pack.wasm").unwrap_err();
        assert_eq!(record.reason, Reason::MemoryOverCap);
        let side = record.pack.as_ref().expect("a pack's record");
        assert_eq!(side.id, "tight-pack");
        assert_eq!(side.limits, tight, "the pack's own limits, not the defaults");
        let outcome = rulebox_runtime::replay(&crate::common::runtime(), thread, &record, &module)
            .unwrap();
        assert!(
            matches!(outcome, rulebox_runtime::ReplayOutcome::Reproduced(ref f) if f.reason == Reason::MemoryOverCap),
            "{outcome:?}"
        );
    });
}

#[test]
fn start_function_that_never_ends() {
    let wat = Wat {
        extra: "(func $spin (loop $l (br $l))) (start $spin)".into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::StartTooLong, "start routine");
}

#[test]
fn start_function_that_traps() {
    let wat = Wat {
        extra: "(func $boom unreachable) (start $boom)".into(),
        ..Wat::default()
    };
    assert_rejected(wat.build(), Reason::StartFailed, "unreachable");
}

#[test]
fn start_function_deadline_without_fuel_exhaustion() {
    // With a huge load fuel budget, the wall-clock deadline is what stops the start routine.
    let rt = runtime_with(|c| {
        c.limits.fuel_at_load = 1_000_000_000_000;
        c.limits.load_deadline_ms = 50;
    });
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let wat = Wat {
            extra: "(func $spin (loop $l (br $l))) (start $spin)".into(),
            ..Wat::default()
        };
        let record = set.load(thread, &wat.build(), "spin.wasm").unwrap_err();
        assert_eq!(record.reason, Reason::StartTooLong);
        assert!(record.message.contains("interrupt"), "{}", record.message);
    });
}

#[test]
fn duplicate_id() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.load(thread, &Wat::default().build(), "first.wasm")
            .unwrap();
        let record = set
            .load(thread, &Wat::default().build(), "second.wasm")
            .unwrap_err();
        assert_eq!(record.reason, Reason::DuplicateId);
        assert_eq!(set.active_count(), 1);
    });
}

#[test]
fn module_too_large() {
    let rt = runtime_with(|c| c.max_module_bytes = 100);
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let record = set
            .load(thread, &Wat::default().build(), "big.wasm")
            .unwrap_err();
        assert_eq!(record.reason, Reason::ModuleTooLarge);
    });
}

#[test]
fn garbage_pointers_from_a_hand_written_rule_quarantine_it() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        // Result pointer far outside memory.
        let bad_result = Wat {
            meta: metadata("bad-result", SCHEMA_VERSION, EventKinds::all()),
            on_event: format!(
                r#"(func (export "rulebox_on_event") (param i32) (result i64) i64.const {})"#,
                pack(0xFFFF_0000, 16).cast_signed()
            ),
            ..Wat::default()
        };
        // Input buffer outside memory.
        let bad_input = Wat {
            meta: metadata("bad-input", SCHEMA_VERSION, EventKinds::all()),
            input:
                r#"(func (export "rulebox_input") (param i32) (result i32) i32.const 0x7ffffff0)"#
                    .into(),
            ..Wat::default()
        };
        set.load(thread, &bad_result.build(), "bad-result.wasm")
            .unwrap();
        set.load(thread, &bad_input.build(), "bad-input.wasm")
            .unwrap();
        set.load(thread, &Wat::default().build(), "good.wasm")
            .unwrap();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert_eq!(outcome.alerts.len(), 2);
        assert_eq!(outcome.rules_run, 3);
        assert_eq!(
            set.quarantine_reason("bad-result"),
            Some(Reason::MalformedResult)
        );
        assert_eq!(
            set.quarantine_reason("bad-input"),
            Some(Reason::BadInputBuffer)
        );
        assert!(set.is_active("wat-rule"));
        for record in set.records() {
            assert!(
                record.message.contains("outside the rule's"),
                "{}",
                record.message
            );
            assert!(record.event.is_some(), "the triggering event is kept");
        }
        // Quarantined rules are never called again.
        let outcome = set.process(thread, &process("b.exe", "", "")).unwrap();
        assert_eq!((outcome.rules_run, outcome.alerts.len()), (1, 0));
    });
}
