//! Running rules through the production runtime and building the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use rulebox_runtime::content::RUNTIME_VERSION;
use rulebox_runtime::text::Escaped;
use rulebox_runtime::{
    Alert, CompiledRule, Content, ContentRule, DeclaredRule, EventError, Limits, RuleInfo, RuleSet,
    Runtime, RuntimeConfig, SandboxThread, content_hash,
};
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION};
use rulebox_sdk::{Event, EventKind};

use crate::bundle::read_bundle;
use crate::cases::{CaseFile, Seen, compare, find_case_files, read_case_file};
use crate::error::ValidateError;
use crate::events::{LabeledEvent, boundary, corpus, generated};
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
}

/// Progress of a long run, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A rule starts: its position, its name and how many events it will see.
    Rule {
        /// 0-based position.
        index: usize,
        /// Rules (times schema versions) in all.
        of: usize,
        /// The rule id or source.
        name: String,
        /// Events it will be run on.
        events: u64,
    },
    /// More events were run.
    Events(u64),
}

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
    if m.rules.is_empty() {
        problems.push("the bundle holds no rules".to_owned());
    }
    let target = TargetInfo {
        kind: "bundle".to_owned(),
        release: Some(m.release),
        manifest_hash: Some(content.manifest_hash().to_owned()),
        schema_versions: m.schema_versions.clone(),
        min_runtime: Some(m.min_runtime.clone()),
    };
    let modules = content
        .into_modules()
        .into_iter()
        .map(|(entry, bytes)| ModuleInput {
            source: entry.file.clone(),
            bytes,
            limits: entry.limits.clone(),
            declared: Some((entry.id, entry.version)),
        })
        .collect();
    run(modules, target, problems, options, progress)
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
}

