//! The one way content becomes the rules a [`RuleSet`] runs, used alike by the endpoint agent, the
//! fleet simulation's real hosts and the release gate:
//!
//! 1. [`Content::from_bundle`] compiles a bundle's modules (through the host's [`ModuleCache`] when
//!    there is one), leaving out the rule versions quarantined on this host and the modules that do
//!    not compile, each with the reason ([`SkippedRule`]), and keeps each module's manifest entry:
//!    its limits and the rule id and version it must report. Each engine is compiled once, however
//!    many packs (rule data files) it runs ([`ContentPack`]).
//! 2. [`RuleSet::activate`] makes the set run exactly that content: every rule is loaded under its
//!    manifest limits (a module already loaded under other limits is loaded again), a module that
//!    reports another id or version than its entry is not loaded at all ([`ManifestMismatch`]), a
//!    module that does not load leaves the version already running in place, and every rule the
//!    content no longer has is removed. Rules whose module did not change keep their instance and
//!    state. A pack whose engine and data did not change keeps its instance; a pack whose data
//!    changed (one rule updated) is a data load into the engine already compiled, never a compile.
//!    The returned [`Activation`] says what happened to each.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::config::Limits;
use crate::content::{BundleContents, PackEntry, RuleEntry};
use crate::module::{CompiledRule, LoadError, content_hash};
use crate::module_cache::ModuleCache;
use crate::pack::{LoadedPack, member_limits};
use crate::quarantine::{QuarantineRecord, Reason};
use crate::rule_info::RuleInfo;
use crate::ruleset::{RuleSet, Upsert};
use crate::runtime::{Runtime, SandboxThread};
use crate::text::Escaped;
use crate::unit::{Body, Prepared};

/// The rule id and version a signed manifest entry says its module has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredRule {
    /// The rule id.
    pub id: String,
    /// The rule version.
    pub version: String,
}

impl DeclaredRule {
    /// What `entry` declares.
    pub fn of(entry: &RuleEntry) -> DeclaredRule {
        DeclaredRule {
            id: entry.id.clone(),
            version: entry.version.clone(),
        }
    }

    /// Whether a module whose rule is `info` is what this entry declares: the rule's id and version,
    /// or, for a rule of a pack, the pack's.
    fn matches(&self, info: &RuleInfo) -> bool {
        let (id, version) = identity(info);
        self.id == id && self.version == version
    }
}

/// One rule of some [`Content`]: the compiled module, the limits it runs under (`None`: the
/// runtime configuration's for its id), and what its manifest entry declares, if it has one.
#[derive(Debug, Clone)]
pub struct ContentRule {
    compiled: CompiledRule,
    limits: Option<Limits>,
    declared: Option<DeclaredRule>,
}

impl ContentRule {
    /// A rule of content.
    pub fn new(
        compiled: CompiledRule,
        limits: Option<Limits>,
        declared: Option<DeclaredRule>,
    ) -> ContentRule {
        ContentRule {
            compiled,
            limits,
            declared,
        }
    }

    /// The compiled module.
    pub fn compiled(&self) -> &CompiledRule {
        &self.compiled
    }

    /// The limits from the manifest entry, if it sets them.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// What the manifest entry declares, if the rule has one.
    pub fn declared(&self) -> Option<&DeclaredRule> {
        self.declared.as_ref()
    }
}

/// What a signed manifest's pack entry says its engine reports once loaded with the data: the
/// pack's id and version, and its rules in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredPack {
    /// The pack id.
    pub id: String,
    /// The pack version.
    pub version: String,
    /// The rules, in index order.
    pub rules: Vec<DeclaredRule>,
}

impl DeclaredPack {
    /// What `entry` declares.
    pub fn of(entry: &PackEntry) -> DeclaredPack {
        DeclaredPack {
            id: entry.id.clone(),
            version: entry.version.clone(),
            rules: entry
                .rules
                .iter()
                .map(|r| DeclaredRule {
                    id: r.id.clone(),
                    version: r.version.clone(),
                })
                .collect(),
        }
    }

