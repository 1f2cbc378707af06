//! All loaded rules, one-rule modules and rule packs alike: dispatch by event kind, batches, strikes,
//! quarantine, hot update.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rulebox_sdk::{Event, EventKind};

use crate::config::Limits;
use crate::folder::{Claimant, DuplicateClaim, FolderLoad};
use crate::index::{INDEX_PACK_NAME, IndexStatus, SharedIndex, UnitCandidates, index_digest};
use crate::module::{CompiledRule, LoadError, content_hash};
use crate::outcome::{BatchOutcome, EventError, Outcome, RuleDetection};
use crate::pack::{CallEnd, Delivery, LoadedPack};
use crate::quarantine::{Alert, Fault, PackRecord, QuarantineRecord, Reason};
use crate::rule::RuleStats;
use crate::rule_info::{PackInfo, RuleInfo};
use crate::runtime::{Runtime, SandboxThread};
use crate::unit::{Body, Prepared, Unit, pack_record};

/// The state of one rule in a set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RuleState {
    /// Running.
    Active,
    /// Stopped; the record says why (for a rule of a pack that stopped as a whole, the pack's
    /// record).
    Quarantined(Arc<QuarantineRecord>),
}

/// One rule id of the set: where its current version lives, and its state.
struct Entry {
    unit: u64,
    member: u32,
    state: RuleState,
    /// The version this one replaced in a hot update, kept (its module, instance and state) until
    /// the update is settled, so that a new version that gets quarantined is replaced by it at once.
    previous: Option<Box<Entry>>,
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
    /// A rule pack was loaded: what happened to each of its rules.
    Pack(PackUpsert),
}

impl Upsert {
    /// The rules the module brought (or, unchanged, keeps) in the set, in index order: one for a
    /// one-rule module, every rule for a pack.
    pub fn rules(&self) -> Vec<Arc<RuleInfo>> {
        match self {
            Upsert::Added(info) | Upsert::Unchanged(info) | Upsert::Replaced { new: info, .. } => {
                vec![info.clone()]
            }
            Upsert::Pack(p) => p.rules.clone(),
        }
    }
}

/// What upserting a rule pack did, rule by rule. A pack replaces the loaded pack of the same pack
/// id: its rules with the ids of loaded rules replace them (each kept as its fallback until
/// [`RuleSet::settle`]), and the rules of the pack it replaces that it no longer has are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackUpsert {
    /// The pack now loaded.
    pub pack: Arc<PackInfo>,
    /// Every rule of it, in index order.
    pub rules: Vec<Arc<RuleInfo>>,
    /// Rules with ids the set did not have.
    pub added: Vec<Arc<RuleInfo>>,
    /// Rules that replaced a loaded rule of the same id: `(new, old)`.
    pub replaced: Vec<(Arc<RuleInfo>, Arc<RuleInfo>)>,
    /// Rules of the previous version of the pack that this version does not have: removed.
    pub removed: Vec<Arc<RuleInfo>>,
    /// The same module with the same rule data was already loaded: nothing changed.
    pub unchanged: bool,
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
    /// Rules quarantined at run time (each rule of a pack that stopped counts).
    pub quarantined: u64,
    /// Modules refused at load.
    pub rejected: u64,
    /// Budget strikes of rules.
    pub strikes: u64,
    /// Budget strikes of packs' shared code.
    pub pack_strikes: u64,
    /// Evaluations lost to a fault of a pack's shared code: (event, rule) pairs that were to run
    /// and did not (each is also in the alert of that fault).
    pub rules_missed: u64,
    /// Events the shared prefilter index scanned for the packs it covers ([`RuleSet::index_status`]).
    pub index_scans: u64,
    /// Faults of the shared prefilter index (each stops it; the packs ran their own prefilters).
    pub index_faults: u64,
}

/// A rule of a quarantined new version's fallback to run again from event `from` of the batch.
#[derive(Debug, Clone, Copy)]
struct Restore {
    unit: u64,
    member: u32,
    from: usize,
}

/// Every loaded rule, dispatched by event kind. A rule is a one-rule module in its own store and
/// instance, or one of the rules of a pack (one instance evaluating many rules); either way it has
/// its own limits, counters and state: a rule that faults is quarantined and never called again,
/// and every other rule keeps seeing every event.
///
/// A `RuleSet` is `Send` but not `Sync`: it runs on one sandbox thread at a time.
pub struct RuleSet {
    runtime: Runtime,
    /// The modules, in increasing id order: the order events reach them.
    units: Vec<Unit>,
    next_unit: u64,
    /// One per rule id, in load order.
    entries: Vec<Entry>,
    /// Rule id → position in `entries`.
    index: HashMap<String, usize>,
    /// Per kind: positions in `units` of the modules with a running rule subscribed to it.
    by_kind: Vec<Vec<usize>>,
    records: Vec<Arc<QuarantineRecord>>,
    stats: SetStats,
    scratch: Vec<rulebox_sdk::Detection<'static>>,
    encoded: Vec<u8>,
    /// Encodings of the events of a batch.
    encoded_batch: Vec<Vec<u8>>,
    /// Event indices a pack is given (reused).
    selection: Vec<usize>,
    restore: Vec<Restore>,
    /// Units or entries changed during a batch: collect and reindex after it.
    dirty: bool,
    /// The shared prefilter index, if one was installed (`crate::index`).
    shared: Option<SharedIndex>,
    /// Per unit position: the candidates the index named for it on the current batch.
    unit_cands: Vec<UnitCandidates>,
    /// Whether the index named the current batch's candidates.
    index_on: bool,
}

