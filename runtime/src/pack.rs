//! One loaded rule pack (ABI 3): one store and instance evaluating many rules on one copy of each
//! batch of events. The calling sequence's host side is in [`crate::pack_call`]; what a fault means
//! (strike, quarantine, the pack stopping) is decided by the [`RuleSet`](crate::RuleSet).

use std::sync::Arc;

use rulebox_sdk::abi::{self, exports};
use rulebox_sdk::batch::{self, MAX_BATCH_EVENTS};
use rulebox_sdk::{Detection, EventKind, LoadReply, PackMetadata};
use wasmtime::{Memory, Store, TypedFunc};

use crate::config::Limits;
use crate::host::HostState;
use crate::module::{CompiledRule, LoadError, content_hash};
use crate::pack_call::{Counters, Hit, MemberCtl, PackCtl, PackTrap};
use crate::quarantine::{Fault, Reason};
use crate::rule::{
    RuleStats, classify, clip, host_fault, load_fault, loading_limits, read_guest,
    validate_identity, validate_metadata,
};
use crate::rule_info::{PackInfo, RuleInfo};
use crate::runtime::{Runtime, SandboxThread};
use crate::start::{Started, export, start};

/// Most rules one pack may declare.
pub const MAX_PACK_RULES: usize = 16_384;

/// Largest reply `rulebox_load` may return (the pack's metadata), in bytes.
pub const MAX_PACK_METADATA_BYTES: u32 = 8 << 20;

/// Largest rule data handed to a pack, in bytes (the guest's input cap).
pub const MAX_RULE_DATA_BYTES: usize = abi::MAX_INPUT_LEN as usize;

/// Extra fuel for loading, per byte of rule data, on top of the pack's `fuel_at_load`.
pub const LOAD_FUEL_PER_DATA_BYTE: u64 = 1_000;

/// Extra load deadline, in milliseconds per KiB of rule data, on top of `load_deadline_ms`.
pub const LOAD_MS_PER_DATA_KIB: u64 = 1;

/// Largest batch (header, table and events) handed to one `rulebox_on_events` call, unless a single
/// event is larger.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// A pack's own counters: the work of its shared code (reading the batch, the engine's walk, a
/// cross-rule prefilter), outside every rule's budget. Fuel counts wasm instructions, so these
/// are the same on every run: the deterministic measure of what a pack costs beyond its rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PackStats {
    /// Events the pack began (`rulebox.event_begin`) in calls that completed.
    pub events: u64,
    /// The pack's own fuel over those events, each from its `event_begin` to the next one or to the
    /// call's end, the rules' fuel not included.
    pub own_fuel: u64,
    /// The most own fuel one event used.
    pub max_own_fuel: u64,
    /// Instances replaced by fresh ones after a fault.
    pub renewals: u64,
}

/// One rule of a pack, as the host keeps it.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) info: Arc<RuleInfo>,
    pub(crate) limits: Limits,
    /// Strikes; and the counters, while the pack has no instance (while it has one, they live in
    /// its control table).
    pub(crate) stats: RuleStats,
    /// Whether the rule runs (not quarantined, removed or kept only as a fallback).
    pub(crate) enabled: bool,
}

struct Instance {
    store: Store<HostState>,
    memory: Memory,
    input: TypedFunc<u32, u32>,
    on_events: TypedFunc<u32, u64>,
    last_panic: Option<TypedFunc<(), u64>>,
    input_ptr: u32,
    input_cap: u32,
}

/// How a call into the pack ended.
#[derive(Debug, Clone)]
pub(crate) enum CallEnd {
    /// Every event was walked.
    Done,
    /// Rule `rule` faulted on event `event` (an index into the call's selection).
    RuleFault {
        event: usize,
        rule: u32,
        fault: Fault,
    },
    /// The pack itself faulted while on event `event` (its shared code, or a protocol violation),
    /// done with the rules below `done_upto` on it.
    PackFault {
        event: usize,
        done_upto: u32,
        fault: Fault,
    },
}

/// What [`LoadedPack::finish_call`] reports, in order.
pub(crate) enum Delivery<'a> {
    /// `rules` rules ran on event `event` of the call's selection.
    Ran { event: usize, rules: u32 },
    /// ... and reported this.
    Detection {
        event: usize,
        rule: &'a Arc<RuleInfo>,
        detection: Detection<'static>,
    },
}