    /// `None` when the loaded pack `pack` (its rules `rules`, in index order) is what this declares;
    /// else the first difference: what was declared and what the pack reports (empty where one
    /// side has no rule at that index).
    fn difference(&self, pack: &LoadedPack) -> Option<(DeclaredRule, String, String)> {
        let info = pack.info();
        if info.id != self.id || info.version != self.version {
            let declared = DeclaredRule {
                id: self.id.clone(),
                version: self.version.clone(),
            };
            return Some((declared, info.id.clone(), info.version.clone()));
        }
        let found: Vec<&Arc<RuleInfo>> = pack.rules().map(|(info, _)| info).collect();
        let n = self.rules.len().max(found.len());
        (0..n).find_map(|i| {
            let declared = self.rules.get(i).cloned().unwrap_or(DeclaredRule {
                id: String::new(),
                version: String::new(),
            });
            let (id, version) = found.get(i).map_or((String::new(), String::new()), |r| {
                (r.id.clone(), r.version.clone())
            });
            (declared.id != id || declared.version != version).then_some((declared, id, version))
        })
    }
}

/// A rule pack of some [`Content`]: an engine compiled once (shared by every pack of it), one rule
/// data file, the limits from its manifest entry, and what that entry declares.
#[derive(Debug, Clone)]
pub struct ContentPack {
    engine: CompiledRule,
    data: Arc<[u8]>,
    data_hash: String,
    limits: Option<Limits>,
    rule_limits: BTreeMap<String, Limits>,
    declared: Option<DeclaredPack>,
}

impl ContentPack {
    /// A pack of content: `engine` loaded with `data`, under `limits` (the pack's; `None`: the
    /// configuration's for its id) and `rule_limits` (by rule id, replacing the pack's for those
    /// rules).
    pub fn new(
        engine: CompiledRule,
        data: Arc<[u8]>,
        limits: Option<Limits>,
        rule_limits: BTreeMap<String, Limits>,
        declared: Option<DeclaredPack>,
    ) -> ContentPack {
        ContentPack {
            data_hash: content_hash(&data),
            engine,
            data,
            limits,
            rule_limits,
            declared,
        }
    }

    /// The compiled engine.
    pub fn engine(&self) -> &CompiledRule {
        &self.engine
    }

    /// The rule data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// SHA-256 of the rule data, hex.
    pub fn data_hash(&self) -> &str {
        &self.data_hash
    }

    /// The pack's limits from its manifest entry, if it sets them.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// Limits for particular rules of the pack, by rule id.
    pub fn rule_limits(&self) -> &BTreeMap<String, Limits> {
        &self.rule_limits
    }

    /// What the manifest entry declares, if the pack has one.
    pub fn declared(&self) -> Option<&DeclaredPack> {
        self.declared.as_ref()
    }
}

/// A rule of a bundle left out of its [`Content`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkippedRule {
    /// This rule version (id, version and module hash) is quarantined on this host.
    Quarantined {
        /// The manifest entry's rule.
        rule: DeclaredRule,
    },
    /// The module does not compile or fails the ABI checks. For a pack whose engine does not
    /// compile, `rule` is the pack's id and version.
    DoesNotCompile {
        /// The manifest entry's rule.
        rule: DeclaredRule,
        /// Why.
        reason: Reason,
        /// The error.
        message: String,
    },
}

impl std::fmt::Display for SkippedRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkippedRule::Quarantined { rule } => write!(
                f,
                "{} {} is quarantined on this host",
                Escaped(&rule.id),
                Escaped(&rule.version)
            ),
            SkippedRule::DoesNotCompile {
                rule,
                reason,
                message,
            } => write!(
                f,
                "{} {}: {reason}: {}",
                Escaped(&rule.id),
                Escaped(&rule.version),
                Escaped(message)
            ),
        }
    }
}

/// Compiled content to activate: which release it is (`None`: content that is not a release, such
/// as an agent's built-in baseline) and its rules.
#[derive(Debug, Clone, Default)]
pub struct Content {
    release: Option<u64>,
    rules: Vec<ContentRule>,
    packs: Vec<ContentPack>,
    skipped: Vec<SkippedRule>,
    /// Rules quarantined on this host before (id, version, module hash, reason): a rule of a
    /// pack among them is kept off when its pack loads.
    kept_off: Vec<(String, String, String, crate::Reason)>,
}

