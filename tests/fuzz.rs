//! Fuzz target bodies: every input the host parses, fed arbitrary bytes. Each function must return
//! normally for any input: a panic, an abort, a hang or unbounded memory growth is a finding.
//!
//! - [`load_module`]: arbitrary WebAssembly modules (wasm-smith, shaped by the input) with the
//!   rule ABI's exports and the `rulebox.log` and WASI imports available, compiled, loaded and run
//!   on an event; and a hand-shaped rule whose `rulebox_on_event` calls `rulebox.log` with
//!   arbitrary arguments and returns an arbitrary result.
//! - [`decode_event`]: postcard event decoding (what a guest sees), the JSON line parser and the
//!   streaming reader (rulebox JSON and evtx_dump JSON).
//! - [`parse_content`]: manifests, roots, runtime configurations, quarantine records, rule test
//!   files and bundle folders.
//! - [`decode_result`]: a rule's result bytes, decoded by the host exactly as after a real call.
//! - [`pack_calls`]: a rule pack calling the host's ABI 3 imports in an arbitrary order, with
//!   arbitrary arguments and an arbitrary return value.

use std::borrow::Cow;
use std::io::BufReader;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use rulebox_runtime::content::{BundleLimits, Manifest, Root, Signed};
use rulebox_runtime::events::{EventReader, parse_json_line};
use rulebox_runtime::{LoadedRule, QuarantineRecord, Runtime, RuntimeConfig};
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{
    Detection, Detections, Event, EventData, EventKind, EventKinds, EventView, RuleMetadata,
    Severity,
};

/// A runtime with small budgets, so that a generated endless loop ends quickly.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let mut config = RuntimeConfig::default();
        config.limits.fuel_per_event = 200_000;
        config.limits.fuel_at_load = 1_000_000;
        config.limits.deadline_ms = 200;
        config.limits.load_deadline_ms = 500;
        config.limits.memory_bytes = 4 << 20;
        Runtime::new(config).expect("fuzz runtime config is valid")
    })
}

/// Every event kind, empty, plus one with text, for running loaded modules.
fn events() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = EventKind::ALL
        .iter()
        .map(|k| {
            Event::new(EventData::empty(*k))
                .to_bytes()
                .expect("encodes")
        })
        .collect();
    let mut e = Event::new(EventData::empty(EventKind::ProcessStart));
    e.data
        .set_field("Image", Cow::Borrowed("C:\\Windows\\System32\\cmd.exe"));
    out.push(e.to_bytes().expect("encodes"));
    out
}

/// How far a generated module got (for the smoke run's coverage checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The input was too short to make a module.
    NoModule,
    /// Refused at compile time (invalid, forbidden import, missing export, ...).
    CompileRefused,
    /// Compiled but refused at load (trap in start, bad ABI version or metadata, ...).
    LoadRefused,
    /// Loaded and run on events (faults included).
    Ran,
}

/// Compiles, loads and runs `bytes` as a rule on a sandbox thread. Refusals and faults are
/// expected; only a panic (re-raised here) is a finding.
fn run_module(bytes: Vec<u8>) -> Stage {
    let rt = runtime().clone();
    runtime().run_sandboxed(move |thread| {
        let Ok(compiled) = rt.compile(&bytes, "fuzz") else {
            return Stage::CompileRefused;
        };
        let Ok(mut rule) = LoadedRule::load(&rt, thread, &compiled) else {
            return Stage::LoadRefused;
        };
        let mut out = Vec::new();
        for event in events() {
            if rule.evaluate(&event, &mut out).is_err() {
                break;
            }
        }
        let stats = rule.stats();
        assert!(
            stats.memory_high_water <= rule.limits().memory_bytes,
            "memory grew past the cap"
        );
        Stage::Ran
    })
}

