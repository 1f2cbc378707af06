//! The native runner on real rules: the example rules pass their own cases natively (as they do in
//! the sandbox), and a failing, panicking or misaddressed case is reported, the others still run.

use std::path::{Path, PathBuf};

use rulebox_cases::{CaseError, assert_cases, run_cases};
use rulebox_sdk::prelude::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../example-rules/rules")
        .join(name)
}

#[test]
fn every_example_rule_passes_its_own_cases_natively() {
    assert_cases::<rule_attack_pipe::AttackPipe>(example("attack-pipe"));
    assert_cases::<rule_dns_random_name::DnsRandomName>(example("dns-random-name"));
    assert_cases::<rule_encoded_powershell::EncodedPowerShell>(example("encoded-powershell"));
    assert_cases::<rule_lsass_access::LsassAccess>(example("lsass-access"));
    assert_cases::<rule_mass_rename::MassRename>(example("mass-rename"));
    assert_cases::<rule_office_shell::OfficeShell>(example("office-shell"));
    assert_cases::<rule_run_key::RunKey>(example("run-key"));
    assert_cases::<rule_script_host_network::ScriptHostNetwork>(example("script-host-network"));
}

/// Fires on every process start; panics when the command line says so.
#[derive(Default)]
struct Fragile;

impl Rule for Fragile {
    const META: RuleMeta = RuleMeta {
        id: "fragile",
        name: "fragile",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(p) = event.process_start() else {
            return;
        };
        assert!(p.command_line() != "panic", "asked to panic");
        out.detect("started").field("Image", p.image());
    }
}

#[test]
fn failures_panics_and_other_rules_ids_are_reported_and_every_case_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ev = |cmd: &str| {
        format!(r#"{{"data":{{"ProcessStart":{{"Image":"a.exe","CommandLine":"{cmd}"}}}}}}"#)
    };
    std::fs::write(
        dir.path().join("cases.json"),
        format!(
            r#"{{"rule":"fragile","cases":[
                {{"name":"fires","events":[{}],"expect":[{{"title":"started","fields":{{"Image":"a.exe"}}}}]}},
                {{"name":"panics","events":[{},{}],"expect":"none"}},
                {{"name":"wrong expectation","events":[{}],"expect":"none"}},
                {{"name":"after the others","events":[{}],"expect":[{{"title":"started","event":0}}]}}
            ]}}"#,
            ev("x"),
            ev("x"),
            ev("panic"),
            ev("x"),
            ev("y")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("other.json"),
        format!(
            r#"{{"rule":"someone-else","cases":[{{"name":"c","events":[{}],"expect":"none"}}]}}"#,
            ev("x")
        ),
    )
    .unwrap();
    let out = run_cases::<Fragile>(&[dir.path()]).unwrap();
    let by_name = |n: &str| out.iter().find(|o| o.case == n).unwrap();
    assert_eq!(out.len(), 5);
    assert!(by_name("fires").passed(), "{:?}", by_name("fires"));
    let panicked = by_name("panics").problem.clone().unwrap();
    assert!(
        panicked.contains("panicked on event 1") && panicked.contains("asked to panic"),
        "{panicked}"
    );
    assert!(
        by_name("wrong expectation")
            .problem
            .as_deref()
            .unwrap()
            .contains("expected 0 detection(s), got 1")
    );
    assert!(by_name("after the others").passed());
    assert!(
        by_name("c")
            .problem
            .as_deref()
            .unwrap()
            .contains("for rule `someone-else`, but this rule's id is `fragile`")
    );
    // The lines a person reads.
    assert!(
        by_name("fires")
            .to_string()
            .starts_with("ok   fragile cases.json: fires")
    );
    assert!(
        by_name("c")
            .to_string()
            .starts_with("FAIL someone-else other.json: c: ")
    );
}

#[test]
fn assert_cases_panics_on_a_failure_and_on_a_folder_without_tests() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().to_path_buf();
    let err = std::panic::catch_unwind(|| assert_cases::<Fragile>(&empty)).unwrap_err();
    let message = err.downcast_ref::<String>().unwrap();
    assert!(message.contains("no test files"), "{message}");
    assert!(matches!(
        run_cases::<Fragile>(&[dir.path()]),
        Err(CaseError::NoFiles { .. })
    ));
    std::fs::write(
        dir.path().join("cases.json"),
        r#"{"rule":"fragile","cases":[{"name":"silent?","events":[{"data":{"ProcessStart":{}}}],"expect":"none"}]}"#,
    )
    .unwrap();
    let err = std::panic::catch_unwind(|| assert_cases::<Fragile>(&empty)).unwrap_err();
    let message = err.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("1 of 1 test cases failed") && message.contains("silent?"),
        "{message}"
    );
}
