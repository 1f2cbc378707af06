//! `rulebox sigma compile` writes one engine and its rule data; `rulebox run` and `rulebox
//! validate` load the engine with that data.

use std::path::Path;
use std::process::{Command, Output};

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

fn rule(id: &str, image: &str) -> String {
    format!(
        "title: Runs {image}\nid: {id}\nlogsource: {{product: windows, category: process_creation}}\n\
         detection:\n    selection:\n        Image|endswith: '\\{image}'\n    condition: selection\nlevel: high\n"
    )
}

const WHOAMI: &str = "0b4e1d2c-0000-4000-8000-000000000001";
const NOTEPAD: &str = "0b4e1d2c-0000-4000-8000-000000000002";

fn event(image: &str) -> String {
    serde_json::json!({"host": "h", "timestamp": 1, "pid": 7, "data": {"ProcessStart": {"Image": image, "CommandLine": image}}})
        .to_string()
}

/// The rule ids of the detections `rulebox run` printed.
fn detections(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "detection")
        .map(|v| v["rule_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn sigma_compile_writes_one_engine_and_its_rule_data_which_run_and_validate_load() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(root.join("a.yml"), rule(WHOAMI, "whoami.exe")).unwrap();
    std::fs::write(root.join("b.yml"), rule(NOTEPAD, "notepad.exe")).unwrap();
    // A second rule with an id already taken is refused, the others still written.
    std::fs::write(root.join("c.yml"), rule(WHOAMI, "calc.exe")).unwrap();
    let out = rulebox(
        &["sigma", "compile", "a.yml", "b.yml", "c.yml", "-o", "out"],
        root,
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("refused  c.yml"), "{stdout}");
    let mut files: Vec<String> = std::fs::read_dir(root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["sigma.01.rules", "sigma.index.rules", "sigma.wasm"]);

    let events = [
        event("C:\\Windows\\System32\\whoami.exe"),
        event("C:\\Windows\\notepad.exe"),
        event("C:\\Windows\\explorer.exe"),
    ]
    .join("\n");
    std::fs::write(root.join("events.jsonl"), events).unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            "out",
            "--events",
            "events.jsonl",
            "--no-records",
        ],
        root,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(detections(&stdout), [WHOAMI, NOTEPAD], "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("shared prefilter index: in use for 1 packs (2 rules), 3 events scanned"),
        "{stderr}"
    );

    let out = rulebox(&["validate", "out"], root);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains(WHOAMI) && report.contains(NOTEPAD),
        "{report}"
    );

    // Rule data that is not compiled rules: the pack is refused at load, with the pack's reason.
    std::fs::write(root.join("out/sigma.01.rules"), b"not rule data").unwrap();
    let out = rulebox(
        &[
            "run",
            "--rules",
            "out",
            "--events",
            "events.jsonl",
            "--no-records",
        ],
        root,
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("bad_rule_data"), "{stdout}");
    assert!(detections(&stdout).is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("shared prefilter index: not used, each pack ran its own prefilter"),
        "the index of a pack that did not load is not used: {stderr}"
    );
}
