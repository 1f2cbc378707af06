//! The agent as a real process: crash loops end on last-known-good, kills during an install leave
//! old or new content (never a mix), a hot update under a steady stream loses no event, and a pushed
//! signed revert takes a running agent back to good content.
//! Needs the test-only fault-injection switches: `cargo test -p rulebox-cli --features fault-injection`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rulebox_example_artifacts::{ALL, ArtifactKind};

fn agent_once(store: &Path, events: &Path) -> (bool, String, String) {
    let out = rulebox()
        .args([
            "agent",
            "--store",
            store.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--inbox-poll-ms",
            "20",
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
use rulebox_release::{BundleOptions, ModuleSource};
use rulebox_runtime::content::{ContentStore, now_unix};

const K: u32 = 3;

fn rulebox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
}

/// Starts the agent on `store` with events from its stdin and every stream piped.
fn spawn_agent(store: &Path) -> std::process::Child {
    rulebox()
        .args([
            "agent",
            "--store",
            store.to_str().unwrap(),
            "--events",
            "-",
            "--inbox-poll-ms",
            "20",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads a child's stream to the end on a thread (a full pipe would stall the child).
fn read_all(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        stream.read_to_string(&mut s).unwrap();
        s
    })
}

/// A store trusting a fresh one-key root, and the key.
fn store(dir: &Path) -> (PathBuf, rulebox_release::KeyFile) {
    let key = rulebox_release::generate_key().unwrap();
    let mut root =
        rulebox_release::build_root(1, now_unix() + 86_400, &[key.public.as_str()], 1).unwrap();
    rulebox_release::sign_root(&mut root, &key).unwrap();
    let root_path = dir.join("root.json");
    rulebox_release::write_root(&root_path, &root).unwrap();
    let store = dir.join("store");
    ContentStore::init(&store, &std::fs::read(&root_path).unwrap()).unwrap();
    (store, key)
}

/// A signed bundle of release `release` holding the example rules named in `names` (faulty ones are
/// refused by the validation gate and signed by hand, as content forced past it).
fn bundle(dir: &Path, key: &rulebox_release::KeyFile, release: u64, names: &[&str]) -> PathBuf {
    let out = dir.join(format!("bundle-{release}"));
    let modules: Vec<ModuleSource> = ALL
        .iter()
        .filter(|a| a.kind != ArtifactKind::Wasi && names.contains(&a.name))
        .map(|a| ModuleSource::Bytes {
            name: a.name.to_owned(),
            bytes: a.bytes.to_vec(),
        })
        .collect();
    assert_eq!(modules.len(), names.len());
    rulebox_release::build_bundle(
        &out,
        &modules,
        &BundleOptions::new(release, now_unix() + 86_400, "test"),
    )
    .unwrap();
    // The release gate: a passing validation report must exist before signing.
    let quick = rulebox_validate::Options {
        generated_per_kind: 4,
        ..Default::default()
    };
    let (report, _) = rulebox_release::validate_for_release(&out, &quick, key).unwrap();
    let faulty = ALL
        .iter()
        .any(|a| a.kind == ArtifactKind::Faulty && names.contains(&a.name));
    if faulty {
        // Content the gate refuses, forced onto the endpoint (signed by hand) to test run-time
        // containment.
        assert!(!report.passed, "the validator must reject faulty content");
        assert!(rulebox_release::sign_manifest(&out, key).is_err());
        let path = out.join("manifest.json");
        let mut envelope: rulebox_runtime::content::Signed<rulebox_runtime::content::Manifest> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        rulebox_release::add_signature(&mut envelope, key).unwrap();
        std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    } else {
        assert!(report.passed, "{}", report.failure_summary());
        rulebox_release::sign_manifest(&out, key).unwrap();
    }
    out
}

fn events_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("events.jsonl");
    let line = r#"{"host":"h","pid":1,"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Office\\WINWORD.EXE"}}}"#;
    std::fs::write(&path, format!("{line}\n").repeat(n)).unwrap();
    path
}

#[test]
fn a_release_that_crashes_the_host_at_start_up_is_abandoned_within_k_plus_one_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let mut store = ContentStore::open(&store_dir).unwrap();
    store
        .install(&bundle(tmp.path(), &key, 1, &["office-shell"]), now_unix())
        .unwrap();
    assert!(matches!(
        store.begin_boot(K).unwrap(),
        rulebox_runtime::content::BootDecision::Start { release: 1, .. }
    ));
    store.mark_good(1).unwrap();
    // Release 2 brings a rule whose presence makes this test build of the agent abort at start-up.
    store
        .install(
            &bundle(tmp.path(), &key, 2, &["office-shell", "lsass-access"]),
            now_unix(),
        )
        .unwrap();
    drop(store);
    let events = events_file(tmp.path(), 5);

    let mut starts = 0;
    let mut recovered = false;
    while starts < K + 1 {
        starts += 1;
        // As a supervisor would: start, and restart when it dies.
        let out = rulebox()
            .args([
                "agent",
                "--store",
                store_dir.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
            ])
            .args([
                "--boot-attempts",
                &K.to_string(),
                "--health-events",
                "1",
                "--health-secs",
                "0",
            ])
            .env("RULEBOX_TEST_CRASH_ON_RULE", "lsass-memory-access")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            assert!(stderr.contains("abandoned"), "{stderr}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("release_abandoned"),
                "the fallback is an alert: {stdout}"
            );
            assert_eq!(
                stdout.matches("\"type\":\"detection\"").count(),
                5,
                "last-known-good detects: {stdout}"
            );
            recovered = true;
            break;
        }
        assert!(
            stderr.contains("fault injection"),
            "start {starts} died for another reason: {stderr}"
        );
    }
    assert!(recovered, "still crashing after {starts} starts");
    assert_eq!(starts, K + 1);
    let status = ContentStore::open_read_only(&store_dir).unwrap().status();
    let status = serde_json::to_value(&status).unwrap();
    assert_eq!(status["current"], 1);
    assert_eq!(status["bad"], serde_json::json!([2]));
    assert!(
        std::fs::read_dir(store_dir.join("reports"))
            .unwrap()
            .count()
            >= 1,
        "a report is written"
    );
}

