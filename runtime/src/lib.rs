//! # rulebox-runtime: the sandboxed host an endpoint agent embeds
//!
//! Detection rules arrive as WebAssembly modules (written with `rulebox-sdk`). The host loads each
//! into its own wasmtime store with fuel, memory, table, stack and wall-clock limits, hands it the
//! events it subscribed to, and collects its detections. A rule that faults (a trap, out of fuel or
//! time, over its memory, a garbage result) is quarantined: that rule alone stops, every other rule
//! keeps processing every event, and an [`Alert`] carrying the triggering event is raised in the same
//! stream as detections. The host never panics because of content.
//!
//! A module holds one rule (ABI 2, [`LoadedRule`]) or is a **rule pack** (ABI 3, [`LoadedPack`]):
//! one instance evaluating many rules on one copy of each batch of events, each rule with its own
//! fuel budget and deadline per event, counters and quarantine; an engine whose rules are data is a
//! pack loaded with its rule data, so that updating a rule is a data load, never a compile.
//!
//! The main types: [`Runtime`] (shared engine and configuration), [`RuleSet`] (loaded rules and
//! dispatch, one event at a time or in batches: [`RuleSet::process_batch`], [`BatchOutcome`]),
//! [`Prepared`] (a module loaded off the hot path, installed between two events), [`Content`] and
//! [`RuleSet::activate`] (the one way a release's modules become the
//! rules a set runs, under their manifest limits and identity checks), [`QuarantineRecord`] (why a
//! rule stopped, with the event that made it) and [`events::EventReader`] (JSON lines and Windows
//! event JSON in, typed events out). The endpoint agent built on them is the `rulebox-agent` crate.
//!
//! ```no_run
//! use rulebox_runtime::{Runtime, RuntimeConfig, RuleSet};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let module = std::fs::read("rule.wasm")?;
//! let events = std::fs::read_to_string("events.jsonl")?;
//! let rt = runtime.clone();
//! runtime.run_sandboxed(move |thread| {
//!     let mut rules = RuleSet::new(&rt);
//!     if let Err(record) = rules.load(thread, &module, "rule.wasm") {
//!         eprintln!("refused: {} ({})", record.reason, record.message);
//!     }
//!     for line in events.lines() {
//!         let event = rulebox_runtime::events::parse_json_line(line).expect("valid event");
//!         let outcome = rules.process(thread, &event).expect("event within limits");
//!         for d in &outcome.detections {
//!             println!("{}: {}", d.rule.id, d.detection.title);
//!         }
//!     }
//! });
//! # Ok(()) }
//! ```
//!
//! Guest code only ever runs on threads started by [`Runtime::spawn_sandbox_thread`] (proved by the
//! [`SandboxThread`] token every such call takes), whose native stack is larger than the guest stack
//! limit, so runaway recursion is a trap, never a process abort.

mod activate;
mod config;
pub mod content;
mod deadline;
pub mod events;
mod folder;
mod guest_log;
mod host;
mod index;
mod limiter;
mod metadata;
mod module;
mod module_cache;
mod outcome;
mod pack;
mod pack_call;
mod quarantine;
mod replay;
mod rule;
mod rule_info;
mod ruleset;
mod runtime;
mod start;
mod strikes;
pub mod text;
mod unit;
mod wasi;

pub use activate::{
    Activation, Content, ContentPack, ContentRule, DeclaredPack, DeclaredRule, ManifestMismatch,
    SkippedRule,
};
pub use config::{ConfigError, Limits, RuntimeConfig};
pub use folder::{Claimant, DuplicateClaim, FolderLoad};
pub use index::{INDEX_PACK_NAME, IndexStatus, index_digest};
pub use limiter::{MemoryLimitExceeded, TableLimitExceeded};
pub use module::{CompiledRule, LoadError, content_hash};
pub use module_cache::{CacheStats, ModuleCache};
pub use outcome::{BatchOutcome, EventError, Outcome, RuleDetection};
pub use pack::{
    LOAD_FUEL_PER_DATA_BYTE, LOAD_MS_PER_DATA_KIB, LoadedPack, MAX_BATCH_BYTES,
    MAX_PACK_METADATA_BYTES, MAX_PACK_RULES, MAX_RULE_DATA_BYTES, PackStats,
};
pub use quarantine::{Alert, Fault, PackRecord, QuarantineRecord, Reason};
pub use replay::{ReplayError, ReplayOutcome, replay, replay_with_data};
pub use rule::{LoadedRule, RuleStats};
pub use rule_info::{PackInfo, RuleInfo};
pub use ruleset::{PackUpsert, RuleSet, RuleState, SetStats, Upsert};
pub use runtime::{Runtime, SandboxThread};
pub use unit::Prepared;

/// Re-exported so an embedder uses the exact schema version this runtime was built with.
pub use rulebox_sdk as sdk;

#[cfg(test)]
mod tests {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn thread_safety_of_the_public_types() {
        send_sync::<crate::Runtime>();
        send_sync::<crate::CompiledRule>();
        send_sync::<crate::QuarantineRecord>();
        send::<crate::RuleSet>();
        send::<crate::LoadedRule>();
        send::<crate::LoadedPack>();
        send::<crate::Prepared>();
        send::<crate::Outcome>();
    }
}
