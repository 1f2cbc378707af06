//! # rulebox-sdk: write detection rules that run in rulebox's sandbox
//!
//! A rule is an ordinary Rust type implementing [`Rule`]: metadata (id, name, version, severity, the
//! event kinds it wants) and a function from one event to zero or more [`Detection`]s. The rule reads
//! the event through an [`EventView`]: in place, in the bytes the host wrote, each field decoded only
//! when the rule asks for it.
//! [`export_rule!`] turns it into a WebAssembly rule module ([`export_rules!`] puts several in one
//! module, a *rule pack*; [`export_pack!`] exports an engine whose rules are data); the same source
//! builds natively, so the rule's logic is unit-tested with `cargo test` and benchmarked natively.
//!
//! ## A complete rule
//!
//! `rulebox new my-rule` writes such a crate (the rule, native tests, `tests/cases.json` and a
//! README with the build, test, validate, run and bench commands). By hand, `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "my-rule"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib: the .wasm module; rlib: native tests
//!
//! [dependencies]
//! rulebox-sdk = { path = "../rulebox/rules-sdk" }
//!
//! [dev-dependencies]
//! rulebox-cases = { path = "../rulebox/cases" }   # tests/*.json, run natively by `cargo test`
//!
//! [workspace]                # its own, even inside another one
//!
//! [profile.release]
//! opt-level = 3              # smaller *and* faster modules than "s" for rules
//! lto = true
//! codegen-units = 1
//! panic = "abort"
//! strip = "debuginfo"        # keeps function names, for quarantine backtraces
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! #![cfg_attr(target_arch = "wasm32", no_std)]
//! use rulebox_sdk::prelude::*;
//!
//! /// Fires when `whoami.exe` runs with a command line asking for all groups.
//! #[derive(Default)]
//! pub struct WhoamiAll;
//!
//! impl Rule for WhoamiAll {
//!     const META: RuleMeta = RuleMeta {
//!         id: "whoami-all",
//!         name: "whoami /all reconnaissance",
//!         version: "1.0.0",
//!         severity: Severity::Low,
//!         events: &[EventKind::ProcessStart],
//!     };
//!
//!     fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
//!         let Some(p) = event.process_start() else { return };
//!         if ends_with_ignore_case(p.image(), "\\whoami.exe")
//!             && contains_ignore_case(p.command_line(), "/all")
//!         {
//!             out.detect("whoami /all").field("CommandLine", p.command_line());
//!         }
//!     }
//! }
//!
//! rulebox_sdk::export_rule!(WhoamiAll);
//!
//! // A native unit test of the same logic (`run_native` encodes the event as the host does):
//! let mut body = ProcessStart::default();
//! body.image = "C:\\Windows\\System32\\whoami.exe".into();
//! body.command_line = "whoami /ALL".into();
//! let event = Event::new(EventData::ProcessStart(body));
//! let found = run_native(&mut WhoamiAll, &event);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].rule_id, "whoami-all");
//! ```
//!
//! ## Build, test and run
//!
//! ```sh
//! rustup target add wasm32-unknown-unknown
//! cargo test                                   # native: unit tests, and tests/*.json via rulebox-cases
//! cargo build --release --target wasm32-unknown-unknown
//! rulebox test tests --rules target/wasm32-unknown-unknown/release/my_rule.wasm
//! rulebox validate target/wasm32-unknown-unknown/release/my_rule.wasm --tests tests
//! rulebox run --rules target/wasm32-unknown-unknown/release/my_rule.wasm --events events.jsonl
//! ```
//!
//! Test cases (`tests/*.json`: events, and the detections expected or `"none"`) are described in
//! `docs/testing.md` of the rulebox repository, and run natively by the `rulebox-cases` crate
//! (`rulebox_cases::assert_cases::<MyRule>(env!("CARGO_MANIFEST_DIR"))` in `tests/cases.rs`). The
//! runtime configuration the sandbox applies (`--config`: fuel, memory, deadline, per-rule limits)
//! is in `docs/config.md`.
//! ## Several rules in one module: a rule pack
//!
//! A module of its own per rule means one sandbox, one copy of each event and one call per rule
//! and event. For many rules, export them together with [`export_rules!`] instead of one
//! [`export_rule!`] each: one sandbox then evaluates all of them on one copy of each batch of
//! events (ABI 3, [`abi`]), and each rule keeps its own metadata, state, fuel budget and deadline
//! per event, counters and quarantine, exactly as in a module of its own.
//!
//! ```
//! # #![cfg_attr(target_arch = "wasm32", no_std)]
//! use rulebox_sdk::prelude::*;
//!
//! #[derive(Default)]
//! pub struct WhoamiAll;
//! impl Rule for WhoamiAll {
//!     const META: RuleMeta = RuleMeta {
//!         id: "whoami-all", name: "whoami /all reconnaissance", version: "1.0.0",
//!         severity: Severity::Low, events: &[EventKind::ProcessStart],
//!     };
//!     fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
//!         let Some(p) = event.process_start() else { return };
//!         if ends_with_ignore_case(p.image(), "\\whoami.exe") && contains_ignore_case(p.command_line(), "/all") {
//!             out.detect("whoami /all").field("CommandLine", p.command_line());
//!         }
//!     }
//! }
//!
//! #[derive(Default)]
//! pub struct NetUserAdd;
//! impl Rule for NetUserAdd {
//!     const META: RuleMeta = RuleMeta {
//!         id: "net-user-add", name: "A local account is created", version: "1.0.0",
//!         severity: Severity::Medium, events: &[EventKind::ProcessStart],
//!     };
//!     fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
//!         let Some(p) = event.process_start() else { return };
//!         if contains_ignore_case(p.command_line(), "net user ") && contains_ignore_case(p.command_line(), " /add") {
//!             out.detect("local account created").field("CommandLine", p.command_line());
//!         }
//!     }
//! }
//!
//! // The pack is named after the crate (package name, description, version); rule index 0 is
//! // `WhoamiAll`, 1 is `NetUserAdd`. `export_rules!(pack: MY_PACK_META; ...)` names it explicitly.
//! rulebox_sdk::export_rules!(WhoamiAll, NetUserAdd);
//! ```
//!
//! Build it as any rule crate (`cargo build --release --target wasm32-unknown-unknown`); `rulebox
//! run --rules` loads the module as it loads a one-rule module. Each rule is still tested natively
//! on its own with [`run_native`]. A rule crate that is also exported on its own keeps its
//! `export_rule!` behind a default feature, which the pack crate turns off
//! (`default-features = false`): one module may export only one set of ABI functions
//! (`example-rules/packs/example-pack` does this with the eight example rules).
//!
//! ## An engine whose rules are data
//!
//! A rule engine (a Sigma evaluator, say) implements [`Pack`] and exports itself with
//! [`export_pack!`]. The host compiles the engine once and hands it its **rule data** at load
//! ([`Pack::load`]): the engine builds its rules from it and reports them ([`Pack::metadata`]), and
//! the host then treats each as a rule of its own (budgets, counters, quarantine, replay).
//! Installing or updating a rule is a new version of the data: a data load, never a compile. With
//! [`Pack::PREFILTER`], [`Pack::candidates`] names the rules an event can match, so that a pack of
//! thousands of rules runs only a few per event.
//!
//! ```
//! # #![cfg_attr(target_arch = "wasm32", no_std)]
//! # extern crate alloc;
//! use alloc::borrow::Cow;
//! use alloc::string::String;
//! use alloc::vec::Vec;
//! use rulebox_sdk::prelude::*;
//! use rulebox_sdk::{EventKinds, Pack, PackError, PackMetadata, RuleMetadata};
//!
//! /// One rule per line of data: `<id> <text>`: fires on a process start whose command line
//! /// holds the text.
//! pub struct Keywords { rules: Vec<(String, String)> }
//!
//! impl Pack for Keywords {
//!     fn load(data: &[u8]) -> Result<Self, PackError> {
//!         let text = core::str::from_utf8(data).map_err(|_| PackError::new("not UTF-8"))?;
//!         let rules = text
//!             .lines()
//!             .filter_map(|l| l.split_once(' '))
//!             .map(|(id, word)| (id.into(), word.into()))
//!             .collect();
//!         Ok(Keywords { rules })
//!     }
//!     fn metadata(&self) -> PackMetadata<'_> {
//!         let kinds = EventKinds::of(&[EventKind::ProcessStart]);
//!         PackMetadata {
//!             schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
//!             id: "keywords".into(), name: "Keyword rules".into(), version: "1.0.0".into(),
//!             rules: self.rules.iter().map(|(id, _)| RuleMetadata {
//!                 schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
//!                 id: Cow::Borrowed(id), name: Cow::Borrowed(id), version: "1".into(),
//!                 severity: Severity::Low, subscriptions: kinds,
//!             }).collect(),
//!         }
//!     }
//!     fn on_event(&mut self, rule: usize, event: &EventView<'_>, out: &mut Detections) {
//!         let (Some((_, word)), Some(p)) = (self.rules.get(rule), event.process_start()) else { return };
//!         if contains_ignore_case(p.command_line(), word) {
//!             out.detect("keyword seen").field("CommandLine", p.command_line());
//!         }
//!     }
//! }
//!
//! rulebox_sdk::export_pack!(Keywords);
//!
//! // Natively, as the host runs it: the rules subscribed to the event's kind, each on its own view.
//! let mut pack = Keywords::load(b"mimikatz-word mimikatz\nprocdump-word procdump").unwrap();
//! let mut body = ProcessStart::default();
//! body.command_line = "procdump -ma lsass.exe".into();
//! let found = rulebox_sdk::run_native_pack(&mut pack, &Event::new(EventData::ProcessStart(body)));
//! assert_eq!(found.len(), 1);
//! assert_eq!((found[0].0, found[0].1.rule_id.as_ref()), (1, "procdump-word"));
//! ```
//!
//! A fault while one of the pack's rules runs (a trap, a panic, its fuel or time, memory) is that
//! rule's alone: the host quarantines it, gives the pack a fresh instance (same module, same data),
//! and goes on with the next rule of the same event. A fault outside every rule (in `load`,
//! `metadata`, `candidates`) is the pack's, and stops it (a fuel or time fault of `candidates` is a
//! strike first). After any fault every rule's state starts over.
//!
//! ## What the host guarantees, and what it enforces
//!
//! The host calls [`Rule::on_event`] only for the kinds in [`RuleMeta::events`], one event at a time,
//! with a fresh fuel budget for each, a wall-clock deadline, and caps on memory and stack. A rule that
//! traps, panics, runs out of fuel or time, grows past its memory cap, or returns a malformed result is
//! *quarantined*: it is never called again until a new version is loaded, the host raises an alert
//! carrying the event that triggered it, and every other rule keeps running. See [`abi`] for the exact
//! contract and its memory layout.
//!
//! Rules are `no_std` + `alloc` on wasm32; the SDK installs an allocator (feature `allocator`) and a
//! panic handler that reports the panic message to the host (feature `panic-handler`). A rule built for
//! `wasm32-wasip1` that links `std` turns off `panic-handler`.
#![no_std]