#[test]
fn kill_minus_9_at_every_install_step_leaves_old_or_new_content() {
    for step in [
        "copy-module",
        "write-manifest",
        "rename-release",
        "write-state",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (store_dir, key) = store(tmp.path());
        let mut store = ContentStore::open(&store_dir).unwrap();
        store
            .install(&bundle(tmp.path(), &key, 1, &["office-shell"]), now_unix())
            .unwrap();
        drop(store);
        let b2 = bundle(tmp.path(), &key, 2, &["office-shell", "run-key"]);
        let push = rulebox()
            .args([
                "push",
                b2.to_str().unwrap(),
                "--store",
                store_dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(push.status.success());
        let events = events_file(tmp.path(), 1);
        let mut child = rulebox()
            .args([
                "agent",
                "--store",
                store_dir.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--follow",
            ])
            .args(["--inbox-poll-ms", "50"])
            .env("RULEBOX_TEST_PAUSE_AT", step)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let started = Instant::now();
        let mut paused = false;
        for line in stderr.lines() {
            let line = line.unwrap();
            if line == format!("PAUSED {step}") {
                paused = true;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never paused at {step}"
            );
        }
        assert!(paused, "the agent paused at {step}");
        // kill -9 right there.
        child.kill().unwrap();
        child.wait().unwrap();

        let store = ContentStore::open(&store_dir)
            .unwrap_or_else(|e| panic!("after a kill at {step} the store must open: {e}"));
        let current = store.state().current.expect("a release is current");
        assert!(current == 1 || current == 2, "{step}: current {current}");
        let bundle = store
            .load_release(current)
            .unwrap_or_else(|e| panic!("{step}: release {current} must verify: {e}"));
        let expected = if current == 1 { 1 } else { 2 };
        assert_eq!(
            bundle.modules().len(),
            expected,
            "{step}: content is all of one release"
        );
        let leftovers: Vec<_> = std::fs::read_dir(store_dir.join("releases"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{step}: open cleans temporary folders"
        );
    }
}

#[test]
fn a_hot_update_under_a_steady_stream_loses_no_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let mut store = ContentStore::open(&store_dir).unwrap();
    store
        .install(&bundle(tmp.path(), &key, 1, &["office-shell"]), now_unix())
        .unwrap();
    drop(store);
    let b2 = bundle(tmp.path(), &key, 2, &["office-shell", "run-key"]);
    let mut child = spawn_agent(&store_dir);
    let mut stdin = child.stdin.take().unwrap();
    // Drain stdout and stderr while writing, or the pipes fill and everyone waits.
    let child_out = child.stdout.take().unwrap();
    let child_err = child.stderr.take().unwrap();
    let out_reader = read_all(child_out);
    let err_reader = read_all(child_err);
    let line = r#"{"host":"h","pid":1,"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Office\\WINWORD.EXE"}}}"#;
    let total = 3000;
    use std::io::Write;
    for i in 0..total {
        writeln!(stdin, "{line}").unwrap();
        if i == total / 3 {
            let push = rulebox()
                .args([
                    "push",
                    b2.to_str().unwrap(),
                    "--store",
                    store_dir.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(push.status.success());
        }
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let (stdout, stderr) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("installed release 2"),
        "the update happened during the stream: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{total} events read, {total} processed")),
        "{stderr}"
    );
    assert_eq!(
        stdout
            .matches("\"rule_id\":\"office-spawns-shell\"")
            .count(),
        total,
        "one detection per event, none lost or doubled"
    );
}

#[test]
fn a_quarantine_survives_a_restart_until_a_new_version_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let mut store = ContentStore::open(&store_dir).unwrap();
    store
        .install(
            &bundle(tmp.path(), &key, 1, &["office-shell", "panics"]),
            now_unix(),
        )
        .unwrap();
    drop(store);
    let events = events_file(tmp.path(), 3);
    let (ok, stdout, stderr) = agent_once(&store_dir, &events);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("\"alert\":\"rule_quarantined\"") && stdout.contains("faulty-panics"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("\"type\":\"detection\"").count(),
        3,
        "the healthy rule saw every event"
    );
    // Restart: the quarantined version is not loaded again, and says so.
    let (ok, stdout, stderr) = agent_once(&store_dir, &events);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("faulty-panics 1.0.0 is quarantined on this host"),
        "{stderr}"
    );
    assert!(!stdout.contains("rule_quarantined"), "{stdout}");
    assert_eq!(stdout.matches("\"type\":\"detection\"").count(), 3);
}

