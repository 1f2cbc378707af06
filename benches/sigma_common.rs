//! What the benchmarks comparing rulebox's Sigma engine with rsigma share (`sigma_scale.rs`,
//! `sigma_agree.rs`, each `mod sigma_common;`): the corpora, the rules both engines load, the
//! events as each engine reads them, both engines set up, and one pass of each.
//!
//! - **Rules**: every `.yml` under the SigmaHQ folder (`$RULEBOX_SIGMAHQ`, else
//!   `<workspace>/../shared/corpus/sigmahq`) that rulebox compiles within the size cap, the first of
//!   each id; rsigma loads the same files' text.
//! - **Events**: every case of the Sigma corpus (`$RULEBOX_SIGMA_CORPUS`, else
//!   `<workspace>/../shared/corpus/sigma`, its `cases/`), in case order. rsigma gets each as the
//!   flat JSON of the fields rulebox's rules read (the kind's fields, the extra fields, and the
//!   header fields `Computer`, `ProcessId` and `Timestamp`) and routed by logsource
//!   (`evaluate_with_logsource`) under every Sigma logsource rulebox gives the event to
//!   ([`rulebox_sigma::event_sources`]: a kind's categories, `service: sysmon`, the categories and
//!   services of an `other` event's provider, channel and event id), a rule matching under several
//!   of them counted once.

use std::collections::HashSet;

use rsigma_eval::{Engine, EvaluationResult, JsonEvent};
use rsigma_parser::LogSource;
use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{BatchOutcome, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{Event, EventKind};
use rulebox_sigma::EventSource;
use rulebox_sigma::cases::load_cases;
use serde_json::{Map, Value};

/// What a bench prints, and all it does, when a corpus is absent.
pub const SKIPPED: &str = "SKIPPED: no SigmaHQ rules or Sigma corpus (set RULEBOX_SIGMAHQ and RULEBOX_SIGMA_CORPUS, or put them under ../shared/corpus)";

/// A rule both engines load: its text and rulebox's compiled program.
pub struct Rule {
    /// The rule file's text (what rsigma parses).
    pub text: String,
    /// rulebox's program of it.
    pub program: rulebox_sigma::Program<'static>,
}

/// An event as rsigma reads it.
pub struct RsigmaEvent {
    /// The flat JSON of its Sigma fields.
    pub json: Value,
    /// The logsources it is routed under.
    pub sources: Vec<LogSource>,
}

/// The rules and events of a comparison.
pub struct Corpus {
    /// How many rule files the SigmaHQ folder has.
    pub files: usize,
    /// How many of them rulebox refused (or were over the size cap, or repeated an id).
    pub refused: usize,
    /// The rules both engines load.
    pub rules: Vec<Rule>,
    /// The corpus events, in case order.
    pub events: Vec<Event<'static>>,
    /// Each event's case (folder name).
    #[allow(
        dead_code,
        reason = "read by sigma_agree only; each bench is its own crate"
    )]
    pub event_cases: Vec<String>,
    /// Every case (folder name), in order, with its rule's id when it compiles.
    pub cases: Vec<(String, Option<String>)>,
    /// Each event as rsigma reads it.
    pub rsigma_events: Vec<RsigmaEvent>,
}