impl Content {
    /// Content made of `rules`.
    pub fn new(release: Option<u64>, rules: Vec<ContentRule>) -> Content {
        Content {
            release,
            rules,
            packs: Vec::new(),
            skipped: Vec::new(),
            kept_off: Vec::new(),
        }
    }

    /// The content with `pack` added.
    #[must_use]
    pub fn with_pack(mut self, pack: ContentPack) -> Content {
        self.packs.push(pack);
        self
    }

    /// The content with the host's stored quarantines (on an endpoint:
    /// [`ContentStore::quarantined`](crate::content::ContentStore::quarantined)): a rule inside a
    /// pack that one of them names is kept off from the start, the rest of its pack runs (a
    /// one-rule module they name is left out already by `is_quarantined`).
    #[must_use]
    pub fn with_quarantined(mut self, stored: &[crate::content::QuarantineEntry]) -> Content {
        self.kept_off = stored
            .iter()
            .map(|q| {
                let reason = match &q.reason {
                    crate::content::QuarantineReason::Known(r) => *r,
                    _ => crate::Reason::HostError,
                };
                (
                    q.rule_id.clone(),
                    q.rule_version.clone(),
                    q.content_hash.clone(),
                    reason,
                )
            })
            .collect();
        self
    }

    /// Compiles the modules of a bundle (a verified one on an endpoint) with `runtime`, through
    /// `cache` when given, leaving out the entries `is_quarantined` names (on an endpoint:
    /// [`ContentStore::is_quarantined`](crate::content::ContentStore::is_quarantined)) and the
    /// modules that do not compile. Each rule keeps its entry's limits and declared id and version.
    /// A module's source label is `release-<n>:<rule id>`. Each engine is compiled once (source
    /// label `release-<n>:engine-<first 16 hex digits of its hash>`) and shared by its packs; a
    /// pack whose engine does not compile is left out. A rule inside a pack that this host
    /// quarantined is kept off by [`with_quarantined`](Self::with_quarantined).
    pub fn from_bundle(
        runtime: &Runtime,
        bundle: &BundleContents,
        cache: Option<&ModuleCache>,
        is_quarantined: impl Fn(&RuleEntry) -> bool,
    ) -> Content {
        Content::from_bundle_with(
            bundle,
            is_quarantined,
            |_sha256, bytes, source| match cache {
                Some(cache) => cache.compile(runtime, bytes, source),
                None => runtime.compile(bytes, source),
            },
        )
    }

    /// [`from_bundle`](Self::from_bundle) with another way to compile a module: `compile` gets the
    /// module's SHA-256 (hex, as the verified manifest states it), its bytes and the source label.
    pub fn from_bundle_with(
        bundle: &BundleContents,
        is_quarantined: impl Fn(&RuleEntry) -> bool,
        mut compile: impl FnMut(&str, &[u8], &str) -> Result<CompiledRule, LoadError>,
    ) -> Content {
        let mut content = Content::new(Some(bundle.release()), Vec::new());
        for (entry, bytes) in bundle.modules() {
            let rule = DeclaredRule::of(entry);
            if is_quarantined(entry) {
                content.skipped.push(SkippedRule::Quarantined { rule });
                continue;
            }
            let source = format!("release-{}:{}", bundle.release(), entry.id);
            match compile(&entry.sha256, bytes, &source) {
                Ok(compiled) => {
                    content
                        .rules
                        .push(ContentRule::new(compiled, entry.limits.clone(), Some(rule)))
                }
                Err(e) => content.skipped.push(SkippedRule::DoesNotCompile {
                    rule,
                    reason: e.reason(),
                    message: e.to_string(),
                }),
            }
        }
        // Each engine once, whatever the number of its packs.
        let engines: Vec<(&str, Result<CompiledRule, LoadError>)> = bundle
            .engines()
            .iter()
            .map(|(engine, bytes)| {
                let short = engine.sha256.get(..16).unwrap_or(&engine.sha256);
                let source = format!("release-{}:engine-{short}", bundle.release());
                (
                    engine.sha256.as_str(),
                    compile(&engine.sha256, bytes, &source),
                )
            })
            .collect();
        for (entry, data) in bundle.packs() {
            let declared = DeclaredPack::of(entry);
            let compiled = engines.iter().find(|(sha, _)| *sha == entry.engine);
            match compiled.map(|(_, c)| c) {
                Some(Ok(engine)) => {
                    let rule_limits = entry
                        .rules
                        .iter()
                        .filter_map(|r| r.limits.clone().map(|l| (r.id.clone(), l)))
                        .collect();
                    content.packs.push(ContentPack::new(
                        engine.clone(),
                        Arc::clone(data),
                        entry.limits.clone(),
                        rule_limits,
                        Some(declared),
                    ));
                }
                failed => {
                    let (reason, message) = match failed {
                        Some(Err(e)) => (e.reason(), format!("its engine: {e}")),
                        _ => (
                            Reason::HostError,
                            "its engine is not in the bundle".to_owned(),
                        ),
                    };
                    content.skipped.push(SkippedRule::DoesNotCompile {
                        rule: DeclaredRule {
                            id: entry.id.clone(),
                            version: entry.version.clone(),
                        },
                        reason,
                        message,
                    });
                }
            }
        }
        content
    }

