//! A rule author's whole loop, outside the workspace, as the README tells it: `rulebox new`, the
//! native tests (`cargo test`, which runs `tests/cases.json` too), the module build, `rulebox test`,
//! `rulebox validate`, `rulebox run`, `rulebox bench`; then a bug only a boundary event reaches,
//! found by `validate`, written out, replayed from another folder, fixed and confirmed with
//! `rulebox replay --module`.
//!
//! The crate's builds share one target folder (`rule-template-test` in the workspace's target
//! folder), kept between runs, so only the first run compiles the SDK (about a minute on two cores;
//! later runs take seconds); every child process runs under a time limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest any one step may take (the first build of the SDK for two targets included).
const STEP_LIMIT: Duration = Duration::from_secs(600);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Runs `cmd` to completion, killing it after [`STEP_LIMIT`]. Output is collected through files so
/// that a chatty child can never block on a full pipe.
fn bounded(mut cmd: Command, what: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > STEP_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {STEP_LIMIT:?}, killed\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// The crate's target folder, shared by every run: `rule-template-test` in the workspace's target
/// folder (or in `$CARGO_TARGET_DIR`).
fn shared_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_absolute() {
                d
            } else {
                workspace().join(d)
            }
        })
        .unwrap_or_else(|| workspace().join("target"))
        .join("rule-template-test")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// `cargo ARGS` in `dir`, with the shared target folder and an environment cleaned of what the
/// outer `cargo test` set (its target, flags for the host, its jobserver).
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let target = shared_target();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir).args(args);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = key.starts_with("CARGO_") && key != "CARGO_HOME";
        if outer || key.contains("RUSTFLAGS") || key.ends_with("MAKEFLAGS") || key == "MFLAGS" {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env("CARGO_TARGET_DIR", target)
        // The copied Cargo.lock holds every version needed: no registry access.
        .arg("--offline");
    bounded(cmd, &format!("cargo {}", args.join(" ")))
}

fn rulebox(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rulebox"));
    cmd.current_dir(dir).args(args);
    bounded(cmd, &format!("rulebox {}", args.join(" ")))
}

/// Builds the module and copies it to `build/certutil_download.wasm` in the crate (the shared
/// target folder is outside it; the copy keeps the module's path relative to the crate, as in the
/// README).
fn build_module(krate: &Path) -> PathBuf {
    let built = cargo(
        krate,
        &["build", "--release", "--target", "wasm32-unknown-unknown"],
    );
    assert!(built.status.success(), "{}", show(&built));
    let wasm = shared_target().join("wasm32-unknown-unknown/release/certutil_download.wasm");
    std::fs::create_dir_all(krate.join("build")).unwrap();
    std::fs::copy(&wasm, krate.join("build/certutil_download.wasm")).unwrap();
    PathBuf::from("build/certutil_download.wasm")
}

