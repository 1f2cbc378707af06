//! # rulebox-sigma-eval: the Sigma evaluator that runs inside the sandbox
//!
//! `rulebox sigma compile` (crate `rulebox-sigma`) turns a Sigma rule into a [`Program`]: the event
//! fields it reads, one deterministic automaton ([`Dfa`]) per field answering every text pattern the
//! rule has on that field (every modifier already applied, case folding built into the automaton,
//! wildcards and regular expressions already determinized), and a boolean condition over the
//! automata's answers and a few checks that are not patterns (numbers, networks, presence, field
//! references). This crate's WebAssembly build is a rule pack (ABI 3, [`SigmaPack`]) compiled once:
//! its rules are data, the programs' postcard bytes framed as records ([`push_record`]) handed to it
//! at load, so installing, updating or removing a Sigma rule is a data load, never a compile. Inside
//! the sandbox, the pack decodes and checks each program once and evaluates it with an
//! [`Evaluator`] on every event, each rule under its own budget, reading only
//! the fields the program tests from the host's encoding (`rulebox_sdk::EventView`) and scanning
//! each at most once per automaton; the host never interprets rule data. Before any rule runs on
//! an event, the pack's cross-rule [`Prefilter`] (built at load from every program's
//! [`Program::needs`], matched by one [`LiteralSet`] per field) names the rules that can match it,
//! and only those run.
//!
//! The same source runs natively (tests, benchmarks):
//!
//! ```
//! use rulebox_sigma_eval::{Check, Evaluator, Expr, FieldSpec, Program, FORMAT_VERSION};
//! use rulebox_sdk::{Event, EventData, EventKind, EventKinds, ProcessStart, Severity};
//!
//! // "The process has a command line" (text patterns come from the compiler, as automata).
//! let program = Program {
//!     format: FORMAT_VERSION,
//!     id: "has-cmdline".into(),
//!     title: "a command line".into(),
//!     version: "1".into(),
//!     severity: Severity::Low,
//!     kinds: EventKinds::of(&[EventKind::ProcessStart]),
//!     fields: vec![FieldSpec { names: vec!["CommandLine".into()], elements: false }],
//!     scans: vec![],
//!     guard: Expr::True,
//!     condition: Expr::Check { field: 0, check: Check::Exists(true) },
//!     report: vec![],
//!     gate: None,
//!     needs: vec![],
//! };
//! let mut eval = Evaluator::new(program).unwrap();
//! let mut body = ProcessStart::default();
//! body.command_line = "cmd /c whoami".into();
//! // `matches` reads an encoded event in place, as in the sandbox; `matches_event` encodes first.
//! assert!(eval.matches_event(&Event::new(EventData::ProcessStart(body))));
//! ```
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod dfa;
mod eval;
mod fold;
#[cfg(target_arch = "wasm32")]
mod guest;
mod index;
mod literal_set;
mod node;
mod pack;
mod prefilter;
mod program;

pub use dfa::{
    Automaton, BYTE_ROWS_UP_TO, Dfa, DfaError, MAX_TRANSITIONS, START_BYTES, ScanState, Special,
    Starts, quad_hash,
};
pub use eval::Evaluator;
pub use fold::{fold_case, fold_char};
pub use index::{
    INDEX_FORMAT, INDEX_MAGIC, INDEX_PACK_NAME, IndexData, IndexRule, MAX_INDEX_RULES,
    decode_index, push_index,
};
pub use literal_set::LiteralSet;
pub use pack::{
    BYTE_ROWS_BUDGET, HEADER_MAGIC, OPTION_NO_PREFILTER, OPTIONS_MAGIC, PACK_ID, RECORD_MAGIC,
    ROWS_MAGIC, SigmaPack, SplitData, push_header, push_options, push_record, push_rows, records,
    split_data, split_data_with_options,
};
pub use prefilter::{
    MAX_INDEX_SCANNED_BYTES, MAX_SCANNED_BYTES, Needs, Prefilter, probes_past_ascii,
};
pub use program::{
    Check, Expr, FORMAT_VERSION, FieldSpec, Gate, LOCATOR_MAGIC, MAX_DEPTH, Need, NumOp, Program,
    ProgramError, RefOp, Scan,
};
