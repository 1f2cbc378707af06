//! All loaded rules: dispatch by event kind, strikes, quarantine.

use std::sync::Arc;

use rulebox_sdk::{Detection, Event, EventKind};

use crate::module::{CompiledRule, LoadError};
use crate::quarantine::{Alert, Fault, QuarantineRecord, Reason};
use crate::rule::{LoadedRule, RuleStats};
use crate::rule_info::RuleInfo;
use crate::runtime::{Runtime, SandboxThread};

/// A detection, with the rule that made it.
#[derive(Debug, Clone)]
pub struct RuleDetection {
    /// The rule.
    pub rule: Arc<RuleInfo>,
    /// What it reported.
    pub detection: Detection<'static>,
}

/// What processing one event produced.
///
/// Reuse one `Outcome` across events ([`RuleSet::process_into`], [`RuleSet::process_encoded`]):
/// clearing it keeps the detections' strings for the next event's detections to be written into,
/// so that in the steady state reporting a detection allocates nothing.
#[derive(Default)]
pub struct Outcome {
    /// Detections of every rule that ran, in rule order.
    pub detections: Vec<RuleDetection>,
    /// Alerts about rules (quarantines, strikes) raised by this event.
    pub alerts: Vec<Alert>,
    /// How many rules were called.
    pub rules_run: u32,
    /// Detections of earlier events, kept for their allocations.
    spare: Vec<Detection<'static>>,
}

/// Most detections an [`Outcome`] keeps for reuse.
const MAX_SPARE: usize = 256;
/// Largest detection (bytes of string and field storage) an [`Outcome`] keeps for reuse, so that a
/// rule reporting huge values cannot make the host hold on to their memory: at most
/// `MAX_SPARE × MAX_SPARE_BYTES` (1 MiB) stays allocated between events.
const MAX_SPARE_BYTES: usize = 4096;

/// The heap bytes a detection holds.
fn held_bytes(d: &Detection<'static>) -> usize {
    let text = |c: &std::borrow::Cow<'static, str>| match c {
        std::borrow::Cow::Owned(s) => s.capacity(),
        std::borrow::Cow::Borrowed(_) => 0,
    };
    text(&d.rule_id)
        + text(&d.title)
        + d.fields.capacity() * std::mem::size_of::<rulebox_sdk::Field<'static>>()
        + d.fields
            .iter()
            .map(|f| text(&f.name) + text(&f.value))
            .sum::<usize>()
}

impl Outcome {
    /// Empties the outcome, keeping its allocations (the strings of small detections included).
    pub fn clear(&mut self) {
        for d in self.detections.drain(..) {
            if self.spare.len() < MAX_SPARE && held_bytes(&d.detection) <= MAX_SPARE_BYTES {
                self.spare.push(d.detection);
            }
        }
        self.detections.clear();
        self.alerts.clear();
        self.rules_run = 0;
    }
}

impl Clone for Outcome {
    fn clone(&self) -> Outcome {
        Outcome {
            detections: self.detections.clone(),
            alerts: self.alerts.clone(),
            rules_run: self.rules_run,
            spare: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("detections", &self.detections)
            .field("alerts", &self.alerts)
            .field("rules_run", &self.rules_run)
            .finish_non_exhaustive()
    }
}

/// An event that could not be handed to the rules (counted, never silently dropped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event does not encode.
    #[error("event does not encode: {0}")]
    Encode(#[from] rulebox_sdk::WireError),
    /// The event carries more untyped fields than the runtime accepts.
    #[error("event has {count} untyped fields; the limit is {limit}")]
    TooManyFields {
        /// Fields in `extra`.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The encoded event is larger than the runtime accepts.
    #[error("event is {size} bytes encoded; the limit is {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The state of one rule in a set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RuleState {
    /// Running.
    Active,
    /// Stopped; the record says why.
    Quarantined(Arc<QuarantineRecord>),
}

struct Slot {
    rule: LoadedRule,
    state: RuleState,
    /// The version this one replaced in a hot update, kept (instance, state and all) until the update
    /// is settled, so that a new version that gets quarantined is replaced by it at once.
    previous: Option<Box<Slot>>,
}

/// What [`RuleSet::upsert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upsert {
    /// A rule with a new id was added.
    Added(Arc<RuleInfo>),
    /// The rule replaced the loaded version of the same id (which is kept until
    /// [`RuleSet::settle`], as the fallback if the new version is quarantined).
    Replaced {
        /// The new version.
        new: Arc<RuleInfo>,
        /// The version it replaced.
        old: Arc<RuleInfo>,
    },
    /// The same module (same content hash) is already loaded: nothing changed.
    Unchanged(Arc<RuleInfo>),
}

/// Counters for a whole rule set.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SetStats {
    /// Events processed.
    pub events: u64,
    /// Events refused before reaching any rule (too large, not encodable).
    pub events_refused: u64,
    /// Detections returned.
    pub detections: u64,
    /// Rules quarantined at run time.
    pub quarantined: u64,
    /// Modules refused at load.
    pub rejected: u64,
    /// Budget strikes.
    pub strikes: u64,
}