impl RuleSet {
    /// An empty set on `runtime`.
    pub fn new(runtime: &Runtime) -> RuleSet {
        RuleSet {
            runtime: runtime.clone(),
            units: Vec::new(),
            next_unit: 0,
            entries: Vec::new(),
            index: HashMap::new(),
            by_kind: vec![Vec::new(); EventKind::ALL.len()],
            records: Vec::new(),
            stats: SetStats::default(),
            scratch: Vec::new(),
            encoded: Vec::new(),
            encoded_batch: Vec::new(),
            selection: Vec::new(),
            restore: Vec::new(),
            dirty: false,
            shared: None,
            unit_cands: Vec::new(),
            index_on: false,
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Compiles, checks and instantiates `bytes` (a one-rule module, or a rule pack without rule
    /// data). A refused module gets a quarantine record (returned, and kept in
    /// [`records`](Self::records)) and a `tracing` event; the set is unchanged. For a pack, the
    /// first of its rules is returned ([`add_module`](Self::add_module) returns them all).
    pub fn load(
        &mut self,
        thread: &SandboxThread,
        bytes: &[u8],
        source: &str,
    ) -> Result<Arc<RuleInfo>, Arc<QuarantineRecord>> {
        match self.runtime.compile(bytes, source) {
            Ok(compiled) => self.add(thread, &compiled),
            Err(e) => Err(self.reject(&content_hash(bytes), source, None, None, &e)),
        }
    }

    /// Instantiates an already compiled module into the set. For a pack (loaded without rule data),
    /// the first of its rules is returned ([`add_module`](Self::add_module) returns them all).
    pub fn add(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
    ) -> Result<Arc<RuleInfo>, Arc<QuarantineRecord>> {
        let rules = self.add_module(thread, compiled, &[], None)?;
        match rules.first() {
            Some(first) => Ok(first.clone()),
            None => Err(self.reject(
                compiled.content_hash(),
                compiled.source(),
                None,
                None,
                &LoadError::BadMetadata(
                    "the module is a shared prefilter index, which brings no rules: install it \
                     with its rule data (`upsert_with_data`)"
                        .into(),
                ),
            )),
        }
    }

    /// Instantiates `compiled` with its rule data (empty for a one-rule module or a pack whose
    /// rules are compiled in) under `limits`, and adds every one of its rules, which must all have
    /// ids the set does not have. Returns the rules, in index order.
    pub fn add_module(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        data: &[u8],
        limits: Option<&Limits>,
    ) -> Result<Vec<Arc<RuleInfo>>, Arc<QuarantineRecord>> {
        let prepared = match Prepared::load(&self.runtime, thread, compiled, data, limits) {
            Ok(p) => p,
            Err(e) => return Err(self.record_refusal(compiled, data, &e)),
        };
        let rules = prepared.rules();
        if let Some(dup) = rules.iter().find(|r| self.index.contains_key(&r.id)) {
            let e = LoadError::DuplicateId(dup.id.clone());
            let pack = prepared
                .pack()
                .map(|p| pack_record(p, &self.runtime.config().limits, None));
            return Err(self.reject(
                compiled.content_hash(),
                compiled.source(),
                Some(dup),
                pack,
                &e,
            ));
        }
        self.install(prepared.body);
        Ok(rules)
    }

    /// Loads the modules of a folder (`(bytes, source)` each) together. A rule id that more than one
    /// of them declares, or that a rule already in the set has, is refused for every claimant
    /// that is new (reason `duplicate_id`, its record naming every claimant): which file loads first
    /// never decides which one runs under a rule's name. Every other module loads as with
    /// [`load`](Self::load).
    pub fn load_folder(&mut self, thread: &SandboxThread, modules: &[(&[u8], &str)]) -> FolderLoad {
        let mut result = FolderLoad::default();
        let mut prepared = Vec::new();
        for &(bytes, source) in modules {
            let compiled = match self.runtime.compile(bytes, source) {
                Ok(c) => c,
                Err(e) => {
                    let record = self.reject(&content_hash(bytes), source, None, None, &e);
                    result.refused.push(record);
                    continue;
                }
            };
            match Prepared::load(&self.runtime, thread, &compiled, &[], None) {
                Ok(p) => prepared.push((compiled, p)),
                Err(e) => result.refused.push(self.record_refusal(&compiled, &[], &e)),
            }
        }
        // Every id's claimants, in load order.
        let mut claims: Vec<DuplicateClaim> = Vec::new();
        for (compiled, p) in &prepared {
            for rule in p.rules() {
                let claimant = Claimant {
                    source: compiled.source().to_owned(),
                    content_hash: compiled.content_hash().to_owned(),
                    version: rule.version.clone(),
                };
                match claims.iter_mut().find(|c| c.id == rule.id) {
                    Some(claim) => claim.claimants.push(claimant),
                    None => {
                        let mut claimants = Vec::new();
                        if let Some(&ei) = self.index.get(&rule.id) {
                            let loaded = self.entry_info(&self.entries[ei]).clone();
                            claimants.push(Claimant {
                                source: loaded.source.clone(),
                                content_hash: loaded.content_hash.clone(),
                                version: loaded.version.clone(),
                            });
                        }
                        claimants.push(claimant);
                        claims.push(DuplicateClaim {
                            id: rule.id.clone(),
                            claimants,
                        });
                    }
                }
            }
        }
        claims.retain(|c| c.claimants.len() > 1);
        for (compiled, p) in prepared {
            let rules = p.rules();
            let contested = rules
                .iter()
                .find_map(|r| claims.iter().find(|c| c.id == r.id).map(|c| (r, c)));
            if let Some((rule, claim)) = contested {
                let e = LoadError::DuplicateClaim(claim.describe());
                let pack = p
                    .pack()
                    .map(|pk| pack_record(pk, &self.runtime.config().limits, None));
                let record = self.reject(
                    compiled.content_hash(),
                    compiled.source(),
                    Some(rule),
                    pack,
                    &e,
                );
                result.refused.push(record);
                continue;
            }
            self.install(p.body);
            result.loaded.extend(rules);
        }
        result.duplicates = claims;
        result
    }

    /// Keeps off, from the start, a loaded rule quarantined on this host before (a restart must
    /// not run it again, a rule inside a pack included): the rule with this id, version and
    /// content hash (for a rule of a pack, the pack's module hash) is disabled and shows as
    /// quarantined, with a record of the stored `reason`; every other rule of its module keeps
    /// running. No alert: the quarantine is not new. Returns whether a loaded rule matched.
    pub fn keep_quarantined(
        &mut self,
        rule_id: &str,
        rule_version: &str,
        content_hash: &str,
        reason: Reason,
    ) -> bool {
        if self.dirty {
            self.reindex();
        }
        let Some(&ei) = self.index.get(rule_id) else {
            return false;
        };
        let info = self.entry_info(&self.entries[ei]).clone();
        if info.version != rule_version
            || info.content_hash != content_hash
            || matches!(self.entries[ei].state, RuleState::Quarantined(_))
        {
            return false;
        }
        let (unit_id, member) = (self.entries[ei].unit, self.entries[ei].member);
        let Some(pos) = self.unit_pos(unit_id) else {
            return false;
        };
        let fault = Fault {
            reason,
            message: "quarantined on this host before this start; kept off".into(),
            backtrace: None,
        };
        let unit = &self.units[pos];
        let mut record = QuarantineRecord::new(
            Some(&info),
            &info.content_hash,
            &info.source,
            &fault,
            None,
            self.runtime.config(),
            unit.limits(member),
            0,
        );
        if let Some(pack) = unit.pack_record(Some(member)) {
            record = record.in_pack(pack);
        }
        tracing::info!(
            target: "rulebox::decision",
            decision = "keep_quarantined",
            rule_id = %info.id,
            rule_version = %info.version,
            content_hash = %info.content_hash,
            reason = %reason,
            "rule kept off: quarantined on this host before"
        );
        let unit = &mut self.units[pos];
        unit.set_enabled(member, false);
        if !unit.any_enabled() {
            unit.release();
        }
        self.entries[ei].state = RuleState::Quarantined(Arc::new(record));
        self.stats.quarantined += 1;
        self.dirty = true;
        true
    }

    /// Adds `compiled`, or hot-replaces the loaded rule with the same id. Only this rule changes;
    /// every other rule keeps its instance and state. If the new version does not load, the loaded
    /// version keeps running and the refusal is returned. A replaced version is kept as the fallback
    /// until [`settle`](Self::settle): if the new version is quarantined, the previous one is
    /// restored at once (and an [`Alert::PreviousVersionRestored`] says so). A rule pack (without
    /// rule data; see [`upsert_with_data`](Self::upsert_with_data)) upserts all its rules
    /// ([`Upsert::Pack`]).
    pub fn upsert(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
    ) -> Result<Upsert, Arc<QuarantineRecord>> {
        self.upsert_with_data(thread, compiled, &[], None)
    }

    /// Like [`upsert`](Self::upsert), with `limits` for this module in place of the configuration's
    /// (see [`LoadedRule::load_with_limits`](crate::LoadedRule::load_with_limits),
    /// [`LoadedPack::load`]).
    pub fn upsert_with_limits(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        limits: Option<&Limits>,
    ) -> Result<Upsert, Arc<QuarantineRecord>> {
        self.upsert_with_data(thread, compiled, &[], limits)
    }

    /// Like [`upsert_with_limits`](Self::upsert_with_limits), for a rule pack with its rule data:
    /// an engine module compiled once, and the data of its rules (the update of a data-driven rule
    /// is a new version of this data: a data load, never a compile). The load runs on this thread;
    /// to keep it off the thread that processes events, [`Prepared::load`] it elsewhere and
    /// [`upsert_prepared`](Self::upsert_prepared) it here.
    pub fn upsert_with_data(
        &mut self,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        data: &[u8],
        limits: Option<&Limits>,
    ) -> Result<Upsert, Arc<QuarantineRecord>> {
        if let Some(unchanged) = self.unchanged(compiled.content_hash(), &content_hash(data)) {
            return Ok(unchanged);
        }
        match Prepared::load(&self.runtime, thread, compiled, data, limits) {
            Ok(prepared) => self.upsert_prepared(prepared),
            Err(e) => Err(self.record_refusal(compiled, data, &e)),
        }
    }

    /// Installs a module loaded elsewhere ([`Prepared::load`]) with the meaning of
    /// [`upsert`](Self::upsert). No guest code runs: the swap takes no longer than the bookkeeping
    /// of the rules it changes.
    ///
    /// A pack whose metadata names [`INDEX_PACK_NAME`] is the set's shared prefilter index
    /// (`crate::index`, [`index_status`](Self::index_status)): it replaces the set's index, if
    /// any, and brings no rules (the upsert lists none).
    pub fn upsert_prepared(&mut self, prepared: Prepared) -> Result<Upsert, Arc<QuarantineRecord>> {
        let (hash, data_hash) = match &prepared.body {
            Body::Rule(r) => (r.compiled().content_hash().to_owned(), content_hash(&[])),
            Body::Pack(p) => (p.info().content_hash.clone(), p.info().data_hash.clone()),
        };
        if let Some(unchanged) = self.unchanged(&hash, &data_hash) {
            return Ok(unchanged);
        }
        Ok(self.install(prepared.body))
    }

    /// The record (kept in [`records`](Self::records)) of `compiled` refused at load with `error`:
    /// for a module prepared off the set's thread whose load failed.
    pub fn record_refusal(
        &mut self,
        compiled: &CompiledRule,
        data: &[u8],
        error: &LoadError,
    ) -> Arc<QuarantineRecord> {
        let pack = compiled.is_pack().then(|| PackRecord {
            id: String::new(),
            version: String::new(),
            data_hash: content_hash(data),
            rule_index: None,
            rules: 0,
            limits: self.runtime.config().limits.clone(),
        });
        self.reject(
            compiled.content_hash(),
            compiled.source(),
            None,
            pack,
            error,
        )
    }

    /// `Some` when a module with this content (and rule data) is already loaded.
    fn unchanged(&self, hash: &str, data_hash: &str) -> Option<Upsert> {
        let unit = self.units.iter().find(|u| match u.hashes() {
            (h, None) => h == hash && data_hash == content_hash(&[]),
            (h, Some(d)) => h == hash && d == data_hash,
        })?;
        // A module kept only as a fallback is not "loaded".
        let current: Vec<Arc<RuleInfo>> = (0..unit.len())
            .filter_map(|m| u32::try_from(m).ok())
            .filter(|&m| {
                self.entries
                    .iter()
                    .any(|e| e.unit == unit.id && e.member == m)
            })
            .map(|m| unit.info(m).clone())
            .collect();
        if current.is_empty() {
            return None;
        }
        Some(match unit.pack() {
            None => Upsert::Unchanged(current[0].clone()),
            Some(pack) => Upsert::Pack(PackUpsert {
                pack: pack.info().clone(),
                rules: current,
                added: Vec::new(),
                replaced: Vec::new(),
                removed: Vec::new(),
                unchanged: true,
            }),
        })
    }

    /// Adds a loaded module: its rules replace loaded rules of the same ids (kept as fallbacks);
    /// a pack also removes the rules of the previous version of the same pack that it no longer has.
    fn install(&mut self, body: Body) -> Upsert {
        let body = match body {
            Body::Pack(p) if p.info().name == INDEX_PACK_NAME => return self.install_index(p),
            other => other,
        };
        let id = self.next_unit;
        self.next_unit += 1;
        let pack = match &body {
            Body::Pack(p) => Some(p.info().clone()),
            Body::Rule(_) => None,
        };
        self.units.push(Unit::new(id, body));
        let pos = self.units.len() - 1;
        let (mut added, mut replaced) = (Vec::new(), Vec::new());
        for m in 0..self.units[pos].len() {
            let member = u32::try_from(m).unwrap_or(u32::MAX);
            let info = self.units[pos].info(member).clone();
            let entry = Entry {
                unit: id,
                member,
                state: RuleState::Active,
                previous: None,
            };
            match self.index.get(&info.id).copied() {
                Some(ei) => {
                    let old = std::mem::replace(&mut self.entries[ei], entry);
                    let old_info = self.entry_info(&old).clone();
                    self.disable(&old);
                    // Keep the replaced version only if it can run; a quarantined one is dropped.
                    if matches!(old.state, RuleState::Active) {
                        self.entries[ei].previous = Some(Box::new(Entry {
                            previous: None,
                            ..old
                        }));
                    }
                    replaced.push((info, old_info));
                }
                None => {
                    self.index.insert(info.id.clone(), self.entries.len());
                    self.entries.push(entry);
                    added.push(info);
                }
            }
        }
        let mut removed = Vec::new();
        if let Some(pack) = &pack {
            // The rules of the previous version of this pack that this version does not have.
            let stale: Vec<usize> = (0..self.entries.len())
                .filter(|&ei| {
                    let e = &self.entries[ei];
                    e.unit != id
                        && self
                            .unit(e.unit)
                            .and_then(Unit::pack)
                            .is_some_and(|p| p.info().id == pack.id)
                })
                .collect();
            for &ei in stale.iter().rev() {
                let old = self.entries.remove(ei);
                removed.push(self.entry_info(&old).clone());
                self.disable_chain(&old);
            }
            removed.reverse();
        }
        self.collect();
        self.reindex();
        let rules: Vec<Arc<RuleInfo>> = self.unit(id).map_or_else(Vec::new, |u| {
            (0..u.len())
                .filter_map(|m| u32::try_from(m).ok())
                .map(|m| u.info(m).clone())
                .collect()
        });
        match pack {
            Some(pack) => {
                tracing::info!(
                    target: "rulebox::decision",
                    decision = "load",
                    pack_id = %pack.id,
                    pack_version = %pack.version,
                    content_hash = %pack.content_hash,
                    data_hash = %pack.data_hash,
                    source = %pack.source,
                    rules = rules.len(),
                    added = added.len(),
                    replaced = replaced.len(),
                    removed = removed.len(),
                    "rule pack loaded"
                );
                Upsert::Pack(PackUpsert {
                    pack,
                    rules,
                    added,
                    replaced,
                    removed,
                    unchanged: false,
                })
            }
            None => {
                let info = rules[0].clone();
                match replaced.pop() {
                    Some((new, old)) => {
                        tracing::info!(
                            target: "rulebox::decision",
                            decision = "replace",
                            rule_id = %new.id,
                            rule_version = %new.version,
                            previous_version = %old.version,
                            content_hash = %new.content_hash,
                            "rule replaced by update"
                        );
                        Upsert::Replaced { new, old }
                    }
                    None => {
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
                        Upsert::Added(info)
                    }
                }
            }
        }
    }

    /// Removes the rule `rule_id` (active or quarantined; of a one-rule module or of a pack, whose
    /// other rules keep running). Returns whether there was one.
    pub fn remove(&mut self, rule_id: &str) -> bool {
        let Some(ei) = self.index.get(rule_id).copied() else {
            return false;
        };
        let old = self.entries.remove(ei);
        self.disable_chain(&old);
        tracing::info!(target: "rulebox::decision", decision = "remove", rule_id = %rule_id, "rule removed by update");
        self.collect();
        self.reindex();
        true
    }

    /// Drops every version kept as a fallback by [`upsert`](Self::upsert): the update is good.
    pub fn settle(&mut self) {
        for e in &mut self.entries {
            e.previous = None;
        }
        self.collect();
        self.reindex();
    }

    /// The identity of every rule loaded, in load order: [`rules`](Self::rules) without the
    /// counters (which read each pack's instance).
    pub(crate) fn infos(&self) -> impl Iterator<Item = &Arc<RuleInfo>> {
        self.entries.iter().map(|e| self.entry_info(e))
    }

    /// Ids of the rules loaded (active or quarantined), in load order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| self.entry_info(e).id.as_str())
    }

    /// The rule packs loaded, in load order.
    pub fn packs(&self) -> impl Iterator<Item = &Arc<PackInfo>> {
        self.units
            .iter()
            .filter(|u| self.entries.iter().any(|e| e.unit == u.id))
            .filter_map(Unit::pack)
            .map(LoadedPack::info)
    }

    /// The rule packs loaded, in load order, each with its own counters (the work of its shared
    /// code outside every rule: [`PackStats`](crate::PackStats)).
    pub fn pack_stats(&self) -> impl Iterator<Item = (&Arc<PackInfo>, crate::PackStats)> {
        self.units
            .iter()
            .filter(|u| self.entries.iter().any(|e| e.unit == u.id))
            .filter_map(Unit::pack)
            .map(|p| (p.info(), p.pack_stats()))
    }

    fn unit(&self, id: u64) -> Option<&Unit> {
        self.units
            .binary_search_by_key(&id, |u| u.id)
            .ok()
            .map(|pos| &self.units[pos])
    }

    fn unit_pos(&self, id: u64) -> Option<usize> {
        self.units.binary_search_by_key(&id, |u| u.id).ok()
    }

    fn entry_info(&self, e: &Entry) -> &Arc<RuleInfo> {
        // Every entry's unit is kept until no entry refers to it.
        self.unit(e.unit)
            .map(|u| u.info(e.member))
            .expect("an entry's unit is loaded")
    }

    /// Stops the rule of `e` in its module (it is replaced or removed).
    fn disable(&mut self, e: &Entry) {
        if let Some(pos) = self.unit_pos(e.unit) {
            self.units[pos].set_enabled(e.member, false);
        }
    }

    /// Stops the rule of `e` and of every fallback it keeps.
    fn disable_chain(&mut self, e: &Entry) {
        self.disable(e);
        if let Some(prev) = &e.previous {
            self.disable_chain(prev);
        }
    }

    /// Drops the modules no rule (current or fallback) refers to.
    fn collect(&mut self) {
        let mut live = HashSet::new();
        for e in &self.entries {
            let mut cur = Some(e);
            while let Some(c) = cur {
                live.insert(c.unit);
                cur = c.previous.as_deref();
            }
        }
        self.units.retain(|u| live.contains(&u.id));
    }

    /// Rebuilds the dispatch index and the id index.
    fn reindex(&mut self) {
        for list in &mut self.by_kind {
            list.clear();
        }
        for (pos, unit) in self.units.iter().enumerate() {
            let kinds = unit.runnable_kinds();
            for kind in EventKind::ALL {
                if kinds & (1 << (*kind as u8)) != 0 {
                    self.by_kind[*kind as usize].push(pos);
                }
            }
        }
        self.index.clear();
        for (ei, e) in self.entries.iter().enumerate() {
            let id = self.entry_info(e).id.clone();
            self.index.insert(id, ei);
        }
        self.dirty = false;
        self.refresh_index();
    }

    /// Makes `pack` (an index: its metadata names [`INDEX_PACK_NAME`]) the set's shared prefilter
    /// index in place of the one it has, if any; it brings no rules.
    fn install_index(&mut self, pack: LoadedPack) -> Upsert {
        let info = pack.info().clone();
        // The same index again is unchanged, but one that stopped starts afresh.
        let unchanged = self.shared.as_ref().is_some_and(|s| {
            s.info().content_hash == info.content_hash
                && s.info().data_hash == info.data_hash
                && !matches!(s.status, IndexStatus::Stopped(_))
        });
        if !unchanged {
            self.shared = Some(SharedIndex::new(pack));
            self.refresh_index();
        }
        Upsert::Pack(PackUpsert {
            pack: info,
            rules: Vec::new(),
            added: Vec::new(),
            replaced: Vec::new(),
            removed: Vec::new(),
            unchanged,
        })
    }

    /// Whether the set's shared prefilter index is in use, and why not (`crate::index`).
    pub fn index_status(&self) -> IndexStatus {
        self.shared
            .as_ref()
            .map_or(IndexStatus::None, |s| s.status.clone())
    }

    /// The shared prefilter index's pack and its counters (its own fuel is the scan's), if the
    /// set has one.
    pub fn index_pack(&self) -> Option<(&Arc<PackInfo>, crate::PackStats)> {
        self.shared
            .as_ref()
            .map(|s| (s.info(), s.pack.pack_stats()))
    }

    /// Drops the shared prefilter index: every pack runs its own prefilter.
    pub fn clear_index(&mut self) {
        self.shared = None;
    }

    /// Matches the index with the packs loaded (`crate::index`): current, or stale and why.
    fn refresh_index(&mut self) {
        let Some(mut ix) = self.shared.take() else {
            return;
        };
        if !matches!(ix.status, IndexStatus::Stopped(_)) {
            ix.map.clear();
            ix.covered.clear();
            ix.covered.resize(self.units.len(), false);
            ix.status = match self.match_index(&mut ix) {
                Ok((packs, rules)) => {
                    ix.pack
                        .scale_own_budget(u64::try_from(packs).unwrap_or(u64::MAX));
                    IndexStatus::Current { packs, rules }
                }
                Err(why) => {
                    ix.map.clear();
                    ix.covered.clear();
                    IndexStatus::Stale(why)
                }
            };
        }
        self.shared = Some(ix);
    }

    /// Where each rule of `ix` is (into `ix.map` and `ix.covered`), and how many packs and rules
    /// it covers; or why it does not match the packs loaded.
    fn match_index(&self, ix: &mut SharedIndex) -> Result<(usize, usize), String> {
        use crate::text::Escaped;
        let n = ix.pack.len();
        let engine = ix.info().content_hash.clone();
        let mut hashes = Vec::new();
        let mut g = 0;
        while g < n {
            let first = &ix.pack.member(g).info;
            let located = self
                .index
                .get(&first.id)
                .map(|&ei| &self.entries[ei])
                .and_then(|e| Some((self.unit_pos(e.unit)?, e.member)));
            let Some((pos, 0)) = located else {
                return Err(format!(
                    "its rule {g} (`{}`) is not the first rule of a loaded pack",
                    Escaped(&first.id)
                ));
            };
            let unit = &self.units[pos];
            let Some(pack) = unit.pack() else {
                return Err(format!(
                    "its rule {g} (`{}`) is a one-rule module",
                    Escaped(&first.id)
                ));
            };
            if pack.info().content_hash != engine {
                return Err(format!(
                    "pack `{}` runs in another engine module than the index",
                    Escaped(&pack.info().id)
                ));
            }
            if ix.covered[pos] || g + pack.len() > n {
                return Err(format!(
                    "pack `{}` is not in it whole, once",
                    Escaped(&pack.info().id)
                ));
            }
            for m in 0..pack.len() {
                let (want, have) = (&ix.pack.member(g + m).info, &pack.member(m).info);
                let current = self
                    .index
                    .get(&have.id)
                    .map(|&ei| &self.entries[ei])
                    .is_some_and(|e| e.unit == unit.id && e.member as usize == m);
                if want.id != have.id
                    || want.version != have.version
                    || want.subscriptions != have.subscriptions
                    || !current
                {
                    return Err(format!(
                        "its rule {} (`{}` {}) is not rule {m} of pack `{}` (`{}` {})",
                        g + m,
                        Escaped(&want.id),
                        Escaped(&want.version),
                        Escaped(&pack.info().id),
                        Escaped(&have.id),
                        Escaped(&have.version),
                    ));
                }
                ix.map.push((pos, u32::try_from(m).unwrap_or(u32::MAX)));
            }
            ix.covered[pos] = true;
            hashes.push(pack.info().data_hash.clone());
            g += pack.len();
        }
        if index_digest(hashes.iter().map(String::as_str)) != ix.info().version {
            return Err("its digest is not that of the rule data of the packs it names".into());
        }
        Ok((hashes.len(), n))
    }

    /// Runs the index (when current) on `events`: each covered unit's candidates into
    /// `unit_cands`. False when there is no current index, or it faulted (then stopped).
    fn run_index(&mut self, events: &[(EventKind, &[u8])]) -> bool {
        let Some(ix) = self.shared.as_mut() else {
            return false;
        };
        if !ix.is_current() || !ix.pack.is_live() {
            return false;
        }
        for c in &mut self.unit_cands {
            c.clear();
        }
        self.unit_cands
            .resize_with(self.units.len(), UnitCandidates::default);
        let kinds = ix.pack.runnable_kinds();
        let mut sel = std::mem::take(&mut self.selection);
        sel.clear();
        sel.extend((0..events.len()).filter(|&i| kinds & (1 << (events[i].0 as u8)) != 0));
        let mut start = 0;
        let mut fault = None;
        while start < sel.len() {
            let rest = &sel[start..];
            let chunk = &rest[..LoadedPack::chunk(events, rest)];
            match ix.pack.call(events, chunk, 0, None, None) {
                CallEnd::Done => {}
                CallEnd::RuleFault {
                    event, fault: f, ..
                }
                | CallEnd::PackFault {
                    event, fault: f, ..
                } => {
                    fault = Some(format!(
                        "{} on event {} of the batch: {}",
                        f.reason, chunk[event], f.message
                    ));
                    break;
                }
            }
            for &(e, g) in ix.pack.recorded() {
                if let (Some(&i), Some(&(pos, m))) = (chunk.get(e as usize), ix.map.get(g as usize))
                    && let Some(c) = self.unit_cands.get_mut(pos)
                {
                    c.push(i, m);
                }
            }
            ix.pack.finish_call(|_| {});
            start += chunk.len();
        }
        self.selection = sel;
        if let Some(why) = fault {
            ix.stop(why);
            self.stats.index_faults += 1;
            for c in &mut self.unit_cands {
                c.clear();
            }
            return false;
        }
        self.stats.index_scans += u64::try_from(start).unwrap_or(u64::MAX);
        true
    }

    fn reject(
        &mut self,
        hash: &str,
        source: &str,
        info: Option<&RuleInfo>,
        pack: Option<PackRecord>,
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
        let mut record = QuarantineRecord::new(
            info,
            hash,
            source,
            &error.to_fault(),
            None,
            self.runtime.config(),
            &self.runtime.config().limits,
            0,
        );
        if let Some(pack) = pack {
            record = record.in_pack(pack);
        }
        if let LoadError::UnderRuleLimits {
            id,
            version,
            limits,
            ..
        } = error
        {
            // The refusal depends on this rule's (or pack's) limits: record them, with its id.
            match &mut record.pack {
                Some(pack) => {
                    pack.id.clone_from(id);
                    pack.version.clone_from(version);
                    pack.limits = (**limits).clone();
                }
                None => {
                    record.rule_id.clone_from(id);
                    record.rule_version.clone_from(version);
                }
            }
            record.limits = (**limits).clone();
        }
        let record = Arc::new(record);
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
        let mut encoded = std::mem::take(&mut self.encoded);
        let result = self.encode(event, &mut encoded);
        let result =
            result.and_then(|()| self.process_encoded(thread, event.kind(), &encoded, outcome));
        if result.is_err() {
            outcome.clear();
        }
        self.encoded = encoded;
        result
    }

    /// Encodes `event` into `buf` after the field-count check (a refused event is counted).
    fn encode(&mut self, event: &Event<'_>, buf: &mut Vec<u8>) -> Result<(), EventError> {
        let limit = self.runtime.config().max_event_fields;
        if event.extra.len() > limit {
            self.stats.events_refused += 1;
            return Err(EventError::TooManyFields {
                count: event.extra.len(),
                limit,
            });
        }
        buf.clear();
        event.encode_into(buf).map_err(|e| {
            self.stats.events_refused += 1;
            EventError::Encode(e)
        })
    }

    /// The size check of an encoded event (a refused event is counted).
    fn check_size(&mut self, event: &[u8]) -> Result<(), EventError> {
        let limit = self.runtime.config().max_event_bytes;
        if event.len() > limit {
            self.stats.events_refused += 1;
            return Err(EventError::TooLarge {
                size: event.len(),
                limit,
            });
        }
        Ok(())
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
        self.check_size(event)?;
        self.stats.events += 1;
        self.run(&[(kind, event)], std::slice::from_mut(outcome));
        Ok(())
    }

    /// Runs every subscribed, active rule on each of `events`, in order, as
    /// [`process`](Self::process) would one by one, but handing each rule pack the whole batch in
    /// one call (a pack is crossed into once per batch rather than once per event). `out` holds,
    /// for each event, its [`Outcome`] (its detections, and the alerts it raised: a fault names the
    /// exact event) or why it was refused (refused events are counted and skipped; the others still
    /// run).
    pub fn process_batch(
        &mut self,
        thread: &SandboxThread,
        events: &[Event<'_>],
        out: &mut BatchOutcome,
    ) {
        thread.check(&self.runtime);
        let mut bufs = std::mem::take(&mut self.encoded_batch);
        if bufs.len() < events.len() {
            bufs.resize_with(events.len(), Vec::new);
        }
        let mut ok = Vec::with_capacity(events.len());
        for (event, buf) in events.iter().zip(bufs.iter_mut()) {
            ok.push(
                self.encode(event, buf)
                    .and_then(|()| self.check_size(buf))
                    .map(|()| event.kind()),
            );
        }
        let batch: Vec<(EventKind, &[u8])> = ok
            .iter()
            .zip(&bufs)
            .filter_map(|(r, b)| r.as_ref().ok().map(|k| (*k, b.as_slice())))
            .collect();
        out.reset();
        for r in ok {
            let slot = r.map(|_| out.next_outcome());
            out.slots.push(slot);
        }
        self.stats.events += u64::try_from(batch.len()).unwrap_or(u64::MAX);
        self.run(&batch, &mut out.outcomes[..out.used]);
        drop(batch);
        self.encoded_batch = bufs;
    }

    /// Like [`process_batch`](Self::process_batch), for events already encoded in the wire format
    /// (the caller is responsible for the field-count limit; the size limit is checked here).
    pub fn process_encoded_batch<B: AsRef<[u8]>>(
        &mut self,
        thread: &SandboxThread,
        events: &[(EventKind, B)],
        out: &mut BatchOutcome,
    ) {
        thread.check(&self.runtime);
        out.reset();
        let mut batch: Vec<(EventKind, &[u8])> = Vec::with_capacity(events.len());
        for (kind, bytes) in events {
            let bytes = bytes.as_ref();
            let slot = self.check_size(bytes).map(|()| {
                batch.push((*kind, bytes));
                out.next_outcome()
            });
            out.slots.push(slot);
        }
        self.stats.events += u64::try_from(batch.len()).unwrap_or(u64::MAX);
        self.run(&batch, &mut out.outcomes[..out.used]);
    }

    /// Runs `events` (accepted, encoded) through every module, in module order; `outs[i]` is event
    /// `i`'s outcome (cleared).
    fn run(&mut self, events: &[(EventKind, &[u8])], outs: &mut [Outcome]) {
        debug_assert_eq!(events.len(), outs.len());
        self.index_on = self.run_index(events);
        if let [(kind, _)] = events {
            // One event: the dispatch index names the modules to call.
            let subscribed = std::mem::take(&mut self.by_kind[*kind as usize]);
            for &pos in &subscribed {
                self.run_unit(pos, events, outs, 0, None);
            }
            self.by_kind[*kind as usize] = subscribed;
        } else {
            let kinds = events
                .iter()
                .fold(0u32, |acc, (k, _)| acc | 1 << (*k as u8));
            for pos in 0..self.units.len() {
                if self.units[pos].runnable_kinds() & kinds != 0 {
                    self.run_unit(pos, events, outs, 0, None);
                }
            }
        }
        // Previous versions restored in place of quarantined new ones catch up from the event that
        // quarantined them, so that no detection is lost to the update.
        let mut k = 0;
        while k < self.restore.len() {
            let r = self.restore[k];
            k += 1;
            let Some(pos) = self.unit_pos(r.unit) else {
                continue;
            };
            self.units[pos].set_enabled(r.member, true);
            if let Body::Pack(pack) = &mut self.units[pos].body
                && !pack.is_live()
                && let Err(e) = pack.renew(&self.runtime)
            {
                let event = events.get(r.from).map_or(&[][..], |e| e.1);
                let fault = renew_fault(&e);
                let at = r.from.min(outs.len() - 1);
                self.stop_pack(pos, fault, event, &mut outs[at], (r.from, 0), 1);
                continue;
            }
            self.run_unit(pos, events, outs, r.from, Some(r.member));
        }
        self.restore.clear();
        self.index_on = false;
        if self.dirty {
            self.collect();
            self.reindex();
        }
    }

    fn run_unit(
        &mut self,
        pos: usize,
        events: &[(EventKind, &[u8])],
        outs: &mut [Outcome],
        from: usize,
        only: Option<u32>,
    ) {
        match self.units[pos].body {
            Body::Rule(_) => self.run_rule(pos, events, outs, from),
            Body::Pack(_) => self.run_pack(pos, events, outs, from, only),
        }
    }

    /// A one-rule module on events `from..`.
    fn run_rule(
        &mut self,
        pos: usize,
        events: &[(EventKind, &[u8])],
        outs: &mut [Outcome],
        from: usize,
    ) {
        for i in from..events.len() {
            let (kind, bytes) = events[i];
            let unit = &mut self.units[pos];
            if !unit.enabled(0) {
                return;
            }
            let Body::Rule(rule) = &mut unit.body else {
                return;
            };
            if !rule.info().subscriptions.contains(kind) {
                continue;
            }
            let out = &mut outs[i];
            out.rules_run += 1;
            self.scratch.clear();
            match rule.evaluate_reusing(bytes, &mut self.scratch, &mut out.spare) {
                Ok(()) => {
                    self.stats.detections += u64::try_from(self.scratch.len()).unwrap_or(u64::MAX);
                    let info = rule.info();
                    out.detections
                        .extend(self.scratch.drain(..).map(|detection| RuleDetection {
                            rule: info.clone(),
                            detection,
                        }));
                }
                Err(fault) => self.rule_fault(pos, 0, fault, bytes, out, i),
            }
        }
    }

    /// A pack on the events `from..` of kinds its running rules subscribe to, in calls of at most
    /// a batch each. After a fault of a rule, the pack goes on in a fresh instance with the next rule
    /// of the same event; after a fault of its own, with the next event.
    fn run_pack(
        &mut self,
        pos: usize,
        events: &[(EventKind, &[u8])],
        outs: &mut [Outcome],
        from: usize,
        only: Option<u32>,
    ) {
        let mut sel = std::mem::take(&mut self.selection);
        sel.clear();
        // The index's candidates, for a pack it covers, on the whole batch.
        let indexed = self.index_on
            && only.is_none()
            && from == 0
            && self
                .shared
                .as_ref()
                .is_some_and(|s| s.covered.get(pos) == Some(&true));
        let cands = if indexed {
            std::mem::take(&mut self.unit_cands[pos])
        } else {
            UnitCandidates::default()
        };
        if indexed {
            sel.extend_from_slice(&cands.events);
            if let Body::Pack(pack) = &mut self.units[pos].body {
                for &i in &sel {
                    if !outs[i].spare.is_empty() {
                        pack.lend_spare(&mut outs[i].spare);
                    }
                }
            }
        } else if let Body::Pack(pack) = &mut self.units[pos].body {
            let kinds = match only {
                Some(m) => pack.member(m as usize).info.subscriptions.0,
                None => pack.runnable_kinds(),
            };
            for i in from..events.len() {
                if kinds & (1 << (events[i].0 as u8)) != 0 {
                    sel.push(i);
                    if !outs[i].spare.is_empty() {
                        pack.lend_spare(&mut outs[i].spare);
                    }
                }
            }
        }
        let (mut start, mut floor) = (0, 0);
        while start < sel.len() {
            let Body::Pack(pack) = &mut self.units[pos].body else {
                break;
            };
            if !pack.is_live() {
                break;
            }
            let rest = &sel[start..];
            let chunk = match rest {
                [_] => rest,
                _ if indexed => {
                    let extra = |k: usize| 8 + 4 * cands.list(start + k).len();
                    &rest[..LoadedPack::chunk_with(events, rest, extra)]
                }
                _ => &rest[..LoadedPack::chunk(events, rest)],
            };
            let lists: Vec<&[u32]> = if indexed {
                (start..start + chunk.len())
                    .map(|j| cands.list(j))
                    .collect()
            } else {
                Vec::new()
            };
            let end = pack.call(events, chunk, floor, only, indexed.then_some(&lists[..]));
            let stats = &mut self.stats;
            pack.finish_call(|d| match d {
                Delivery::Ran { event, rules } => outs[chunk[event]].rules_run += rules,
                Delivery::Detection {
                    event,
                    rule,
                    detection,
                } => {
                    stats.detections += 1;
                    outs[chunk[event]].detections.push(RuleDetection {
                        rule: rule.clone(),
                        detection,
                    });
                }
            });
            match end {
                CallEnd::Done => {
                    start += chunk.len();
                    floor = 0;
                }
                CallEnd::RuleFault { event, rule, fault } => {
                    let i = chunk[event];
                    self.rule_fault(pos, rule, fault, events[i].1, &mut outs[i], i);
                    self.renew_pack(pos, events[i], &mut outs[i], (i, rule));
                    start += event;
                    floor = rule + 1;
                }
                CallEnd::PackFault {
                    event,
                    done_upto,
                    fault,
                } => {
                    let i = chunk[event];
                    // On the call's first event, the rules below `floor` ran in an earlier instance.
                    let done_upto = if event == 0 {
                        done_upto.max(floor)
                    } else {
                        done_upto
                    };
                    let missed = pack.subscribed_from(events[i].0, done_upto, only);
                    self.pack_fault(pos, fault, events[i], &mut outs[i], (i, done_upto), missed);
                    start += event + 1;
                    floor = 0;
                }
            }
        }
        self.selection = sel;
        if indexed {
            self.unit_cands[pos] = cands;
        }
    }

    /// A fresh instance of the pack at `pos` after a fault on `event` (or its release, when none of
    /// its rules runs any more). `at` is where the fault left the batch: the event's index, and the
    /// rule index below which the pack is done with it.
    fn renew_pack(
        &mut self,
        pos: usize,
        event: (EventKind, &[u8]),
        out: &mut Outcome,
        at: (usize, u32),
    ) {
        let Body::Pack(pack) = &mut self.units[pos].body else {
            return;
        };
        if !pack.is_live() {
            return;
        }
        if pack.runnable_kinds() == 0 {
            pack.release();
            self.dirty = true;
            return;
        }
        if let Err(e) = pack.renew(&self.runtime) {
            let missed = pack.subscribed_from(event.0, at.1, None);
            self.stop_pack(pos, renew_fault(&e), event.1, out, at, missed);
        }
    }

    /// Handles a fault of rule `member` of the module at `pos` on `event` (index `at` of the batch):
    /// a strike (the rule keeps running; a one-rule module gets a fresh instance here, a pack after
    /// this returns) or a quarantine.
    fn rule_fault(
        &mut self,
        pos: usize,
        member: u32,
        fault: Fault,
        event: &[u8],
        out: &mut Outcome,
        at: usize,
    ) {
        let unit_id = self.units[pos].id;
        let Some(ei) = self
            .entries
            .iter()
            .position(|e| e.unit == unit_id && e.member == member)
        else {
            // Only a set's current rules run; stop one that is not, to be safe.
            self.units[pos].set_enabled(member, false);
            self.dirty = true;
            return;
        };
        let allowed = self.units[pos].limits(member).budget_strikes;
        if fault.reason.is_budget() {
            let strike = self.units[pos].add_strike(member);
            self.stats.strikes += 1;
            if strike < allowed {
                let info = self.units[pos].info(member).clone();
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
                if let Body::Rule(rule) = &mut self.units[pos].body
                    && let Err(e) = rule.reset(&self.runtime)
                {
                    // Keep the original fault (reason, message, backtrace) so replay reproduces
                    // it; say that the reset failed too.
                    let fault = Fault {
                        message: format!(
                            "{} (and the reset after this budget strike failed: {e})",
                            fault.message
                        ),
                        ..fault
                    };
                    self.quarantine(ei, fault, event, out, at);
                    return;
                }
                out.alerts.push(Alert::BudgetStrike {
                    rule: info,
                    fault,
                    strike,
                    allowed,
                });
                return;
            }
        }
        self.quarantine(ei, fault, event, out, at);
    }

    /// Quarantines the rule of entry `ei` for `fault` on `event` (index `at` of the batch).
    fn quarantine(&mut self, ei: usize, fault: Fault, event: &[u8], out: &mut Outcome, at: usize) {
        let (unit_id, member) = (self.entries[ei].unit, self.entries[ei].member);
        let Some(pos) = self.unit_pos(unit_id) else {
            return;
        };
        let unit = &self.units[pos];
        let info = unit.info(member).clone();
        let mut record = QuarantineRecord::new(
            Some(&info),
            &info.content_hash,
            &info.source,
            &fault,
            Some(event),
            self.runtime.config(),
            unit.limits(member),
            unit.stats(member).strikes,
        );
        if let Some(pack) = unit.pack_record(Some(member)) {
            record = record.in_pack(pack);
        }
        let record = Arc::new(record);
        tracing::error!(
            target: "rulebox::decision",
            decision = "quarantine",
            rule_id = %info.id,
            rule_version = %info.version,
            pack_id = info.pack.as_ref().map_or("", |p| p.id.as_str()),
            content_hash = %info.content_hash,
            reason = %fault.reason,
            backtrace = fault.backtrace.as_deref().unwrap_or(""),
            "rule quarantined: {}", fault.message
        );
        let unit = &mut self.units[pos];
        unit.set_enabled(member, false);
        // The rule is never called again: give the module's memory back now if no rule of it runs.
        if !unit.any_enabled() {
            unit.release();
        }
        self.entries[ei].state = RuleState::Quarantined(record.clone());
        self.stats.quarantined += 1;
        self.records.push(record.clone());
        out.alerts.push(Alert::RuleQuarantined(record.clone()));
        self.restore_previous(ei, &record, out, at);
        self.dirty = true;
    }

    /// If entry `ei` keeps the version it replaced, puts that one back in its place; it catches up
    /// from event `at` of the batch.
    fn restore_previous(
        &mut self,
        ei: usize,
        record: &Arc<QuarantineRecord>,
        out: &mut Outcome,
        at: usize,
    ) {
        let Some(previous) = self.entries[ei].previous.take() else {
            return;
        };
        let quarantined = std::mem::replace(&mut self.entries[ei], *previous);
        let restored = self.entry_info(&self.entries[ei]).clone();
        tracing::warn!(
            target: "rulebox::decision",
            decision = "restore",
            rule_id = %restored.id,
            rule_version = %restored.version,
            quarantined_version = %self.entry_info(&quarantined).version,
            "previous version of a quarantined rule restored"
        );
        out.alerts.push(Alert::PreviousVersionRestored {
            quarantined: record.clone(),
            restored,
        });
        self.restore.push(Restore {
            unit: self.entries[ei].unit,
            member: self.entries[ei].member,
            from: at,
        });
        self.dirty = true;
    }

    /// Handles a fault of the shared code of the pack at `pos` on `event`: a strike (a fresh
    /// instance; the pack goes on with the next event) or the pack stops.
    fn pack_fault(
        &mut self,
        pos: usize,
        fault: Fault,
        event: (EventKind, &[u8]),
        out: &mut Outcome,
        at: (usize, u32),
        missed: u32,
    ) {
        let Body::Pack(pack) = &mut self.units[pos].body else {
            return;
        };
        self.stats.rules_missed += u64::from(missed);
        let allowed = pack.limits().budget_strikes;
        if fault.reason.is_budget() {
            let decay = std::time::Duration::from_secs(pack.limits().strike_decay_s);
            let strike = crate::strikes::add(
                &mut pack.strikes,
                &mut pack.last_strike,
                std::time::Instant::now(),
                decay,
            );
            self.stats.pack_strikes += 1;
            if strike < allowed {
                let info = pack.info().clone();
                tracing::warn!(
                    target: "rulebox::decision",
                    decision = "pack_strike",
                    pack_id = %info.id,
                    pack_version = %info.version,
                    reason = %fault.reason,
                    strike,
                    allowed,
                    rules_missed = missed,
                    "rule pack hit its own budget; instance reset: {}", fault.message
                );
                out.alerts.push(Alert::PackStrike {
                    pack: info,
                    fault,
                    strike,
                    allowed,
                    rules_missed: missed,
                });
                // The pack goes on with the next event.
                self.renew_pack(pos, event, out, (at.0 + 1, 0));
                return;
            }
        }
        self.stop_pack(pos, fault, event.1, out, at, 0);
    }

    /// Stops the pack at `pos` for `fault` on `event`: every rule of it is quarantined with one
    /// record about the pack (one alert); rules with a previous version get it back, from the
    /// event of the fault for the rules the pack was not done with (`at`: the event's index in the
    /// batch, and the rule index below which the pack was done with it), from the next one for the
    /// others. `missed` rules were to run on the event and did not.
    fn stop_pack(
        &mut self,
        pos: usize,
        fault: Fault,
        event: &[u8],
        out: &mut Outcome,
        at: (usize, u32),
        missed: u32,
    ) {
        let Body::Pack(pack) = &mut self.units[pos].body else {
            return;
        };
        self.stats.rules_missed += u64::from(missed);
        let info = pack.info().clone();
        let record = Arc::new(
            QuarantineRecord::new(
                None,
                &info.content_hash,
                &info.source,
                &Fault {
                    message: format!(
                        "the rule pack `{}` {} stopped: {}",
                        info.id, info.version, fault.message
                    ),
                    ..fault.clone()
                },
                Some(event),
                self.runtime.config(),
                pack.limits(),
                pack.strikes,
            )
            .in_pack(pack_record(&info, pack.limits(), None)),
        );
        tracing::error!(
            target: "rulebox::decision",
            decision = "quarantine_pack",
            pack_id = %info.id,
            pack_version = %info.version,
            content_hash = %info.content_hash,
            data_hash = %info.data_hash,
            reason = %fault.reason,
            backtrace = fault.backtrace.as_deref().unwrap_or(""),
            "rule pack stopped: {}", fault.message
        );
        pack.release();
        let unit_id = self.units[pos].id;
        self.records.push(record.clone());
        out.alerts.push(Alert::RuleQuarantined(record.clone()));
        for ei in 0..self.entries.len() {
            let e = &mut self.entries[ei];
            if e.unit == unit_id && matches!(e.state, RuleState::Active) {
                e.state = RuleState::Quarantined(record.clone());
                let from = if e.member < at.1 { at.0 + 1 } else { at.0 };
                self.stats.quarantined += 1;
                self.restore_previous(ei, &record, out, from);
            }
        }
        self.dirty = true;
    }

    /// Every rule in the set with its state and counters, in load order. A rule of a pack reports
    /// the pack's memory (one memory for all its rules).
    pub fn rules(&self) -> impl Iterator<Item = (&Arc<RuleInfo>, &RuleState, RuleStats)> {
        self.entries.iter().map(|e| {
            let unit = self.unit(e.unit).expect("an entry's unit is loaded");
            (unit.info(e.member), &e.state, unit.stats(e.member))
        })
    }

    /// Number of rules still running.
    pub fn active_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.state, RuleState::Active))
            .count()
    }

