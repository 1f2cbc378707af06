//! Running a rule's test cases natively, from the rule crate's own `cargo test`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rulebox_sdk::{Rule, run_native};

use crate::compare::{Seen, compare};
use crate::error::CaseError;
use crate::file::{CaseFile, find_case_files, read_case_file};
use crate::outcome::CaseOutcome;
use rulebox_sdk::text::printable;

/// Runs every case of the test files under `paths` (found as [`find_case_files`] finds them)
/// natively against the rule type `R`, each case on a fresh `R::default()`, its events in order,
/// each event encoded as the host encodes it ([`rulebox_sdk::run_native`]). A case whose rule
/// panics fails with the panic's message, and the other cases still run. A file naming another rule
/// id than `R`'s fails its cases.
///
/// This tests the rule's logic; the sandbox's limits (fuel, memory, result caps) apply only to the
/// module, which `rulebox test` and `rulebox validate` run. Windows event JSON in a test file is not
/// read here (the mapping lives with the host's readers): such a file is an error naming the event.
pub fn run_cases<R: Rule>(paths: &[impl AsRef<Path>]) -> Result<Vec<CaseOutcome>, CaseError> {
    let mut outcomes = Vec::new();
    for path in find_case_files(paths)? {
        let file = read_case_file(&path)?;
        outcomes.extend(run_file::<R>(&file));
    }
    Ok(outcomes)
}

/// Runs the cases of one file natively against `R` (see [`run_cases`]).
pub fn run_file<R: Rule>(file: &CaseFile) -> Vec<CaseOutcome> {
    file.cases
        .iter()
        .map(|case| {
            let mut outcome = CaseOutcome::new(file, case);
            if file.rule != R::META.id {
                outcome.problem = Some(format!(
                    "the file is for rule `{}`, but this rule's id is `{}`",
                    printable(&file.rule),
                    R::META.id
                ));
                return outcome;
            }
            let mut rule = R::default();
            let mut seen = Vec::new();
            let mut panicked = None;
            for (i, event) in case.events.iter().enumerate() {
                match catch_unwind(AssertUnwindSafe(|| run_native(&mut rule, event))) {
                    Ok(found) => seen.extend(found.iter().map(|d| Seen::from_detection(i, d))),
                    Err(payload) => {
                        let message = payload
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic without a message".to_owned());
                        panicked = Some(format!(
                            "the rule panicked on event {i}: {}",
                            printable(&message)
                        ));
                        break;
                    }
                }
            }
            outcome.detections = u64::try_from(seen.len()).unwrap_or(u64::MAX);
            outcome.problem = panicked.or_else(|| compare(&case.expect, &seen));
            outcome
        })
        .collect()
}

/// For a rule crate's `cargo test`: runs the cases under `path` (the crate's folder, its `tests/`
/// folder, or one file) natively against `R`, prints one line per case, and panics listing every
/// failed case, or when there is no case at all or a test file cannot be read.
///
/// ```no_run
/// // tests/cases.rs of a rule crate
/// #[test]
/// fn the_test_cases_pass_natively() {
///     # #[derive(Default)] struct MyRule;
///     # impl rulebox_sdk::Rule for MyRule {
///     #     const META: rulebox_sdk::RuleMeta = rulebox_sdk::RuleMeta { id: "my-rule", name: "n",
///     #         version: "1", severity: rulebox_sdk::Severity::Low, events: &[] };
///     #     fn on_event(&mut self, _: &rulebox_sdk::EventView<'_>, _: &mut rulebox_sdk::Detections) {}
///     # }
///     rulebox_cases::assert_cases::<MyRule>(env!("CARGO_MANIFEST_DIR"));
/// }
/// ```
///
/// # Panics
///
/// When a case fails, no case is found, or a test file is invalid.
pub fn assert_cases<R: Rule>(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let outcomes = match run_cases::<R>(&[path]) {
        Ok(outcomes) => outcomes,
        Err(e) => panic!("{e}"),
    };
    assert!(
        !outcomes.is_empty(),
        "no test cases under {}",
        path.display()
    );
    for o in &outcomes {
        println!("{o}");
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(ToString::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} test cases failed:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}