/// The imports a generated module may use: the rulebox log import and a few WASI functions.
fn available_imports() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "rulebox" "log" (func (param i32 i32 i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
            (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#,
    )
    .expect("import list parses")
}

/// The exports every generated module has: the rule ABI.
fn required_exports() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "rulebox_abi_version") (result i32) unreachable)
            (func (export "rulebox_metadata") (result i64) unreachable)
            (func (export "rulebox_input") (param i32) (result i32) unreachable)
            (func (export "rulebox_on_event") (param i32) (result i64) unreachable))"#,
    )
    .expect("export list parses")
}

fn metadata_bytes() -> Vec<u8> {
    postcard::to_allocvec(&RuleMetadata {
        schema_version: SCHEMA_VERSION,
        id: "fuzz-rule".into(),
        name: "fuzz".into(),
        version: "1.0.0".into(),
        severity: Severity::Low,
        subscriptions: EventKinds::of(EventKind::ALL),
    })
    .expect("metadata encodes")
}

/// A rule that passes every load check and whose `rulebox_on_event` makes the given
/// `rulebox.log` calls, then returns `result`; `rulebox_input` returns `input`.
fn shaped_rule(pages: u32, input: i32, logs: &[(i32, i32, i32)], result: i64) -> Vec<u8> {
    let meta = metadata_bytes();
    let escaped: String = meta.iter().map(|b| format!("\\{b:02x}")).collect();
    let calls: String = logs
        .iter()
        .map(|(l, p, n)| format!("(call $log (i32.const {l}) (i32.const {p}) (i32.const {n}))"))
        .collect();
    let packed = pack(1024, u32::try_from(meta.len()).unwrap_or(0)).cast_signed();
    let text = format!(
        r#"(module
            (import "rulebox" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") {pages})
            (data (i32.const 1024) "{escaped}")
            (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
            (func (export "rulebox_metadata") (result i64) i64.const {packed})
            (func (export "rulebox_input") (param i32) (result i32) i32.const {input})
            (func (export "rulebox_on_event") (param i32) (result i64) {calls} i64.const {result}))"#
    );
    wat::parse_str(&text).expect("shaped rule parses")
}

/// Target: load and run an arbitrary module; returns how far it got.
pub fn load_module(data: &[u8]) -> Stage {
    let mut u = Unstructured::new(data);
    let Ok(shape) = u.arbitrary::<u8>() else {
        return Stage::NoModule;
    };
    if shape % 2 == 0 {
        // A rule that loads, then calls the log import with arbitrary arguments and returns an
        // arbitrary packed result.
        let (Ok(pages), Ok(input), Ok(logs), Ok(result)) = (
            u.int_in_range(1..=3u32),
            u.arbitrary::<i32>(),
            Vec::<(i32, i32, i32)>::arbitrary(&mut u),
            u.arbitrary::<i64>(),
        ) else {
            return Stage::NoModule;
        };
        let input = if input % 2 == 0 { 4096 } else { input };
        let logs: Vec<_> = logs.into_iter().take(8).collect();
        return run_module(shaped_rule(pages, input, &logs, result));
    }
    let Ok(mut config) = wasm_smith::Config::arbitrary(&mut u) else {
        return Stage::NoModule;
    };
    config.available_imports = Some(available_imports());
    config.exports = Some(required_exports());
    config.max_memories = 1;
    config.max_memory32_bytes = 8 << 20;
    config.memory64_enabled = false;
    config.threads_enabled = false;
    config.shared_everything_threads_enabled = false;
    config.gc_enabled = false;
    config.exceptions_enabled = false;
    config.custom_page_sizes_enabled = false;
    config.max_funcs = config.max_funcs.min(20);
    config.max_instructions = config.max_instructions.min(200);
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return Stage::NoModule;
    };
    run_module(module.to_bytes())
}