/// A rule pack instantiated in its own store, its rule data loaded, ready for batches of events.
/// `Send`: it may be prepared on one sandbox thread and installed into a
/// [`RuleSet`](crate::RuleSet) on another.
pub struct LoadedPack {
    info: Arc<PackInfo>,
    compiled: CompiledRule,
    data: Arc<[u8]>,
    limits: Limits,
    meta: PackMetadata<'static>,
    members: Vec<Member>,
    instance: Option<Instance>,
    /// The pack's own budget strikes (faults of its shared code).
    pub(crate) strikes: u32,
    /// When the pack's last strike was counted.
    pub(crate) last_strike: Option<std::time::Instant>,
    /// Instances replaced after a fault, and counters folded from them.
    renewals: u64,
    memory_high_water: u64,
    log_suppressed: u64,
    /// The pack's own counters of instances replaced or released.
    own: Counters,
}

impl std::fmt::Debug for LoadedPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPack")
            .field("info", &self.info)
            .field("rules", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// The limits a rule of a pack runs under: `rule_limits`' entry for its id (a signed manifest's),
/// else the configuration's entry for its id, else the pack's.
pub(crate) fn member_limits(
    config: &crate::config::RuntimeConfig,
    rule_limits: &std::collections::BTreeMap<String, Limits>,
    pack_limits: &Limits,
    rule_id: &str,
) -> Limits {
    rule_limits
        .get(rule_id)
        .or_else(|| config.rules.get(rule_id))
        .unwrap_or(pack_limits)
        .clone()
}

/// The load budgets for `data_len` bytes of rule data: the pack's `fuel_at_load` and
/// `load_deadline_ms`, plus [`LOAD_FUEL_PER_DATA_BYTE`] and [`LOAD_MS_PER_DATA_KIB`], within the
/// configuration's upper bounds.
fn scaled_for_data(mut limits: Limits, data_len: usize) -> Limits {
    let len = u64::try_from(data_len).unwrap_or(u64::MAX);
    limits.fuel_at_load = limits
        .fuel_at_load
        .saturating_add(len.saturating_mul(LOAD_FUEL_PER_DATA_BYTE))
        .min(1_000_000_000_000);
    limits.load_deadline_ms = limits
        .load_deadline_ms
        .saturating_add(len.div_ceil(1024).saturating_mul(LOAD_MS_PER_DATA_KIB))
        .min(600_000);
    limits
}

fn validate_pack_metadata(meta: &PackMetadata<'_>) -> Result<(), LoadError> {
    if meta.schema_version != abi::SCHEMA_VERSION {
        return Err(LoadError::SchemaVersion {
            found: meta.schema_version,
            expected: abi::SCHEMA_VERSION,
        });
    }
    validate_identity("pack ", &meta.id, &meta.name, &meta.version)?;
    if meta.rules.is_empty() {
        return Err(LoadError::BadMetadata("the pack declares no rules".into()));
    }
    if meta.rules.len() > MAX_PACK_RULES {
        return Err(LoadError::BadMetadata(format!(
            "the pack declares {} rules; at most {MAX_PACK_RULES}",
            meta.rules.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(meta.rules.len());
    for (i, rule) in meta.rules.iter().enumerate() {
        validate_metadata(rule).map_err(|e| match e {
            LoadError::BadMetadata(m) => LoadError::BadMetadata(format!("rule {i}: {m}")),
            other => other,
        })?;
        if !seen.insert(rule.id.as_ref()) {
            return Err(LoadError::BadMetadata(format!(
                "rule {i}: the id `{}` appears twice in the pack",
                rule.id
            )));
        }
    }
    Ok(())
}

impl LoadedPack {
    /// Instantiates the pack `compiled` in a fresh store, hands it `data` (its rule data; empty for
    /// a pack whose rules are compiled in) and reads its metadata, all under the load budgets
    /// (scaled by the data's size: [`LOAD_FUEL_PER_DATA_BYTE`], [`LOAD_MS_PER_DATA_KIB`]).
    ///
    /// `limits` (for example from a signed release manifest) are the pack's own (memory, tables,
    /// load budgets, and the fuel and deadline of its work outside every rule) and every rule's
    /// without an entry of its own in the configuration; without them, the configuration's limits
    /// for the pack's id.
    pub fn load(
        runtime: &Runtime,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        data: &[u8],
        limits: Option<&Limits>,
    ) -> Result<LoadedPack, LoadError> {
        LoadedPack::load_with_rule_limits(
            runtime,
            thread,
            compiled,
            data,
            limits,
            &std::collections::BTreeMap::new(),
        )
    }

    /// [`load`](Self::load), with limits for particular rules of the pack by rule id (a signed
    /// manifest's per-rule entries): each replaces, for its rule, the configuration's entry and the
    /// pack's limits ([`member_limits`]). Each is validated.
    pub fn load_with_rule_limits(
        runtime: &Runtime,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        data: &[u8],
        limits: Option<&Limits>,
        rule_limits: &std::collections::BTreeMap<String, Limits>,
    ) -> Result<LoadedPack, LoadError> {
        thread.check(runtime);
        for (id, l) in rule_limits {
            l.validate().map_err(|e| {
                LoadError::BadMetadata(format!(
                    "limits given for rule `{}` of the pack: {e}",
                    id.escape_debug()
                ))
            })?;
        }
        if !compiled.is_pack() {
            return Err(LoadError::WrongAbi {
                found: compiled.abi_version(),
                expected: abi::PACK_ABI_VERSION,
                what: "rule pack",
            });
        }
        if let Some(l) = limits {
            l.validate()
                .map_err(|e| LoadError::BadMetadata(format!("limits given for the pack: {e}")))?;
        }
        if data.len() > MAX_RULE_DATA_BYTES {
            return Err(LoadError::BadRuleData(format!(
                "{} bytes of rule data; at most {MAX_RULE_DATA_BYTES}",
                data.len()
            )));
        }
        let loading = loading_limits(runtime, limits);
        let (mut instance, meta) = instantiate(runtime, compiled, &loading, data, None)?;
        validate_pack_metadata(&meta)?;
        let config = runtime.config();
        let pack_limits = limits
            .cloned()
            .unwrap_or_else(|| config.limits_for(&meta.id).clone());
        let memory_now =
            u64::try_from(instance.memory.data_size(&instance.store)).unwrap_or(u64::MAX);
        if memory_now > pack_limits.memory_bytes {
            return Err(LoadError::UnderRuleLimits {
                id: meta.id.to_string(),
                version: meta.version.to_string(),
                error: Box::new(LoadError::MemoryOverCap {
                    declared: memory_now,
                    cap: pack_limits.memory_bytes,
                }),
                limits: Box::new(pack_limits),
            });
        }
        let info = Arc::new(PackInfo {
            id: meta.id.to_string(),
            name: meta.name.to_string(),
            version: meta.version.to_string(),
            content_hash: compiled.content_hash().to_owned(),
            data_hash: content_hash(data),
            source: compiled.source().to_owned(),
            rules: u32::try_from(meta.rules.len()).unwrap_or(u32::MAX),
            wasi: compiled.uses_wasi(),
        });
        let members: Vec<Member> = meta
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| Member {
                info: Arc::new(RuleInfo {
                    id: rule.id.to_string(),
                    name: rule.name.to_string(),
                    version: rule.version.to_string(),
                    severity: rule.severity,
                    subscriptions: rule.subscriptions,
                    content_hash: compiled.content_hash().to_owned(),
                    source: compiled.source().to_owned(),
                    wasi: compiled.uses_wasi(),
                    pack: Some(info.clone()),
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                }),
                limits: member_limits(config, rule_limits, &pack_limits, &rule.id),
                stats: RuleStats::default(),
                enabled: true,
            })
            .collect();
        let mut pack = LoadedPack {
            info,
            compiled: compiled.clone(),
            data: Arc::from(data),
            limits: pack_limits,
            meta,
            members,
            instance: None,
            strikes: 0,
            last_strike: None,
            renewals: 0,
            memory_high_water: 0,
            log_suppressed: 0,
            own: Counters::default(),
        };
        pack.arm(&mut instance, None);
        pack.instance = Some(instance);
        Ok(pack)
    }

    /// Gives a fresh instance the pack's limits and the control table of its rules.
    /// The rules' counters come from the old instance's table, if any, or from the members.
    fn arm(&self, instance: &mut Instance, old: Option<&PackCtl>) {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberCtl {
                kinds: if m.enabled { m.info.subscriptions.0 } else { 0 },
                limits: m.limits.clone(),
                id: m.info.id.as_str().into(),
                counters: old
                    .and_then(|c| c.members.get(i))
                    .map_or_else(|| counters_of(&m.stats), |c| c.counters),
            })
            .collect();
        let mut ctl = PackCtl::new(members, self.limits.fuel_per_event, self.limits.deadline_ms);
        ctl.memory = Some(instance.memory);
        let state = instance.store.data_mut();
        state.limiter.memory_cap = self.limits.memory_bytes;
        state.limiter.table_cap = self.limits.table_elements;
        state.pack = Some(Box::new(ctl));
        if let Ok(mut log) = state.log.lock() {
            log.set_rule(self.info.id.as_str().into());
        }
    }

    /// Replaces the instance with a fresh one from the same module and the same rule data (after a
    /// fault: the old one may have stopped half-way through changing its state). The new instance
    /// must report the same metadata.
    pub(crate) fn renew(&mut self, runtime: &Runtime) -> Result<(), LoadError> {
        let loading = loading_limits(runtime, Some(&self.limits));
        let old = self
            .instance
            .as_mut()
            .and_then(|i| i.store.data_mut().pack.take());
        if let Some(old) = &old {
            self.keep_counters(old);
        }
        self.fold_instance_counters();
        self.instance = None;
        let (mut instance, meta) = instantiate(
            runtime,
            &self.compiled,
            &loading,
            &self.data,
            Some(&self.info.id),
        )?;
        if meta != self.meta {
            return Err(LoadError::BadMetadata(
                "the pack's metadata changed between instantiations".into(),
            ));
        }
        self.arm(&mut instance, old.as_deref());
        if let (Some(old), Some(ctl)) = (old, instance.store.data_mut().pack.as_mut()) {
            ctl.spare = old.spare;
        }
        self.instance = Some(instance);
        self.renewals += 1;
        Ok(())
    }

    /// Copies the counters of `ctl` (a live instance's, about to be dropped) into the members,
    /// and adds its own counters to the pack's.
    fn keep_counters(&mut self, ctl: &PackCtl) {
        self.own.events += ctl.own.events;
        self.own.total_fuel = self.own.total_fuel.saturating_add(ctl.own.total_fuel);
        self.own.max_fuel = self.own.max_fuel.max(ctl.own.max_fuel);
        for (m, c) in self.members.iter_mut().zip(&ctl.members) {
            let (strikes, last) = (m.stats.strikes, m.stats.last_strike);
            m.stats = stats_of(&c.counters);
            m.stats.strikes = strikes;
            m.stats.last_strike = last;
        }
    }

    /// Drops the instance and its store, giving its memory back. No rule of the pack runs again.
    pub(crate) fn release(&mut self) {
        let ctl = self
            .instance
            .as_mut()
            .and_then(|i| i.store.data_mut().pack.take());
        if let Some(ctl) = ctl {
            self.keep_counters(&ctl);
        }
        self.fold_instance_counters();
        self.instance = None;
        for m in &mut self.members {
            m.enabled = false;
        }
    }

    /// The live instance's control table.
    fn ctl(&self) -> Option<&PackCtl> {
        self.instance
            .as_ref()
            .and_then(|inst| inst.store.data().pack.as_deref())
    }

    /// Makes the instance a shared prefilter index's (`crate::index`): the rules it names are
    /// recorded, never run. A renewed instance is an ordinary pack's again.
    pub(crate) fn record_candidates(&mut self) {
        if let Some(inst) = self.instance.as_mut() {
            inst.ctl().record = Some(Vec::new());
        }
    }

    /// Gives the instance's own work `packs` times the pack's own budget per event (fuel and
    /// deadline): a shared prefilter index's, which does in one scan the work of that many packs'
    /// prefilters, each of which had the pack budget of its own.
    pub(crate) fn scale_own_budget(&mut self, packs: u64) {
        let (fuel, ms) = (self.limits.fuel_per_event, self.limits.deadline_ms);
        if let Some(inst) = self.instance.as_mut() {
            let ctl = inst.ctl();
            ctl.pack_fuel = fuel.saturating_mul(packs.max(1));
            ctl.pack_ms = ms.saturating_mul(packs.max(1));
        }
    }

    /// The `(event, rule)` pairs the last call recorded ([`record_candidates`](Self::record_candidates)).
    pub(crate) fn recorded(&self) -> &[(u32, u32)] {
        self.ctl()
            .and_then(|c| c.record.as_deref())
            .unwrap_or_default()
    }

    /// Whether the pack still has an instance.
    pub(crate) fn is_live(&self) -> bool {
        self.instance.is_some()
    }

    fn fold_instance_counters(&mut self) {
        let (high, suppressed) = self.instance_counters();
        self.memory_high_water = self.memory_high_water.max(high);
        self.log_suppressed = self.log_suppressed.saturating_add(suppressed);
    }

    fn instance_counters(&self) -> (u64, u64) {
        let Some(inst) = &self.instance else {
            return (0, 0);
        };
        inst.store.data().counters()
    }

    /// What the host knows about the pack.
    pub fn info(&self) -> &Arc<PackInfo> {
        &self.info
    }

    /// The pack's own limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The rule data the pack was loaded with.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The compiled module.
    pub fn compiled(&self) -> &CompiledRule {
        &self.compiled
    }

    /// How many instances were replaced by fresh ones after a fault.
    pub fn renewals(&self) -> u64 {
        self.renewals
    }

    /// The pack's own counters, over every instance it has had.
    pub fn pack_stats(&self) -> PackStats {
        let live = self.ctl().map(|c| c.own).unwrap_or_default();
        PackStats {
            events: self.own.events + live.events,
            own_fuel: self.own.total_fuel.saturating_add(live.total_fuel),
            max_own_fuel: self.own.max_fuel.max(live.max_fuel),
            renewals: self.renewals,
        }
    }

    /// Every rule of the pack with its counters, in index order.
    pub fn rules(&self) -> impl Iterator<Item = (&Arc<RuleInfo>, RuleStats)> {
        (0..self.members.len()).map(|i| (&self.members[i].info, self.stats(i)))
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    pub(crate) fn member_mut(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }

    /// Rule `i`'s counters; memory and suppressed log messages are the pack's (one memory, one log
    /// budget for all its rules).
    pub(crate) fn stats(&self, i: usize) -> RuleStats {
        let member = &self.members[i];
        let mut stats = match self.ctl().and_then(|c| c.members.get(i)) {
            Some(c) => stats_of(&c.counters),
            None => member.stats.clone(),
        };
        stats.strikes = member.stats.strikes;
        stats.last_strike = member.stats.last_strike;
        let (high, suppressed) = self.instance_counters();
        stats.memory_high_water = self.memory_high_water.max(high);
        stats.log_suppressed = self.log_suppressed.saturating_add(suppressed);
        stats
    }

    /// Lets rule `i` run (or not), in the host's view and in the live instance's control table.
    pub(crate) fn set_enabled(&mut self, i: usize, enabled: bool) {
        self.members[i].enabled = enabled;
        let kinds = if enabled {
            self.members[i].info.subscriptions.0
        } else {
            0
        };
        if let Some(ctl) = self
            .instance
            .as_mut()
            .and_then(|inst| inst.store.data_mut().pack.as_deref_mut())
        {
            ctl.set_kinds(i, kinds);
        }
    }

    /// The kinds (bit mask) some enabled rule of the pack subscribes to.
    pub(crate) fn runnable_kinds(&self) -> u32 {
        self.ctl().map_or(0, PackCtl::kinds_union)
    }

    /// How many enabled rules from index `from` on (only `only`, if given) subscribe to `kind`:
    /// the rules an event of it would still reach.
    pub(crate) fn subscribed_from(&self, kind: EventKind, from: u32, only: Option<u32>) -> u32 {
        let n = self
            .members
            .iter()
            .enumerate()
            .skip(from as usize)
            .filter(|(i, m)| {
                m.enabled
                    && m.info.subscriptions.contains(kind)
                    && only.is_none_or(|o| o as usize == *i)
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Takes detections from `spare` (an outcome's) for the instance to write results into.
    #[cold]
    pub(crate) fn lend_spare(&mut self, spare: &mut Vec<Detection<'static>>) {
        if let Some(ctl) = self
            .instance
            .as_mut()
            .and_then(|inst| inst.store.data_mut().pack.as_deref_mut())
            && ctl.spare.len() < crate::outcome::MAX_SPARE
        {
            ctl.spare.append(spare);
        }
    }

    /// The events of `sel` (indices into `events`) a call may take, from the start: at most
    /// [`MAX_BATCH_EVENTS`] and [`MAX_BATCH_BYTES`] (but at least one event).
    pub(crate) fn chunk(events: &[(EventKind, &[u8])], sel: &[usize]) -> usize {
        LoadedPack::chunk_with(events, sel, |_| 0)
    }

    /// [`chunk`](Self::chunk), each event of `sel` (by its position in `sel`) taking `extra(k)`
    /// bytes more (its candidate list, `rulebox_sdk::batch`).
    pub(crate) fn chunk_with(
        events: &[(EventKind, &[u8])],
        sel: &[usize],
        extra: impl Fn(usize) -> usize,
    ) -> usize {
        let mut bytes = batch::BATCH_HEADER_LEN;
        let mut n = 0;
        for (k, &i) in sel.iter().take(MAX_BATCH_EVENTS).enumerate() {
            let add = batch::BATCH_ENTRY_LEN + events[i].1.len() + extra(k);
            if n > 0 && bytes + add > MAX_BATCH_BYTES {
                break;
            }
            bytes += add;
            n += 1;
        }
        n
    }

    /// One call of `rulebox_on_events` on the events of `sel` (indices into `events`, at most
    /// [`chunk`](Self::chunk) of them): rules below `floor` skip the first event (they already ran
    /// on it), and with `only` no rule but that one runs. With `cands` (one list per event of
    /// `sel`, from the set's shared prefilter index), the batch carries each event's candidate
    /// rules, which the pack runs instead of asking its own prefilter. The rules' results wait in
    /// the instance for [`finish_call`](Self::finish_call).
    pub(crate) fn call(
        &mut self,
        events: &[(EventKind, &[u8])],
        sel: &[usize],
        floor: u32,
        only: Option<u32>,
        cands: Option<&[&[u32]]>,
    ) -> CallEnd {
        let Some(inst) = self.instance.as_mut() else {
            return CallEnd::PackFault {
                event: 0,
                done_upto: 0,
                fault: host_fault("the pack was released after it stopped"),
            };
        };
        let bytes = || sel.iter().map(|&i| events[i].1);
        let lists = || cands.unwrap_or_default().iter().copied();
        let len = match cands {
            Some(_) => batch::batch_len_with_candidates(bytes(), lists()),
            None => batch::batch_len(bytes()),
        };
        let len = match len {
            Ok(len) => len,
            Err(e) => {
                return CallEnd::PackFault {
                    event: 0,
                    done_upto: 0,
                    fault: host_fault(&format!("the batch cannot be written: {e}")),
                };
            }
        };
        // `batch_len` checked that the batch is below 4 GiB.
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        let ctl = inst.ctl();
        ctl.begin_call(sel.iter().map(|&i| events[i].0 as u8), floor, only);
        let (fuel, ms) = (ctl.pack_fuel, ctl.pack_ms);
        if let Err(e) = inst.store.set_fuel(fuel) {
            return CallEnd::PackFault {
                event: 0,
                done_upto: 0,
                fault: host_fault(&format!("{e:#}")),
            };
        }
        inst.store.data_mut().start_budget(ms);
        inst.store.set_epoch_deadline(1);
        if (len32 > inst.input_cap || inst.input_ptr == 0)
            && let Err(fault) = inst.grow_input(len32)
        {
            return CallEnd::PackFault {
                event: 0,
                done_upto: 0,
                fault,
            };
        }
        // The guest's pointer is checked against its memory before the host writes a byte.
        let data = inst.memory.data_mut(&mut inst.store);
        let start = inst.input_ptr as usize;
        let Some(dest) = start
            .checked_add(len)
            .and_then(|end| data.get_mut(start..end))
        else {
            return CallEnd::PackFault {
                event: 0,
                done_upto: 0,
                fault: inst.input_outside_memory(len32),
            };
        };
        let written = match cands {
            Some(_) => batch::write_batch_with_candidates_to(bytes(), lists(), dest),
            None => batch::write_batch_to(bytes(), dest),
        };
        if let Err(e) = written {
            return CallEnd::PackFault {
                event: 0,
                done_upto: 0,
                fault: host_fault(&format!("the batch cannot be written: {e}")),
            };
        }
        let result = inst.on_events.call(&mut inst.store, len32);
        let fuel_left = inst.store.get_fuel().unwrap_or(0);
        let ctl = inst.ctl();
        let event = ctl.current.map_or(0, |e| e as usize);
        if result.is_ok() {
            // The last rule closes with the call.
            ctl.finish(fuel_left);
        }
        let done_upto = ctl.next_rule;
        match result {
            Ok(abi::RESULT_NONE) => CallEnd::Done,
            Ok(abi::RESULT_UNDECODABLE_EVENT) => CallEnd::PackFault {
                event,
                done_upto,
                fault: Fault {
                    reason: Reason::UndecodableEvent,
                    message: format!(
                        "the pack could not read the batch or event {event} of it (it expects \
                         event-schema version {})",
                        abi::SCHEMA_VERSION
                    ),
                    backtrace: None,
                },
            },
            Ok(other) => CallEnd::PackFault {
                event,
                done_upto,
                fault: protocol(format!(
                    "rulebox_on_events returned {other:#x}; the ABI defines 0 and u64::MAX"
                )),
            },
            Err(e) => {
                if let Some(PackTrap::Protocol(message)) = e.downcast_ref::<PackTrap>() {
                    return CallEnd::PackFault {
                        event,
                        done_upto,
                        fault: protocol(message.clone()),
                    };
                }
                let open = ctl.open.take();
                // The faulting rule's event counts, with the fuel it used.
                if let Some(open) = open {
                    let member = &mut ctl.members[open.rule as usize];
                    let fuel = member.limits.fuel_per_event.saturating_sub(fuel_left);
                    member.counters.note(fuel);
                    ctl.ran[event] += 1;
                }
                let fault = match e.downcast_ref::<PackTrap>() {
                    Some(PackTrap::Result(fault)) => fault.clone(),
                    _ => {
                        let memory = inst.memory;
                        classify(&e, &mut inst.store, inst.last_panic.as_ref(), Some(memory))
                    }
                };
                match open {
                    Some(open) => CallEnd::RuleFault {
                        event,
                        rule: open.rule,
                        fault,
                    },
                    None => CallEnd::PackFault {
                        event,
                        done_upto,
                        fault,
                    },
                }
            }
        }
    }

    /// Hands over the results of the last call, in order: for each event, how many rules ran on
    /// it, then its detections.
    pub(crate) fn finish_call(&mut self, mut deliver: impl FnMut(Delivery<'_>)) {
        let Some(inst) = self.instance.as_mut() else {
            return;
        };
        let ctl = inst.ctl();
        let mut detections = ctl.detections.drain(..);
        let mut hits = ctl.hits.iter().peekable();
        for (event, &rules) in ctl.ran.iter().enumerate() {
            if rules > 0 {
                deliver(Delivery::Ran { event, rules });
            }
            while let Some(&&Hit {
                event: e,
                rule,
                count,
            }) = hits.peek()
            {
                if e as usize != event {
                    break;
                }
                hits.next();
                let info = &self.members[rule as usize].info;
                for detection in detections.by_ref().take(count as usize) {
                    deliver(Delivery::Detection {
                        event,
                        rule: info,
                        detection,
                    });
                }
            }
        }
        drop(detections);
        ctl.hits.clear();
        ctl.ran.clear();
    }
}

fn counters_of(stats: &RuleStats) -> Counters {
    Counters {
        events: stats.events,
        detections: stats.detections,
        last_fuel: stats.last_fuel,
        max_fuel: stats.max_fuel,
        total_fuel: stats.total_fuel,
    }
}

fn stats_of(c: &Counters) -> RuleStats {
    RuleStats {
        events: c.events,
        detections: c.detections,
        last_fuel: c.last_fuel,
        max_fuel: c.max_fuel,
        total_fuel: c.total_fuel,
        ..RuleStats::default()
    }
}

fn protocol(message: String) -> Fault {
    Fault {
        reason: Reason::PackProtocol,
        message,
        backtrace: None,
    }
}

impl Instance {
    #[inline]
    fn ctl(&mut self) -> &mut PackCtl {
        // Every pack instance is armed before it is called.
        self.store
            .data_mut()
            .pack
            .get_or_insert_with(|| Box::new(PackCtl::new(Vec::new(), 0, 0)))
    }

    /// Asks the guest for an input buffer of `len` bytes (`rulebox_input`), and keeps it. A fault
    /// here is the pack's.
    #[cold]
    fn grow_input(&mut self, len: u32) -> Result<(), Fault> {
        let ptr = match self.input.call(&mut self.store, len) {
            Ok(p) => p,
            Err(e) => {
                let memory = self.memory;
                return Err(classify(
                    &e,
                    &mut self.store,
                    self.last_panic.as_ref(),
                    Some(memory),
                ));
            }
        };
        if ptr == 0 {
            return Err(Fault {
                reason: Reason::BadInputBuffer,
                message: format!("rulebox_input({len}) returned a null buffer"),
                backtrace: None,
            });
        }
        self.input_ptr = ptr;
        self.input_cap = len;
        Ok(())
    }

    #[cold]
    fn input_outside_memory(&self, len: u32) -> Fault {
        Fault {
            reason: Reason::BadInputBuffer,
            message: format!(
                "rulebox_input returned {:#x}, which with {len} bytes is outside the pack's {} bytes \
                 of memory",
                self.input_ptr,
                self.memory.data_size(&self.store)
            ),
            backtrace: None,
        }
    }
}

/// A fresh store and instance of `compiled`, its start routine run and `data` loaded
/// (`rulebox_load`), under the load budgets of `limits` scaled for the data: the instance and the
/// pack's metadata (not yet validated).
fn instantiate(
    runtime: &Runtime,
    compiled: &CompiledRule,
    limits: &Limits,
    data: &[u8],
    pack_id: Option<&str>,
) -> Result<(Instance, PackMetadata<'static>), LoadError> {
    let limits = scaled_for_data(limits.clone(), data.len());
    let label: Arc<str> = pack_id.unwrap_or(compiled.source()).into();
    // A pack calling `event_begin` or `rule_begin` while it loads breaks the calling sequence: its
    // control table is empty until the first call.
    let empty = PackCtl::new(Vec::new(), 0, 0);
    let Started {
        mut store,
        instance,
        memory,
        input,
        last_panic,
    } = start(
        runtime,
        compiled,
        &limits,
        label,
        Some(Box::new(empty)),
        abi::PACK_ABI_VERSION,
    )?;
    let load = export::<u32, u64>(&mut store, &instance, exports::LOAD, "func (i32) -> i64")?;
    let on_events = export::<u32, u64>(
        &mut store,
        &instance,
        exports::ON_EVENTS,
        "func (i32) -> i64",
    )?;
    let mut inst = Instance {
        store,
        memory,
        input,
        on_events,
        last_panic,
        input_ptr: 0,
        input_cap: 0,
    };
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    if !data.is_empty() {
        let ptr = match inst.input.call(&mut inst.store, len) {
            Ok(p) => p,
            Err(e) => return Err(load_fault(&e, &mut inst.store)),
        };
        let bytes = inst.memory.data_mut(&mut inst.store);
        let dest = (ptr != 0)
            .then_some(ptr as usize)
            .and_then(|start| bytes.get_mut(start..start.checked_add(data.len())?));
        let Some(dest) = dest else {
            return Err(LoadError::BadRuleData(format!(
                "rulebox_input({len}) returned {ptr:#x}, not a buffer inside the pack's memory"
            )));
        };
        dest.copy_from_slice(data);
        // The buffer is the pack's once it has loaded (it may keep its rule data there, ABI 3):
        // `input_ptr` stays 0, so the first batch asks for a buffer of its own.
    }
    let packed = match load.call(&mut inst.store, len) {
        Ok(p) => p,
        Err(e) => return Err(load_fault(&e, &mut inst.store)),
    };
    if packed == 0 {
        return Err(LoadError::BadMetadata(
            "rulebox_load returned no reply".into(),
        ));
    }
    let reply = {
        let bytes = read_guest(&inst.store, inst.memory, packed, MAX_PACK_METADATA_BYTES)
            .map_err(|m| LoadError::BadMetadata(format!("load reply {m}")))?;
        let (reply, rest) = crate::metadata::decode_reply(bytes)
            .map_err(|e| LoadError::BadMetadata(format!("load reply: {e}")))?;
        if !rest.is_empty() {
            return Err(LoadError::BadMetadata(format!(
                "{} trailing bytes after the load reply",
                rest.len()
            )));
        }
        match reply {
            LoadReply::Loaded(meta) => Ok(meta.into_owned()),
            LoadReply::Refused(why) => Err(why.escape_debug().to_string()),
        }
    };
    match reply {
        Ok(meta) => Ok((inst, meta)),
        Err(why) => Err(LoadError::BadRuleData(clip(why, 1024))),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rulebox_sdk::{EventKinds, RuleMetadata, Severity};

    use super::*;

    #[test]
    fn load_budgets_grow_with_the_data_within_the_upper_bounds() {
        let base = Limits::default();
        let same = scaled_for_data(base.clone(), 0);
        assert_eq!(
            (same.fuel_at_load, same.load_deadline_ms),
            (base.fuel_at_load, base.load_deadline_ms)
        );
        let mib = scaled_for_data(base.clone(), 1 << 20);
        assert_eq!(
            mib.fuel_at_load,
            base.fuel_at_load + (1 << 20) * LOAD_FUEL_PER_DATA_BYTE
        );
        assert_eq!(
            mib.load_deadline_ms,
            base.load_deadline_ms + 1024 * LOAD_MS_PER_DATA_KIB
        );
        let huge = scaled_for_data(base, usize::MAX);
        assert_eq!(
            (huge.fuel_at_load, huge.load_deadline_ms),
            (1_000_000_000_000, 600_000)
        );
        huge.validate().expect("still a valid configuration");
    }

    fn rule(id: &str) -> RuleMetadata<'static> {
        RuleMetadata {
            schema_version: abi::SCHEMA_VERSION,
            id: Cow::Owned(id.into()),
            name: Cow::Borrowed("r"),
            version: Cow::Borrowed("1"),
            severity: Severity::Low,
            subscriptions: EventKinds::all(),
        }
    }

    fn meta(rules: Vec<RuleMetadata<'static>>) -> PackMetadata<'static> {
        PackMetadata {
            schema_version: abi::SCHEMA_VERSION,
            id: Cow::Borrowed("p"),
            name: Cow::Borrowed("p"),
            version: Cow::Borrowed("1"),
            rules,
        }
    }

    #[test]
    fn pack_metadata_is_checked_rule_by_rule() {
        validate_pack_metadata(&meta(vec![rule("a"), rule("b")])).unwrap();
        let err = validate_pack_metadata(&meta(vec![rule("a"), rule("a")])).unwrap_err();
        assert!(
            err.to_string().contains("rule 1: the id `a` appears twice"),
            "{err}"
        );
        let err = validate_pack_metadata(&meta(vec![rule("a"), rule("b c")])).unwrap_err();
        assert!(err.to_string().contains("rule 1: id `b c`"), "{err}");
        let err = validate_pack_metadata(&meta(Vec::new())).unwrap_err();
        assert!(err.to_string().contains("no rules"), "{err}");
        let mut bad = meta(vec![rule("a")]);
        bad.id = Cow::Borrowed("");
        let err = validate_pack_metadata(&bad).unwrap_err();
        assert!(err.to_string().contains("pack id must be"), "{err}");
        let mut old = meta(vec![rule("a")]);
        old.rules[0].schema_version = 1;
        assert!(matches!(
            validate_pack_metadata(&old),
            Err(LoadError::SchemaVersion { found: 1, .. })
        ));
        let many = meta(
            (0..=MAX_PACK_RULES)
                .map(|i| rule(&format!("r{i}")))
                .collect(),
        );
        let err = validate_pack_metadata(&many).unwrap_err();
        assert!(err.to_string().contains("at most 16384"), "{err}");
    }
}
