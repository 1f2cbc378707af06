//! `rulebox validate`'s engine on the example content: the good rules pass, the July 2024 rule fails,
//! and the JSON report matches the golden file `tests/golden/validate-examples.json` (regenerate
//! with `RULEBOX_BLESS=1 cargo test -p rulebox-tests --test all validator`).

use std::path::{Path, PathBuf};

use rulebox_example_artifacts::{by_name, good};
use rulebox_validate::{CorpusSource, ModuleInput, Options, Progress, Report};
use serde_json::Value;

use crate::common::sigma_corpus;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn input(name: &str) -> ModuleInput {
    ModuleInput {
        source: name.to_owned(),
        bytes: by_name(name).unwrap().bytes.to_vec(),
        limits: None,
        declared: None,
        data: Vec::new(),
    }
}

/// The options of the golden run: the rules' own tests, few generated events, no corpus (so the
/// golden file is the same with or without the shared corpus).
fn golden_options() -> Options {
    Options {
        generated_per_kind: 16,
        corpus: CorpusSource::Skip("not used by the golden test".to_owned()),
        tests: vec![workspace().join("example-rules/rules")],
        ..Options::default()
    }
}

/// The report as JSON with module hashes replaced: they depend on the toolchain and on the paths
/// compiled into the modules' panic messages, not on what this test checks.
fn normalized(report: &Report) -> Value {
    let mut v = serde_json::to_value(report).unwrap();
    for rule in v["rules"].as_array_mut().unwrap() {
        rule["content_hash"] = Value::String("<sha256>".into());
    }
    v
}

#[test]
fn example_content_report_matches_the_golden_file() {
    let mut modules: Vec<ModuleInput> = good().map(|a| input(a.name)).collect();
    modules.push(input("field-count"));
    let mut rules_started = 0;
    let mut events = 0;
    let report = rulebox_validate::validate_modules(modules, &golden_options(), &mut |p| match p {
        Progress::Rule { .. } => rules_started += 1,
        Progress::Events(n) => events += n,
        _ => {}
    })
    .unwrap();
    assert_eq!(rules_started, 9, "progress for every rule");
    assert!(events > 0);

    // What must hold whatever the golden file says.
    assert!(!report.passed);
    for r in &report.rules {
        let id = r.rule_id.as_deref().unwrap_or("?");
        if id == "faulty-field-count" {
            assert!(!r.passed);
            let fault = r.fault.as_ref().expect("a fault is reported");
            assert_eq!(fault.reason, "out_of_bounds");
            continue;
        }
        assert!(r.passed, "{id}: {:?}", r.failures);
        assert!(r.events.generated > 0 && r.events.boundary > 0, "{id}");
        assert!(r.tests.cases >= 3 && r.tests.failed.is_empty(), "{id}");
        assert!(r.detections.tests > 0, "{id}: its positive cases fire");
        assert!(r.fuel.p50 <= r.fuel.p99 && r.fuel.p99 <= r.fuel.max, "{id}");
        assert!(
            r.fuel.max * 2 <= r.fuel.budget,
            "{id}: within the default headroom"
        );
        assert!(
            r.memory.high_water > 0 && r.memory.high_water <= r.memory.budget,
            "{id}"
        );
    }

    let golden = workspace().join("tests/golden/validate-examples.json");
    let got = normalized(&report);
    if std::env::var_os("RULEBOX_BLESS").is_some() {
        let mut text = serde_json::to_string_pretty(&got).unwrap();
        text.push('\n');
        std::fs::write(&golden, text).unwrap();
        eprintln!("blessed {}", golden.display());
        return;
    }
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!("{}: {e} (create it with RULEBOX_BLESS=1)", golden.display())
        }))
        .unwrap();
    assert!(
        got == want,
        "the validation report differs from {}; if the change is intended, run with RULEBOX_BLESS=1.\ngot:\n{}",
        golden.display(),
        serde_json::to_string_pretty(&got).unwrap()
    );
}