/// Target: decode events from arbitrary bytes, as a guest (postcard) and as the readers (JSON).
pub fn decode_event(data: &[u8]) {
    // The lazy reader a rule uses: every accessor on any bytes, without a panic. After `check`, it
    // reads exactly what the full decoder returns.
    if let Ok(view) = EventView::new(data) {
        let mut names = Vec::new();
        view.for_each_body_field(&mut |name, _| names.push(name));
        for name in names
            .iter()
            .copied()
            .chain(["Computer", "ProcessId", "Timestamp", "X"])
        {
            let _ = view.field(name);
        }
        let _ = (
            view.host(),
            view.pid(),
            view.timestamp(),
            view.extras().count(),
        );
        if let Some(p) = view.process_start() {
            let _ = (p.image(), p.command_line(), p.parent_pid());
        }
        if let Some(n) = view.network() {
            let _ = (n.destination_port(), n.initiated(), n.destination_ip());
        }
        match (view.check(), Event::from_bytes(data)) {
            (Ok(()), Ok(event)) => {
                for name in names
                    .iter()
                    .copied()
                    .chain(["Computer", "ProcessId", "Timestamp"])
                {
                    assert_eq!(view.field(name), event.field(name), "{name}");
                }
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("check {a:?} and full decode {:?} disagree", b.err()),
        }
    }
    if let Ok(event) = Event::from_bytes(data) {
        // What decodes must encode again, and decode to the same event.
        let again = event.to_bytes().expect("a decoded event encodes");
        assert_eq!(Event::from_bytes(&again).expect("re-decodes"), event);
    }
    let text = String::from_utf8_lossy(data);
    let _ = parse_json_line(&text);
    let mut records = 0usize;
    for result in EventReader::new(BufReader::new(data)) {
        records += 1;
        if let Ok(read) = result {
            // An event that was read is one the host can hand to rules.
            let _ = read.event.to_bytes().expect("a read event encodes");
        }
        assert!(records <= data.len() + 1, "more records than input bytes");
    }
}

/// Target: parse manifests, roots, configurations, quarantine records, test files and a bundle
/// folder holding the input as its manifest.
pub fn parse_content(data: &[u8]) {
    let _ = serde_json::from_slice::<Signed<Manifest>>(data);
    let _ = serde_json::from_slice::<Signed<Root>>(data);
    let _ = rulebox_runtime::content::parse_trusted_root(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RuntimeConfig::from_json(text);
    }
    let _ = serde_json::from_slice::<QuarantineRecord>(data);
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if std::fs::write(dir.path().join("manifest.json"), data).is_ok() {
        let _ = rulebox_validate::read_bundle(dir.path());
        let root = Root {
            version: 1,
            expires_unix: u64::MAX,
            keys: Default::default(),
            threshold: 1,
            release_counter: None,
            roles: Default::default(),
        };
        let _ = rulebox_runtime::content::verify_bundle(
            dir.path(),
            &root,
            None,
            0,
            &BundleLimits::default(),
        );
    }
    let case = dir.path().join("cases.json");
    if std::fs::write(&case, data).is_ok() {
        let _ = rulebox_validate::cases::read_case_file(&case);
    }
}

/// A rule whose `rulebox_on_event` returns its input buffer as the result: the host then decodes
/// whatever bytes it was given as a list of detections.
fn echo_rule() -> &'static rulebox_runtime::CompiledRule {
    static ECHO: OnceLock<rulebox_runtime::CompiledRule> = OnceLock::new();
    ECHO.get_or_init(|| {
        let meta = metadata_bytes();
        let escaped: String = meta.iter().map(|b| format!("\\{b:02x}")).collect();
        let packed = pack(1024, u32::try_from(meta.len()).unwrap_or(0)).cast_signed();
        let text = format!(
            r#"(module
                (memory (export "memory") 4)
                (data (i32.const 1024) "{escaped}")
                (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
                (func (export "rulebox_metadata") (result i64) i64.const {packed})
                (func (export "rulebox_input") (param i32) (result i32) i32.const 8192)
                (func (export "rulebox_on_event") (param $len i32) (result i64)
                    (i64.or (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32))
                            (i64.const 8192))))"#
        );
        let bytes = wat::parse_str(&text).expect("echo rule parses");
        runtime()
            .compile(&bytes, "echo")
            .expect("echo rule compiles")
    })
}

