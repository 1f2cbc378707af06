//! Hand-written hostile modules, as WebAssembly text: a one-rule module (ABI 2, [`Rule`]) and a
//! rule pack (ABI 3, [`Pack`]) whose code is a test's own instructions, so that a test can make a
//! rule (or a pack's shared code) do exactly what an attacker would.

use rulebox_sdk::abi::{ABI_VERSION, PACK_ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{
    Detections, EventKind, EventKinds, LoadReply, PackMetadata, RuleMetadata, Severity,
};

/// Where the input buffer starts in every module built here (the host's batches and events land
/// there).
pub const INPUT: u32 = 65_536;

/// Where a module's fixed data (metadata, a load reply) starts.
const DATA: u32 = 1_024;

/// Where the canned result (one detection) of a module built here lies.
pub const RESULT_PTR: u32 = 32_768;

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

/// `bytes` as the contents of a WebAssembly text string.
pub fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

fn packed(ptr: u32, len: usize) -> i64 {
    pack(ptr, u32::try_from(len).unwrap()).cast_signed()
}

fn parse(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("test WAT does not parse: {e}\n{text}"))
}

/// The `rulebox_input` of the modules built here: always [`INPUT`].
pub const FIXED_INPUT: &str =
    r#"(func (export "rulebox_input") (param i32) (result i32) i32.const 65536)"#;

/// A one-rule module (ABI 2).
pub struct Rule {
    /// The rule id (version `"1"` unless `version` says otherwise).
    pub id: String,
    /// The rule version.
    pub version: String,
    /// Raw metadata bytes in place of the rule's (to break them).
    pub metadata: Option<Vec<u8>>,
    /// Imports, spliced in first.
    pub imports: String,
    /// Pages of linear memory.
    pub pages: u32,
    /// The body of `rulebox_on_event(len: i32) -> i64`: it returns what it leaves on the stack.
    /// The canned detection titled `"<id> fired"` is returned with `i64.const {fired}`
    /// ([`Rule::fired`]).
    pub body: String,
    /// `rulebox_input`, in full.
    pub input: String,
    /// More module fields.
    pub extra: String,
}

impl Rule {
    /// Rule `id` returning `body`'s value.
    pub fn new(id: &str, body: &str) -> Rule {
        Rule {
            id: id.to_owned(),
            version: "1".to_owned(),
            metadata: None,
            imports: String::new(),
            pages: 4,
            body: body.to_owned(),
            input: FIXED_INPUT.to_owned(),
            extra: String::new(),
        }
    }

    /// Rule `id` reporting its canned detection on every event.
    pub fn firing(id: &str) -> Rule {
        Rule::new(id, &format!("i64.const {}", Rule::fired(id)))
    }

    /// The packed `(ptr, len)` of the canned detection of rule `id`.
    pub fn fired(id: &str) -> i64 {
        packed(RESULT_PTR, result(&format!("{id} fired")).len())
    }

    /// The module.
    pub fn build(&self) -> Vec<u8> {
        let meta = self
            .metadata
            .clone()
            .unwrap_or_else(|| postcard::to_allocvec(&metadata(&self.id, &self.version)).unwrap());
        let fired = result(&format!("{} fired", self.id));
        parse(&format!(
            r#"(module
                {imports}
                (memory (export "memory") {pages})
                (data (i32.const {DATA}) "{meta_text}")
                (data (i32.const {RESULT_PTR}) "{fired}")
                (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
                (func (export "rulebox_metadata") (result i64) i64.const {meta_packed})
                {input}
                (func (export "rulebox_on_event") (param i32) (result i64) {body})
                {extra})"#,
            imports = self.imports,
            pages = self.pages,
            meta_text = escape(&meta),
            meta_packed = packed(DATA, meta.len()),
            fired = escape(&fired),
            input = self.input,
            body = self.body,
            extra = self.extra,
        ))
    }
}

/// A rule pack (ABI 3): its `rulebox_on_events` walks the batch, runs `shared` (the pack's own
/// code) on each event it begins, then begins each rule in order and runs its body when the host
/// says to.
pub struct Pack {
    /// The pack id (version `"1"` unless `version` says otherwise).
    pub id: String,
    /// The pack version.
    pub version: String,
    /// Each rule's id (version `"1"`, on process starts) and the stack-neutral instructions it runs.
    /// A rule hands over the pack's canned detection with `{hand_over}` ([`Pack::hand_over`]).
    pub rules: Vec<(String, String)>,
    /// Raw load-reply bytes in place of the pack's (to break them).
    pub reply: Option<Vec<u8>>,
    /// The pack's own code on every event it begins.
    pub shared: String,
    /// Imports, spliced in after the pack's three.
    pub imports: String,
    /// Pages of linear memory.
    pub pages: u32,
    /// `rulebox_input`, in full.
    pub input: String,
    /// More module fields.
    pub extra: String,
}

impl Pack {
    /// Pack `id` with `rules`.
    pub fn new(id: &str, rules: &[(&str, &str)]) -> Pack {
        Pack {
            id: id.to_owned(),
            version: "1".to_owned(),
            rules: rules
                .iter()
                .map(|(id, body)| ((*id).to_owned(), (*body).to_owned()))
                .collect(),
            reply: None,
            shared: String::new(),
            imports: String::new(),
            pages: 4,
            input: FIXED_INPUT.to_owned(),
            extra: String::new(),
        }
    }

    /// The instructions that hand the pack's canned detection over for the open rule.
    pub fn hand_over() -> String {
        let len = result("pack fired").len();
        format!("(call $rule_end (i32.const {RESULT_PTR}) (i32.const {len}))")
    }

    /// The `LoadReply` the pack gives.
    pub fn reply(&self) -> Vec<u8> {
        let meta = PackMetadata {
            schema_version: SCHEMA_VERSION,
            id: self.id.clone().into(),
            name: "hand-written pack".into(),
            version: self.version.clone().into(),
            rules: self.rules.iter().map(|(id, _)| metadata(id, "1")).collect(),
        };
        postcard::to_allocvec(&LoadReply::Loaded(meta)).unwrap()
    }

    /// The module.
    pub fn build(&self) -> Vec<u8> {
        let reply = self.reply.clone().unwrap_or_else(|| self.reply());
        let fired = result("pack fired");
        let calls: String = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, (_, body))| {
                format!("(if (call $rule_begin (i32.const {i})) (then {body}))\n")
            })
            .collect();
        parse(&format!(
            r#"(module
                (import "rulebox" "event_begin" (func $event_begin (param i32) (result i32)))
                (import "rulebox" "rule_begin" (func $rule_begin (param i32) (result i32)))
                (import "rulebox" "rule_end" (func $rule_end (param i32 i32)))
                {imports}
                (memory (export "memory") {pages})
                (data (i32.const {DATA}) "{reply_text}")
                (data (i32.const {RESULT_PTR}) "{fired}")
                (func (export "rulebox_abi_version") (result i32) i32.const {PACK_ABI_VERSION})
                {input}
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
            imports = self.imports,
            pages = self.pages,
            reply_text = escape(&reply),
            reply_packed = packed(DATA, reply.len()),
            fired = escape(&fired),
            input = self.input,
            shared = self.shared,
            extra = self.extra,
        ))
    }
}
