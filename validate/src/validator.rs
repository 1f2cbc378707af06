//! Running rules through the production runtime and building the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use rulebox_runtime::content::RUNTIME_VERSION;
use rulebox_runtime::text::Escaped;
use rulebox_runtime::{
    Alert, CompiledRule, Content, ContentRule, DeclaredRule, Limits, QuarantineRecord, RuleInfo,
    RuleSet, Runtime, RuntimeConfig, SandboxThread, content_hash,
};
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION};
use rulebox_sdk::{Event, EventKind};

use crate::bundle::read_bundle;
use crate::cases::{CaseFile, CaseOutcome, Seen, compare, find_case_files, read_case_file};
use crate::error::ValidateError;
use crate::events::{LabeledEvent, boundary, corpus, generated};
use crate::named::{Named, named_fields};
use crate::progress::{FaultFound, Progress};
use crate::report::{
    CaseFailure, CorpusInfo, EventCounts, FaultSummary, FuelProfile, MemoryProfile, REPORT_FORMAT,
    Report, RuleReport, Settings, TargetInfo, TestSummary,
};

/// The event-schema versions this validator can encode events in. Today the runtime speaks one
/// version, so this is one entry; a bundle declaring any other version fails validation (it would
/// be running on code that fed it events nobody tested), rather than being waved through.
pub const SUPPORTED_SCHEMAS: &[u32] = &[SCHEMA_VERSION];

/// Where the recorded corpus comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorpusSource {
    /// A corpus folder with `cases/*/event.json` (the Sigma corpus layout).
    Dir(PathBuf),
    /// No corpus; the reason is written into the report.
    Skip(String),
}

/// How to validate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runtime configuration (as on the endpoints); a bundle's per-rule limits replace its
    /// limits for those rules.
    pub config: RuntimeConfig,
    /// A rule fails if its worst event uses more than this percentage of its fuel or memory budget
    /// (1 to 100; default 50).
    pub headroom_percent: u32,
    /// Generated events per subscribed event kind (default 64).
    pub generated_per_kind: u32,
    /// Seed of the event generator (default fixed, so runs repeat).
    pub seed: u64,
    /// The recorded corpus.
    pub corpus: CorpusSource,
    /// Test files or folders ([`find_case_files`]); each file's cases go to the rule it names.
    pub tests: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: RuntimeConfig::default(),
            headroom_percent: 50,
            generated_per_kind: 64,
            seed: 0x5eed_2024_0719,
            corpus: CorpusSource::Skip("no corpus given".to_owned()),
            tests: Vec::new(),
        }
    }
}

/// One module to validate.
#[derive(Debug, Clone)]
pub struct ModuleInput {
    /// Where it came from, for the report.
    pub source: String,
    /// The module.
    pub bytes: Vec<u8>,
    /// Limits replacing the configuration's for this rule (a manifest entry's).
    pub limits: Option<Limits>,
    /// The rule id and version the module must report (a manifest entry's).
    pub declared: Option<(String, String)>,
    /// For an engine whose rules are data: the rule data it is loaded with (empty otherwise). Each
    /// of its rules is validated in the engine loaded with this data.
    pub data: Vec<u8>,
}

/// The most faults a rule's report lists ([`RuleReport::faults`](crate::RuleReport::faults)); all
/// are counted, and each reason is named in the rule's failures.
pub const MAX_LISTED_FAULTS: usize = 32;

