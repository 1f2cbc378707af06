//! `rulebox controller serve` as a real process on loopback (SQLite), killed and restarted: a halt
//! publishes exactly one revert whatever step the controller dies at (test-only crash points of
//! the `fault-injection` build, which abort the process like `kill -9`), and a rollout killed in
//! the middle resumes from the database with no ring opened twice and no host offered twice. The
//! agents are played by the test through the protocol crate, retrying unanswered requests with
//! the same bytes as a real agent does; the operator is `rulebox rollout`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rulebox_controller::testing::{ENROLL_SECRET, FakeAgent, TestContent, labels, report};
use rulebox_controlplane_proto::ReportKind;
use rulebox_rollout::{GateConfig, RingPlan, RolloutPlan};
use rulebox_runtime::content::{Root, load_trusted_root, verify_offer_envelope, verify_revert};
use serde_json::Value;

struct Controller {
    child: Child,
    log: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `rulebox controller serve` on `port`, with `crash_at` as its crash point; waits until it
/// listens.
fn serve(c: &TestContent, db: &str, port: u16, crash_at: Option<&str>, n: usize) -> Controller {
    let f = &c.files;
    let log = c.dir().join(format!("controller-{n}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rulebox"));
    cmd.args(["controller", "serve", "--db", db, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--repo")
        .arg(&c.repo_dir)
        .arg("--root")
        .arg(&c.root_path)
        .arg("--rollout-key")
        .arg(&f.rollout_key)
        .arg("--timestamp-key")
        .arg(&f.timestamp_key)
        .arg("--enroll-secret-file")
        .arg(&f.enroll_secret)
        .arg("--operators")
        .arg(&f.operators)
        .args([
            "--tick-secs",
            "0.1",
            "--lease-secs",
            "0.5",
            "--clock-scale",
            "600",
        ])
        .env_remove("RULEBOX_CONTROLLER_CRASH_AT")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(point) = crash_at {
        cmd.env("RULEBOX_CONTROLLER_CRASH_AT", point);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the controller did not start: {}", read(&log)));
    assert!(line.starts_with("controller listening on"), "{line}");
    Controller { child, log }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Controller {
    /// Waits for the process to end by itself (a crash point), within `limit`, while `work` runs.
    fn wait_for_crash(&mut self, limit: Duration, mut work: impl FnMut()) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(!status.success(), "it exited cleanly: {}", read(&self.log));
                assert!(
                    read(&self.log).contains("crash point"),
                    "it died of something else: {}",
                    read(&self.log)
                );
                return;
            }
            assert!(start.elapsed() < limit, "no crash: {}", read(&self.log));
            work();
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

fn rulebox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(args)
        .output()
        .unwrap()
}

fn rollout_cli(c: &TestContent, port: u16, args: &[&str]) -> Output {
    let url = format!("http://127.0.0.1:{port}");
    let token = c.files.token.display().to_string();
    let mut all = vec!["rollout"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--controller", &url, "--token-file", &token]);
    all.extend_from_slice(&args[1..]);
    rulebox(&all)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn plan_file(c: &TestContent) -> String {
    let ring = |percent| RingPlan {
        percent,
        bake_secs: 1_200,
    };
    let plan = RolloutPlan {
        release: 42,
        previous: Some(41),
        rings: vec![ring(5.0), ring(25.0), ring(50.0), ring(100.0)],
        gates: GateConfig::default(),
        emergency: false,
        region_order: Vec::new(),
    };
    let path = c.dir().join("plan.json");
    std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
    path.display().to_string()
}

fn content() -> (TestContent, Root) {
    let c = TestContent::new().unwrap();
    let office = [("office", rulebox_example_artifacts::OFFICE_SHELL.bytes)];
    let both = [
        ("office", rulebox_example_artifacts::OFFICE_SHELL.bytes),
        ("lsass", rulebox_example_artifacts::LSASS_ACCESS.bytes),
    ];
    c.publish_release(41, &office).unwrap();
    c.publish_release(42, &both).unwrap();
    let root = load_trusted_root(&c.root_path).unwrap();
    (c, root)
}

fn fleet(port: u16, n: usize) -> Vec<FakeAgent> {
    let base = format!("http://127.0.0.1:{port}");
    (0..n)
        .map(|i| {
            let mut a = FakeAgent::enroll(&base, ENROLL_SECRET, labels(&format!("ws-{i:03}")))
                .unwrap()
                .unwrap();
            a.state.release = Some(41);
            a.state.last_known_good = Some(41);
            let hb = a.report(ReportKind::Heartbeat);
            a.checkin(vec![hb]).unwrap().unwrap();
            a
        })
        .collect()
}

/// One round of the played fleet; unanswered requests (the controller is down) are retried later.
/// Returns the host ids offered the release in this round.
fn round(agents: &mut [FakeAgent], root: &Root, quarantine: bool) -> Vec<String> {
    let now = rulebox_runtime::content::now_unix();
    let mut offered = Vec::new();
    for a in agents.iter_mut() {
        let on_new = a.state.release == Some(42);
        let hb = report(
            ReportKind::Heartbeat,
            a.state.release,
            u32::from(on_new && quarantine),
        );
        let Ok(Ok(answer)) = a.checkin(vec![hb]) else {
            continue;
        };
        for revert in &answer.reverts {
            let r = verify_revert(&serde_json::to_vec(revert).unwrap(), root, now).unwrap();
            if a.state.release == Some(r.release) {
                a.state.release = r.to;
            }
            if !a.state.bad.contains(&r.release) {
                a.state.bad.push(r.release);
            }
        }
        if let Some(offer) = &answer.offer {
            let o = verify_offer_envelope(offer, root, &a.host_id, now).unwrap();
            offered.push(a.host_id.clone());
            let installing = a.report(ReportKind::Installing { release: o.release });
            a.state.release = Some(o.release);
            let good = report(ReportKind::Good { release: o.release }, Some(42), 0);
            let _ = a.checkin(vec![installing, good]);
        }
    }
    offered
}

fn audit_kinds(c: &TestContent, port: u16, kind: &str) -> Vec<Value> {
    let out = rollout_cli(
        c,
        port,
        &["audit", "--kind", kind, "--json", "--limit", "10000"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out).as_array().unwrap().clone()
}

#[test]
fn a_halt_publishes_exactly_one_revert_whatever_step_the_controller_dies_at() {
    let (c, root) = content();
    let db = c.sqlite_url("controller.db");
    let port = free_port();
    let mut ctl = serve(&c, &db, port, Some("halt-before-commit"), 0);
    let mut agents = fleet(port, 20);
    let plan = plan_file(&c);
    let out = rollout_cli(&c, port, &["start", "--plan", &plan, "--reason", "weekly"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("release 42"));

    // 1. The tick that decides the halt dies before it commits: nothing of it remains.
    ctl.wait_for_crash(Duration::from_secs(30), || {
        round(&mut agents, &root, true);
    });
    let reverts = c.repo_dir.join("reverts");
    assert_eq!(std::fs::read_dir(&reverts).unwrap().count(), 0);

    // 2. It decides again after the restart, commits, and dies before the outbox runs.
    let mut ctl = serve(&c, &db, port, Some("halt-after-commit"), 1);
    ctl.wait_for_crash(Duration::from_secs(30), || {
        round(&mut agents, &root, true);
    });
    assert_eq!(std::fs::read_dir(&reverts).unwrap().count(), 0);

    // 3. The outbox writes the revert and the process dies before marking it done.
    let mut ctl = serve(&c, &db, port, Some("revert-after-publish"), 2);
    ctl.wait_for_crash(Duration::from_secs(30), || {});
    assert_eq!(std::fs::read_dir(&reverts).unwrap().count(), 1);
    let published = std::fs::read(reverts.join("42.revert.json")).unwrap();

    // 4. A clean start finishes the entry: the same file, listed in timestamp.json.
    let ctl = serve(&c, &db, port, None, 3);
    let start = Instant::now();
    while audit_kinds(&c, port, "revert_published").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            read(&ctl.log)
        );
        round(&mut agents, &root, true);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read(reverts.join("42.revert.json")).unwrap(),
        published
    );
    assert_eq!(std::fs::read_dir(&reverts).unwrap().count(), 1);
    let ts = std::fs::read(c.repo_dir.join("timestamp.json")).unwrap();
    let ts = rulebox_runtime::content::verify_timestamp(
        &ts,
        &root,
        rulebox_runtime::content::now_unix(),
        None,
    )
    .unwrap();
    assert_eq!(ts.reverts.len(), 1);
    assert_eq!(audit_kinds(&c, port, "halt").len(), 1);
    assert_eq!(audit_kinds(&c, port, "revert").len(), 1);
    assert_eq!(audit_kinds(&c, port, "revert_published").len(), 1);
    // Only the canary was offered, and it runs the previous release again with 42 marked bad.
    assert_eq!(audit_kinds(&c, port, "offer").len(), 1);
    for _ in 0..3 {
        round(&mut agents, &root, true);
    }
    let on_42 = agents
        .iter()
        .filter(|a| a.state.release == Some(42))
        .count();
    assert_eq!(on_42, 0);
    assert_eq!(
        agents.iter().filter(|a| a.state.bad.contains(&42)).count(),
        20
    );
    // `rollout status` says halted, in words, in its exit status and in JSON.
    let out = rollout_cli(&c, port, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HALTED in ring 0 by controller: quarantine"),
        "{text}"
    );
    let view = json_of(&rollout_cli(&c, port, &["status", "--json"]));
    assert_eq!(view["status"]["phase"]["halted"]["reverted"], true);
    // `rollout watch` shows each ring's progress and the failed gate, and exits 2 on the halt.
    let out = rollout_cli(&c, port, &["watch", "--interval", "1", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HALTED in ring 0 by controller, reverted"),
        "{text}"
    );
    assert!(text.contains("failed gate: quarantine"), "{text}");
    assert!(
        text.contains("ring 3 [--------------------]   0% GOOD (0 of"),
        "{text}"
    );
    assert!(text.contains("not opened"), "{text}");
    // `rollout dashboard` prints a one-time sign-in link to the controller's pages.
    let out = rollout_cli(&c, port, &["dashboard"]);
    assert_eq!(out.status.code(), Some(0));
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/ui/signin/")),
        "{link}"
    );
    ctl.kill_9();
}

#[test]
fn a_rollout_killed_mid_ring_resumes_from_the_database_without_opening_a_ring_twice() {
    let (c, root) = content();
    let db = c.sqlite_url("controller.db");
    let port = free_port();
    // The first life ends right after the tick that opens ring 1 commits.
    let mut ctl = serve(&c, &db, port, Some("ring-after-commit"), 0);
    let mut agents = fleet(port, 20);
    let plan = plan_file(&c);
    // The operator's errors are scriptable: a wrong token exits 4, a plan below the floor 3.
    let stranger = c.dir().join("stranger.token");
    std::fs::write(&stranger, "0123456789abcdef0123456789abcdef").unwrap();
    let out = rulebox(&[
        "rollout",
        "status",
        "--controller",
        &format!("http://127.0.0.1:{port}"),
        "--token-file",
        &stranger.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    let out = rollout_cli(
        &c,
        port,
        &["start", "--release", "42", "--emergency", "--reason", "x"],
    );
    assert!(
        out.status.success(),
        "the emergency plan meets the floor: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = json_of(&rollout_cli(&c, port, &["status", "--json"]))["id"]
        .as_i64()
        .unwrap();
    let out = rollout_cli(
        &c,
        port,
        &[
            "halt",
            &id.to_string(),
            "--reason",
            "wrong plan",
            "--revert",
        ],
    );
    assert!(out.status.success());
    // (Release 42 is withdrawn for good now; roll 43 out instead.)
    let both = [
        ("office", rulebox_example_artifacts::OFFICE_SHELL.bytes),
        ("lsass", rulebox_example_artifacts::LSASS_ACCESS.bytes),
        ("run-key", rulebox_example_artifacts::RUN_KEY.bytes),
    ];
    c.publish_release(43, &both).unwrap();
    let plan43 = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("\"release\":42", "\"release\":43");
    std::fs::write(&plan, plan43).unwrap();
    let out = rollout_cli(&c, port, &["start", "--plan", &plan, "--reason", "weekly"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rollout_cli(&c, port, &["status"]);
    assert_eq!(out.status.code(), Some(5), "in progress");

    let mut offered: Vec<String> = Vec::new();
    let run = |agents: &mut Vec<FakeAgent>, offered: &mut Vec<String>| {
        offered.extend(round43(agents, &root));
    };
    ctl.wait_for_crash(Duration::from_secs(40), || run(&mut agents, &mut offered));
    // Second life: killed with SIGKILL while ring 2 bakes.
    let ctl = serve(&c, &db, port, None, 1);
    let start = Instant::now();
    loop {
        run(&mut agents, &mut offered);
        let view = json_of(&rollout_cli(&c, port, &["status", "--json"]));
        if view["status"]["rings"][2]["opened"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "{view:#}");
    }
    ctl.kill_9();
    // Third life: to the end.
    let ctl = serve(&c, &db, port, None, 2);
    let start = Instant::now();
    loop {
        run(&mut agents, &mut offered);
        let out = rollout_cli(&c, port, &["status"]);
        if out.status.code() == Some(0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            read(&ctl.log)
        );
    }
    let rings: Vec<u64> = audit_kinds(&c, port, "ring_opened")
        .iter()
        .filter(|e| e["rollout_id"] != id)
        .map(|e| e["detail"]["ring"].as_u64().unwrap())
        .collect();
    assert_eq!(rings, [0, 1, 2, 3], "every ring opened once, in order");
    let offers: Vec<Value> = audit_kinds(&c, port, "offer")
        .into_iter()
        .filter(|e| e["rollout_id"] != id)
        .collect();
    assert_eq!(offers.len(), 20, "each host offered once");
    offered.sort();
    offered.dedup();
    assert_eq!(offered.len(), 20);
    assert!(agents.iter().all(|a| a.state.release == Some(43)));
    let view = json_of(&rollout_cli(&c, port, &["status", "--json"]));
    for r in view["status"]["rings"].as_array().unwrap() {
        assert_eq!(r["good"], r["hosts"], "{view:#}");
    }
    ctl.kill_9();
}

/// [`round`] for release 43 (healthy).
fn round43(agents: &mut [FakeAgent], root: &Root) -> Vec<String> {
    let now = rulebox_runtime::content::now_unix();
    let mut offered = Vec::new();
    for a in agents.iter_mut() {
        let hb = report(ReportKind::Heartbeat, a.state.release, 0);
        let Ok(Ok(answer)) = a.checkin(vec![hb]) else {
            continue;
        };
        if let Some(offer) = &answer.offer {
            let o = verify_offer_envelope(offer, root, &a.host_id, now).unwrap();
            assert_eq!(o.release, 43);
            offered.push(a.host_id.clone());
            let installing = a.report(ReportKind::Installing { release: 43 });
            a.state.release = Some(43);
            let good = report(ReportKind::Good { release: 43 }, Some(43), 0);
            let _ = a.checkin(vec![installing, good]);
        }
    }
    offered
}
