//! Replaying a quarantine record: the recorded event against the recorded module, same limits.

use rulebox_sdk::{Detection, EventView};

use crate::config::RuntimeConfig;
use crate::module::content_hash;
use crate::pack::{CallEnd, Delivery, LoadedPack};
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
    /// The rule data given is not the data the record names.
    #[error("rule data hash {found} does not match the record's data hash {expected}")]
    DataMismatch {
        /// From the record.
        expected: String,
        /// Of the data given.
        found: String,
    },
    /// The record's event bytes are not an event.
    #[error("the record's event does not decode: {0}")]
    UndecodableEvent(String),
    /// The pack has no rule with the record's index and id.
    #[error("the pack has no rule `{id}` at index {index}")]
    RuleNotInPack {
        /// The record's rule index.
        index: u32,
        /// The record's rule id.
        id: String,
    },
}

/// Re-runs `record` against `module` (whose hash must match) under the limits, guest stack and epoch
/// tick the record holds, validated first (a crafted record cannot lift the limits: replay runs
/// under the same upper bounds as any configuration). A load-time record replays the load; a run-time
/// record replays its event on a fresh instance. For a rule pack with rule data, use
/// [`replay_with_data`].
pub fn replay(
    base: &Runtime,
    thread: &SandboxThread,
    record: &QuarantineRecord,
    module: &[u8],
) -> Result<ReplayOutcome, ReplayError> {
    replay_with_data(base, thread, record, module, &[])
}

/// Like [`replay`], for a record of a rule pack loaded with `data` (whose hash must match the
/// record's). A rule's record replays its event on a fresh instance of the pack in which only that
/// rule runs (under its own limits, and the pack's for the instance); a record about the pack
/// itself replays the event with every rule of the pack.
pub fn replay_with_data(
    base: &Runtime,
    thread: &SandboxThread,
    record: &QuarantineRecord,
    module: &[u8],
    data: &[u8],
) -> Result<ReplayOutcome, ReplayError> {
    let found = content_hash(module);
    if found != record.content_hash {
        return Err(ReplayError::HashMismatch {
            expected: record.content_hash.clone(),
            found,
        });
    }
    if let Some(pack) = &record.pack {
        let found = content_hash(data);
        if found != pack.data_hash {
            return Err(ReplayError::DataMismatch {
                expected: pack.data_hash.clone(),
                found,
            });
        }
    } else if !data.is_empty() {
        return Err(ReplayError::DataMismatch {
            expected: content_hash(&[]),
            found: content_hash(data),
        });
    }
    let event = record.event_bytes()?;
    let (limits, rules) = match &record.pack {
        // The pack's limits for its instance; the rule's own for the rule.
        Some(pack) => {
            let mut rules = std::collections::BTreeMap::new();
            if pack.rule_index.is_some() && !record.rule_id.is_empty() {
                rules.insert(record.rule_id.clone(), record.limits.clone());
            }
            (pack.limits.clone(), rules)
        }
        None => (record.limits.clone(), Default::default()),
    };
    let config = RuntimeConfig {
        limits,
        rules,
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
    let compiled = match runtime.compile(module, &record.source) {
        Ok(c) => c,
        Err(e) => return Ok(verdict(e.to_fault())),
    };
    if compiled.is_pack() {
        return replay_pack(&runtime, thread, record, &compiled, data, event, verdict);
    }
    let mut rule = match LoadedRule::load(&runtime, thread, &compiled) {
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

fn replay_pack(
    runtime: &Runtime,
    thread: &SandboxThread,
    record: &QuarantineRecord,
    compiled: &crate::module::CompiledRule,
    data: &[u8],
    event: Option<Vec<u8>>,
    verdict: impl Fn(Fault) -> ReplayOutcome,
) -> Result<ReplayOutcome, ReplayError> {
    let mut pack = match LoadedPack::load(runtime, thread, compiled, data, None) {
        Ok(pack) => pack,
        Err(e) => return Ok(verdict(e.to_fault())),
    };
    let Some(event) = event else {
        return Ok(ReplayOutcome::NoFault(Vec::new()));
    };
    let kind = EventView::new(&event)
        .map_err(|e| ReplayError::UndecodableEvent(e.to_string()))?
        .kind();
    let only = match record.pack.as_ref().and_then(|p| p.rule_index) {
        Some(index) => {
            let found = pack
                .rules()
                .nth(index as usize)
                .map(|(info, _)| info.id.clone());
            if found.as_deref() != Some(record.rule_id.as_str()) {
                return Err(ReplayError::RuleNotInPack {
                    index,
                    id: record.rule_id.clone(),
                });
            }
            Some(index)
        }
        None => None,
    };
    let events = [(kind, event.as_slice())];
    let end = pack.call(&events, &[0], 0, only, None);
    let mut detections = Vec::new();
    pack.finish_call(|d| {
        if let Delivery::Detection { detection, .. } = d {
            detections.push(detection);
        }
    });
    Ok(match end {
        CallEnd::Done => ReplayOutcome::NoFault(detections),
        CallEnd::RuleFault { rule, fault, .. } if only.is_none_or(|o| o == rule) => match only {
            Some(_) => verdict(fault),
            // A record about the pack, reproduced as one rule's fault: a different fault.
            None => ReplayOutcome::DifferentFault(fault),
        },
        CallEnd::RuleFault { fault, .. } => ReplayOutcome::DifferentFault(fault),
        CallEnd::PackFault { fault, .. } => match only {
            None => verdict(fault),
            Some(_) => ReplayOutcome::DifferentFault(fault),
        },
    })
}