    /// Compiles `modules` (a name and the bytes each) into content that is not a release, with the
    /// configuration's limits and no declared identity: every module must compile (the first that
    /// does not is returned with its error). A module's source label is `baseline:<name>`.
    pub fn from_modules<'a>(
        runtime: &Runtime,
        cache: Option<&ModuleCache>,
        modules: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Content, (String, LoadError)> {
        let mut rules = Vec::new();
        for (name, bytes) in modules {
            let source = format!("baseline:{name}");
            let compiled = match cache {
                Some(cache) => cache.compile(runtime, bytes, &source),
                None => runtime.compile(bytes, &source),
            }
            .map_err(|e| (name.to_owned(), e))?;
            rules.push(ContentRule::new(compiled, None, None));
        }
        Ok(Content::new(None, rules))
    }

    /// The release (`None`: not a release).
    pub fn release(&self) -> Option<u64> {
        self.release
    }

    /// The rules to run.
    pub fn rules(&self) -> &[ContentRule] {
        &self.rules
    }

    /// The packs to run.
    pub fn packs(&self) -> &[ContentPack] {
        &self.packs
    }

    /// The bundle's rules left out, with why.
    pub fn skipped(&self) -> &[SkippedRule] {
        &self.skipped
    }
}

/// A module whose own metadata is not the rule its manifest entry declares: it was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestMismatch {
    /// What the manifest entry declares.
    pub declared: DeclaredRule,
    /// What the module reports.
    pub found_id: String,
    /// The version the module reports.
    pub found_version: String,
    /// SHA-256 of the module, hex.
    pub content_hash: String,
}

impl std::fmt::Display for ManifestMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the manifest says rule `{}` {}; the module reports `{}` {}; not loaded",
            Escaped(&self.declared.id),
            Escaped(&self.declared.version),
            Escaped(&self.found_id),
            Escaped(&self.found_version)
        )
    }
}

/// What [`RuleSet::activate`] did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Activation {
    /// The content's release.
    pub release: Option<u64>,
    /// Rules with an id the set did not run before.
    pub added: Vec<Arc<RuleInfo>>,
    /// Rules that replaced another version of the same id (kept as the fallback until
    /// [`RuleSet::settle`]).
    pub replaced: Vec<Arc<RuleInfo>>,
    /// Rules whose module and limits did not change: same instance, same state.
    pub unchanged: Vec<Arc<RuleInfo>>,
    /// Modules that did not load; the version of the same id already running, if any, keeps running.
    pub refused: Vec<Arc<QuarantineRecord>>,
    /// Modules that are not the rule their manifest entry declares; not loaded.
    pub mismatched: Vec<ManifestMismatch>,
    /// Rules removed because the content no longer has them.
    pub removed: Vec<String>,
    /// The content's rules left out before activation ([`Content::skipped`]).
    pub skipped: Vec<SkippedRule>,
}

impl Activation {
    /// Every rule the content runs now: added, replaced and unchanged.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<RuleInfo>> {
        self.added
            .iter()
            .chain(&self.replaced)
            .chain(&self.unchanged)
    }
}

