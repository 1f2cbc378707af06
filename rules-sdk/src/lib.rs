//! # rulebox-sdk: write detection rules that run in rulebox's sandbox
//!
//! A rule is an ordinary Rust type implementing [`Rule`]: metadata (id, name, version, severity, the
//! event kinds it wants) and a function from one event to zero or more [`Detection`]s. The rule reads
//! the event through an [`EventView`]: in place, in the bytes the host wrote, each field decoded only
//! when the rule asks for it.
//! [`export_rule!`] turns it into a WebAssembly rule module; the same source builds natively, so the
//! rule's logic is unit-tested with `cargo test` and benchmarked natively.
//!
//! ## A complete rule
//!
//! `Cargo.toml`:
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
//! [profile.release]
//! opt-level = "s"
//! panic = "abort"
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
//! ## Build and run
//!
//! ```sh
//! rustup target add wasm32-unknown-unknown
//! cargo build --release --target wasm32-unknown-unknown
//! rulebox validate target/wasm32-unknown-unknown/release/my_rule.wasm
//! rulebox run --rules target/wasm32-unknown-unknown/release --events events.jsonl
//! ```
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