extern crate alloc;

pub mod abi;
pub mod batch;
mod detection;
mod event;
mod kind;
mod matching;
mod pack;
#[cfg(target_arch = "wasm32")]
mod pack_glue;
mod rule;
pub mod text;
pub mod wire;

/// `alloc`, for the code the export macros generate in a rule crate.
#[doc(hidden)]
pub extern crate alloc as __alloc;

pub use detection::{
    Detection, DetectionBuilder, Detections, ResultError, ResultReader, Severity, TRUNCATED_MARK,
    decode_result,
};
pub use event::{
    DnsQuery, DnsQueryView, Event, EventData, Field, FileEvent, FileEventView, FileRename,
    FileRenameView, ImageLoad, ImageLoadView, NetworkConnect, NetworkConnectView, OtherEvent,
    OtherEventView, PipeEvent, PipeEventView, ProcessAccess, ProcessAccessView, ProcessStart,
    ProcessStartView, RegistryEvent, RegistryEventView, Value,
};
pub use kind::{EventKind, EventKinds};
pub use matching::{
    contains_ignore_case, ends_with_ignore_case, eq_ignore_case, starts_with_ignore_case,
};
pub use pack::{
    DynRule, LoadReply, Pack, PackError, PackMeta, PackMetadata, RuleList, StaticRules,
    run_native_pack,
};
pub use rule::{Rule, RuleMeta, RuleMetadata, run_native, run_native_view};
pub use wire::{EventView, WireError};

/// Sends a message to the host's log through the rate-limited `rulebox.log` import. Natively (tests,
/// benchmarks) it does nothing. Using it adds that one import to the module.
pub fn log(level: abi::LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    abi::__private::log(level as u32, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Everything a rule usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Detection, Detections, Event, EventData, EventKind, EventView, Rule, RuleMeta, Severity,
        Value, contains_ignore_case, ends_with_ignore_case, eq_ignore_case, run_native,
        starts_with_ignore_case,
    };
    pub use crate::{
        DnsQuery, DnsQueryView, FileEvent, FileEventView, FileRename, FileRenameView, ImageLoad,
        ImageLoadView, NetworkConnect, NetworkConnectView, PipeEvent, PipeEventView, ProcessAccess,
        ProcessAccessView, ProcessStart, ProcessStartView, RegistryEvent, RegistryEventView,
    };
}