#[test]
fn a_refused_update_leaves_the_running_content_running() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let mut store = ContentStore::open(&store_dir).unwrap();
    store
        .install(&bundle(tmp.path(), &key, 2, &["office-shell"]), now_unix())
        .unwrap();
    let state_before = std::fs::read(store_dir.join("state.json")).unwrap();
    drop(store);
    // An older release (rollback) and a tampered one (mix-and-match), both validly signed.
    let older = bundle(tmp.path(), &key, 1, &["office-shell", "run-key"]);
    let tampered = bundle(tmp.path(), &key, 3, &["office-shell"]);
    let module = std::fs::read_dir(tampered.join("modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&module).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&module, bytes).unwrap();
    for b in [&older, &tampered] {
        assert!(
            rulebox()
                .args([
                    "push",
                    b.to_str().unwrap(),
                    "--store",
                    store_dir.to_str().unwrap()
                ])
                .status()
                .unwrap()
                .success()
        );
    }
    // Keep the agent up long enough to poll the inbox: follow a file that never grows, then SIGTERM.
    let events = events_file(tmp.path(), 2);
    let child = rulebox()
        .args([
            "agent",
            "--store",
            store_dir.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--follow",
            "--inbox-poll-ms",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "clean exit on SIGTERM: {stderr}");
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("2 events read, 2 processed"),
        "{stderr}"
    );
    assert_eq!(
        stdout.matches("\"alert\":\"update_refused\"").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("\"type\":\"detection\"").count(),
        2,
        "release 2 kept detecting: {stdout}"
    );
    // The refusals changed nothing (the agent's own start recorded its boot, which is expected).
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store_dir.join("state.json")).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_slice(&state_before).unwrap();
    for key in [
        "current",
        "highest_release",
        "installed",
        "bad",
        "last_known_good",
    ] {
        assert_eq!(after[key], before[key], "{key} unchanged");
    }
    let releases: Vec<_> = std::fs::read_dir(store_dir.join("releases"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        releases,
        vec![std::ffi::OsString::from("2")],
        "no new release folder"
    );
}

#[test]
fn safe_mode_runs_the_baseline_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let events = events_file(tmp.path(), 2);
    let out = rulebox()
        .args(["agent", "--safe-mode", "--events", events.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("safe mode"), "{stderr}");
    assert_eq!(stdout.matches("office-spawns-shell").count(), 2, "{stdout}");
}

/// Forwards a child's stream line by line, read on a thread of its own.
fn forward_lines(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits until the agent's stderr (forwarded line by line on `lines`) has a line containing `needle`;
/// returns everything seen so far.
fn wait_for(lines: &std::sync::mpsc::Receiver<String>, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => panic!("the agent never said `{needle}`; it said:\n{seen}"),
        }
    }
}

