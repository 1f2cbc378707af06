//! # rulebox-sigma-eval: the Sigma evaluator that runs inside the sandbox
//!
//! `rulebox sigma compile` (crate `rulebox-sigma`) turns a Sigma rule into a [`Program`]: a small,
//! fully expanded boolean expression over field tests (every modifier already applied, every string
//! already case-folded, every regular expression already lowered to a [`Regex`] instruction list). It
//! then takes this crate's WebAssembly build and embeds the program's postcard bytes as a data segment,
//! giving one rule module per Sigma rule. Inside the sandbox, the module decodes its program once and
//! evaluates it with an [`Evaluator`] on every event, reading only the fields the program tests from
//! the host's encoding (`rulebox_sdk::EventView`); the host never interprets rule data.
//!
//! The same source runs natively (tests, benchmarks):
//!
//! ```
//! use rulebox_sigma_eval::{Check, Evaluator, Expr, Pattern, Program, Test, FORMAT_VERSION};
//! use rulebox_sdk::{Event, EventData, EventKind, EventKinds, ProcessStart, Severity};
//!
//! let program = Program {
//!     format: FORMAT_VERSION,
//!     id: "whoami".into(),
//!     title: "whoami run".into(),
//!     version: "1".into(),
//!     severity: Severity::Low,
//!     kinds: EventKinds::of(&[EventKind::ProcessStart]),
//!     condition: Expr::Test(Test {
//!         field: Some("Image".into()),
//!         check: Check::Text { pattern: Pattern::Suffix("\\whoami.exe".into()), cased: false },
//!     }),
//! };
//! let mut eval = Evaluator::new(program);
//! let mut body = ProcessStart::default();
//! body.image = "C:\\Windows\\System32\\WHOAMI.EXE".into();
//! // `matches` reads an encoded event in place, as in the sandbox; `matches_event` encodes first.
//! assert!(eval.matches_event(&Event::new(EventData::ProcessStart(body))));
//! ```
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod eval;
mod fold;
#[cfg(target_arch = "wasm32")]
mod guest;
mod program;
mod regex;

pub use eval::Evaluator;
pub use fold::fold_case;
pub use program::{
    Check, Expr, FORMAT_VERSION, Glob, LOCATOR_MAGIC, NumOp, Pattern, Program, ProgramError, Test,
};
pub use regex::{Inst, Look, Regex};
