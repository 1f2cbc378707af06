//! Testing compiled Sigma rules on recorded events: a folder of cases laid out like SigmaHQ's
//! regression data (`<case>/rule.yml`, `<case>/event.json`, optional `<case>/info.yml` with
//! `match_count`), every rule run on every event in the real sandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rulebox_runtime::events::read_events_file;
use rulebox_runtime::{BatchOutcome, RuleSet, Runtime};
use rulebox_sdk::Event;
use rulebox_sigma_eval::{Evaluator, Program};
use serde::Serialize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::{MAX_PACK_DATA_BYTES, SigmaError, compile, rule_record, split_packs_indexed};

/// Events per batch handed to the pack.
const BATCH: usize = 256;

/// One case as read from disk.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case folder's name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// The compiled rule, or why it was refused.
    pub program: Result<Program<'static>, SigmaError>,
    /// The case's events, or why they could not be read.
    pub events: Result<Vec<Event<'static>>, String>,
    /// How many of its events the rule must fire on, when `info.yml` says.
    pub match_count: Option<u64>,
}

/// Why a folder of cases could not be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The folder could not be listed.
    #[error("cannot read the cases folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The folder has no case (no sub-folder with a `rule.yml`).
    #[error("{0} holds no case (a folder with a rule.yml)")]
    Empty(PathBuf),
}

fn match_count(info: &Yaml) -> Option<u64> {
    info["regression_tests_info"]
        .as_vec()?
        .iter()
        .find_map(|t| t["match_count"].as_i64())
        .and_then(|n| u64::try_from(n).ok())
}

/// Reads every case under `dir` (each sub-folder holding a `rule.yml`), sorted by name. A case whose
/// rule does not compile or whose events do not read is kept, with the reason.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, CaseError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CaseError::Folder {
        path: dir.to_owned(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("rule.yml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(CaseError::Empty(dir.to_owned()));
    }
    Ok(dirs.into_iter().map(|d| load_case(&d)).collect())
}

fn load_case(dir: &Path) -> Case {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let program = std::fs::read_to_string(dir.join("rule.yml"))
        .map_err(|e| SigmaError::Yaml(format!("cannot read rule.yml: {e}")))
        .and_then(|text| compile(&text));
    let events = read_events_file(dir.join("event.json"))
        .map(|v| v.into_iter().map(|r| r.event).collect())
        .map_err(|e| e.to_string());
    let match_count = std::fs::read_to_string(dir.join("info.yml"))
        .ok()
        .and_then(|t| YamlLoader::load_from_str(&t).ok())
        .and_then(|docs| docs.first().and_then(match_count));
    Case {
        name,
        dir: dir.to_owned(),
        program,
        events,
        match_count,
    }
}

/// The result of one case: passed when the rule fired on at least one of its own events, and on at
/// least `match_count` of them where `info.yml` gives one.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case folder's name.
    pub name: String,
    /// The rule id, if it compiled.
    pub rule_id: Option<String>,
    /// Whether the rule fired on its own events as required.
    pub passed: bool,
    /// Why not, when it did not.
    pub failure: Option<String>,
    /// Something worth knowing about a case that passed (it fired on more events than `match_count`).
    pub note: Option<String>,
    /// On how many of its own events the rule fired.
    pub own_matches: u64,
    /// How many events the case has.
    pub events: u64,
    /// What `info.yml` requires.
    pub match_count: Option<u64>,
    /// Other cases on whose events this rule fired.
    pub fires_on_others: Vec<String>,
}

/// The result of a folder of cases.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per case, sorted by name.
    pub cases: Vec<CaseResult>,
    /// How many passed.
    pub passed: usize,
    /// How many rules fired on at least one other case's events.
    pub rules_firing_elsewhere: usize,
    /// How many (rule, other case's event) pairs fired.
    pub cross_matches: u64,
}

impl Report {
    /// The share of cases that passed, 0 to 1.
    pub fn pass_share(&self) -> f64 {
        if self.cases.is_empty() {
            return 0.0;
        }
        self.passed as f64 / self.cases.len() as f64
    }
}

