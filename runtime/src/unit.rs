//! One loaded module of a [`RuleSet`](crate::RuleSet), whichever its ABI: a one-rule module
//! ([`LoadedRule`]) or a rule pack ([`LoadedPack`]), seen as a list of rules (members). And
//! [`Prepared`]: a module loaded off the hot path, ready to be installed.

use std::sync::Arc;

use crate::config::Limits;
use crate::module::{CompiledRule, LoadError};
use crate::pack::LoadedPack;
use crate::quarantine::PackRecord;
use crate::rule::{LoadedRule, RuleStats};
use crate::rule_info::{PackInfo, RuleInfo};
use crate::runtime::{Runtime, SandboxThread};

/// The module of a unit.
pub(crate) enum Body {
    Rule(LoadedRule),
    Pack(LoadedPack),
}

/// A module in a set, with a stable id (units are kept in increasing id order, the order events
/// reach them).
pub(crate) struct Unit {
    pub(crate) id: u64,
    pub(crate) body: Body,
    /// For a one-rule module: whether its rule runs (not quarantined, not kept only as a fallback).
    rule_enabled: bool,
}

impl Unit {
    pub(crate) fn new(id: u64, body: Body) -> Unit {
        Unit {
            id,
            body,
            rule_enabled: true,
        }
    }

    /// How many rules the module has.
    pub(crate) fn len(&self) -> usize {
        match &self.body {
            Body::Rule(_) => 1,
            Body::Pack(p) => p.len(),
        }
    }

    pub(crate) fn info(&self, member: u32) -> &Arc<RuleInfo> {
        match &self.body {
            Body::Rule(r) => r.info(),
            Body::Pack(p) => &p.member(member as usize).info,
        }
    }

    pub(crate) fn stats(&self, member: u32) -> RuleStats {
        match &self.body {
            Body::Rule(r) => r.stats(),
            Body::Pack(p) => p.stats(member as usize),
        }
    }

    pub(crate) fn limits(&self, member: u32) -> &Limits {
        match &self.body {
            Body::Rule(r) => r.limits(),
            Body::Pack(p) => &p.member(member as usize).limits,
        }
    }

    /// Counts a budget strike of rule `member` now (older strikes decay first); returns its count.
    pub(crate) fn add_strike(&mut self, member: u32) -> u32 {
        let decay = std::time::Duration::from_secs(self.limits(member).strike_decay_s);
        let stats = match &mut self.body {
            Body::Rule(r) => &mut r.stats,
            Body::Pack(p) => &mut p.member_mut(member as usize).stats,
        };
        crate::strikes::add(
            &mut stats.strikes,
            &mut stats.last_strike,
            std::time::Instant::now(),
            decay,
        )
    }

    pub(crate) fn enabled(&self, member: u32) -> bool {
        match &self.body {
            Body::Rule(_) => self.rule_enabled,
            Body::Pack(p) => p.member(member as usize).enabled,
        }
    }

    pub(crate) fn set_enabled(&mut self, member: u32, enabled: bool) {
        match &mut self.body {
            Body::Rule(_) => self.rule_enabled = enabled,
            Body::Pack(p) => p.set_enabled(member as usize, enabled),
        }
    }

    /// Whether any rule of the module runs.
    pub(crate) fn any_enabled(&self) -> bool {
        (0..self.len()).any(|m| self.enabled(u32::try_from(m).unwrap_or(u32::MAX)))
    }

    /// The kinds (bit mask) the module's running rules subscribe to.
    pub(crate) fn runnable_kinds(&self) -> u32 {
        match &self.body {
            Body::Rule(r) if self.rule_enabled => r.info().subscriptions.0,
            Body::Rule(_) => 0,
            Body::Pack(p) => p.runnable_kinds(),
        }
    }

    /// The module's content hash (and, for a pack, its data's).
    pub(crate) fn hashes(&self) -> (&str, Option<&str>) {
        match &self.body {
            Body::Rule(r) => (r.compiled().content_hash(), None),
            Body::Pack(p) => (&p.info().content_hash, Some(&p.info().data_hash)),
        }
    }

    pub(crate) fn pack(&self) -> Option<&LoadedPack> {
        match &self.body {
            Body::Pack(p) => Some(p),
            Body::Rule(_) => None,
        }
    }

    /// Gives the module's memory back; none of its rules runs again.
    pub(crate) fn release(&mut self) {
        match &mut self.body {
            Body::Rule(r) => r.release(),
            Body::Pack(p) => p.release(),
        }
        self.rule_enabled = false;
    }

    /// The pack side of a record about rule `member` (`None` for the pack itself).
    pub(crate) fn pack_record(&self, member: Option<u32>) -> Option<PackRecord> {
        self.pack()
            .map(|p| pack_record(p.info(), p.limits(), member))
    }
}

/// The pack side of a quarantine record.
pub(crate) fn pack_record(info: &PackInfo, limits: &Limits, member: Option<u32>) -> PackRecord {
    PackRecord {
        id: info.id.clone(),
        version: info.version.clone(),
        data_hash: info.data_hash.clone(),
        rule_index: member,
        rules: info.rules,
        limits: limits.clone(),
    }
}

/// A module instantiated and loaded (its start routine run, its metadata read and checked, a pack's
/// rule data loaded) but not yet in a set. Prepare it on any sandbox thread, off the thread that
/// processes events, and install it with [`RuleSet::upsert_prepared`](crate::RuleSet::upsert_prepared):
/// installing does no guest work, so a large pack replaces its previous version between two events
/// without holding the event stream up for its load. `Send`.
pub struct Prepared {
    pub(crate) body: Body,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            Body::Rule(r) => f.debug_tuple("Prepared").field(r).finish(),
            Body::Pack(p) => f.debug_tuple("Prepared").field(p).finish(),
        }
    }
}

impl Prepared {
    /// Loads `compiled`: a one-rule module (`data` must be empty) or a rule pack with its rule data,
    /// under `limits` in place of the configuration's (see [`LoadedRule::load_with_limits`] and
    /// [`LoadedPack::load`]).
    pub fn load(
        runtime: &Runtime,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        data: &[u8],
        limits: Option<&Limits>,
    ) -> Result<Prepared, LoadError> {
        let body = if compiled.is_pack() {
            Body::Pack(LoadedPack::load(runtime, thread, compiled, data, limits)?)
        } else if !data.is_empty() {
            return Err(LoadError::BadRuleData(
                "a one-rule module takes no rule data".into(),
            ));
        } else {
            Body::Rule(LoadedRule::load_with_limits(
                runtime, thread, compiled, limits,
            )?)
        };
        Ok(Prepared { body })
    }

    /// The module's rules, in index order (none for a shared prefilter index, whose rules are
    /// other packs': `RuleSet::index_status`).
    pub fn rules(&self) -> Vec<Arc<RuleInfo>> {
        match &self.body {
            Body::Rule(r) => vec![r.info().clone()],
            Body::Pack(p) if p.info().name == crate::index::INDEX_PACK_NAME => Vec::new(),
            Body::Pack(p) => p.rules().map(|(info, _)| info.clone()).collect(),
        }
    }

    /// The pack, when the module is one.
    pub fn pack(&self) -> Option<&Arc<PackInfo>> {
        match &self.body {
            Body::Pack(p) => Some(p.info()),
            Body::Rule(_) => None,
        }
    }
}