    /// Every quarantine record: modules refused at load and rules (or packs) quarantined at run
    /// time, in order.
    pub fn records(&self) -> &[Arc<QuarantineRecord>] {
        &self.records
    }

    /// The set's counters.
    pub fn stats(&self) -> &SetStats {
        &self.stats
    }

    /// The limits the rule `rule_id` runs under (for a rule of a pack: its own per-event budgets;
    /// its memory is the pack's).
    pub fn limits(&self, rule_id: &str) -> Option<&Limits> {
        let e = &self.entries[*self.index.get(rule_id)?];
        self.unit(e.unit).map(|u| u.limits(e.member))
    }

    /// Whether the rule `rule_id` is active.
    pub fn is_active(&self, rule_id: &str) -> bool {
        self.index
            .get(rule_id)
            .is_some_and(|&ei| matches!(self.entries[ei].state, RuleState::Active))
    }

    /// Reason the rule `rule_id` was quarantined, if it was.
    pub fn quarantine_reason(&self, rule_id: &str) -> Option<Reason> {
        self.index
            .get(rule_id)
            .and_then(|&ei| match &self.entries[ei].state {
                RuleState::Quarantined(r) => Some(r.reason),
                RuleState::Active => None,
            })
    }
}

/// The fault of a pack whose instance could not be replaced after a fault.
fn renew_fault(e: &LoadError) -> Fault {
    let f = e.to_fault();
    Fault {
        message: format!(
            "its instance could not be renewed after a fault: {}",
            f.message
        ),
        ..f
    }
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.entries.len())
            .field("modules", &self.units.len())
            .field("stats", &self.stats)
            .finish()
    }
}