#[test]
fn a_signed_revert_pushed_to_a_running_agent_takes_it_back_without_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let key_path = tmp.path().join("key.json");
    rulebox_release::write_key_file(&key_path, &key).unwrap();
    let mut store = ContentStore::open(&store_dir).unwrap();
    store
        .install(&bundle(tmp.path(), &key, 1, &["office-shell"]), now_unix())
        .unwrap();
    drop(store);
    let b2 = bundle(tmp.path(), &key, 2, &["office-shell", "run-key"]);
    let mut child = spawn_agent(&store_dir);
    let mut stdin = child.stdin.take().unwrap();
    let child_out = child.stdout.take().unwrap();
    let out_reader = read_all(child_out);
    let lines = forward_lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    wait_for(&lines, &mut seen, "starting release 1");
    wait_for(&lines, &mut seen, "release 1 active");
    let push = |path: &Path| {
        let out = rulebox()
            .args([
                "push",
                path.to_str().unwrap(),
                "--store",
                store_dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    push(&b2);
    wait_for(&lines, &mut seen, "release 2 active");

    // A revert signed by a key the store does not trust is refused; the release keeps running.
    let stranger = rulebox_release::generate_key().unwrap();
    let stranger_path = tmp.path().join("stranger.json");
    rulebox_release::write_key_file(&stranger_path, &stranger).unwrap();
    let sign = |key: &Path, out: &Path| {
        let status = rulebox()
            .args([
                "rollout",
                "sign-revert",
                "--release",
                "2",
                "--to",
                "1",
                "--reason",
                "gate failed in the canary ring",
                "--key",
                key.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let forged = tmp.path().join("forged.json");
    sign(&stranger_path, &forged);
    push(&forged);
    wait_for(&lines, &mut seen, "revert forged.revert.json refused");

    let revert = tmp.path().join("withdraw-2.json");
    sign(&key_path, &revert);
    push(&revert);
    wait_for(&lines, &mut seen, "applied the signed revert of release 2");
    wait_for(&lines, &mut seen, "release 1 active");

    use std::io::Write;
    writeln!(
        stdin,
        r#"{{"host":"h","pid":1,"data":{{"ProcessStart":{{"Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Office\\WINWORD.EXE"}}}}}}"#
    )
    .unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{seen}");
    let stdout = out_reader.join().unwrap();
    assert!(stdout.contains(r#""lifecycle":"reverted""#), "{stdout}");
    assert!(stdout.contains(r#""alert":"revert_refused""#), "{stdout}");
    assert!(
        stdout.contains("\"rule_id\":\"office-spawns-shell\""),
        "release 1 detects after the revert: {stdout}"
    );
    let store = ContentStore::open(&store_dir).unwrap();
    assert_eq!(store.state().current, Some(1));
    assert!(store.state().bad.contains(&2), "release 2 never comes back");
}

/// The peak resident memory of process `pid`, in bytes (Linux: `VmHWM`).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn the_event_socket_refuses_an_oversize_line_without_buffering_it() {
    use std::io::Write;
    const OVERSIZE: usize = 256 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("events.sock");
    let mut child = rulebox()
        .args(["agent", "--safe-mode", "--events"])
        .arg(format!("unix:{}", socket.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = forward_lines(child.stderr.take().unwrap());
    let out_reader = read_all(child.stdout.take().unwrap());
    let mut seen = String::new();
    wait_for(&lines, &mut seen, "the baseline content active");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket: {seen}");
        std::thread::sleep(Duration::from_millis(20));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let Some(before) = peak_rss(child.id()) else {
        eprintln!(
            "the_event_socket_refuses_an_oversize_line_without_buffering_it: skipped: no /proc/PID/status on this system"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        return;
    };
    let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    conn.write_all(b"{\"host\":\"").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..OVERSIZE / chunk.len() {
        conn.write_all(&chunk).unwrap();
    }
    let good = r#"{"host":"h","pid":1,"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Office\\WINWORD.EXE"}}}"#;
    writeln!(conn, "\"}}\n{good}").unwrap();
    drop(conn);
    wait_for(&lines, &mut seen, "over the limit");
    // The detection of the good line comes after; give the agent the time to reach it.
    let after = {
        std::thread::sleep(Duration::from_millis(500));
        peak_rss(child.id()).unwrap()
    };
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success(), "{seen}");
    let stdout = out_reader.join().unwrap();
    let grew = after.saturating_sub(before);
    eprintln!("peak memory before {before} bytes, after a {OVERSIZE}-byte line {after} bytes");
    assert!(
        grew < 32 << 20,
        "a {OVERSIZE}-byte line grew the agent's peak memory by {grew} bytes"
    );
    assert_eq!(
        stdout.matches(r#""alert":"event_unreadable""#).count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(r#""type":"detection""#).count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains(r#""unreadable":1"#), "counted: {stdout}");
    assert!(!socket.exists(), "the socket is removed at the end");
}

#[cfg(unix)]
#[test]
fn push_never_follows_a_link_and_never_widens_access() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let push = |path: &Path| {
        rulebox()
            .args([
                "push",
                path.to_str().unwrap(),
                "--store",
                store_dir.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let inbox = store_dir.join("inbox");
    let listing = || -> Vec<String> {
        std::fs::read_dir(&inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // A secret only its owner may read, and links to it and to a bundle.
    let secret = tmp.path().join("secret.revert.json");
    std::fs::write(&secret, b"{\"not\":\"a revert\"}").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bundle = bundle(tmp.path(), &key, 1, &["office-shell"]);
    for (link, target) in [
        ("linked.revert.json", secret.as_path()),
        ("linked-bundle", bundle.as_path()),
    ] {
        let path = tmp.path().join(link);
        std::os::unix::fs::symlink(target, &path).unwrap();
        let out = push(&path);
        assert!(!out.status.success(), "{link}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(listing().is_empty(), "{:?}", listing());
    // What is pushed is copied readable by its owner only, whatever the source's mode.
    for entry in std::fs::read_dir(bundle.join("modules")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert!(push(&bundle).status.success());
    assert!(push(&secret).status.success());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let delivered = inbox.join("bundle-1");
    assert_eq!(mode(&delivered), 0o700);
    for entry in std::fs::read_dir(delivered.join("modules")).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
    assert_eq!(mode(&inbox.join("secret.revert.json")), 0o600);
    assert_eq!(mode(&inbox), 0o700);
}

#[test]
fn store_status_shows_the_root_and_content_expiry_and_what_the_store_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, key) = store(tmp.path());
    let hash = {
        let mut store = ContentStore::open(&store_dir).unwrap();
        store
            .install(&bundle(tmp.path(), &key, 1, &["office-shell"]), now_unix())
            .unwrap()
            .bundle
            .manifest_hash()
            .to_owned()
    };
    let out = rulebox()
        .args(["store", "status", "--store", store_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "root:             version 1, expires ",
        "current:          release 1, content expires ",
        &format!("installed:        release 1 manifest {hash} (current, expires "),
        "disk:             ",
        "releases ",
        "refused entries kept",
    ] {
        assert!(stdout.contains(needle), "{needle:?} in:\n{stdout}");
    }
}

#[test]
fn an_agent_whose_store_is_locked_still_runs_the_baseline_and_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let (store_dir, _key) = store(tmp.path());
    let holder = ContentStore::open(&store_dir).unwrap();
    let events = events_file(tmp.path(), 2);
    let (ok, stdout, stderr) = agent_once(&store_dir, &events);
    drop(holder);
    assert!(ok, "the agent runs: {stderr}");
    assert!(
        stdout.contains("\"alert\":\"store_unavailable\""),
        "{stdout}"
    );
    assert!(stderr.contains("cannot open the content store"), "{stderr}");
    assert_eq!(
        stdout.matches("\"type\":\"detection\"").count(),
        2,
        "the baseline detects: {stdout}"
    );
}