impl Shared {
    fn generated(&mut self, kind: EventKind) -> &[LabeledEvent] {
        let (count, seed) = (self.options.generated_per_kind, self.options.seed);
        self.generated
            .entry(kind)
            .or_insert_with(|| generated(kind, usize::try_from(count).unwrap_or(0), seed))
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
    for path in find_case_files(&options.tests)? {
        let file = read_case_file(&path)?;
        cases.entry(file.rule.clone()).or_default().push(file);
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
    };
    let schemas = target.schema_versions.clone();
    let (tx, rx) = mpsc::channel();
    let rt = runtime.clone();
    let worker = runtime
        .spawn_sandbox_thread("rulebox-validate", move |thread| {
            let mut rules = Vec::new();
            let of = modules.len() * schemas.len();
            for (m, module) in modules.iter().enumerate() {
                for (s, schema) in schemas.iter().enumerate() {
                    let index = m * schemas.len() + s;
                    rules.push(validate_rule(
                        &rt,
                        thread,
                        module,
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

/// One rule in its own [`RuleSet`], activated exactly as an agent activates it
/// ([`RuleSet::activate`]: manifest limits, identity check), with the measurements the report
/// needs.
struct Harness<'a> {
    rt: &'a Runtime,
    thread: &'a SandboxThread,
    content: Content,
    set: RuleSet,
    fuel: Vec<u64>,
    worst: (u64, String),
    memory_high: u64,
    fault: Option<FaultSummary>,
    refused: Vec<String>,
}

impl<'a> Harness<'a> {
    /// Loads the rule; on refusal returns the reason and message.
    fn new(
        rt: &'a Runtime,
        thread: &'a SandboxThread,
        rule: ContentRule,
    ) -> Result<(Harness<'a>, Arc<RuleInfo>), (String, String)> {
        let content = Content::new(None, vec![rule]);
        let (set, info) = Self::load(rt, thread, &content)?;
        Ok((
            Harness {
                rt,
                thread,
                content,
                set,
                fuel: Vec::new(),
                worst: (0, String::new()),
                memory_high: 0,
                fault: None,
                refused: Vec::new(),
            },
            info,
        ))
    }

    fn load(
        rt: &Runtime,
        thread: &SandboxThread,
        content: &Content,
    ) -> Result<(RuleSet, Arc<RuleInfo>), (String, String)> {
        let mut set = RuleSet::new(rt);
        let activation = set.activate(thread, content);
        if let Some(info) = activation.loaded().next() {
            return Ok((set, info.clone()));
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

    fn note_memory(&mut self) {
        if let Some((_, _, stats)) = self.set.rules().next() {
            self.memory_high = self.memory_high.max(stats.memory_high_water);
        }
    }

    /// A fresh instance (a test case starts from a rule without state).
    fn fresh(&mut self) {
        self.note_memory();
        if let Ok((set, _)) = Self::load(self.rt, self.thread, &self.content) {
            self.set = set;
        }
    }

    /// Runs one event; returns its detections, or `None` when the rule did not run (not
    /// subscribed, refused by the host's caps, or stopped by an earlier fault).
    fn feed(&mut self, label: &str, event: &Event<'_>) -> Option<Vec<Seen>> {
        if self.fault.is_some() {
            return None;
        }
        let outcome = match self.set.process(self.thread, event) {
            Ok(o) => o,
            Err(e @ (EventError::TooLarge { .. } | EventError::TooManyFields { .. })) => {
                self.refused.push(format!("{label}: {e}"));
                return None;
            }
            Err(e) => {
                self.refused.push(format!("{label}: {e}"));
                return None;
            }
        };
        if outcome.rules_run == 0 {
            return None;
        }
        if let Some((_, _, stats)) = self.set.rules().next() {
            self.fuel.push(stats.last_fuel);
            if stats.last_fuel > self.worst.0 || self.worst.1.is_empty() {
                self.worst = (stats.last_fuel, label.to_owned());
            }
        }
        for alert in &outcome.alerts {
            let (reason, message) = match alert {
                Alert::RuleQuarantined(r) => (r.reason.name().to_owned(), r.message.clone()),
                Alert::BudgetStrike { fault, .. } => {
                    (fault.reason.name().to_owned(), fault.message.clone())
                }
                Alert::PreviousVersionRestored { quarantined, .. } => (
                    quarantined.reason.name().to_owned(),
                    quarantined.message.clone(),
                ),
                _ => (
                    "unknown".to_owned(),
                    "an alert of a kind this validator does not know".to_owned(),
                ),
            };
            if self.fault.is_none() {
                self.fault = Some(FaultSummary {
                    reason,
                    message,
                    event: label.to_owned(),
                });
            }
        }
        Some(
            outcome
                .detections
                .into_iter()
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
                .collect(),
        )
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
    let declared = module.declared.as_ref().map(|(id, version)| DeclaredRule {
        id: id.clone(),
        version: version.clone(),
    });
    let rule = ContentRule::new(compiled, module.limits.clone(), declared);
    let (mut h, info) = match Harness::new(rt, thread, rule) {
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
        .limits_of(&info.id)
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
    for file in &case_files {
        for case in &file.cases {
            h.fresh();
            let mut seen = Vec::new();
            let mut ran = true;
            for (i, event) in case.events.iter().enumerate() {
                let label = format!("test {}: {} #{i}", file.file_name(), case.name);
                match h.feed(&label, event) {
                    Some(found) => {
                        report.events.tests += 1;
                        seen.extend(found.into_iter().map(|s| Seen { event: i, ..s }));
                    }
                    None if h.fault.is_some() => ran = false,
                    None => {}
                }
            }
            progress(Progress::Events(count(case.events.len())));
            report.detections.tests += count(seen.len());
            report.tests.cases += 1;
            let problem = if ran {
                compare(&case.expect, &seen)
            } else {
                Some("the rule faulted".to_owned())
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
    let sources: [(&[LabeledEvent], Pick); 3] = [
        (&corpus, |c| &mut c.corpus),
        (&generated, |c| &mut c.generated),
        (&boundary, |c| &mut c.boundary),
    ];
    for (events, pick) in sources {
        for chunk in events.chunks(64) {
            for e in chunk {
                if let Some(found) = h.feed(&e.label, &e.event) {
                    *pick(&mut report.events) += 1;
                    *pick(&mut report.detections) += count(found.len());
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
    if let Some(fault) = h.fault.take() {
        report.failures.push(format!(
            "{} on `{}`: {}",
            fault.reason, fault.event, fault.message
        ));
        report.fault = Some(fault);
    }
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

/// The outcome of one test case run by [`run_tests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// The test file's name.
    pub file: String,
    /// The rule id.
    pub rule: String,
    /// The case's name.
    pub case: String,
    /// What differed, or `None` when the case passed.
    pub problem: Option<String>,
    /// Detections the case produced.
    pub detections: u64,
}

/// Runs every test case in `files` against the module of `modules` whose rule id the file names,
/// each case on a fresh instance in the production sandbox. A file naming a rule no module has, or
/// a module that does not load, fails its cases.
pub fn run_tests(
    modules: Vec<ModuleInput>,
    files: Vec<CaseFile>,
    config: RuntimeConfig,
) -> Result<Vec<CaseOutcome>, ValidateError> {
    let runtime = Runtime::new(config)?;
    let rt = runtime.clone();
    let worker = runtime
        .spawn_sandbox_thread("rulebox-test", move |thread| {
            // Learn each module's rule id by loading it.
            let mut by_id: BTreeMap<String, CompiledRule> = BTreeMap::new();
            let mut refused: Vec<String> = Vec::new();
            for m in &modules {
                match rt.compile(&m.bytes, &m.source) {
                    Ok(c) => {
                        match Harness::new(&rt, thread, ContentRule::new(c.clone(), None, None)) {
                            Ok((_, info)) => {
                                by_id.insert(info.id.clone(), c);
                            }
                            Err((reason, message)) => {
                                refused.push(format!("{}: {reason}: {message}", m.source))
                            }
                        }
                    }
                    Err(e) => refused.push(format!("{}: {}: {e}", m.source, e.reason())),
                }
            }
            let mut out = Vec::new();
            for file in &files {
                let compiled = by_id.get(&file.rule);
                for case in &file.cases {
                    let mut outcome = CaseOutcome {
                        file: file.file_name(),
                        rule: file.rule.clone(),
                        case: case.name.clone(),
                        problem: None,
                        detections: 0,
                    };
                    let Some(compiled) = compiled else {
                        outcome.problem = Some(if refused.is_empty() {
                            format!("no module reports rule id `{}`", file.rule)
                        } else {
                            format!(
                                "no module reports rule id `{}` (refused: {})",
                                file.rule,
                                refused.join("; ")
                            )
                        });
                        out.push(outcome);
                        continue;
                    };
                    let rule = ContentRule::new(compiled.clone(), None, None);
                    let (mut h, _) = match Harness::new(&rt, thread, rule) {
                        Ok(ok) => ok,
                        Err((reason, message)) => {
                            outcome.problem = Some(format!("does not load: {reason}: {message}"));
                            out.push(outcome);
                            continue;
                        }
                    };
                    let mut seen = Vec::new();
                    for (i, event) in case.events.iter().enumerate() {
                        let label = format!("event {i}");
                        if let Some(found) = h.feed(&label, event) {
                            seen.extend(found.into_iter().map(|s| Seen { event: i, ..s }));
                        }
                    }
                    outcome.detections = count(seen.len());
                    outcome.problem = match h.fault.take() {
                        Some(f) => Some(format!(
                            "the rule faulted on {}: {}: {}",
                            f.event, f.reason, f.message
                        )),
                        None => compare(&case.expect, &seen),
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