/// Every loaded rule, dispatched by event kind. Each rule has its own store and instance; a rule that
/// faults is quarantined and never called again, and every other rule keeps seeing every event.
///
/// A `RuleSet` is `Send` but not `Sync`: it runs on one sandbox thread at a time.
pub struct RuleSet {
    runtime: Runtime,
    slots: Vec<Slot>,
    by_kind: Vec<Vec<usize>>,
    records: Vec<Arc<QuarantineRecord>>,
    stats: SetStats,
    scratch: Vec<Detection<'static>>,
    encoded: Vec<u8>,
}

impl RuleSet {
    /// An empty set on `runtime`.
    pub fn new(runtime: &Runtime) -> RuleSet {
        RuleSet {
            runtime: runtime.clone(),
            slots: Vec::new(),
            by_kind: vec![Vec::new(); EventKind::ALL.len()],
            records: Vec::new(),
            stats: SetStats::default(),
            scratch: Vec::new(),
            encoded: Vec::new(),
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Compiles, checks and instantiates `bytes`. A refused module gets a quarantine record (returned,
    /// and kept in [`records`](Self::records)) and a `tracing` event; the set is unchanged.
    pub fn load(
        &mut self,
        thread: &SandboxThread,
        bytes: &[u8],
        source: &str,
    ) -> Result<Arc<RuleInfo>, Arc<QuarantineRecord>> {
        match self.runtime.compile(bytes, source) {
            Ok(compiled) => self.add(thread, &compiled),
            Err(e) => Err(self.reject(&crate::module::content_hash(bytes), source, None, &e)),
        }
    }

    /// Instantiates an already compiled rule into the set.
    pub fn add(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
    ) -> Result<Arc<RuleInfo>, Arc<QuarantineRecord>> {
        let rule = match LoadedRule::load(&self.runtime, thread, compiled) {
            Ok(rule) => rule,
            Err(e) => {
                return Err(self.reject(compiled.content_hash(), compiled.source(), None, &e));
            }
        };
        let info = rule.info().clone();
        if self.slots.iter().any(|s| s.rule.info().id == info.id) {
            let e = LoadError::DuplicateId(info.id.clone());
            return Err(self.reject(compiled.content_hash(), compiled.source(), Some(&info), &e));
        }
        tracing::info!(
            target: "rulebox::decision",
            decision = "load",
            rule_id = %info.id,
            rule_version = %info.version,
            content_hash = %info.content_hash,
            source = %info.source,
            subscriptions = ?info.subscriptions.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "rule loaded"
        );
        let index = self.slots.len();
        for kind in info.subscriptions.iter() {
            self.by_kind[kind as usize].push(index);
        }
        self.slots.push(Slot {
            rule,
            state: RuleState::Active,
            previous: None,
        });
        Ok(info)
    }

    /// Adds `compiled`, or hot-replaces the loaded rule with the same id. Only this rule changes;
    /// every other rule keeps its instance and state. If the new version does not load, the loaded
    /// version keeps running and the refusal is returned. A replaced version is kept as the fallback
    /// until [`settle`](Self::settle): if the new version is quarantined, the previous one is
    /// restored at once (and an [`Alert::PreviousVersionRestored`] says so).
    pub fn upsert(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
    ) -> Result<Upsert, Arc<QuarantineRecord>> {
        self.upsert_with_limits(thread, compiled, None)
    }

    /// Like [`upsert`](Self::upsert), with `limits` for this rule in place of the configuration's
    /// (see [`LoadedRule::load_with_limits`]).
    pub fn upsert_with_limits(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        limits: Option<&crate::config::Limits>,
    ) -> Result<Upsert, Arc<QuarantineRecord>> {
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| s.rule.info().content_hash == compiled.content_hash())
        {
            return Ok(Upsert::Unchanged(slot.rule.info().clone()));
        }
        let rule = match LoadedRule::load_with_limits(&self.runtime, thread, compiled, limits) {
            Ok(rule) => rule,
            Err(e) => {
                return Err(self.reject(compiled.content_hash(), compiled.source(), None, &e));
            }
        };
        let info = rule.info().clone();
        let Some(index) = self.slots.iter().position(|s| s.rule.info().id == info.id) else {
            let index = self.slots.len();
            self.slots.push(Slot {
                rule,
                state: RuleState::Active,
                previous: None,
            });
            self.reindex();
            tracing::info!(target: "rulebox::decision", decision = "load", rule_id = %info.id, rule_version = %info.version, content_hash = %info.content_hash, "rule added by update");
            debug_assert_eq!(self.slots[index].rule.info().id, info.id);
            return Ok(Upsert::Added(info));
        };
        let old_slot = std::mem::replace(
            &mut self.slots[index],
            Slot {
                rule,
                state: RuleState::Active,
                previous: None,
            },
        );
        let old = old_slot.rule.info().clone();
        // Keep the replaced version only if it can run; a quarantined one is dropped.
        if matches!(old_slot.state, RuleState::Active) {
            self.slots[index].previous = Some(Box::new(Slot {
                previous: None,
                ..old_slot
            }));
        }
        self.reindex();
        tracing::info!(
            target: "rulebox::decision",
            decision = "replace",
            rule_id = %info.id,
            rule_version = %info.version,
            previous_version = %old.version,
            content_hash = %info.content_hash,
            "rule replaced by update"
        );
        Ok(Upsert::Replaced { new: info, old })
    }

    /// Removes the rule `rule_id` (active or quarantined). Returns whether there was one.
    pub fn remove(&mut self, rule_id: &str) -> bool {
        let before = self.slots.len();
        self.slots.retain(|s| s.rule.info().id != rule_id);
        let removed = self.slots.len() != before;
        if removed {
            tracing::info!(target: "rulebox::decision", decision = "remove", rule_id = %rule_id, "rule removed by update");
            self.reindex();
        }
        removed
    }

    /// Drops every version kept as a fallback by [`upsert`](Self::upsert): the update is good.
    pub fn settle(&mut self) {
        for slot in &mut self.slots {
            slot.previous = None;
        }
    }

    /// Ids of the rules loaded (active or quarantined), in load order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.rule.info().id.as_str())
    }

    fn reject(
        &mut self,
        hash: &str,
        source: &str,
        info: Option<&RuleInfo>,
        error: &LoadError,
    ) -> Arc<QuarantineRecord> {
        tracing::warn!(
            target: "rulebox::decision",
            decision = "reject",
            rule_id = info.map_or("", |i| i.id.as_str()),
            rule_version = info.map_or("", |i| i.version.as_str()),
            content_hash = %hash,
            source = %source,
            reason = %error.reason(),
            "module refused: {error}"
        );
        let record = Arc::new(QuarantineRecord::new(
            info,
            hash,
            source,
            &error.to_fault(),
            None,
            self.runtime.config(),
            &self.runtime.config().limits,
            0,
        ));
        self.stats.rejected += 1;
        self.records.push(record.clone());
        record
    }

    /// Runs every subscribed, active rule on `event`.
    pub fn process(
        &mut self,
        thread: &SandboxThread,
        event: &Event<'_>,
    ) -> Result<Outcome, EventError> {
        let mut outcome = Outcome::default();
        self.process_into(thread, event, &mut outcome)?;
        Ok(outcome)
    }

    /// Like [`process`](Self::process), reusing `outcome`'s allocations (it is cleared first).
    pub fn process_into(
        &mut self,
        thread: &SandboxThread,
        event: &Event<'_>,
        outcome: &mut Outcome,
    ) -> Result<(), EventError> {
        let limit = self.runtime.config().max_event_fields;
        if event.extra.len() > limit {
            outcome.clear();
            self.stats.events_refused += 1;
            return Err(EventError::TooManyFields {
                count: event.extra.len(),
                limit,
            });
        }
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let result = event.encode_into(&mut encoded).map_err(EventError::Encode);
        let result =
            result.and_then(|()| self.process_encoded(thread, event.kind(), &encoded, outcome));
        self.encoded = encoded;
        result
    }

    /// Runs every subscribed, active rule on an event already encoded in the wire format. The caller is
    /// responsible for the field-count limit ([`RuntimeConfig::max_event_fields`](crate::RuntimeConfig));
    /// the size limit is checked here.
    pub fn process_encoded(
        &mut self,
        thread: &SandboxThread,
        kind: EventKind,
        event: &[u8],
        outcome: &mut Outcome,
    ) -> Result<(), EventError> {
        thread.check(&self.runtime);
        outcome.clear();
        let limit = self.runtime.config().max_event_bytes;
        if event.len() > limit {
            self.stats.events_refused += 1;
            return Err(EventError::TooLarge {
                size: event.len(),
                limit,
            });
        }
        self.stats.events += 1;
        let subscribed = std::mem::take(&mut self.by_kind[kind as usize]);
        let mut quarantined_any = false;
        for &index in &subscribed {
            // At most twice: a new version quarantined by this event is replaced by its previous
            // version, which then sees the same event, so no detection is lost to the update.
            for _ in 0..2 {
                let slot = &mut self.slots[index];
                if !matches!(slot.state, RuleState::Active)
                    || !slot.rule.info().subscriptions.contains(kind)
                {
                    break;
                }
                outcome.rules_run += 1;
                self.scratch.clear();
                match slot
                    .rule
                    .evaluate_reusing(event, &mut self.scratch, &mut outcome.spare)
                {
                    Ok(()) => {
                        self.stats.detections +=
                            u64::try_from(self.scratch.len()).unwrap_or(u64::MAX);
                        let rule = slot.rule.info();
                        outcome
                            .detections
                            .extend(self.scratch.drain(..).map(|detection| RuleDetection {
                                rule: rule.clone(),
                                detection,
                            }));
                        break;
                    }
                    Err(fault) => {
                        let before = slot.rule.info().clone();
                        if self.fault(index, fault, event, outcome) {
                            quarantined_any = true;
                        }
                        // Run again only if a previous version was restored in its place.
                        if Arc::ptr_eq(self.slots[index].rule.info(), &before) {
                            break;
                        }
                    }
                }
            }
        }
        self.by_kind[kind as usize] = subscribed;
        if quarantined_any {
            self.reindex();
        }
        Ok(())
    }

    /// Handles a fault of the rule at `index`; returns whether the rule was quarantined.
    fn fault(&mut self, index: usize, fault: Fault, event: &[u8], outcome: &mut Outcome) -> bool {
        let runtime = self.runtime.clone();
        let slot = &mut self.slots[index];
        let info = slot.rule.info().clone();
        let allowed = slot.rule.limits().budget_strikes;
        if fault.reason.is_budget() {
            slot.rule.stats.strikes += 1;
            self.stats.strikes += 1;
            let strike = slot.rule.stats.strikes;
            if strike < allowed {
                tracing::warn!(
                    target: "rulebox::decision",
                    decision = "strike",
                    rule_id = %info.id,
                    rule_version = %info.version,
                    reason = %fault.reason,
                    strike,
                    allowed,
                    "rule hit its budget; instance reset: {}", fault.message
                );
                match slot.rule.reset(&runtime) {
                    Ok(()) => {
                        outcome.alerts.push(Alert::BudgetStrike {
                            rule: info,
                            fault,
                            strike,
                            allowed,
                        });
                        return false;
                    }
                    Err(e) => {
                        // Keep the original fault (reason, message, backtrace) so replay
                        // reproduces it; say that the reset failed too.
                        let fault = Fault {
                            message: format!(
                                "{} (and the reset after this budget strike failed: {e})",
                                fault.message
                            ),
                            ..fault
                        };
                        return self.quarantine(index, fault, event, outcome);
                    }
                }
            }
        }
        self.quarantine(index, fault, event, outcome)
    }

    fn quarantine(
        &mut self,
        index: usize,
        fault: Fault,
        event: &[u8],
        outcome: &mut Outcome,
    ) -> bool {
        let slot = &mut self.slots[index];
        let info = slot.rule.info().clone();
        let record = Arc::new(QuarantineRecord::new(
            Some(&info),
            &info.content_hash,
            &info.source,
            &fault,
            Some(event),
            self.runtime.config(),
            slot.rule.limits(),
            slot.rule.stats.strikes,
        ));
        tracing::error!(
            target: "rulebox::decision",
            decision = "quarantine",
            rule_id = %info.id,
            rule_version = %info.version,
            content_hash = %info.content_hash,
            reason = %fault.reason,
            backtrace = fault.backtrace.as_deref().unwrap_or(""),
            "rule quarantined: {}", fault.message
        );
        slot.state = RuleState::Quarantined(record.clone());
        // The instance is never called again: give its memory back now.
        slot.rule.release();
        self.stats.quarantined += 1;
        self.records.push(record.clone());
        outcome.alerts.push(Alert::RuleQuarantined(record.clone()));
        if let Some(previous) = slot.previous.take() {
            let quarantined = std::mem::replace(slot, *previous);
            let restored = slot.rule.info().clone();
            tracing::warn!(
                target: "rulebox::decision",
                decision = "restore",
                rule_id = %restored.id,
                rule_version = %restored.version,
                quarantined_version = %quarantined.rule.info().version,
                "previous version of a quarantined rule restored"
            );
            outcome.alerts.push(Alert::PreviousVersionRestored {
                quarantined: record,
                restored,
            });
            // The restored version has other subscriptions, possibly.
            self.rebuild_index();
        }
        true
    }

    /// Drops quarantined rules from the dispatch index (indices stay valid).
    fn reindex(&mut self) {
        self.rebuild_index();
    }

    /// Rebuilds the dispatch index from the slots.
    fn rebuild_index(&mut self) {
        for list in &mut self.by_kind {
            list.clear();
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if matches!(slot.state, RuleState::Active) {
                for kind in slot.rule.info().subscriptions.iter() {
                    self.by_kind[kind as usize].push(i);
                }
            }
        }
    }

    /// Every rule in the set with its state and counters, in load order.
    pub fn rules(&self) -> impl Iterator<Item = (&Arc<RuleInfo>, &RuleState, RuleStats)> {
        self.slots
            .iter()
            .map(|s| (s.rule.info(), &s.state, s.rule.stats()))
    }

    /// Number of rules still running.
    pub fn active_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, RuleState::Active))
            .count()
    }

    /// Every quarantine record: modules refused at load and rules quarantined at run time, in order.
    pub fn records(&self) -> &[Arc<QuarantineRecord>] {
        &self.records
    }

    /// The set's counters.
    pub fn stats(&self) -> &SetStats {
        &self.stats
    }

    /// Whether the rule `rule_id` is active.
    pub fn is_active(&self, rule_id: &str) -> bool {
        self.slots
            .iter()
            .any(|s| s.rule.info().id == rule_id && matches!(s.state, RuleState::Active))
    }

    /// The limits the rule `rule_id` runs under, if it is loaded.
    pub fn limits_of(&self, rule_id: &str) -> Option<&crate::config::Limits> {
        self.slots
            .iter()
            .find(|s| s.rule.info().id == rule_id)
            .map(|s| s.rule.limits())
    }

    /// Reason the rule `rule_id` was quarantined, if it was.
    pub fn quarantine_reason(&self, rule_id: &str) -> Option<Reason> {
        self.slots
            .iter()
            .find(|s| s.rule.info().id == rule_id)
            .and_then(|s| match &s.state {
                RuleState::Quarantined(r) => Some(r.reason),
                RuleState::Active => None,
            })
    }
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.slots.len())
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rulebox_sdk::{Field, Severity};

    use super::*;

    fn detection(value_len: usize) -> RuleDetection {
        RuleDetection {
            rule: Arc::new(RuleInfo {
                id: "r".into(),
                name: String::new(),
                version: "1".into(),
                severity: Severity::Low,
                subscriptions: rulebox_sdk::EventKinds::all(),
                content_hash: String::new(),
                source: String::new(),
                wasi: false,
            }),
            detection: Detection {
                rule_id: Cow::Owned("r".into()),
                title: Cow::Owned("t".into()),
                severity: Severity::Low,
                fields: vec![Field {
                    name: Cow::Owned("n".into()),
                    value: Cow::Owned("v".repeat(value_len)),
                }],
            },
        }
    }

    #[test]
    fn clearing_keeps_small_detections_only_and_at_most_max_spare() {
        let mut outcome = Outcome::default();
        outcome.detections.push(detection(10));
        outcome.detections.push(detection(64 << 10));
        outcome.clear();
        assert!(outcome.detections.is_empty());
        assert_eq!(outcome.spare.len(), 1, "the 64 KiB detection is not kept");
        for _ in 0..3 {
            outcome
                .detections
                .extend((0..MAX_SPARE).map(|_| detection(10)));
            outcome.clear();
        }
        assert_eq!(outcome.spare.len(), MAX_SPARE);
    }
}
