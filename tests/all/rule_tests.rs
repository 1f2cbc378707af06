//! The example rules' own test cases (`example-rules/rules/<rule>/tests/*.json`), run in the sandbox
//! as `rulebox test` runs them.

use std::path::{Path, PathBuf};

use rulebox_example_artifacts::good;
use rulebox_runtime::RuntimeConfig;
use rulebox_validate::ModuleInput;
use rulebox_validate::cases::{find_case_files, read_case_file};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-rules/rules")
}

fn good_modules() -> Vec<ModuleInput> {
    good()
        .map(|a| ModuleInput {
            source: a.name.to_owned(),
            bytes: a.bytes.to_vec(),
            limits: None,
            declared: None,
            data: Vec::new(),
        })
        .collect()
}

#[test]
fn every_example_rule_has_positive_and_negative_cases_and_they_pass() {
    let files: Vec<_> = find_case_files(&[rules_dir()])
        .unwrap()
        .iter()
        .map(|p| read_case_file(p).unwrap())
        .collect();
    // One file per good rule, each with at least one case that fires and one that must not.
    for a in good() {
        let dir = rules_dir().join(a.name).join("tests");
        let mine: Vec<_> = files.iter().filter(|f| f.path.starts_with(&dir)).collect();
        assert!(
            !mine.is_empty(),
            "{}: no test cases in {}",
            a.name,
            dir.display()
        );
        let cases = || mine.iter().flat_map(|f| &f.cases);
        assert!(
            cases().any(|c| !c.expect.is_empty()),
            "{}: no positive case",
            a.name
        );
        assert!(
            cases().any(|c| c.expect.is_empty()),
            "{}: no \"none\" case",
            a.name
        );
    }
    let total: usize = files.iter().map(|f| f.cases.len()).sum();
    let outcomes =
        rulebox_validate::run_tests(good_modules(), files, RuntimeConfig::default()).unwrap();
    assert_eq!(outcomes.len(), total);
    let failed: Vec<_> = outcomes.iter().filter(|o| o.problem.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(outcomes.iter().any(|o| o.detections > 0));
}

#[test]
fn a_wrong_expectation_or_an_unknown_rule_fails_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.json");
    std::fs::write(
        &path,
        r#"{"rule": "office-spawns-shell", "cases": [
            {"name": "expects the wrong title", "expect": [{"title": "something else"}],
             "events": [{"data": {"ProcessStart": {"Image": "C:\\Windows\\System32\\cmd.exe",
                                                   "ParentImage": "C:\\Office\\WINWORD.EXE"}}}]},
            {"name": "expects silence but it fires", "expect": "none",
             "events": [{"data": {"ProcessStart": {"Image": "C:\\Windows\\System32\\cmd.exe",
                                                   "ParentImage": "C:\\Office\\WINWORD.EXE"}}}]}
        ]}"#,
    )
    .unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        r#"{"rule": "no-such-rule", "cases": [{"name": "c", "expect": "none",
            "events": [{"data": {"ProcessStart": {}}}]}]}"#,
    )
    .unwrap();
    let files = vec![
        read_case_file(&path).unwrap(),
        read_case_file(&other).unwrap(),
    ];
    let out = rulebox_validate::run_tests(good_modules(), files, RuntimeConfig::default()).unwrap();
    let problems: Vec<&str> = out.iter().map(|o| o.problem.as_deref().unwrap()).collect();
    assert!(
        problems[0].contains("expected title `something else`"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("expected 0 detection(s), got 1"),
        "{problems:?}"
    );
    assert!(
        problems[2].contains("no module reports rule id `no-such-rule`"),
        "{problems:?}"
    );
}
