//! Hand-written hostile modules, as WebAssembly text: a one-rule module (ABI 2) and a rule pack
//! (ABI 3) whose rules' bodies are a test's own instructions, so that a test can make a rule (or a
//! pack's shared code) do exactly what an attacker would.

use rulebox_sdk::abi::{ABI_VERSION, PACK_ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{
    Detections, EventKind, EventKinds, LoadReply, PackMetadata, RuleMetadata, Severity,
};

/// Where the input buffer starts in every module built here (the host's batches and events land
/// there); the memory is large enough for the test batches.
pub const INPUT: u32 = 65_536;

/// Where a module's fixed data (metadata, a canned result) starts.
const DATA: u32 = 1_024;

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

fn packed(ptr: u32, len: usize) -> i64 {
    pack(ptr, u32::try_from(len).unwrap()).cast_signed()
}

/// The metadata of rule `id` at `version`, on process starts.
pub fn metadata(id: &str, version: &str) -> RuleMetadata<'static> {
    RuleMetadata {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned().into(),
        name: "hand-written".into(),
        version: version.to_owned().into(),
        severity: Severity::Medium,
        subscriptions: EventKinds::of(&[EventKind::ProcessStart]),
    }
}

/// A result (the ABI's result format) with one detection titled `title`.
pub fn result(title: &str) -> Vec<u8> {
    let mut list = Detections::new("unused", Severity::Medium);
    list.detect(title);
    list.as_bytes().to_vec()
}

fn parse(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("test WAT does not parse: {e}\n{text}"))
}

/// Where [`rule`] and [`pack_of`] put a rule's canned result (one detection titled
/// `"<id> fired"`); `(RESULT_PTR, result_len)` points at it.
pub const RESULT_PTR: u32 = 32_768;

/// A one-rule module (ABI 2), rule `id` at `version`, whose `rulebox_on_event(len)` runs `body`
/// (the event's length in local 0) and returns what `body` leaves on the stack (an `i64`).
/// `imports` and `extra` are spliced in at module level (imports first). The module also holds
/// one detection titled `"<id> fired"` at [`RESULT_PTR`]: `body` can return it with
/// `i64.const {fired}` ([`fired`]).
pub fn rule(id: &str, version: &str, imports: &str, body: &str, extra: &str) -> Vec<u8> {
    let meta = postcard::to_allocvec(&metadata(id, version)).unwrap();
    let fired = result(&format!("{id} fired"));
    parse(&format!(
        r#"(module
            {imports}
            (memory (export "memory") 4)
            (data (i32.const {DATA}) "{meta}")
            (data (i32.const {RESULT_PTR}) "{fired}")
            (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
            (func (export "rulebox_metadata") (result i64) i64.const {meta_packed})
            (func (export "rulebox_input") (param i32) (result i32) i32.const {INPUT})
            (func (export "rulebox_on_event") (param i32) (result i64) {body})
            {extra})"#,
        meta = escape(&meta),
        meta_packed = packed(DATA, meta.len()),
        fired = escape(&fired),
    ))
}

/// The packed `(ptr, len)` of the canned detection of rule `id` ([`RESULT_PTR`]).
pub fn fired(id: &str) -> i64 {
    packed(RESULT_PTR, result(&format!("{id} fired")).len())
}

/// A rule pack (ABI 3) `pack_id` at `version` whose rule `i` is `rules[i].0` (at version `"1"`,
/// on process starts) and runs `rules[i].1` (stack-neutral instructions) when it is begun. Every
/// rule's detection (title `"<pack_id> fired"`) can be handed over with
/// `(call $rule_end (i32.const {RESULT_PTR}) (i32.const {len}))`: [`pack_fired_len`] is `len`.
/// `shared` runs in the pack's own code at every event, before its rules. `imports` and `extra`
/// are spliced in at module level.
pub fn pack_of(
    pack_id: &str,
    version: &str,
    rules: &[(&str, &str)],
    shared: &str,
    imports: &str,
    extra: &str,
) -> Vec<u8> {
    let meta = PackMetadata {
        schema_version: SCHEMA_VERSION,
        id: pack_id.to_owned().into(),
        name: "hand-written pack".into(),
        version: version.to_owned().into(),
        rules: rules.iter().map(|(id, _)| metadata(id, "1")).collect(),
    };
    let reply = postcard::to_allocvec(&LoadReply::Loaded(meta)).unwrap();
    let fired = result(&format!("{pack_id} fired"));
    let calls: String = rules
        .iter()
        .enumerate()
        .map(|(i, (_, body))| format!("(if (call $rule_begin (i32.const {i})) (then {body}))\n"))
        .collect();
    parse(&format!(
        r#"(module
            (import "rulebox" "event_begin" (func $event_begin (param i32) (result i32)))
            (import "rulebox" "rule_begin" (func $rule_begin (param i32) (result i32)))
            (import "rulebox" "rule_end" (func $rule_end (param i32 i32)))
            {imports}
            (memory (export "memory") 4)
            (data (i32.const {DATA}) "{reply}")
            (data (i32.const {RESULT_PTR}) "{fired}")
            (func (export "rulebox_abi_version") (result i32) i32.const {PACK_ABI_VERSION})
            (func (export "rulebox_input") (param i32) (result i32) i32.const {INPUT})
            (func (export "rulebox_load") (param i32) (result i64) i64.const {reply_packed})
            (func (export "rulebox_on_events") (param $len i32) (result i64)
                (local $n i32) (local $e i32)
                (local.set $n (i32.load (i32.const {INPUT})))
                (block $done
                    (loop $next
                        (br_if $done (i32.ge_u (local.get $e) (local.get $n)))
                        (if (call $event_begin (local.get $e))
                            (then
                                {shared}
                                {calls}))
                        (local.set $e (i32.add (local.get $e) (i32.const 1)))
                        (br $next)))
                i64.const 0)
            {extra})"#,
        reply = escape(&reply),
        reply_packed = packed(DATA, reply.len()),
        fired = escape(&fired),
    ))
}

/// The length of a pack's canned detection ([`pack_of`]).
pub fn pack_fired_len(pack_id: &str) -> usize {
    result(&format!("{pack_id} fired")).len()
}
