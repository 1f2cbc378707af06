//! # rulebox-cases: a rule's test cases, one format for `cargo test` and for the release gate
//!
//! A rule crate keeps its test cases in `tests/*.json`: events, and the detections each case must
//! produce or `"none"`. The same files are run three ways, all read by this crate, so there is one
//! definition of the format (`docs/testing.md` has it in full):
//!
//! - natively, from the rule crate's own `cargo test`, with [`assert_cases`] (this crate is a light
//!   dev-dependency: the SDK and serde, no WebAssembly engine);
//! - against the built module in the production sandbox, with `rulebox test`;
//! - as part of the release gate, with `rulebox validate --tests`.
//!
//! ```json
//! {
//!   "rule": "office-spawns-shell",
//!   "description": "what the file tests (optional)",
//!   "cases": [
//!     {
//!       "name": "Word starts cmd",
//!       "events": [{"data": {"ProcessStart": {"Image": "C:\\Windows\\System32\\cmd.exe",
//!                                            "ParentImage": "C:\\Office\\WINWORD.EXE"}}}],
//!       "expect": [{"title": "Office application spawned a shell", "event": 0,
//!                   "fields": {"ParentImage": "C:\\Office\\WINWORD.EXE"}}]
//!     },
//!     {
//!       "name": "Explorer starts cmd",
//!       "events": [{"data": {"ProcessStart": {"Image": "C:\\Windows\\System32\\cmd.exe",
//!                                            "ParentImage": "C:\\Windows\\explorer.exe"}}}],
//!       "expect": "none"
//!     }
//!   ]
//! }
//! ```
//!
//! Every key is checked: an unknown key in the file, a case, an expected detection or an **event**
//! (a field name the event's kind does not have, such as `Imgae`) is refused, naming the key and
//! the likely one meant, because a misspelt field would leave the real one empty and let a `"none"`
//! case pass without testing anything.
//!
//! In a rule crate (`Cargo.toml`: `[dev-dependencies] rulebox-cases = { path = ".../rulebox/cases" }`),
//! `tests/cases.rs`:
//!
//! ```no_run
//! # #[derive(Default)] struct MyRule;
//! # impl rulebox_sdk::Rule for MyRule {
//! #     const META: rulebox_sdk::RuleMeta = rulebox_sdk::RuleMeta { id: "my-rule", name: "n",
//! #         version: "1", severity: rulebox_sdk::Severity::Low, events: &[] };
//! #     fn on_event(&mut self, _: &rulebox_sdk::EventView<'_>, _: &mut rulebox_sdk::Detections) {}
//! # }
//! #[test]
//! fn the_test_cases_pass_natively() {
//!     rulebox_cases::assert_cases::<MyRule>(env!("CARGO_MANIFEST_DIR"));
//! }
//! ```
#![deny(missing_docs)]

mod compare;
mod error;
mod event;
mod file;
mod native;
mod outcome;

pub use compare::{Seen, compare};
pub use error::CaseError;
pub use event::{MAX_FIELD_BYTES, WindowsEvents};
pub use file::{
    Case, CaseFile, Expected, MAX_CASE_FILE_BYTES, find_case_files, parse_case_file,
    read_case_file, read_case_file_with,
};
pub use native::{assert_cases, run_cases, run_file};
pub use outcome::CaseOutcome;
/// The one escaping helper for text from content (`rulebox_sdk::text::printable`).
pub use rulebox_sdk::text::printable;