/// Target: decode a rule's result from arbitrary bytes, directly and through the host's checks
/// after a real call. Returns whether the direct decode accepted the bytes.
pub fn decode_result(data: &[u8]) -> bool {
    let decoded = rulebox_sdk::decode_result(data, "fuzz-rule", 64);
    let accepted = decoded.is_ok();
    let direct: Option<Vec<_>> = decoded
        .as_ref()
        .ok()
        .map(|list| list.iter().cloned().map(Detection::into_owned).collect());
    if let Ok(list) = decoded {
        // What decodes is within every cap, and writing it again gives the same bytes.
        let mut again = Detections::new("fuzz-rule", Severity::Low);
        for d in &list {
            assert!(d.title.len() <= rulebox_sdk::abi::MAX_TITLE_BYTES);
            assert!(d.fields.len() <= rulebox_sdk::abi::MAX_FIELDS);
            let b = again.detect(&d.title);
            b.severity(d.severity);
            for f in &d.fields {
                b.field(&f.name, &f.value);
            }
        }
        assert_eq!(
            again.as_bytes(),
            data,
            "decoded result re-encodes to other bytes"
        );
    }
    if data.len() > 128 << 10 {
        return accepted;
    }
    let bytes = data.to_vec();
    let rt = runtime().clone();
    runtime().run_sandboxed(move |thread| {
        let mut rule = LoadedRule::load(&rt, thread, echo_rule()).expect("echo rule loads");
        let mut out = Vec::new();
        let result = rule.evaluate(&bytes, &mut out);
        if result.is_ok() {
            let max = usize::try_from(rule.limits().max_detections).unwrap_or(usize::MAX);
            assert!(out.len() <= max, "more detections than the cap");
            assert!(out.iter().all(|d| d.rule_id == "fuzz-rule"));
        }
        // The host, after a real call, agrees with the direct decode (an empty result is "none").
        let max_result = usize::try_from(rule.limits().max_result_bytes).unwrap_or(usize::MAX);
        if !bytes.is_empty() && bytes.len() <= max_result && rule.limits().max_detections == 64 {
            assert_eq!(
                result.is_ok(),
                direct.is_some(),
                "host and decoder disagree"
            );
            if let Some(list) = direct {
                assert_eq!(out, list, "host decoded other detections");
            }
        }
    });
    accepted
}