impl RuleSet {
    /// Makes the set run `content`: each rule loaded under its manifest limits (a module already
    /// loaded under other limits is loaded again) and checked against its manifest entry, a module
    /// that does not load leaving the version already running in place, rules the content no longer
    /// has removed, unchanged rules untouched (same instance, same state). Never fails as a whole: each rule's outcome is in the
    /// returned [`Activation`].
    ///
    /// A new module with a declared identity is instantiated once on its own first, to read its
    /// metadata, so that a module claiming another rule's id never displaces that rule.
    pub fn activate(&mut self, thread: &SandboxThread, content: &Content) -> Activation {
        let mut report = Activation {
            release: content.release,
            skipped: content.skipped.clone(),
            ..Activation::default()
        };
        let mut keep: Vec<String> = Vec::new();
        for rule in &content.rules {
            let limits = rule.limits.as_ref();
            // Every rule the module already runs (one, or each rule of a pack).
            let loaded_same: Vec<Arc<RuleInfo>> = self
                .infos()
                .filter(|info| info.content_hash == rule.compiled.content_hash())
                .cloned()
                .collect();
            if let Some(first) = loaded_same.first() {
                if let Some(declared) = &rule.declared
                    && !declared.matches(first)
                {
                    report.mismatched.push(mismatch(declared, first));
                    continue;
                }
                let config = self.runtime().config();
                let same_limits = loaded_same.iter().all(|info| {
                    let wanted = limits
                        .cloned()
                        .unwrap_or_else(|| config.limits_for(&info.id).clone());
                    self.limits(&info.id) == Some(&wanted)
                });
                if same_limits {
                    keep.extend(loaded_same.iter().map(|i| i.id.clone()));
                    report.unchanged.extend(loaded_same);
                    continue;
                }
                // The same module under other limits: load it again under the new ones.
                for info in &loaded_same {
                    self.remove(&info.id);
                }
            } else if let Some(declared) = &rule.declared
                && let Ok(probe) =
                    Prepared::load(self.runtime(), thread, &rule.compiled, &[], limits)
                && let Some(found) = probe.rules().first()
                && !declared.matches(found)
            {
                report.mismatched.push(mismatch(declared, found));
                continue;
            }
            match self.upsert_with_limits(thread, &rule.compiled, limits) {
                Ok(Upsert::Added(info)) => {
                    keep.push(info.id.clone());
                    report.added.push(info);
                }
                Ok(Upsert::Replaced { new, .. }) => {
                    keep.push(new.id.clone());
                    report.replaced.push(new);
                }
                Ok(Upsert::Unchanged(info)) => {
                    keep.push(info.id.clone());
                    report.unchanged.push(info);
                }
                Ok(Upsert::Pack(pack)) => note_pack(pack, &mut keep, &mut report),
                Err(record) => {
                    // The version already loaded under this id (if any) keeps running.
                    let id = rule
                        .declared
                        .as_ref()
                        .map_or(record.rule_id.as_str(), |d| d.id.as_str());
                    if !id.is_empty() {
                        keep.push(id.to_owned());
                    }
                    report.refused.push(record);
                }
            }
        }
        for pack in &content.packs {
            self.activate_pack(thread, pack, &mut keep, &mut report);
        }
        for (id, version, hash, reason) in &content.kept_off {
            self.keep_quarantined(id, version, hash, *reason);
        }
        // A set, not the list: thousands of rules kept would make this quadratic.
        let kept: HashSet<&str> = keep.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        report
            .removed
            .retain(|id| !kept.contains(id.as_str()) && seen.insert(id.clone()));
        let stale: Vec<String> = self
            .ids()
            .filter(|id| !kept.contains(id))
            .map(str::to_owned)
            .collect();
        for id in stale {
            self.remove(&id);
            report.removed.push(id);
        }
        tracing::info!(
            target: "rulebox::decision",
            decision = "activate",
            release = ?content.release,
            added = report.added.len(),
            replaced = report.replaced.len(),
            unchanged = report.unchanged.len(),
            refused = report.refused.len(),
            mismatched = report.mismatched.len(),
            removed = report.removed.len(),
            skipped = report.skipped.len(),
            "content activated"
        );
        report
    }
}

