//! # rulebox-validate: the release gate, run on the production runtime
//!
//! In July 2024 a content validator that was not the code running on the endpoints passed a
//! malformed update. Here the validator *is* the runtime: every rule is compiled and loaded by
//! [`rulebox_runtime`] under the limits the endpoints apply (the manifest's per-rule limits, or the
//! runtime configuration), and every event goes through [`rulebox_runtime::RuleSet`], the same
//! dispatch, encoding, size caps, fuel, memory and deadline checks the agent uses.
//!
//! Each rule sees, per event-schema version the bundle declares:
//!
//! - its own **test cases** ([`cases`]: events plus the detections expected, or `"none"`);
//! - a **recorded corpus** (every `cases/*/event.json` of the Sigma corpus, when present; the report
//!   says plainly when it was skipped);
//! - **generated events** ([`events::generated`]): for every kind the rule subscribes to, events with
//!   every field of the schema filled from a structure-aware proptest strategy with a fixed seed;
//! - **boundary events** ([`events::boundary`]): empty bodies, each text field alone at the runtime's
//!   `max_event_bytes`, every field at once up to the cap, `max_event_fields` untyped fields, odd
//!   Unicode, numbers at their extremes and numbers that do not parse;
//! - for a rule of a Sigma pack, **events at the cap on the fields its program reads**, also with
//!   the literals its prefilter needs at the start of them, so that they reach the rule (the
//!   pack's data read natively for the names only: `named.rs`).
//!
//! A rule fails if it does not load, traps or hits a budget on any event, fails a test case, or its
//! worst event uses more than the headroom share (default 50 %) of its fuel or memory budget. The
//! [`Report`] lists per rule the verdict, detections, fuel p50 / p99 / max and the memory high-water
//! mark; it holds no timings, so it is deterministic for a given build. For a bundle it is written
//! next to the bundle folder in a file named after the manifest hash ([`report_path`]), **signed by
//! a gate key** (the validating machine's ed25519 key; `rulebox validate --gate-key`, or
//! `rulebox_release::validate_for_release`), and `rulebox bundle sign` refuses to sign unless that
//! report exists, carries a valid signature by a gate key the signer trusts (so a report edited to
//! "passed" is refused), passed and is bound to the bundle's hash ([`check_gate`]).
//!
//! ```no_run
//! use rulebox_validate::{Options, validate_bundle, write_report, report_path};
//! # fn main() -> Result<(), rulebox_validate::ValidateError> {
//! let dir = std::path::Path::new("release-42");
//! let report = validate_bundle(dir, &Options::default(), &mut |_| {})?;
//! write_report("release-42-report.json".as_ref(), &report)?; // for people; the gate reads the
//!                                                            // signed one beside the bundle
//! assert!(report.passed, "{:?}", report.problems);
//! # Ok(()) }
//! ```

mod bundle;
pub mod cases;
mod error;
pub mod events;
pub mod named;
mod progress;
mod report;
mod validator;

pub use bundle::read_bundle;
pub use cases::CaseOutcome;
pub use error::{GateError, ValidateError};
pub use progress::{FaultFound, Progress};
pub use report::{
    CONTEXT_VALIDATION, CaseFailure, CorpusInfo, EventCounts, FaultSummary, FuelProfile,
    MemoryProfile, REPORT_FORMAT, Report, RuleReport, Settings, TargetInfo, TestSummary,
    check_gate, gate_key_set, read_attested_report, read_report, report_path,
    write_attested_report, write_report,
};
pub use validator::{
    CorpusSource, MAX_LISTED_FAULTS, ModuleInput, Options, SUPPORTED_SCHEMAS, run_tests,
    validate_bundle, validate_modules,
};