/// A rule pack whose `rulebox_on_events` plays its rule data as a script of host calls, 9 bytes a
/// step: an op byte (low two bits: 0 `event_begin(a)`, 1 `rule_begin(a)`, 2 `rule_end(a, b)`, 3
/// return `b`) and two little-endian `u32`s `a` and `b`. It declares four rules, on every kind.
fn script_pack() -> &'static rulebox_runtime::CompiledRule {
    static PACK: OnceLock<rulebox_runtime::CompiledRule> = OnceLock::new();
    PACK.get_or_init(|| {
        let rules = (0..4)
            .map(|i| RuleMetadata {
                schema_version: SCHEMA_VERSION,
                id: format!("script-{i}").into(),
                name: "fuzz".into(),
                version: "1".into(),
                severity: Severity::Low,
                subscriptions: EventKinds::all(),
            })
            .collect();
        let reply = rulebox_sdk::LoadReply::Loaded(rulebox_sdk::PackMetadata {
            schema_version: SCHEMA_VERSION,
            id: "script-pack".into(),
            name: "fuzz".into(),
            version: "1".into(),
            rules,
        });
        let reply = postcard::to_allocvec(&reply).expect("encodes");
        let escaped: String = reply.iter().map(|b| format!("\\{b:02x}")).collect();
        let packed = pack(1024, u32::try_from(reply.len()).unwrap_or(0)).cast_signed();
        let abi = rulebox_sdk::abi::PACK_ABI_VERSION;
        let text = format!(
            r#"(module
                (import "rulebox" "event_begin" (func $eb (param i32) (result i32)))
                (import "rulebox" "rule_begin" (func $rb (param i32) (result i32)))
                (import "rulebox" "rule_end" (func $re (param i32 i32)))
                (memory (export "memory") 4)
                (global $n (mut i32) (i32.const 0))
                (data (i32.const 1024) "{escaped}")
                (func (export "rulebox_abi_version") (result i32) i32.const {abi})
                (func (export "rulebox_input") (param i32) (result i32)
                    (if (result i32) (i32.gt_u (local.get 0) (i32.const 65536))
                        (then (i32.const 0)) (else (i32.const 65536))))
                (func (export "rulebox_load") (param $len i32) (result i64)
                    (memory.copy (i32.const 131072) (i32.const 65536) (local.get $len))
                    (global.set $n (local.get $len))
                    (i64.const {packed}))
                (func (export "rulebox_on_events") (param $len i32) (result i64)
                    (local $i i32) (local $op i32) (local $a i32) (local $b i32)
                    (block $done (loop $next
                        (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 9)) (global.get $n)))
                        (local.set $op (i32.and (i32.load8_u offset=131072 (local.get $i)) (i32.const 3)))
                        (local.set $a (i32.load offset=131073 (local.get $i)))
                        (local.set $b (i32.load offset=131077 (local.get $i)))
                        (if (i32.eq (local.get $op) (i32.const 0)) (then (drop (call $eb (local.get $a)))))
                        (if (i32.eq (local.get $op) (i32.const 1)) (then (drop (call $rb (local.get $a)))))
                        (if (i32.eq (local.get $op) (i32.const 2)) (then (call $re (local.get $a) (local.get $b))))
                        (if (i32.eq (local.get $op) (i32.const 3)) (then (return (i64.extend_i32_u (local.get $b)))))
                        (local.set $i (i32.add (local.get $i) (i32.const 9)))
                        (br $next)))
                    (i64.const 0)))"#
        );
        let bytes = wat::parse_str(&text).expect("script pack parses");
        runtime()
            .compile(&bytes, "script-pack")
            .expect("script pack compiles")
    })
}

/// Target: a rule pack driving the host's side of ABI 3 with an arbitrary sequence of
/// `event_begin`, `rule_begin` and `rule_end` calls (arbitrary indices, arbitrary result pointers
/// and lengths) and an arbitrary return value, over a batch of every kind of event, next to a
/// one-rule module. Whatever it does: no panic; no rule of it runs twice on one event; a fault is
/// typed, and a stopped pack quarantines its rules; the other module sees every event. Returns
/// whether the pack was still running afterwards.
pub fn pack_calls(script: &[u8]) -> bool {
    if script.len() > 60 << 10 {
        return true;
    }
    let script = script.to_vec();
    let rt = runtime().clone();
    runtime().run_sandboxed(move |thread| {
        let mut set = rulebox_runtime::RuleSet::new(&rt);
        set.add(thread, echo_rule()).expect("echo rule loads");
        set.add_module(thread, script_pack(), &script, None)
            .expect("the script pack loads");
        let events = events();
        let batch: Vec<(EventKind, &[u8])> = events
            .iter()
            .map(|b| (EventView::kind_of(b).expect("an event"), b.as_slice()))
            .collect();
        let mut out = rulebox_runtime::BatchOutcome::default();
        set.process_encoded_batch(thread, &batch, &mut out);
        assert_eq!(out.len(), events.len());
        let n = u64::try_from(events.len()).unwrap_or(u64::MAX);
        let mut running = true;
        for (info, state, stats) in set.rules() {
            if info.pack.is_some() {
                assert!(
                    stats.events <= n,
                    "{} ran {} times on {n} events",
                    info.id,
                    stats.events
                );
                running &= matches!(state, rulebox_runtime::RuleState::Active);
            } else {
                assert!(
                    stats.events == n || !matches!(state, rulebox_runtime::RuleState::Active),
                    "the one-rule module saw every event"
                );
            }
        }
        for record in set.records() {
            assert!(!record.reason.is_load_time(), "{record:?}");
            if record.rule_id.is_empty() {
                let pack = record
                    .pack
                    .as_ref()
                    .expect("a record about the pack names it");
                assert_eq!(pack.rule_index, None);
            }
        }
        running
    })
}