/// Validates loose module files against the runtime's own event-schema version.
pub fn validate_modules(
    modules: Vec<ModuleInput>,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ValidateError> {
    let target = TargetInfo {
        kind: "modules".to_owned(),
        release: None,
        manifest_hash: None,
        schema_versions: vec![SCHEMA_VERSION],
        min_runtime: None,
    };
    let problems = if modules.is_empty() {
        vec!["no modules to validate".to_owned()]
    } else {
        Vec::new()
    };
    run(modules, target, problems, options, progress)
}

/// Validates the bundle in `dir` (signed or not): every module under every event-schema version the
/// manifest declares, with the manifest's per-rule limits. The bundle is read with the endpoint's own
/// structure checks ([`read_bundle`]): what an endpoint would refuse is refused here. The report is
/// bound to the manifest hash.
pub fn validate_bundle(
    dir: &Path,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ValidateError> {
    let content = read_bundle(dir)?;
    let m = content.manifest();
    let mut problems = Vec::new();
    // What an endpoint accepts but this validator could not vouch for.
    if parse_version(&m.min_runtime).is_some_and(|min| Some(min) < parse_version(RUNTIME_VERSION)) {
        problems.push(format!(
            "declares it runs on runtime {} and later, but only runtime {RUNTIME_VERSION} (this validator) was checked: build the bundle with min_runtime {RUNTIME_VERSION}",
            Escaped(&m.min_runtime)
        ));
    }
    for v in &m.schema_versions {
        if !SUPPORTED_SCHEMAS.contains(v) {
            problems.push(format!(
                "declares event-schema version {v}, which this validator cannot encode events in (it has {SUPPORTED_SCHEMAS:?}): the rules were never tested against what a runtime of that version feeds them"
            ));
        }
    }
    if m.rules.is_empty() && m.packs.is_empty() {
        problems.push("the bundle holds no rules".to_owned());
    }
    let target = TargetInfo {
        kind: "bundle".to_owned(),
        release: Some(m.release),
        manifest_hash: Some(content.manifest_hash().to_owned()),
        schema_versions: m.schema_versions.clone(),
        min_runtime: Some(m.min_runtime.clone()),
    };
    // Each pack: its engine with its data, every rule of it validated in the whole pack.
    let packs: Vec<ModuleInput> = content
        .packs()
        .iter()
        .map(|(entry, data)| ModuleInput {
            source: entry.file.clone(),
            bytes: content.engine(&entry.engine).unwrap_or_default().to_vec(),
            limits: entry.limits.clone(),
            declared: Some((entry.id.clone(), entry.version.clone())),
            data: data.to_vec(),
        })
        .collect();
    let mut options = options.clone();
    for (entry, _) in content.packs() {
        for rule in &entry.rules {
            if let Some(l) = &rule.limits {
                options.config.rules.insert(rule.id.clone(), l.clone());
            }
        }
    }
    let modules = content
        .into_modules()
        .into_iter()
        .map(|(entry, bytes)| ModuleInput {
            source: entry.file.clone(),
            bytes,
            limits: entry.limits.clone(),
            declared: Some((entry.id, entry.version)),
            data: Vec::new(),
        })
        .chain(packs)
        .collect();
    run(modules, target, problems, &options, progress)
}

/// A `major.minor.patch` version (anything after `-` or `+` ignored).
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let parts: Vec<u64> = core
        .split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    match parts[..] {
        [a, b, c] => Some((a, b, c)),
        _ => None,
    }
}

/// Everything a rule run needs that does not depend on the rule.
struct Shared {
    options: Options,
    cases: BTreeMap<String, Vec<CaseFile>>,
    corpus: Vec<LabeledEvent>,
    generated: BTreeMap<EventKind, Vec<LabeledEvent>>,
    boundary: BTreeMap<EventKind, Vec<LabeledEvent>>,
    /// Per rule data, per rule id: what the rule's program names. Keyed by the data itself: the
    /// rules of one pack look it up in turn, and packs differ in their first bytes (the header
    /// names the pack), so a lookup compares one pack's data in full, once.
    named: BTreeMap<Vec<u8>, BTreeMap<String, Named>>,
}

impl Shared {
    fn generated(&mut self, kind: EventKind) -> &[LabeledEvent] {
        let (count, seed) = (self.options.generated_per_kind, self.options.seed);
        self.generated
            .entry(kind)
            .or_insert_with(|| generated(kind, usize::try_from(count).unwrap_or(0), seed))
    }

    /// The events at the cap on the fields rule `id` of `data` reads (none when the data names
    /// none: [`named_fields`]), for each of `kinds`.
    fn named_at_cap(&mut self, data: &[u8], id: &str, kinds: &[EventKind]) -> Vec<LabeledEvent> {
        if data.is_empty() {
            return Vec::new();
        }
        if !self.named.contains_key(data) {
            self.named.insert(data.to_vec(), named_fields(data));
        }
        let names = &self.named[data];
        let Some(named) = names.get(id) else {
            return Vec::new();
        };
        let config = &self.options.config;
        kinds
            .iter()
            .flat_map(|kind| named.at_cap(*kind, config))
            .collect()
    }

    fn boundary(&mut self, kind: EventKind) -> &[LabeledEvent] {
        let config = self.options.config.clone();
        self.boundary
            .entry(kind)
            .or_insert_with(|| boundary(kind, &config))
    }
}

fn run(
    modules: Vec<ModuleInput>,
    target: TargetInfo,
    mut problems: Vec<String>,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ValidateError> {
    if !(1..=100).contains(&options.headroom_percent) {
        return Err(ValidateError::Options(format!(
            "headroom must be 1 to 100 percent, is {}",
            options.headroom_percent
        )));
    }
    let runtime = Runtime::new(options.config.clone())?;
    let mut cases: BTreeMap<String, Vec<CaseFile>> = BTreeMap::new();
    // Each test file's rule id, with the file named from the folder given (for reports, which hold
    // no absolute paths).
    let mut case_rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for root in &options.tests {
        for path in find_case_files(std::slice::from_ref(root))? {
            let file = read_case_file(&path)?;
            let base = root.file_name().map(PathBuf::from).unwrap_or_default();
            let shown = match path.strip_prefix(root) {
                Ok(rest) if !rest.as_os_str().is_empty() => base.join(rest),
                _ => base,
            };
            let shown = rulebox_cases::printable(&shown.display().to_string()).into_owned();
            case_rules.entry(file.rule.clone()).or_default().push(shown);
            cases.entry(file.rule.clone()).or_default().push(file);
        }
    }
    let (corpus_events, corpus_info) = match &options.corpus {
        CorpusSource::Dir(dir) => match corpus(dir) {
            Ok((events, unreadable)) => {
                let info = CorpusInfo {
                    used: true,
                    events: u64::try_from(events.len()).unwrap_or(u64::MAX),
                    unreadable: u64::try_from(unreadable.len()).unwrap_or(u64::MAX),
                    note: format!("cases/*/event.json under {}", dir.display()),
                };
                problems.extend(unreadable.into_iter().take(20));
                (events, info)
            }
            Err(e) => {
                return Err(ValidateError::Io {
                    path: dir.join("cases"),
                    error: e,
                });
            }
        },
        CorpusSource::Skip(why) => (
            Vec::new(),
            CorpusInfo {
                used: false,
                events: 0,
                unreadable: 0,
                note: format!("skipped: {why}"),
            },
        ),
    };
    let mut shared = Shared {
        options: options.clone(),
        cases,
        corpus: corpus_events,
        generated: BTreeMap::new(),
        boundary: BTreeMap::new(),
        named: BTreeMap::new(),
    };
    let schemas = target.schema_versions.clone();
    let (tx, rx) = mpsc::channel();
    let rt = runtime.clone();
    let worker = runtime
        .spawn_sandbox_thread("rulebox-validate", move |thread| {
            let mut rules = Vec::new();
            // A rule pack is validated rule by rule, each in the whole pack.
            let targets: Vec<(&ModuleInput, Option<String>)> = modules
                .iter()
                .flat_map(|m| match pack_rules(&rt, thread, m) {
                    Some(ids) => ids.into_iter().map(|id| (m, Some(id))).collect(),
                    None => vec![(m, None)],
                })
                .collect();
            let of = targets.len() * schemas.len();
            for (m, (module, member)) in targets.iter().enumerate() {
                for (s, schema) in schemas.iter().enumerate() {
                    let index = m * schemas.len() + s;
                    rules.push(validate_rule(
                        &rt,
                        thread,
                        module,
                        member.as_deref(),
                        *schema,
                        &mut shared,
                        &mut |p| {
                            let _ = tx.send(match p {
                                Progress::Rule { name, events, .. } => Progress::Rule {
                                    index,
                                    of,
                                    name,
                                    events,
                                },
                                other => other,
                            });
                        },
                    ));
                }
            }
            rules
        })
        .map_err(|error| ValidateError::Io {
            path: PathBuf::from("<sandbox thread>"),
            error,
        })?;
    for p in rx {
        progress(p);
    }
    let rules = match worker.join() {
        Ok(rules) => rules,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    problems.extend(unmatched_tests(&case_rules, &rules));
    let passed = problems.is_empty() && !rules.is_empty() && rules.iter().all(|r| r.passed);
    Ok(Report {
        format: REPORT_FORMAT,
        runtime_version: RUNTIME_VERSION.to_owned(),
        abi_version: ABI_VERSION,
        target,
        settings: Settings {
            headroom_percent: options.headroom_percent,
            seed: options.seed,
            generated_per_kind: options.generated_per_kind,
            max_event_bytes: u64::try_from(options.config.max_event_bytes).unwrap_or(u64::MAX),
            max_event_fields: u64::try_from(options.config.max_event_fields).unwrap_or(u64::MAX),
        },
        corpus: corpus_info,
        problems,
        rules,
        passed,
    })
}

/// A problem for every test file whose rule id no validated module reports: its cases would
/// otherwise never run, and the gate would pass without them.
fn unmatched_tests(
    case_rules: &BTreeMap<String, Vec<String>>,
    rules: &[RuleReport],
) -> Vec<String> {
    let reported: Vec<&str> = rules.iter().filter_map(|r| r.rule_id.as_deref()).collect();
    let mut known = reported.clone();
    known.sort_unstable();
    known.dedup();
    let unloaded = rules.iter().filter(|r| r.rule_id.is_none()).count();
    case_rules
        .iter()
        .filter(|(id, _)| !reported.contains(&id.as_str()))
        .map(|(id, paths)| {
            format!(
                "test file {} is for rule `{}`, which no module validated here reports ({}){}",
                paths.join(", "),
                rulebox_cases::printable(id),
                if known.is_empty() {
                    "no module reported a rule id".to_owned()
                } else {
                    format!("the modules report: {}", known.join(", "))
                },
                if unloaded > 0 {
                    format!("; {unloaded} module(s) did not load")
                } else {
                    String::new()
                }
            )
        })
        .collect()
}

/// The ids of the rules of `module` if it is a rule pack that loads (`None` otherwise: a one-rule
/// module, or one that does not load, whose report says why).
fn pack_rules(rt: &Runtime, thread: &SandboxThread, module: &ModuleInput) -> Option<Vec<String>> {
    let compiled = rt.compile(&module.bytes, &module.source).ok()?;
    if !compiled.is_pack() {
        return None;
    }
    match rulebox_runtime::Prepared::load(
        rt,
        thread,
        &compiled,
        &module.data,
        module.limits.as_ref(),
    ) {
        Ok(p) => Some(p.rules().iter().map(|r| r.id.clone()).collect()),
        Err(_) => None,
    }
}

/// What feeding one event to a rule gave.
struct Fed {
    /// Whether the rule was called (subscribed, not refused by the host's caps).
    ran: bool,
    /// Its detections.
    seen: Vec<Seen>,
    /// Faults it caused (usually none or one), with the runtime's record when it quarantined.
    faults: Vec<(FaultSummary, Option<QuarantineRecord>)>,
}

/// One rule in its own [`RuleSet`], activated exactly as an agent activates it
/// ([`RuleSet::activate`]: manifest limits, identity check), with the measurements the report
/// needs. A rule that faults is quarantined, as on an endpoint; the harness then loads a fresh
/// instance before the next event, so every event is run and every fault found. A rule of a pack
/// runs in the whole pack (the other rules run too), and the measurements are its own.
struct Harness<'a> {
    rt: &'a Runtime,
    thread: &'a SandboxThread,
    content: Content,
    /// The rule data of an engine whose rules are data (loaded with it instead of activating
    /// `content`; empty otherwise).
    data: &'a [u8],
    /// The rule of a pack being validated.
    member: Option<&'a str>,
    /// Its id, once loaded.
    id: String,
    set: RuleSet,
    fuel: Vec<u64>,
    worst: (u64, String),
    memory_high: u64,
    /// The first [`MAX_LISTED_FAULTS`] faults.
    faults: Vec<FaultSummary>,
    /// Every fault, by reason in order of first appearance: reason, count, first one.
    by_reason: Vec<(String, u64, FaultSummary)>,
    /// Set when the rule was quarantined: the next event reloads it first.
    quarantined: bool,
    refused: Vec<String>,
}

impl<'a> Harness<'a> {
    /// Loads the rule; on refusal returns the reason and message.
    fn new(
        rt: &'a Runtime,
        thread: &'a SandboxThread,
        rule: ContentRule,
        data: &'a [u8],
        member: Option<&'a str>,
    ) -> Result<(Harness<'a>, Arc<RuleInfo>), (String, String)> {
        let content = Content::new(None, vec![rule]);
        let (set, info) = Self::load(rt, thread, &content, data, member)?;
        Ok((
            Harness {
                rt,
                thread,
                content,
                data,
                member,
                id: info.id.clone(),
                set,
                fuel: Vec::new(),
                worst: (0, String::new()),
                memory_high: 0,
                faults: Vec::new(),
                by_reason: Vec::new(),
                quarantined: false,
                refused: Vec::new(),
            },
            info,
        ))
    }

    fn load(
        rt: &Runtime,
        thread: &SandboxThread,
        content: &Content,
        data: &[u8],
        member: Option<&str>,
    ) -> Result<(RuleSet, Arc<RuleInfo>), (String, String)> {
        let mut set = RuleSet::new(rt);
        if !data.is_empty() {
            // An engine with its rule data: loaded as `rulebox run` loads it.
            let Some(rule) = content.rules().first() else {
                return Err(("host_error".to_owned(), "no module".to_owned()));
            };
            let rules = set
                .add_module(thread, rule.compiled(), data, rule.limits())
                .map_err(|r| (r.reason.name().to_owned(), r.message.clone()))?;
            return rules
                .into_iter()
                .find(|info| member.is_none_or(|id| info.id == id))
                .map(|info| (set, info))
                .ok_or_else(|| {
                    (
                        "host_error".to_owned(),
                        "the rule is not in the pack".to_owned(),
                    )
                });
        }
        let activation = set.activate(thread, content);
        let found = activation
            .loaded()
            .find(|info| member.is_none_or(|id| info.id == id))
            .cloned();
        if let Some(info) = found {
            return Ok((set, info));
        }
        if let Some(mismatch) = activation.mismatched.first() {
            return Err(("manifest_mismatch".to_owned(), mismatch.to_string()));
        }
        match activation.refused.first() {
            Some(record) => Err((record.reason.name().to_owned(), record.message.clone())),
            None => Err((
                "host_error".to_owned(),
                "the rule was neither loaded nor refused".to_owned(),
            )),
        }
    }

    /// The rule's counters.
    fn stats(&self) -> Option<rulebox_runtime::RuleStats> {
        self.set
            .rules()
            .find(|(info, _, _)| info.id == self.id)
            .map(|(_, _, stats)| stats)
    }

    fn note_memory(&mut self) {
        if let Some(stats) = self.stats() {
            self.memory_high = self.memory_high.max(stats.memory_high_water);
        }
    }

    /// A fresh instance (a test case starts from a rule without state, and a quarantined rule is
    /// loaded again to run the next event).
    fn fresh(&mut self) {
        self.note_memory();
        if let Ok((set, _)) =
            Self::load(self.rt, self.thread, &self.content, self.data, self.member)
        {
            self.set = set;
            self.quarantined = false;
        }
    }

    /// How many faults in all.
    fn fault_count(&self) -> u64 {
        self.by_reason.iter().map(|(_, n, _)| n).sum()
    }

    /// Runs one event; returns whether the rule ran (it does not when it is not subscribed to the
    /// event's kind, or the host's caps refuse the event), its detections and its faults.
    fn feed(&mut self, label: &str, event: &Event<'_>) -> Fed {
        let mut fed = Fed {
            ran: false,
            seen: Vec::new(),
            faults: Vec::new(),
        };
        if self.quarantined {
            self.fresh();
        }
        let events_before = self.stats().map_or(0, |s| s.events);
        let outcome = match self.set.process(self.thread, event) {
            Ok(o) => o,
            Err(e) => {
                self.refused.push(format!("{label}: {e}"));
                return fed;
            }
        };
        let ran = match self.member {
            None => outcome.rules_run > 0,
            Some(_) => self.stats().map(|s| s.events) != Some(events_before),
        };
        if !ran {
            return fed;
        }
        fed.ran = true;
        if let Some(stats) = self.stats() {
            self.fuel.push(stats.last_fuel);
            if stats.last_fuel > self.worst.0 || self.worst.1.is_empty() {
                self.worst = (stats.last_fuel, label.to_owned());
            }
        }
        for alert in &outcome.alerts {
            let (reason, message, record) = match alert {
                // In a pack, only what stops or strikes this rule (a record about the pack stops
                // every rule of it).
                Alert::RuleQuarantined(r)
                    if self.member.is_some() && r.rule_id != self.id && !r.rule_id.is_empty() =>
                {
                    continue;
                }
                Alert::BudgetStrike { rule, .. } if rule.id != self.id => continue,
                Alert::RuleQuarantined(r) => {
                    self.quarantined = true;
                    (
                        r.reason.name().to_owned(),
                        r.message.clone(),
                        Some((**r).clone()),
                    )
                }
                Alert::BudgetStrike { fault, .. } | Alert::PackStrike { fault, .. } => {
                    (fault.reason.name().to_owned(), fault.message.clone(), None)
                }
                Alert::PreviousVersionRestored { quarantined, .. } => (
                    quarantined.reason.name().to_owned(),
                    quarantined.message.clone(),
                    Some((**quarantined).clone()),
                ),
                _ => (
                    "unknown".to_owned(),
                    "an alert of a kind this validator does not know".to_owned(),
                    None,
                ),
            };
            let summary = FaultSummary {
                reason,
                message,
                event: label.to_owned(),
            };
            if self.faults.len() < MAX_LISTED_FAULTS {
                self.faults.push(summary.clone());
            }
            match self
                .by_reason
                .iter_mut()
                .find(|(r, _, _)| *r == summary.reason)
            {
                Some((_, n, _)) => *n += 1,
                None => self
                    .by_reason
                    .push((summary.reason.clone(), 1, summary.clone())),
            }
            fed.faults.push((summary, record));
        }
        let id = &self.id;
        fed.seen = outcome
            .detections
            .into_iter()
            .filter(|d| d.rule.id == *id)
            .map(|d| Seen {
                event: 0,
                title: d.detection.title.into_owned(),
                fields: d
                    .detection
                    .fields
                    .into_iter()
                    .map(|f| (f.name.into_owned(), f.value.into_owned()))
                    .collect(),
            })
            .collect();
        fed
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn validate_rule(
    rt: &Runtime,
    thread: &SandboxThread,
    module: &ModuleInput,
    member: Option<&str>,
    schema: u32,
    shared: &mut Shared,
    progress: &mut dyn FnMut(Progress),
) -> RuleReport {
    let mut report = RuleReport {
        source: module.source.clone(),
        content_hash: content_hash(&module.bytes),
        rule_id: None,
        version: None,
        schema_version: schema,
        subscriptions: Vec::new(),
        passed: false,
        failures: Vec::new(),
        notes: Vec::new(),
        events: EventCounts::default(),
        detections: EventCounts::default(),
        tests: TestSummary::default(),
        fuel: FuelProfile::default(),
        memory: MemoryProfile::default(),
        fault: None,
        faults: Vec::new(),
        fault_count: 0,
    };
    if !SUPPORTED_SCHEMAS.contains(&schema) {
        report.failures.push(format!(
            "event-schema version {schema}: this validator cannot encode events in it"
        ));
        progress(Progress::Rule {
            index: 0,
            of: 0,
            name: module.source.clone(),
            events: 0,
        });
        return report;
    }
    let compiled = match rt.compile(&module.bytes, &module.source) {
        Ok(c) => c,
        Err(e) => {
            report
                .failures
                .push(format!("does not load: {}: {e}", e.reason().name()));
            return report;
        }
    };
    // A rule of a pack is checked against the manifest entry as the pack.
    let declared = module.declared.as_ref().map(|(id, version)| DeclaredRule {
        id: id.clone(),
        version: version.clone(),
    });
    let rule = ContentRule::new(compiled, module.limits.clone(), declared);
    let (mut h, info) = match Harness::new(rt, thread, rule, &module.data, member) {
        Ok(ok) => ok,
        Err((reason, message)) => {
            report
                .failures
                .push(format!("does not load: {reason}: {message}"));
            return report;
        }
    };
    report.rule_id = Some(info.id.clone());
    report.version = Some(info.version.clone());
    let kinds: Vec<EventKind> = info.subscriptions.iter().collect();
    report.subscriptions = kinds.iter().map(|k| k.name().to_owned()).collect();
    // The limits the activation applied (the manifest entry's, or the configuration's).
    let limits = h
        .set
        .limits(&info.id)
        .cloned()
        .unwrap_or_else(|| rt.config().limits_for(&info.id).clone());
    report.fuel.budget = limits.fuel_per_event;
    report.memory.budget = limits.memory_bytes;

    let case_files = shared.cases.get(&info.id).cloned().unwrap_or_default();
    let corpus: Vec<LabeledEvent> = shared
        .corpus
        .iter()
        .filter(|e| info.subscriptions.contains(e.event.kind()))
        .cloned()
        .collect();
    let mut generated = Vec::new();
    let mut boundary = Vec::new();
    for kind in &kinds {
        generated.extend_from_slice(shared.generated(*kind));
        boundary.extend_from_slice(shared.boundary(*kind));
    }
    let named = shared.named_at_cap(&module.data, &info.id, &kinds);
    if !named.is_empty() {
        report.notes.push(format!(
            "{} events at the cap on the fields its program reads",
            named.len()
        ));
        boundary.extend(named);
    }
    let test_events: usize = case_files
        .iter()
        .flat_map(|f| &f.cases)
        .map(|c| c.events.len())
        .sum();
    progress(Progress::Rule {
        index: 0,
        of: 0,
        name: info.id.clone(),
        events: count(test_events + corpus.len() + generated.len() + boundary.len()),
    });

    // 1. The rule's own test cases, each on a fresh instance.
    if case_files.is_empty() {
        report
            .notes
            .push("no test cases for this rule (give --tests)".to_owned());
    }
    let found = |origin: &'static str, event: &Event<'_>, fault, record| {
        Progress::Fault(Box::new(FaultFound {
            rule_id: info.id.clone(),
            source: module.source.clone(),
            origin,
            fault,
            record,
            event: event.clone().into_owned(),
        }))
    };
    for file in &case_files {
        for case in &file.cases {
            h.fresh();
            let mut seen = Vec::new();
            let mut faults = Vec::new();
            for (i, event) in case.events.iter().enumerate() {
                let label = format!("test {}: {} #{i}", file.file_name(), case.name);
                let fed = h.feed(&label, event);
                if fed.ran {
                    report.events.tests += 1;
                }
                seen.extend(fed.seen.into_iter().map(|s| Seen { event: i, ..s }));
                for (fault, record) in fed.faults {
                    faults.push(format!("event {i}: {}: {}", fault.reason, fault.message));
                    progress(found("test", event, fault, record));
                }
            }
            progress(Progress::Events(count(case.events.len())));
            report.detections.tests += count(seen.len());
            report.tests.cases += 1;
            let problem = if faults.is_empty() {
                compare(&case.expect, &seen)
            } else {
                Some(format!("the rule faulted on {}", faults.join("; ")))
            };
            match problem {
                None => report.tests.passed += 1,
                Some(problem) => report.tests.failed.push(CaseFailure {
                    case: format!("{}: {}", file.file_name(), case.name),
                    problem,
                }),
            }
        }
    }
    if !report.tests.failed.is_empty() {
        report.failures.push(format!(
            "{} of {} test cases failed",
            report.tests.failed.len(),
            report.tests.cases
        ));
    }

    // 2. Corpus, generated and boundary events, on one instance (state carries over, as on an
    // endpoint).
    h.fresh();
    type Pick = fn(&mut EventCounts) -> &mut u64;
    let sources: [(&'static str, &[LabeledEvent], Pick); 3] = [
        ("corpus", &corpus, |c| &mut c.corpus),
        ("generated", &generated, |c| &mut c.generated),
        ("boundary", &boundary, |c| &mut c.boundary),
    ];
    for (origin, events, pick) in sources {
        for chunk in events.chunks(64) {
            for e in chunk {
                let fed = h.feed(&e.label, &e.event);
                if fed.ran {
                    *pick(&mut report.events) += 1;
                    *pick(&mut report.detections) += count(fed.seen.len());
                }
                for (fault, record) in fed.faults {
                    progress(found(origin, &e.event, fault, record));
                }
            }
            progress(Progress::Events(count(chunk.len())));
        }
    }
    h.note_memory();

    // 3. The verdict.
    let mut fuel = std::mem::take(&mut h.fuel);
    fuel.sort_unstable();
    report.fuel.p50 = percentile(&fuel, 50);
    report.fuel.p99 = percentile(&fuel, 99);
    report.fuel.max = fuel.last().copied().unwrap_or(0);
    report.fuel.worst_event = std::mem::take(&mut h.worst.1);
    report.memory.high_water = h.memory_high;
    let headroom = u128::from(shared.options.headroom_percent);
    for (_, n, first) in &h.by_reason {
        report.failures.push(if *n == 1 {
            format!("{} on `{}`: {}", first.reason, first.event, first.message)
        } else {
            format!(
                "{} on {n} events, the first `{}`: {}",
                first.reason, first.event, first.message
            )
        });
    }
    report.fault_count = h.fault_count();
    report.faults = std::mem::take(&mut h.faults);
    report.fault = report.faults.first().cloned();
    if u128::from(report.fuel.max) * 100 > u128::from(report.fuel.budget) * headroom {
        report.failures.push(format!(
            "worst event used {} of {} fuel ({}%; headroom {headroom}%): `{}`",
            report.fuel.max,
            report.fuel.budget,
            u128::from(report.fuel.max) * 100 / u128::from(report.fuel.budget.max(1)),
            report.fuel.worst_event
        ));
    }
    if u128::from(report.memory.high_water) * 100 > u128::from(report.memory.budget) * headroom {
        report.failures.push(format!(
            "memory reached {} of {} bytes (headroom {headroom}%)",
            report.memory.high_water, report.memory.budget
        ));
    }
    if report.events.total() == 0 && report.fault.is_none() {
        report
            .failures
            .push("the rule was never run: no event of a kind it subscribes to".to_owned());
    }
    if !h.refused.is_empty() {
        report.notes.push(format!(
            "{} events refused by the host's caps before reaching the rule (first: {})",
            h.refused.len(),
            h.refused[0]
        ));
    }
    report.passed = report.failures.is_empty();
    report
}

/// Runs every test case in `files` against the module of `modules` whose rule id the file names,
/// each case on a fresh instance in the production sandbox, every event of a case even after a
/// fault (on a fresh instance again). A file naming a rule no module has, or a module that does not
/// load, fails its cases.
pub fn run_tests(
    modules: Vec<ModuleInput>,
    files: Vec<CaseFile>,
    config: RuntimeConfig,
) -> Result<Vec<CaseOutcome>, ValidateError> {
    let runtime = Runtime::new(config)?;
    let rt = runtime.clone();
    let worker = runtime
        .spawn_sandbox_thread("rulebox-test", move |thread| {
            // Learn each module's rule ids by loading it: each with its module, and whether it is a
            // rule of a pack.
            let mut by_id: BTreeMap<String, (CompiledRule, bool)> = BTreeMap::new();
            let mut refused: Vec<String> = Vec::new();
            for m in &modules {
                match rt.compile(&m.bytes, &m.source) {
                    Ok(c) => match RuleSet::new(&rt).add_module(thread, &c, &[], None) {
                        Ok(rules) => {
                            for info in rules {
                                by_id.insert(info.id.clone(), (c.clone(), c.is_pack()));
                            }
                        }
                        Err(r) => refused.push(format!(
                            "{}: {}: {}",
                            m.source,
                            r.reason,
                            Escaped(&r.message)
                        )),
                    },
                    Err(e) => refused.push(format!("{}: {}: {e}", m.source, e.reason())),
                }
            }
            let known: Vec<&str> = by_id.keys().map(String::as_str).collect();
            let mut out = Vec::new();
            for file in &files {
                let compiled = by_id.get(&file.rule);
                for case in &file.cases {
                    let mut outcome = CaseOutcome::new(file, case);
                    let Some(compiled) = compiled else {
                        let mut problem = format!(
                            "no module reports rule id `{}` (the modules report: {})",
                            rulebox_cases::printable(&file.rule),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        );
                        if !refused.is_empty() {
                            problem.push_str(&format!("; refused: {}", refused.join("; ")));
                        }
                        outcome.problem = Some(problem);
                        out.push(outcome);
                        continue;
                    };
                    let (compiled, in_pack) = compiled;
                    let member = in_pack.then_some(file.rule.as_str());
                    let rule = ContentRule::new(compiled.clone(), None, None);
                    let (mut h, _) = match Harness::new(&rt, thread, rule, &[], member) {
                        Ok(ok) => ok,
                        Err((reason, message)) => {
                            outcome.problem = Some(format!("does not load: {reason}: {message}"));
                            out.push(outcome);
                            continue;
                        }
                    };
                    let mut seen = Vec::new();
                    let mut faults = Vec::new();
                    for (i, event) in case.events.iter().enumerate() {
                        let fed = h.feed(&format!("event {i}"), event);
                        seen.extend(fed.seen.into_iter().map(|s| Seen { event: i, ..s }));
                        faults.extend(
                            fed.faults
                                .into_iter()
                                .map(|(f, _)| format!("event {i}: {}: {}", f.reason, f.message)),
                        );
                    }
                    outcome.detections = count(seen.len());
                    outcome.problem = if faults.is_empty() {
                        compare(&case.expect, &seen)
                    } else {
                        Some(format!("the rule faulted on {}", faults.join("; ")))
                    };
                    out.push(outcome);
                }
            }
            out
        })
        .map_err(|error| ValidateError::Io {
            path: PathBuf::from("<sandbox thread>"),
            error,
        })?;
    match worker.join() {
        Ok(out) => Ok(out),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
