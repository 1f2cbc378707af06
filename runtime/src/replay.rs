//! Replaying a quarantine record: the recorded event against the recorded module, same limits.

use rulebox_sdk::Detection;

use crate::config::RuntimeConfig;
use crate::module::content_hash;
use crate::quarantine::{Fault, QuarantineRecord};
use crate::rule::LoadedRule;
use crate::runtime::{Runtime, SandboxThread};

/// What replaying a record showed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// The same reason again: the fault is reproduced.
    Reproduced(Fault),
    /// A fault with another reason.
    DifferentFault(Fault),
    /// No fault: the rule ran and returned these detections. (A stateful rule may need the events
    /// before the recorded one; replay runs the recorded event on a fresh instance.)
    NoFault(Vec<Detection<'static>>),
}

impl ReplayOutcome {
    /// Whether the record's fault was reproduced.
    pub fn reproduced(&self) -> bool {
        matches!(self, ReplayOutcome::Reproduced(_))
    }
}

/// Why a record could not be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The module given is not the one the record names.
    #[error("module hash {found} does not match the record's content hash {expected}")]
    HashMismatch {
        /// From the record.
        expected: String,
        /// Of the bytes given.
        found: String,
    },
    /// The record's event is not valid base64.
    #[error("the record's event is not valid base64: {0}")]
    BadEvent(#[from] base64::DecodeError),
    /// The record's limits are unusable.
    #[error("the record's limits are unusable: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Re-runs `record` against `module` (whose hash must match) under the limits, guest stack and epoch
/// tick the record holds, validated first (a crafted record cannot lift the limits: replay runs
/// under the same upper bounds as any configuration). A load-time record replays the load; a run-time
/// record replays its event on a fresh instance.
pub fn replay(
    base: &Runtime,
    thread: &SandboxThread,
    record: &QuarantineRecord,
    module: &[u8],
) -> Result<ReplayOutcome, ReplayError> {
    let found = content_hash(module);
    if found != record.content_hash {
        return Err(ReplayError::HashMismatch {
            expected: record.content_hash.clone(),
            found,
        });
    }
    let event = record.event_bytes()?;
    let config = RuntimeConfig {
        limits: record.limits.clone(),
        rules: Default::default(),
        max_wasm_stack: record.max_wasm_stack.min(base.config().max_wasm_stack),
        epoch_tick_ms: record.epoch_tick_ms,
        ..base.config().clone()
    };
    let runtime = Runtime::new(config)?;
    let verdict = |fault: Fault| {
        if fault.reason == record.reason {
            ReplayOutcome::Reproduced(fault)
        } else {
            ReplayOutcome::DifferentFault(fault)
        }
    };
    let loaded = runtime
        .compile(module, &record.source)
        .and_then(|c| LoadedRule::load(&runtime, thread, &c));
    let mut rule = match loaded {
        Ok(rule) => rule,
        Err(e) => return Ok(verdict(e.to_fault())),
    };
    let Some(event) = event else {
        // A load-time record whose module now loads.
        return Ok(ReplayOutcome::NoFault(Vec::new()));
    };
    let mut out = Vec::new();
    match rule.evaluate(&event, &mut out) {
        Ok(()) => Ok(ReplayOutcome::NoFault(out)),
        Err(fault) => Ok(verdict(fault)),
    }
}