#[test]
fn the_same_run_gives_the_same_report() {
    let options = Options {
        generated_per_kind: 8,
        ..golden_options()
    };
    let run = || {
        rulebox_validate::validate_modules(vec![input("mass-rename")], &options, &mut |_| {})
            .unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_tight_headroom_fails_a_rule_and_names_its_worst_event() {
    let options = Options {
        headroom_percent: 1,
        generated_per_kind: 8,
        ..golden_options()
    };
    let report = rulebox_validate::validate_modules(
        vec![input("encoded-powershell")],
        &options,
        &mut |_| {},
    )
    .unwrap();
    let r = &report.rules[0];
    assert!(!r.passed);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("fuel") && f.contains(&r.fuel.worst_event)),
        "{:?}",
        r.failures
    );
}

#[test]
fn every_good_rule_passes_on_the_sigma_corpus() {
    let Some(corpus) = sigma_corpus("every_good_rule_passes_on_the_sigma_corpus") else {
        return;
    };
    let options = Options {
        generated_per_kind: 4,
        corpus: CorpusSource::Dir(corpus),
        ..Options::default()
    };
    let modules = good().map(|a| input(a.name)).collect();
    let report = rulebox_validate::validate_modules(modules, &options, &mut |_| {}).unwrap();
    assert!(
        report.corpus.used && report.corpus.events > 0,
        "{:?}",
        report.corpus
    );
    assert!(report.passed, "{}", report.failure_summary());
    let on_corpus: u64 = report.rules.iter().map(|r| r.events.corpus).sum();
    assert!(
        on_corpus > 0,
        "corpus events reach the rules subscribed to them"
    );
}

#[test]
fn a_bundle_is_validated_under_every_schema_version_it_declares() {
    use rulebox_runtime::content::{Manifest, Signed};
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("rel");
    rulebox_release::build_bundle(
        &bundle,
        &[rulebox_release::ModuleSource::Bytes {
            name: "office-shell".into(),
            bytes: by_name("office-shell").unwrap().bytes.to_vec(),
        }],
        &rulebox_release::BundleOptions::new(1, rulebox_runtime::content::now_unix() + 3600, "t"),
    )
    .unwrap();
    let options = Options {
        generated_per_kind: 4,
        tests: vec![workspace().join("example-rules/rules/office-shell")],
        ..golden_options()
    };
    let clean = rulebox_validate::validate_bundle(&bundle, &options, &mut |_| {}).unwrap();
    assert!(clean.passed, "{}", clean.failure_summary());
    let ours = rulebox_sdk::abi::SCHEMA_VERSION;
    assert_eq!(clean.target.schema_versions, vec![ours]);

    // The manifest now claims the next schema as well, and older runtimes: neither was checked.
    let path = bundle.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    envelope.signed.schema_versions = vec![ours, ours + 1];
    envelope.signed.min_runtime = "0.0.1".into();
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let report = rulebox_validate::validate_bundle(&bundle, &options, &mut |_| {}).unwrap();
    assert!(!report.passed);
    let versions: Vec<(u32, bool)> = report
        .rules
        .iter()
        .map(|r| (r.schema_version, r.passed))
        .collect();
    assert_eq!(
        versions,
        vec![(ours, true), (ours + 1, false)],
        "one run per declared version"
    );
    let problems = report.problems.join("\n");
    assert!(
        problems.contains(&format!("event-schema version {}", ours + 1)),
        "{problems}"
    );
    assert!(problems.contains("runtime 0.0.1"), "{problems}");
    assert_ne!(report.target.manifest_hash, clean.target.manifest_hash);
}