impl RuleSet {
    /// [`activate`](Self::activate) for one pack: unchanged when the same engine runs the same data
    /// under the same limits, else loaded (a data load into the compiled engine), checked against
    /// its declaration, and installed between two events.
    fn activate_pack(
        &mut self,
        thread: &SandboxThread,
        pack: &ContentPack,
        keep: &mut Vec<String>,
        report: &mut Activation,
    ) {
        let engine_hash = pack.engine.content_hash();
        let loaded_same: Vec<Arc<RuleInfo>> = self
            .infos()
            .filter(|info| {
                info.content_hash == engine_hash
                    && info
                        .pack
                        .as_ref()
                        .is_some_and(|p| p.data_hash == pack.data_hash)
            })
            .cloned()
            .collect();
        if let Some(first) = loaded_same.first() {
            let config = self.runtime().config();
            let pack_limits = pack.limits.clone().unwrap_or_else(|| {
                let id = first.pack.as_ref().map_or("", |p| p.id.as_str());
                config.limits_for(id).clone()
            });
            let same_limits = loaded_same.iter().all(|info| {
                let wanted = member_limits(config, &pack.rule_limits, &pack_limits, &info.id);
                self.limits(&info.id) == Some(&wanted)
            });
            let declared_same = pack.declared.as_ref().is_none_or(|d| {
                first
                    .pack
                    .as_ref()
                    .is_some_and(|p| p.id == d.id && p.version == d.version)
                    && d.rules.len() == loaded_same.len()
            });
            if same_limits && declared_same {
                keep.extend(loaded_same.iter().map(|i| i.id.clone()));
                report.unchanged.extend(loaded_same);
                return;
            }
            for info in &loaded_same {
                self.remove(&info.id);
            }
        }
        let loaded = LoadedPack::load_with_rule_limits(
            self.runtime(),
            thread,
            &pack.engine,
            &pack.data,
            pack.limits.as_ref(),
            &pack.rule_limits,
        );
        let loaded = match loaded {
            Ok(p) => p,
            Err(e) => {
                // The versions already loaded under the declared ids keep running.
                if let Some(d) = &pack.declared {
                    keep.extend(d.rules.iter().map(|r| r.id.clone()));
                }
                report
                    .refused
                    .push(self.record_refusal(&pack.engine, &pack.data, &e));
                return;
            }
        };
        if let Some((declared, found_id, found_version)) =
            pack.declared.as_ref().and_then(|d| d.difference(&loaded))
        {
            report.mismatched.push(ManifestMismatch {
                declared,
                found_id,
                found_version,
                content_hash: engine_hash.to_owned(),
            });
            return;
        }
        match self.upsert_prepared(Prepared {
            body: Body::Pack(loaded),
        }) {
            Ok(Upsert::Pack(up)) => note_pack(up, keep, report),
            Ok(other) => {
                // A pack upserts as a pack; were it ever otherwise, its rules still count as loaded.
                let infos = other.rules();
                keep.extend(infos.iter().map(|i| i.id.clone()));
                report.added.extend(infos);
            }
            Err(record) => report.refused.push(record),
        }
    }
}

/// Records what a pack's upsert did: its rules are kept, and reported unchanged, added or replaced.
fn note_pack(pack: crate::ruleset::PackUpsert, keep: &mut Vec<String>, report: &mut Activation) {
    keep.extend(pack.rules.iter().map(|i| i.id.clone()));
    // Rules the pack's new data no longer has were removed with the old instance; `activate`
    // drops from this list the ones another pack or module of the content still has (moved).
    report
        .removed
        .extend(pack.removed.iter().map(|i| i.id.clone()));
    if pack.unchanged {
        report.unchanged.extend(pack.rules);
    } else {
        report.added.extend(pack.added);
        report
            .replaced
            .extend(pack.replaced.into_iter().map(|(new, _)| new));
    }
}

/// The identity a manifest entry declares for the module of `info`: the rule's id and version, or
/// its pack's.
fn identity(info: &RuleInfo) -> (&str, &str) {
    match &info.pack {
        Some(pack) => (pack.id.as_str(), pack.version.as_str()),
        None => (info.id.as_str(), info.version.as_str()),
    }
}

fn mismatch(declared: &DeclaredRule, info: &RuleInfo) -> ManifestMismatch {
    let (id, version) = identity(info);
    ManifestMismatch {
        declared: declared.clone(),
        found_id: id.to_owned(),
        found_version: version.to_owned(),
        content_hash: info.content_hash.clone(),
    }
}