impl Corpus {
    /// The corpora, or `None` (after printing [`SKIPPED`]) when either is absent.
    ///
    /// # Panics
    /// If the corpus's cases folder cannot be read.
    pub fn load() -> Option<Corpus> {
        let (Some(hq), Some(corpus)) = (
            rulebox_benches::corpus_dir("RULEBOX_SIGMAHQ", "../../shared/corpus/sigmahq"),
            rulebox_benches::corpus_dir("RULEBOX_SIGMA_CORPUS", "../../shared/corpus/sigma"),
        ) else {
            println!("{SKIPPED}");
            return None;
        };
        let mut files = Vec::new();
        rulebox_benches::yml_files(&hq, &mut files);
        // A diagnostic narrowing: only the rule files whose path contains this text (for looking
        // at a few rules' fuel with the same harness); said aloud, so no figure passes for the set.
        if let Ok(only) = std::env::var("RULEBOX_SIGMAHQ_ONLY") {
            files.retain(|f| f.to_string_lossy().contains(&only));
            println!(
                "RULEBOX_SIGMAHQ_ONLY={only}: {} rule files only (not the whole set)",
                files.len()
            );
        }
        let mut ids = HashSet::new();
        let mut refused = 0;
        let rules: Vec<Rule> = files
            .iter()
            .filter_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                match rulebox_sigma::compile(&text) {
                    // A program over the size cap is refused by `sigma compile` too.
                    Ok(program)
                        if rulebox_sigma::rule_record(&program).is_ok()
                            && ids.insert(program.id.clone()) =>
                    {
                        Some(Rule { text, program })
                    }
                    _ => {
                        refused += 1;
                        None
                    }
                }
            })
            .collect();
        let mut events = Vec::new();
        let mut event_cases = Vec::new();
        let mut cases = Vec::new();
        for case in load_cases(&corpus.join("cases")).expect("cases") {
            if let Ok(evs) = case.events {
                event_cases.extend(std::iter::repeat_n(case.name.clone(), evs.len()));
                events.extend(evs);
            }
            cases.push((case.name, case.program.ok().map(|p| p.id)));
        }
        let rsigma_events = events.iter().map(for_rsigma).collect();
        Some(Corpus {
            files: files.len(),
            refused,
            rules,
            events,
            event_cases,
            cases,
            rsigma_events,
        })
    }
}

/// An event as rsigma reads it: the flat JSON of its Sigma fields, and the logsources it is
/// routed under.
fn for_rsigma(event: &Event<'_>) -> RsigmaEvent {
    let mut flat = Map::new();
    if let Ok(Value::Object(data)) = serde_json::to_value(&event.data)
        && let Some(Value::Object(fields)) = data.into_iter().next().map(|(_, v)| v)
    {
        flat.extend(fields);
    }
    for f in &event.extra {
        flat.insert(f.name.to_string(), Value::String(f.value.to_string()));
    }
    // The header fields rulebox's events answer for (`Event::field`), where the body has none.
    let pid = if event.kind() == EventKind::ProcessAccess {
        "SourceProcessId"
    } else {
        "ProcessId"
    };
    flat.entry("Computer")
        .or_insert_with(|| Value::String(event.host.to_string()));
    flat.entry(pid).or_insert_with(|| Value::from(event.pid));
    flat.entry("Timestamp")
        .or_insert_with(|| Value::from(event.timestamp));
    let windows = |category: Option<&str>, service: Option<&str>| LogSource {
        product: Some("windows".into()),
        category: category.map(str::to_owned),
        service: service.map(str::to_owned),
        ..LogSource::default()
    };
    let mut sources: Vec<LogSource> = rulebox_sigma::event_sources(event)
        .into_iter()
        .map(|s| match s {
            EventSource::Category(c) => windows(Some(c), None),
            EventSource::Service(s) => windows(None, Some(s)),
        })
        .collect();
    if sources.is_empty() {
        sources.push(windows(None, None));
    }
    RsigmaEvent {
        json: Value::Object(flat),
        sources,
    }
}

/// Which cross-rule prefilter a [`rulebox_set`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefilter {
    /// None: every rule of an event's kind runs on it (`rulebox_sigma::without_prefilter`).
    #[allow(
        dead_code,
        reason = "the benches that compare with no prefilter use it"
    )]
    Off,
    /// Each pack's own, scanning the event for its rules.
    PerPack,
    /// One shared index for every pack (`rulebox_sigma::index_data`), scanning the event once.
    Shared,
}