/// Loads every case's rule into one pack (the evaluator module `evaluator`, compiled once, with
/// their programs as its rule data) in the sandbox, runs every case's events through it in batches,
/// and reports.
pub fn run_cases(runtime: &Runtime, evaluator: &[u8], cases: &[Case]) -> Report {
    let mut results: Vec<CaseResult> = cases
        .iter()
        .map(|c| CaseResult {
            name: c.name.clone(),
            rule_id: c.program.as_ref().ok().map(|p| p.id.clone()),
            passed: false,
            failure: None,
            note: None,
            own_matches: 0,
            events: c.events.as_ref().map_or(0, |e| e.len() as u64),
            match_count: c.match_count,
            fires_on_others: Vec::new(),
        })
        .collect();
    // One pack: every case's program as rule data for the engine, compiled once. A program the
    // evaluator would refuse, or a second rule with an id already taken, stays out of the pack
    // (and fails its case) so that it cannot refuse the others.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut in_pack: Vec<usize> = Vec::new();
    let mut records: Vec<Vec<u8>> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if let Err(e) = &c.program {
            results[i].failure = Some(format!("refused by the compiler: {e}"));
            continue;
        }
        if let Err(e) = &c.events {
            results[i].failure = Some(format!("events unreadable: {e}"));
        }
        let Ok(program) = &c.program else { continue };
        if let Some(&first) = seen.get(program.id.as_str()) {
            results[i].failure = Some(format!(
                "its rule id is also case {}'s: left out of the pack",
                cases[first].name
            ));
            continue;
        }
        // The evaluator's own checks, natively: a program it would refuse stays out of the pack.
        let checked = rule_record(program).and_then(|record| {
            let refusal = rulebox_sigma_eval::records(&record)
                .ok()
                .and_then(|r| r.first().copied())
                .map(|body| Evaluator::from_bytes(body).err().map(|e| e.to_string()));
            match refusal {
                Some(None) => Ok(record),
                Some(Some(e)) => Err(SigmaError::Evaluator(e)),
                None => Err(SigmaError::Evaluator("the record does not frame".into())),
            }
        });
        match checked {
            Ok(record) => {
                seen.insert(&program.id, i);
                in_pack.push(i);
                records.push(record);
            }
            Err(e) => results[i].failure = Some(e.to_string()),
        }
    }
    let packs = split_packs_indexed(&records, "sigma", MAX_PACK_DATA_BYTES);
    let compiled = match runtime.compile(evaluator, "sigma:cases") {
        Ok(c) => Some(c),
        Err(e) => {
            for &i in &in_pack {
                results[i].failure = Some(format!("the evaluator module is refused: {e}"));
            }
            None
        }
    };
    let events: Vec<(usize, Event<'static>)> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.events
                .as_ref()
                .map(|v| v.iter().cloned().map(|e| (i, e)).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    let rt = runtime.clone();
    // (own matches per case, cross pairs (rule case, event case), load failures, quarantines)
    type Tallies = (Vec<u64>, Vec<(usize, usize)>, Vec<(usize, String)>);
    let n = cases.len();
    let (own, cross, problems): Tallies = runtime.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut problems = Vec::new();
        if let Some(compiled) = &compiled {
            for (_, data, indices) in &packs {
                let members: Vec<usize> = indices.iter().map(|&r| in_pack[r]).collect();
                match set.add_module(thread, compiled, data, None) {
                    Ok(rules) => {
                        for (info, i) in rules.iter().zip(&members) {
                            by_id.insert(info.id.clone(), *i);
                        }
                    }
                    Err(record) => {
                        for &i in &members {
                            problems.push((
                                i,
                                format!(
                                    "its pack is refused: {}: {}",
                                    record.reason, record.message
                                ),
                            ));
                        }
                    }
                }
            }
        }
        let mut own = vec![0u64; n];
        let mut cross = Vec::new();
        let mut out = BatchOutcome::default();
        // In batches: the pack is crossed into once per batch.
        for chunk in events.chunks(BATCH) {
            let batch: Vec<Event<'_>> = chunk.iter().map(|(_, e)| e.clone()).collect();
            set.process_batch(thread, &batch, &mut out);
            for ((case, _), outcome) in chunk.iter().zip(out.iter()) {
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        problems.push((*case, format!("an event was refused: {e}")));
                        continue;
                    }
                };
                for d in &outcome.detections {
                    let Some(&rule_case) = by_id.get(&d.rule.id) else {
                        continue;
                    };
                    if rule_case == *case {
                        own[rule_case] += 1;
                    } else {
                        cross.push((rule_case, *case));
                    }
                }
            }
        }
        for record in set.records() {
            if let Some(&i) = by_id.get(&record.rule_id) {
                problems.push((
                    i,
                    format!("quarantined: {}: {}", record.reason, record.message),
                ));
            }
        }
        (own, cross, problems)
    });
    for (i, problem) in problems {
        results[i].failure.get_or_insert(problem);
    }
    let mut cross_matches = 0;
    for (rule_case, event_case) in cross {
        cross_matches += 1;
        let other = cases[event_case].name.clone();
        if !results[rule_case].fires_on_others.contains(&other) {
            results[rule_case].fires_on_others.push(other);
        }
    }
    for (i, r) in results.iter_mut().enumerate() {
        r.own_matches = own[i];
        if r.failure.is_some() {
            continue;
        }
        // `match_count` is a minimum: SigmaHQ's files hold events (a file written twice, a copy
        // under a temporary name) that satisfy the rule as written but that its count leaves out.
        r.failure = match r.match_count {
            _ if r.own_matches == 0 => Some("did not fire on its own events".into()),
            Some(want) if r.own_matches < want => Some(format!(
                "fired on {} of its {} events, info.yml's match_count is {want}",
                r.own_matches, r.events
            )),
            _ => None,
        };
        if let Some(want) = r.match_count
            && r.own_matches > want
        {
            r.note = Some(format!(
                "fired on {} of its {} events, more than info.yml's match_count {want}",
                r.own_matches, r.events
            ));
        }
        r.passed = r.failure.is_none();
    }
    Report {
        passed: results.iter().filter(|r| r.passed).count(),
        rules_firing_elsewhere: results
            .iter()
            .filter(|r| !r.fires_on_others.is_empty())
            .count(),
        cross_matches,
        cases: results,
    }
}