/// A rule that faults on every process start: each of its failing cases names its own fault, the
/// cases after the first fault still run on a fresh instance (one on another kind passes), every
/// generated and boundary event still runs, and every fault reaches the caller with its record.
#[test]
fn validate_reports_every_fault_of_a_rule_and_runs_every_event_after_one() {
    let dir = tempfile::tempdir().unwrap();
    let start = |cmd: &str| {
        format!(r#"{{"data":{{"ProcessStart":{{"Image":"a.exe","CommandLine":"{cmd}"}}}}}}"#)
    };
    std::fs::write(
        dir.path().join("cases.json"),
        format!(
            r#"{{"rule":"faulty-panics","cases":[
                {{"name":"first start","events":[{}],"expect":"none"}},
                {{"name":"second start","events":[{}, {}],"expect":"none"}},
                {{"name":"a DNS query","events":[{{"data":{{"DnsQuery":{{"QueryName":"x.example"}}}}}}],"expect":"none"}}
            ]}}"#,
            start("one"),
            start("two"),
            start("three")
        ),
    )
    .unwrap();
    let options = Options {
        generated_per_kind: 8,
        tests: vec![dir.path().to_path_buf()],
        ..golden_options()
    };
    let mut found = Vec::new();
    let report = rulebox_validate::validate_modules(vec![input("panics")], &options, &mut |p| {
        if let Progress::Fault(f) = p {
            found.push(*f);
        }
    })
    .unwrap();
    let r = &report.rules[0];
    assert!(!r.passed);
    assert_eq!(r.rule_id.as_deref(), Some("faulty-panics"));

    // Each failing case carries its own fault, not "the rule faulted" after the first one.
    assert_eq!((r.tests.cases, r.tests.passed), (3, 1), "{:?}", r.tests);
    let problem = |case: &str| {
        r.tests
            .failed
            .iter()
            .find(|c| c.case.ends_with(case))
            .unwrap_or_else(|| panic!("{case} failed: {:?}", r.tests.failed))
            .problem
            .clone()
    };
    assert!(problem("first start").contains("event 0: guest_panic"));
    let second = problem("second start");
    assert!(
        second.contains("event 0: guest_panic") && second.contains("event 1: guest_panic"),
        "both events of the case ran and faulted: {second}"
    );

    // Every generated and boundary event ran although the rule faulted on the first of them.
    assert_eq!(r.events.generated, 8);
    assert!(r.events.boundary > 3, "{:?}", r.events);
    // The DNS query never reached the rule (it does not subscribe to it): every event that did, faulted.
    let process_events = r.events.total();
    assert_eq!(r.events.tests, 3);
    assert_eq!(r.fault_count, process_events, "{:?}", r.events);
    assert_eq!(
        r.faults.len(),
        usize::try_from(process_events)
            .unwrap()
            .min(rulebox_validate::MAX_LISTED_FAULTS)
    );
    assert_eq!(r.fault.as_ref(), r.faults.first());
    let labels: Vec<&str> = r.faults.iter().map(|f| f.event.as_str()).collect();
    assert!(
        labels[0].contains("first start") && labels[1].contains("second start"),
        "{labels:?}"
    );
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("generated process_start #7")),
        "{labels:?}"
    );
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains(&format!("guest_panic on {process_events} events"))),
        "{:?}",
        r.failures
    );

    // Every fault was handed over as it happened, with the runtime's record of the exact event.
    assert_eq!(u64::try_from(found.len()).unwrap(), r.fault_count);
    assert!(found.iter().all(|f| f.rule_id == "faulty-panics"));
    let boundary = found.iter().find(|f| f.origin == "boundary").unwrap();
    let record = boundary.record.as_ref().expect("a quarantine record");
    assert_eq!(record.reason.name(), "guest_panic");
    let bytes = record.event_bytes().unwrap().expect("the event's bytes");
    assert_eq!(bytes, boundary.event.to_bytes().unwrap());
    assert!(found.iter().any(|f| f.origin == "test"));
    assert!(found.iter().any(|f| f.origin == "generated"));
}

/// A test file whose rule id no module reports fails the gate: its cases would never run.
#[test]
fn a_test_file_for_a_rule_no_module_has_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("my-tests");
    std::fs::create_dir(&tests).unwrap();
    std::fs::write(
        tests.join("typo.json"),
        r#"{"rule":"office-spawns-shel","cases":[{"name":"c","expect":"none",
            "events":[{"data":{"ProcessStart":{}}}]}]}"#,
    )
    .unwrap();
    let options = Options {
        generated_per_kind: 4,
        tests: vec![workspace().join("example-rules/rules/office-shell"), tests],
        ..golden_options()
    };
    let report =
        rulebox_validate::validate_modules(vec![input("office-shell")], &options, &mut |_| {})
            .unwrap();
    assert!(report.rules[0].passed, "{:?}", report.rules[0].failures);
    assert!(!report.passed);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert!(
        problem.contains("my-tests/typo.json")
            && problem.contains("`office-spawns-shel`")
            && problem.contains("the modules report: office-spawns-shell"),
        "{problem}"
    );
    assert!(
        !problem.contains(&dir.path().display().to_string()),
        "no absolute path: {problem}"
    );
}

