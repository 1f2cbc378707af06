//! The `rulebox` binary as a user runs it: exit statuses, output streams, records on disk, replay.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rulebox_example_artifacts::{ALL, ArtifactKind, DEMO_EVENTS};
use serde_json::Value;

fn rulebox(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("rulebox runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A folder with the good rules, plus the faulty rules named in `faulty`.
fn rules_dir(root: &Path, faulty: &[&str]) -> PathBuf {
    let dir = root.join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    for a in ALL
        .iter()
        .filter(|a| a.kind == ArtifactKind::Good || faulty.contains(&a.name))
    {
        std::fs::write(dir.join(format!("{}.wasm", a.name)), a.bytes).unwrap();
    }
    dir
}

#[test]
fn bench_reports_latency_per_rule_and_for_the_set_and_flags_a_faulting_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, DEMO_EVENTS).unwrap();
    let n_events = DEMO_EVENTS.lines().filter(|l| !l.trim().is_empty()).count();
    let good = rules_dir(tmp.path(), &[]);
    let args = |dir: &Path| {
        vec![
            "bench".to_owned(),
            "--rules".into(),
            dir.to_str().unwrap().into(),
            "--events".into(),
            events.to_str().unwrap().into(),
            "--millis".into(),
            "20".into(),
            "--json".into(),
        ]
    };
    let a = args(&good);
    let out = rulebox(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).expect("one JSON object");
    let rules = report["rules"].as_array().unwrap();
    let n_good = ALL.iter().filter(|a| a.kind == ArtifactKind::Good).count();
    assert_eq!(rules.len(), n_good);
    for r in rules {
        assert!(
            r["calls"].as_u64().unwrap() >= r["events"].as_u64().unwrap(),
            "{r}"
        );
        assert!(
            r["events"].as_u64().unwrap() > 0,
            "every example rule has demo events: {r}"
        );
        assert!(r["p50_ns"].as_f64().unwrap() > 0.0);
        assert!(r["p99_ns"].as_f64().unwrap() >= r["p50_ns"].as_f64().unwrap());
        assert!(r["fault"].is_null());
    }
    // The demo file has one deliberately broken line: skipped, counted, and named on stderr.
    assert_eq!(report["skipped_records"].as_u64().unwrap(), 1);
    assert!(
        text(&out.stderr).contains("line 6"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        report["set"]["events"].as_u64().unwrap(),
        n_events as u64 - 1
    );

    // A rule that faults is reported as such, and the exit status says so.
    let other = tempfile::tempdir().unwrap();
    let bad = rules_dir(other.path(), &["null-deref"]);
    let a = args(&bad);
    let out = rulebox(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let faulted: Vec<&Value> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["fault"].is_null())
        .collect();
    assert_eq!(faulted.len(), 1, "{report}");
    assert!(
        faulted[0]["fault"]
            .as_str()
            .unwrap()
            .contains("out-of-bounds")
            || faulted[0]["fault"].as_str().unwrap().contains("bounds"),
        "{report}"
    );
}

#[test]
fn run_prints_detections_and_alerts_and_exits_2_on_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rules_dir(tmp.path(), &["field-count", "endless-start"]);
    std::fs::write(
        dir.join("not-a-module.wasm"),
        b"MZ\x90\x00 this is a PE file",
    )
    .unwrap();
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, DEMO_EVENTS).unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            dir.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let detections: Vec<&Value> = lines.iter().filter(|v| v["type"] == "detection").collect();
    let alerts: Vec<&Value> = lines.iter().filter(|v| v["type"] == "alert").collect();
    let good = ALL.iter().filter(|a| a.kind == ArtifactKind::Good).count();
    let rules_fired: std::collections::BTreeSet<&str> = detections
        .iter()
        .filter_map(|d| d["rule_id"].as_str())
        .collect();
    assert_eq!(
        rules_fired.len(),
        good,
        "every good rule detected: {rules_fired:?}"
    );
    // Two load rejects and one run-time quarantine, each an alert in the same stream.
    let reasons: Vec<&str> = alerts.iter().filter_map(|a| a["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"not_wasm")
            && reasons.contains(&"start_too_long")
            && reasons.contains(&"out_of_bounds"),
        "{reasons:?}"
    );
    let quarantine = alerts
        .iter()
        .find(|a| a["reason"] == "out_of_bounds")
        .unwrap();
    assert!(
        quarantine["triggering_event"]["data"]["ProcessStart"].is_object(),
        "the alert carries the event"
    );

    // The summary names the unreadable line, the quarantined rule and the rejected modules.
    assert!(stderr.contains("unreadable input: line 6"), "{stderr}");
    assert!(
        stderr.contains("quarantined faulty-field-count"),
        "{stderr}"
    );
    assert!(stderr.contains("not-a-module.wasm: not_wasm"), "{stderr}");

    // The record on disk replays to the same fault.
    let record = quarantine["record"].as_str().expect("record path");
    let record = tmp.path().join(record);
    let replay = rulebox(&["replay", record.to_str().unwrap()], tmp.path());
    let replay_out = text(&replay.stdout);
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{replay_out}{}",
        text(&replay.stderr)
    );
    assert!(
        replay_out.contains("result:   reproduced") && replay_out.contains("out_of_bounds"),
        "{replay_out}"
    );
}

