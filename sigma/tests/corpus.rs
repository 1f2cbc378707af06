//! End to end on the Sigma corpus (`$RULEBOX_SIGMA_CORPUS`, else `<workspace>/../shared/corpus/sigma`):
//! every rule compiled, embedded in the evaluator, loaded in the real sandbox, and run on every
//! case's events. Skipped, saying so, when the corpus is absent.

use std::path::PathBuf;

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{Runtime, RuntimeConfig};
use rulebox_sigma::cases::{load_cases, run_cases};

/// Cases known not to pass, with the reason (none today).
const KNOWN_FAILURES: &[(&str, &str)] = &[];

fn corpus() -> Option<PathBuf> {
    let dir = match std::env::var_os("RULEBOX_SIGMA_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma"),
    };
    let cases = dir.join("cases");
    cases.is_dir().then_some(cases)
}

#[test]
fn every_corpus_rule_fires_on_its_own_events_in_the_sandbox() {
    let Some(dir) = corpus() else {
        eprintln!(
            "SKIPPED: no Sigma corpus (set RULEBOX_SIGMA_CORPUS or put it at ../shared/corpus/sigma)"
        );
        return;
    };
    let cases = load_cases(&dir).expect("cases load");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let report = run_cases(&runtime, SIGMA_EVAL.bytes, &cases);
    eprintln!(
        "sigma corpus: {}/{} pass ({:.1}%); {} rules fire on other cases' events ({} matches)",
        report.passed,
        report.cases.len(),
        100.0 * report.pass_share(),
        report.rules_firing_elsewhere,
        report.cross_matches
    );
    let mut unexpected = Vec::new();
    for r in &report.cases {
        let known = KNOWN_FAILURES.iter().find(|(n, _)| *n == r.name);
        match (&r.failure, known) {
            (Some(why), None) => unexpected.push(format!("{}: {why}", r.name)),
            (None, Some(_)) => unexpected.push(format!(
                "{}: passes now; drop it from KNOWN_FAILURES",
                r.name
            )),
            _ => {}
        }
        if !r.fires_on_others.is_empty() {
            eprintln!(
                "  {} also fires on: {}",
                r.name,
                r.fires_on_others.join(", ")
            );
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected results:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert_eq!(report.passed + KNOWN_FAILURES.len(), report.cases.len());
}