/// The rules as rulebox ships them: the rule data of the Sigma engine (compiled once), split into
/// packs as `rulebox sigma compile` splits them ([`rulebox_sigma::split_packs`]), loaded into one
/// `RuleSet` with the runtime's limits, with the cross-rule prefilter `prefilter`.
///
/// # Panics
/// If the engine, a pack or the index does not load, or the index is not current.
pub fn rulebox_set(
    runtime: &Runtime,
    thread: &SandboxThread,
    rules: &[Rule],
    prefilter: Prefilter,
) -> RuleSet {
    let engine = runtime
        .compile(SIGMA_EVAL.bytes, "sigma.wasm")
        .expect("the engine compiles");
    let records: Vec<Vec<u8>> = rules
        .iter()
        .map(|r| rulebox_sigma::rule_record(&r.program).expect("record"))
        .collect();
    let mut set = RuleSet::new(runtime);
    let full =
        rulebox_validate::named::full_rows(&records, &rulebox_runtime::RuntimeConfig::default());
    let packs = rulebox_sigma::split_packs_with_rows(
        &records,
        "sigma",
        rulebox_sigma::MAX_PACK_DATA_BYTES,
        &full,
    );
    for (id, data, _) in &packs {
        let data = match prefilter {
            Prefilter::Off => {
                rulebox_sigma::without_prefilter(data).expect("the pack's data splits")
            }
            _ => data.clone(),
        };
        set.add_module(thread, &engine, &data, None)
            .unwrap_or_else(|r| panic!("pack {id} loads: {}: {}", r.reason, r.message));
    }
    if prefilter == Prefilter::Shared {
        let index = rulebox_sigma::index_data("sigma-index", packs.iter().map(|p| p.1.as_slice()))
            .expect("the index builds");
        set.upsert_with_data(thread, &engine, &index, None)
            .unwrap_or_else(|r| panic!("the index loads: {}: {}", r.reason, r.message));
        let status = set.index_status();
        assert!(
            matches!(status, rulebox_runtime::IndexStatus::Current { .. }),
            "the index is in use: {status:?}"
        );
    }
    set
}

/// rsigma with every rule of `rules` it parses and compiles (with its cross-rule index when
/// `index`), and how many it refused. The rules are added in one batch (`add_rules`: its index
/// is built once; one `add_collection` per file rebuilds it per file, quadratic in the rules).
pub fn rsigma_engine(rules: &[Rule], index: bool) -> (Engine, usize) {
    let mut engine = Engine::new();
    let mut refused = 0;
    let mut parsed = Vec::with_capacity(rules.len());
    for r in rules {
        match rsigma_parser::parse_sigma_yaml(&r.text) {
            Ok(c) if !c.has_errors() && !c.rules.is_empty() => parsed.extend(c.rules),
            _ => refused += 1,
        }
    }
    refused += engine.add_rules(&parsed).len();
    if index {
        engine.set_cross_rule_ac(true);
    }
    (engine, refused)
}

/// One pass of `events` through `set`: how many detections.
pub fn rulebox_pass(
    set: &mut RuleSet,
    thread: &SandboxThread,
    events: &[Event<'_>],
    out: &mut BatchOutcome,
) -> usize {
    set.process_batch(thread, events, out);
    out.iter()
        .map(|o| o.map_or(0, |o| o.detections.len()))
        .sum()
}

/// rsigma's detections of `event`, under each of its logsources, a rule matching under several
/// of them once.
pub fn rsigma_matches(engine: &Engine, event: &RsigmaEvent) -> Vec<EvaluationResult> {
    let json = JsonEvent::borrow(&event.json);
    let mut out: Vec<EvaluationResult> = Vec::new();
    for (i, ls) in event.sources.iter().enumerate() {
        let found = engine.evaluate_with_logsource(&json, ls);
        if i == 0 {
            out = found;
            continue;
        }
        for r in found {
            let same = |o: &EvaluationResult| {
                o.header.rule_id == r.header.rule_id && o.header.rule_title == r.header.rule_title
            };
            if !out.iter().any(same) {
                out.push(r);
            }
        }
    }
    out
}

/// One pass of `events` through `engine`: how many detections.
pub fn rsigma_pass(engine: &Engine, events: &[RsigmaEvent]) -> usize {
    events.iter().map(|e| rsigma_matches(engine, e).len()).sum()
}