#[test]
fn a_pack_rule_on_fields_no_kind_has_runs_on_events_at_the_cap_on_the_fields_it_reads() {
    // A PowerShell script-block rule (kind `other`: `ScriptBlockText` is no typed slot) next to a
    // process rule, in one pack with its prefilter on. No boundary event has `ScriptBlockText`, so
    // without the fields its program names the prefilter never ran the rule ("never run").
    let script = rulebox_sigma::compile(
        "title: Mimikatz in a script block\nid: 7a1c0a3e-0000-4000-8000-000000000001\n\
         logsource: {product: windows, category: ps_script}\n\
         detection:\n    selection:\n        ScriptBlockText|contains: 'Invoke-Mimikatz'\n\
         \x20   condition: selection\nlevel: high\n",
    )
    .unwrap();
    let process = rulebox_sigma::compile(
        "title: Whoami\nid: 7a1c0a3e-0000-4000-8000-000000000002\n\
         logsource: {product: windows, category: process_creation}\n\
         detection:\n    selection:\n        Image|endswith: '\\whoami.exe'\n\
         \x20   condition: selection\nlevel: low\n",
    )
    .unwrap();
    // A service rule (kind `other`) whose prefilter needs its log's channel: its events at the cap
    // must carry the channel's name to reach it.
    let spooler = rulebox_sigma::compile(
        "title: Print spooler exploit\nid: 7a1c0a3e-0000-4000-8000-000000000003\n\
         logsource: {product: windows, service: printservice-operational}\n\
         detection:\n    selection:\n        EventID: 316\n    keywords:\n        - 'mimispool'\n\
         \x20   condition: selection and keywords\nlevel: critical\n",
    )
    .unwrap();
    let records = [&script, &process, &spooler].map(|p| rulebox_sigma::rule_record(p).unwrap());
    let mut packs = rulebox_sigma::split_packs(&records, "named", 1 << 20);
    assert_eq!(packs.len(), 1);
    let (_, data) = packs.remove(0);
    let module = ModuleInput {
        source: "sigma.wasm".to_owned(),
        bytes: rulebox_example_artifacts::SIGMA_EVAL.bytes.to_vec(),
        limits: None,
        declared: None,
        data,
    };
    let options = Options {
        generated_per_kind: 4,
        tests: Vec::new(),
        ..golden_options()
    };
    let report = rulebox_validate::validate_modules(vec![module], &options, &mut |_| {}).unwrap();
    let rule = report
        .rules
        .iter()
        .find(|r| r.rule_id.as_deref() == Some("7a1c0a3e-0000-4000-8000-000000000001"))
        .expect("the script-block rule is reported");
    assert!(rule.passed, "{:?}", rule.failures);
    assert!(rule.events.total() > 0, "it ran");
    assert!(
        rule.notes
            .iter()
            .any(|n| n.contains("events at the cap on the fields its program reads")),
        "{:?}",
        rule.notes
    );
    assert!(
        rule.fuel.worst_event.starts_with("at the cap other: "),
        "its worst event fills fields it reads: {}",
        rule.fuel.worst_event
    );
    let spooler = report
        .rules
        .iter()
        .find(|r| r.rule_id.as_deref() == Some("7a1c0a3e-0000-4000-8000-000000000003"))
        .expect("the spooler rule is reported");
    assert!(spooler.passed, "{:?}", spooler.failures);
    assert!(spooler.events.boundary > 0, "it ran on events at the cap");
    assert!(report.passed, "{:?}", report.problems);
}