#[test]
fn run_exits_0_on_clean_content_and_reads_windows_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rules_dir(tmp.path(), &[]);
    let events = tmp.path().join("sysmon.json");
    // One evtx_dump-style Sysmon process creation, pretty-printed.
    std::fs::write(
        &events,
        r##"{"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}}, "EventID": 1, "Computer": "ws1",
            "TimeCreated": {"#attributes": {"SystemTime": "2025-10-24T23:36:29.111126Z"}}},
          "EventData": {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd.exe", "ProcessId": 77,
            "ParentImage": "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE"}}}
"##,
    )
    .unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            dir.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--no-records",
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line: Value = serde_json::from_str(stdout.lines().next().expect("one detection")).unwrap();
    assert_eq!(line["rule_id"], "office-spawns-shell");
    assert_eq!(line["event"]["pid"], 77);
    assert!(!tmp.path().join("rulebox-quarantine").exists());
}

#[test]
fn run_reads_several_event_files_one_after_another_and_names_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rules_dir(tmp.path(), &[]);
    let (a, b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    std::fs::write(&a, DEMO_EVENTS).unwrap();
    let word = r#"{"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Office\\WINWORD.EXE"}}}"#;
    std::fs::write(&b, format!("not json\n{word}\n")).unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            dir.to_str().unwrap(),
            "--events",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--no-records",
        ],
        tmp.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The demo's detections first, then the one from b.jsonl (its line 2), each naming its file.
    let last = lines.last().unwrap();
    assert_eq!(last["rule_id"], "office-spawns-shell");
    assert_eq!(last["event"]["file"], b.to_str().unwrap());
    assert_eq!(last["event"]["line"], 2);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["event"]["file"] == a.to_str().unwrap())
    );
    let demo_events = DEMO_EVENTS.lines().filter(|l| !l.trim().is_empty()).count() - 1;
    assert!(
        stderr.contains(&format!("{} events read, 2 unreadable", demo_events + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: line 1", b.display())),
        "{stderr}"
    );
    // A missing file is an error before any event runs.
    let missing = rulebox(
        &[
            "run",
            "--rules",
            dir.to_str().unwrap(),
            "--events",
            a.to_str().unwrap(),
            "nope.jsonl",
        ],
        tmp.path(),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
    assert!(text(&missing.stderr).contains("nope.jsonl"));
}

/// `validate` writes the first fault of each kind for replay: a quarantine record, or, for a budget
/// hit the rule's strikes allowed (no record), the event as a file `run` reads; both reproduce.
#[test]
fn validate_writes_each_kind_of_fault_out_and_each_one_reproduces() {
    let tmp = tempfile::tempdir().unwrap();
    let module = ALL.iter().find(|a| a.name == "endless-loop").unwrap();
    std::fs::write(tmp.path().join("loop.wasm"), module.bytes).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"rules":{"faulty-endless-loop":{"budget_strikes":3}}}"#,
    )
    .unwrap();
    let out = rulebox(
        &[
            "validate",
            "loop.wasm",
            "--generated",
            "4",
            "--config",
            "config.json",
        ],
        tmp.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let dir = tmp.path().join("rulebox-quarantine");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // Two strikes (no record: event files), then the quarantine on the third (a record), then a
    // fresh instance: generated #0 and #1 strike, #2 quarantines, #3 and the first boundary event
    // strike, the second quarantines. One file of each per source.
    assert_eq!(
        files,
        [
            "faulty-endless-loop-out_of_fuel-boundary.json",
            "faulty-endless-loop-out_of_fuel-boundary.jsonl",
            "faulty-endless-loop-out_of_fuel-generated.json",
            "faulty-endless-loop-out_of_fuel-generated.jsonl",
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "rulebox replay rulebox-quarantine/faulty-endless-loop-out_of_fuel-generated.json"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("rulebox run --rules MODULE --events rulebox-quarantine/faulty-endless-loop-out_of_fuel-generated.jsonl"), "{stdout}");
    let replay = rulebox(
        &[
            "replay",
            "rulebox-quarantine/faulty-endless-loop-out_of_fuel-generated.json",
        ],
        tmp.path(),
    );
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay.stdout));
    assert!(text(&replay.stdout).contains("result:   reproduced"));
    let rerun = rulebox(
        &[
            "run",
            "--rules",
            "loop.wasm",
            "--events",
            "rulebox-quarantine/faulty-endless-loop-out_of_fuel-boundary.jsonl",
            "--no-records",
        ],
        tmp.path(),
    );
    let alert: Value = serde_json::from_str(text(&rerun.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(
        alert["alert"], "rule_quarantined",
        "the default config quarantines at once"
    );
    assert_eq!(alert["reason"], "out_of_fuel");
}

/// The build writes the example modules one folder per set; the good rules' folder holds them and
/// nothing else, so running it quarantines and rejects nothing.
#[test]
fn the_example_modules_folder_of_good_rules_holds_only_the_good_rules() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let target = if target.is_absolute() {
        target
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(target)
    };
    let folder = |set: &str| target.join("example-modules").join(set);
    let names = |set: &str| {
        let mut n: Vec<String> = std::fs::read_dir(folder(set))
            .unwrap_or_else(|e| panic!("{}: {e}", folder(set).display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    for (set, kind) in [
        ("rules", ArtifactKind::Good),
        ("faulty", ArtifactKind::Faulty),
        ("wasi", ArtifactKind::Wasi),
        ("engines", ArtifactKind::Engine),
    ] {
        let mut want: Vec<String> = ALL
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| format!("{}.wasm", a.name))
            .collect();
        want.sort();
        assert_eq!(names(set), want, "target/example-modules/{set}");
        for a in ALL.iter().filter(|a| a.kind == kind) {
            let bytes = std::fs::read(folder(set).join(format!("{}.wasm", a.name))).unwrap();
            assert!(
                bytes == a.bytes,
                "{set}/{}.wasm is the built module",
                a.name
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("demo.jsonl");
    std::fs::write(&events, DEMO_EVENTS).unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            folder("rules").to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("0 quarantined, 0 rejected at load"),
        "{stderr}"
    );
}

#[test]
fn validate_accepts_good_and_rejects_bad_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rules_dir(tmp.path(), &["endless-start"]);
    let truncated = tmp.path().join("truncated.wasm");
    let good = ALL.iter().find(|a| a.kind == ArtifactKind::Good).unwrap();
    std::fs::write(&truncated, &good.bytes[..good.bytes.len() / 3]).unwrap();
    let out = rulebox(
        &[
            "validate",
            "--generated",
            "4",
            dir.to_str().unwrap(),
            truncated.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("endless-start.wasm") && stdout.contains("start_too_long"),
        "{stdout}"
    );
    assert!(stdout.contains("invalid_module"), "{stdout}");
    assert!(
        stdout.contains("corpus: skipped"),
        "says plainly that the corpus was skipped: {stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" pass ")).count(),
        ALL.iter().filter(|a| a.kind == ArtifactKind::Good).count(),
        "{stdout}"
    );

    let report = tmp.path().join("report.json");
    let only_good = rulebox(
        &[
            "validate",
            "--format",
            "json",
            "--generated",
            "4",
            "--report",
            report.to_str().unwrap(),
            dir.join(format!("{}.wasm", good.name)).to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(
        only_good.status.code(),
        Some(0),
        "{}",
        text(&only_good.stdout)
    );
    let v: Value = serde_json::from_str(&text(&only_good.stdout)).unwrap();
    assert_eq!(v["passed"], true);
    assert_eq!(v["rules"][0]["passed"], true);
    assert!(v["rules"][0]["fuel"]["max"].as_u64().unwrap() > 0);
    let written: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(written, v, "--report writes the same report");
}

#[test]
fn signing_a_bundle_requires_a_passing_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| rulebox(args, tmp.path());
    assert_eq!(run(&["keygen", "--out", "k.json"]).status.code(), Some(0));
    let module = ALL.iter().find(|a| a.name == "office-shell").unwrap();
    std::fs::write(tmp.path().join("office.wasm"), module.bytes).unwrap();
    let build = run(&[
        "bundle",
        "build",
        "--out",
        "rel",
        "--release",
        "3",
        "office.wasm",
    ]);
    assert_eq!(build.status.code(), Some(0), "{}", text(&build.stderr));
    let refused = run(&["bundle", "sign", "rel", "--key", "k.json"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("no validation report"),
        "{}",
        text(&refused.stderr)
    );
    // The bundle's one rule's own tests (a test file for a rule the bundle lacks fails the gate).
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-rules/rules/office-shell");
    let validated = run(&[
        "validate",
        "rel",
        "--generated",
        "4",
        "--tests",
        rules.to_str().unwrap(),
    ]);
    let stdout = text(&validated.stdout);
    assert_eq!(validated.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS") && stdout.contains("report: "),
        "{stdout}"
    );
    // A passing report that no gate key signed (anyone could have written it): refused.
    let unsigned = run(&["bundle", "sign", "rel", "--key", "k.json"]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        text(&unsigned.stderr).contains("not signed by a gate key"),
        "{}",
        text(&unsigned.stderr)
    );
    // Validated with a gate key the signer does not know yet: refused until it is named.
    assert_eq!(
        run(&[
            "keygen",
            "--out",
            "gate.json",
            "--public-out",
            "gate.pub.json"
        ])
        .status
        .code(),
        Some(0)
    );
    let attested = run(&[
        "validate",
        "rel",
        "--generated",
        "4",
        "--gate-key",
        "gate.json",
        "--tests",
        rules.to_str().unwrap(),
    ]);
    assert_eq!(
        attested.status.code(),
        Some(0),
        "{}",
        text(&attested.stderr)
    );
    let untrusted = run(&["bundle", "sign", "rel", "--key", "k.json"]);
    assert!(
        text(&untrusted.stderr).contains("not attested by a trusted gate key"),
        "{}",
        text(&untrusted.stderr)
    );
    let signed = run(&[
        "bundle",
        "sign",
        "rel",
        "--key",
        "k.json",
        "--gate-key",
        "gate.pub.json",
    ]);
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
}

#[test]
fn expiry_options_that_overflow_are_refused_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| rulebox(args, tmp.path());
    assert_eq!(run(&["keygen", "--out", "k.json"]).status.code(), Some(0));
    let module = ALL.iter().find(|a| a.name == "office-shell").unwrap();
    std::fs::write(tmp.path().join("office.wasm"), module.bytes).unwrap();
    for args in [
        vec![
            "bundle",
            "build",
            "--out",
            "rel",
            "--release",
            "3",
            "--expires-days",
            "18446744073709551615",
            "office.wasm",
        ],
        vec![
            "root",
            "build",
            "--out",
            "r.json",
            "--key",
            "k.json",
            "--expires-days",
            "213503982334601",
        ],
        vec![
            "rollout",
            "sign-revert",
            "--release",
            "3",
            "--reason",
            "x",
            "--key",
            "k.json",
            "--valid-hours",
            "5124095576030431",
            "--out",
            "v.json",
        ],
    ] {
        let out = run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains("not in"), "{args:?}: {stderr}");
    }
    assert!(
        !tmp.path().join("v.json").exists(),
        "no revert that never expires"
    );
}

#[test]
fn an_error_prints_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| rulebox(args, tmp.path());
    assert_eq!(run(&["keygen", "--out", "k.json"]).status.code(), Some(0));
    assert_eq!(
        run(&["keygen", "--out", "other.json"]).status.code(),
        Some(0)
    );
    let build = |out: &str, version: &str, key: &str| {
        let made = run(&[
            "root",
            "build",
            "--out",
            out,
            "--root-version",
            version,
            "--key",
            key,
        ]);
        assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    };
    build("root.json", "1", "k.json");
    assert_eq!(
        run(&["root", "sign", "root.json", "--key", "k.json"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["store", "init", "--store", "store", "--root", "root.json"])
            .status
            .code(),
        Some(0)
    );
    // Root 2, signed only by a key root 1 does not name: refused, and the cause said once.
    build("root2.json", "2", "other.json");
    assert_eq!(
        run(&["root", "sign", "root2.json", "--key", "other.json"])
            .status
            .code(),
        Some(0)
    );
    let out = run(&[
        "store",
        "update-root",
        "--store",
        "store",
        "--root",
        "root2.json",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches("signed only by keys the root does not name")
            .count(),
        1,
        "{stderr}"
    );
    // A file that is not there: the system's reason once.
    let out = run(&["store", "init", "--store", "s2", "--root", "missing.json"]);
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

#[test]
fn test_runs_the_example_rules_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-rules/rules");
    let out = rulebox(&["test", rules.to_str().unwrap()], tmp.path());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.lines().all(|l| l.starts_with("ok ")), "{stdout}");
    assert!(
        text(&out.stderr).contains(" 0 failed"),
        "{}",
        text(&out.stderr)
    );
    let wrong = tmp.path().join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"rule":"office-spawns-shell","cases":[{"name":"silence expected","expect":"none",
            "events":[{"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe",
                                               "ParentImage":"C:\\Office\\WINWORD.EXE"}}}]}]}"#,
    )
    .unwrap();
    let out = rulebox(&["test", wrong.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).starts_with("FAIL office-spawns-shell"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn errors_name_the_file_and_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rulebox(
        &["run", "--rules", "no-such-dir", "--events", "x.jsonl"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no-such-dir"),
        "{}",
        text(&out.stderr)
    );
    let bad_config = tmp.path().join("config.json");
    std::fs::write(&bad_config, r#"{"limits": {"fuel_per_event": 0}}"#).unwrap();
    let dir = rules_dir(tmp.path(), &[]);
    let out = rulebox(
        &[
            "validate",
            "--config",
            bad_config.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("config.json") && stderr.contains("fuel_per_event"),
        "{stderr}"
    );
}

#[test]
fn demo_tells_the_story_and_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rulebox(&["demo"], tmp.path());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("rule quarantined") && stdout.contains("reproduced"),
        "{stdout}"
    );
}

#[test]
fn every_command_has_help() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in [
        &["run"][..],
        &["validate"],
        &["test"],
        &["new"],
        &["replay"],
        &["bench"],
        &["demo"],
        &["agent"],
        &["push"],
        &["keygen"],
        &["store", "init"],
        &["store", "status"],
        &["store", "rollback"],
        &["store", "update-root"],
        &["root", "build"],
        &["root", "sign"],
        &["bundle", "build"],
        &["bundle", "sign"],
        &["bundle", "verify"],
        &["fleet", "simulate"],
        &["rollout", "plan"],
        &["rollout", "rings"],
        &["rollout", "sign-revert"],
        &["rollout", "apply-revert"],
        &["policy", "sign"],
        &["policy", "install"],
        &["policy", "show"],
        &["sigma", "compile"],
        &["sigma", "test"],
    ] {
        let args: Vec<&str> = cmd.iter().copied().chain(["--help"]).collect();
        let out = rulebox(&args, tmp.path());
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn run_loads_a_rule_pack_from_a_folder_and_reports_as_its_rules_do_one_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, DEMO_EVENTS).unwrap();
    let detections = |dir: &Path| -> Vec<(String, String)> {
        let out = rulebox(
            &[
                "run",
                "--rules",
                dir.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--no-records",
            ],
            tmp.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let mut found: Vec<(String, String)> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "detection")
            .map(|v| (v["rule_id"].to_string(), v["event"].to_string()))
            .collect();
        found.sort();
        found
    };
    let modules = rules_dir(tmp.path(), &[]);
    let pack = tmp.path().join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    let example = ALL.iter().find(|a| a.name == "example-pack").unwrap();
    std::fs::write(pack.join("example-pack.wasm"), example.bytes).unwrap();
    let one_by_one = detections(&modules);
    assert!(one_by_one.len() >= 8, "{one_by_one:?}");
    assert_eq!(detections(&pack), one_by_one);
}

#[test]
fn a_rule_id_claimed_by_two_files_is_refused_for_both_with_one_alert_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = rules_dir(tmp.path(), &[]);
    let good: Vec<_> = ALL
        .iter()
        .filter(|a| a.kind == ArtifactKind::Good)
        .collect();
    // A second file claiming the first good rule's id: an impostor needs no more than a copy
    // under another name to contest it.
    let original = format!("{}.wasm", good[0].name);
    std::fs::write(dir.join("zz-claimant.wasm"), good[0].bytes).unwrap();
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, DEMO_EVENTS).unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            dir.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let duplicates: Vec<&Value> = lines
        .iter()
        .filter(|v| v["alert"] == "duplicate_rule_id")
        .collect();
    assert_eq!(duplicates.len(), 1, "one alert per contested id: {stdout}");
    let alert = duplicates[0];
    assert_eq!(alert["severity"], "high");
    let contested = alert["rule_id"].as_str().expect("the alert names the id");
    let mut paths: Vec<String> = alert["claimants"]
        .as_array()
        .expect("claimants")
        .iter()
        .map(|c| {
            let path = c["path"].as_str().expect("claimant path");
            Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, [original.clone(), "zz-claimant.wasm".to_string()]);
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains(&original) && message.contains("zz-claimant.wasm"),
        "{message}"
    );

    // Neither claimant runs; every other good rule does.
    let fired: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|v| v["type"] == "detection")
        .filter_map(|d| d["rule_id"].as_str())
        .collect();
    assert!(
        !fired.contains(contested),
        "a contested id never runs: {fired:?}"
    );
    assert_eq!(fired.len(), good.len() - 1, "{fired:?}\n{stderr}");
    assert_ne!(
        out.status.code(),
        Some(0),
        "a refusal is not a clean run: {stderr}"
    );
}