#[test]
fn a_rule_from_the_template_goes_through_the_whole_loop_outside_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let sdk = workspace();
    let created = rulebox(
        home,
        &["new", "certutil-download", "--sdk", sdk.to_str().unwrap()],
    );
    assert!(created.status.success(), "{}", show(&created));
    let krate = home.join("certutil-download");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "src/lib.rs",
        "tests/cases.rs",
        "tests/cases.json",
        "events/sample.jsonl",
    ] {
        assert!(krate.join(file).is_file(), "{file} was not written");
    }
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("opt-level = 3"), "{manifest}");
    // Without --sdk, the checkout the binary was built from.
    let default = rulebox(home, &["new", "other-rule", "--dir", "elsewhere/other"]);
    assert!(default.status.success(), "{}", show(&default));
    let other = std::fs::read_to_string(home.join("elsewhere/other/Cargo.toml")).unwrap();
    assert!(
        other.contains(&format!("path = '{}'", sdk.join("rules-sdk").display())),
        "{other}"
    );
    // A second `new` on the same folder is refused, and changes nothing.
    let again = rulebox(
        home,
        &["new", "certutil-download", "--sdk", sdk.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(1), "{}", show(&again));
    assert!(text(&again.stderr).contains("already exists"));

    // 1. Native: the unit tests, and tests/cases.json through rulebox-cases.
    let native = cargo(&krate, &["test"]);
    assert!(native.status.success(), "{}", show(&native));
    let log = text(&native.stdout);
    assert!(
        log.contains("fires_on_a_download ... ok")
            && log.contains("the_test_cases_pass_natively ... ok"),
        "{log}"
    );
    // The native build never linked the sandbox's engine.
    let tree = cargo(&krate, &["tree", "-e", "normal,dev"]);
    assert!(tree.status.success(), "{}", show(&tree));
    assert!(
        text(&tree.stdout).contains("rulebox-cases") && !text(&tree.stdout).contains("wasmtime"),
        "{}",
        text(&tree.stdout)
    );

    // A typo in a test event's field is refused natively and in the sandbox, naming the key.
    let cases = std::fs::read_to_string(krate.join("tests/cases.json")).unwrap();
    std::fs::write(
        krate.join("tests/cases.json"),
        cases.replacen("\"Image\"", "\"Imgae\"", 1),
    )
    .unwrap();
    let typo = cargo(&krate, &["test", "--test", "cases"]);
    assert!(!typo.status.success());
    let said = show(&typo);
    assert!(
        said.contains("unknown field `Imgae`") && said.contains("did you mean `Image`?"),
        "{said}"
    );
    let module = build_module(&krate);
    let module = module.to_str().unwrap();
    // Kept for step 6: the build of the fixed source is this one again (builds are reproducible).
    std::fs::copy(krate.join(module), krate.join("build/good.wasm")).unwrap();
    let typo = rulebox(&krate, &["test", "tests", "--rules", module]);
    assert_eq!(typo.status.code(), Some(1), "{}", show(&typo));
    assert!(
        text(&typo.stderr).contains("unknown field `Imgae`"),
        "{}",
        show(&typo)
    );
    std::fs::write(krate.join("tests/cases.json"), &cases).unwrap();

    // 2. The same cases against the module, in the sandbox; without --rules the command says what
    //    it tests instead.
    let tested = rulebox(&krate, &["test", "tests", "--rules", module]);
    assert_eq!(tested.status.code(), Some(0), "{}", show(&tested));
    assert_eq!(
        text(&tested.stdout)
            .matches("ok   certutil-download cases.json")
            .count(),
        3,
        "{}",
        show(&tested)
    );
    let built_in = rulebox(&krate, &["test", "tests"]);
    assert_eq!(built_in.status.code(), Some(2), "{}", show(&built_in));
    assert!(
        text(&built_in.stderr).contains("built into this binary")
            && text(&built_in.stderr).contains("--rules"),
        "{}",
        show(&built_in)
    );

    // 3. The release gate.
    let gate = rulebox(&krate, &["validate", module, "--tests", "tests"]);
    assert_eq!(gate.status.code(), Some(0), "{}", show(&gate));
    assert!(
        text(&gate.stdout).contains("rulebox validate: PASS"),
        "{}",
        show(&gate)
    );
    assert!(
        !krate.join("rulebox-quarantine").exists(),
        "no fault, no record"
    );

    // 4. Run and bench on the sample events.
    let ran = rulebox(
        &krate,
        &["run", "--rules", module, "--events", "events/sample.jsonl"],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", show(&ran));
    let detections: Vec<serde_json::Value> = text(&ran.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(detections.len(), 1, "{}", show(&ran));
    assert_eq!(detections[0]["rule_id"], "certutil-download");
    assert_eq!(detections[0]["title"], "certutil downloads a file");
    let bench = rulebox(
        &krate,
        &[
            "bench",
            "--rules",
            module,
            "--events",
            "events/sample.jsonl",
            "--millis",
            "20",
        ],
    );
    assert_eq!(bench.status.code(), Some(0), "{}", show(&bench));
    assert!(
        text(&bench.stdout).contains(&format!("certutil-download ({module})")),
        "the module path is shown whole: {}",
        show(&bench)
    );

    // 5. A bug only a long command line reaches: the native tests still pass, the gate does not.
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    let buggy = lib.replacen(
        "        if ends_with_ignore_case(p.image(), \"\\\\certutil.exe\")",
        "        assert!(p.command_line().len() < 100_000, \"command line too long\");\n        if ends_with_ignore_case(p.image(), \"\\\\certutil.exe\")",
        1,
    );
    assert_ne!(
        buggy, lib,
        "the template's rule has the line the test edits"
    );
    std::fs::write(krate.join("src/lib.rs"), &buggy).unwrap();
    let module = build_module(&krate);
    let module = module.to_str().unwrap();
    std::fs::copy(krate.join(module), krate.join("build/buggy.wasm")).unwrap();
    let gate = rulebox(&krate, &["validate", module, "--tests", "tests"]);
    assert_eq!(gate.status.code(), Some(2), "{}", show(&gate));
    let report = text(&gate.stdout);
    assert!(
        report.contains("guest_panic") && report.contains("boundary process_start"),
        "{report}"
    );
    let records: Vec<PathBuf> = std::fs::read_dir(krate.join("rulebox-quarantine"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        records.len(),
        1,
        "one record for the one kind of fault: {records:?}"
    );
    assert!(
        report.contains("rulebox replay rulebox-quarantine/"),
        "{report}"
    );

    // Replayed from another folder: the module is found relative to the record.
    let record = records[0].to_str().unwrap();
    let replayed = rulebox(home, &["replay", record]);
    assert_eq!(replayed.status.code(), Some(0), "{}", show(&replayed));
    assert!(
        text(&replayed.stdout).contains("command line too long")
            && text(&replayed.stdout).contains("result:   reproduced"),
        "{}",
        show(&replayed)
    );

    // 6. The fix (the source as it was, so its build is the first one): the old record no longer
    //    matches the rebuilt module, and --module checks it.
    std::fs::write(krate.join("src/lib.rs"), &lib).unwrap();
    std::fs::copy(krate.join("build/good.wasm"), krate.join(module)).unwrap();
    let stale = rulebox(home, &["replay", record]);
    assert_eq!(stale.status.code(), Some(1), "{}", show(&stale));
    assert!(text(&stale.stderr).contains("--module"), "{}", show(&stale));
    let fixed_module = krate.join(module);
    let fixed = rulebox(
        home,
        &["replay", record, "--module", fixed_module.to_str().unwrap()],
    );
    assert_eq!(fixed.status.code(), Some(0), "{}", show(&fixed));
    assert!(
        text(&fixed.stdout).contains("result:   fixed"),
        "{}",
        show(&fixed)
    );
    // And the buggy module, given explicitly, still faults.
    let buggy_module = krate.join("build/buggy.wasm");
    let still = rulebox(
        home,
        &["replay", record, "--module", buggy_module.to_str().unwrap()],
    );
    assert_eq!(
        still.status.code(),
        Some(0),
        "the recorded module again: {}",
        show(&still)
    );
    assert!(
        text(&still.stdout).contains("result:   reproduced"),
        "{}",
        show(&still)
    );
}
