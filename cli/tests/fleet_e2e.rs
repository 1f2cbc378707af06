//! A real fleet on loopback: real nginx serving the published repository (the controller's own
//! `/repo/` if nginx is not installed, said plainly), the real `rulebox controller serve` with the
//! test-only clock scaling, once on SQLite and once on PostgreSQL (a throwaway server started in a
//! temporary data folder as a user other than root; said plainly and skipped when the machine has no
//! PostgreSQL server binaries), and real `rulebox agent` processes (40 by default,
//! `RULEBOX_E2E_AGENTS`), each with its own store, fetching through the agent's fetcher. A
//! supervisor loop restarts an agent that dies, as systemd would.
//!
//! - a good release reaches every host, each reports `good`, every ring opens once, in order;
//! - a release that crashes the host when it runs halts inside ring 0: no host outside ring 0 is
//!   ever offered it, the revert is published once, the ring-0 hosts run the previous release
//!   again and list the bad one as bad, and no host needs repair;
//! - the controller killed with SIGKILL in the middle of the rollout and restarted: it resumes
//!   from the database, no ring opens twice, no host is offered the release twice;
//! - nginx stopped for a while: the agents keep running, their request count stays bounded.
//! - the repository (nginx) serving a corrupt module, then half of it: every host offered the
//!   release refuses it with the class `hash`, then `network`, reports `fetch_failed` (the
//!   controller counts it), installs nothing; once the file is right the download resumes with
//!   `Range` and succeeds;
//! - an unenrolled host, a forged check-in (another host's id under the wrong key), a replayed
//!   check-in and a wrong enrolment secret: refused (`401`/`409`) and audited (`refused`).
//! - the dashboard in headless Chromium (skipped, said plainly, without it), as an operator sees
//!   this fleet: the good release complete with every ring at 100%, the crashing one halted in
//!   ring 0 with its failing gate and no other ring opened; a screenshot of each is kept in
//!   `target/test-artifacts/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rulebox_controller::testing::{
    self, ENROLL_SECRET, FakeAgent, OperatorClient, TestContent, TestPostgres, labels,
};
use rulebox_controlplane_proto::ErrorCode;
use rulebox_rollout::{GateConfig, RingPlan, RolloutPlan};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One line of the story, for people (`make demo-fleet` runs this test with a handful of agents).
fn story(t0: Instant, text: &str) {
    eprintln!("[{:5.1} s] {text}", t0.elapsed().as_secs_f64());
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_listening(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} does not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx with a temporary configuration serving `root` on 127.0.0.1:`port` (`daemon off`, every
/// path in `dir`); `None` if nginx is not installed.
struct Nginx {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
}

impl Nginx {
    fn binary() -> Option<PathBuf> {
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }

    /// `lie`: a URL path served from another file (the test changes that file to make the
    /// repository lie about one module, while the repository itself stays right).
    fn start(root: &Path, dir: &Path, port: u16, lie: Option<(&str, &Path)>) -> Option<Nginx> {
        let bin = Self::binary()?;
        let d = dir.join("nginx");
        for sub in ["", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let conf = d.join("nginx.conf");
        let p = |s: &str| d.join(s).display().to_string();
        let lie = lie
            .map(|(path, file)| format!("location = {path} {{ alias {}; }}\n    ", file.display()))
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log {acc};\n  client_body_temp_path {body};\n  proxy_temp_path {proxy};\n  \
                 fastcgi_temp_path {fcgi};\n  uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n  \
                 types {{ application/json json; application/wasm wasm; }}\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    \
                 location = /timestamp.json {{ add_header Cache-Control \"max-age=5\"; }}\n    {lie}\
                 location / {{ add_header Cache-Control \"public, max-age=31536000, immutable\"; }}\n  }}\n}}\n",
                pid = p("nginx.pid"),
                err = p("error.log"),
                acc = p("access.log"),
                body = p("body"),
                proxy = p("proxy"),
                fcgi = p("fastcgi"),
                uwsgi = p("uwsgi"),
                scgi = p("scgi"),
                root = root.display(),
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&d)
            .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port, "nginx");
        Some(Nginx {
            child,
            conf,
            log: d.join("access.log"),
        })
    }

    /// Stops nginx for real: SIGTERM to the master, which stops its worker and exits after it (a
    /// SIGKILL to the master would leave the worker running, still listening and serving).
    fn stop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    fn restart(&mut self, port: u16) {
        self.stop();
        let bin = Self::binary().unwrap();
        let dir = self.conf.parent().unwrap().to_path_buf();
        self.child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(&dir)
            .stderr(std::fs::File::create(dir.join("stderr2.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port, "nginx");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Controller {
    child: Child,
    log: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(c: &TestContent, db: &str, port: u16) -> Controller {
    let f = &c.files;
    let log = c.dir().join("controller.log");
    let child = Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(["controller", "serve", "--db"])
        .arg(db)
        .arg("--listen")
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
            "--serve-repo",
            "--tick-secs",
            "0.2",
            "--lease-secs",
            "1",
            "--clock-scale",
            "200",
            "--checkin-interval-secs",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    wait_listening(port, "the controller");
    Controller { child, log }
}

/// One agent process (restarted by [`Fleet::supervise`] when it dies).
struct AgentProc {
    n: usize,
    child: Child,
    _stdin: ChildStdin,
    store: PathBuf,
    out: PathBuf,
    restarts: u32,
}

struct Fleet {
    agents: Vec<AgentProc>,
    controller: String,
    repo: String,
    secret: PathBuf,
    crash_rule: String,
}

impl Fleet {
    fn spawn(&self, n: usize, store: &Path, out: &Path) -> (Child, ChildStdin) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rulebox"))
            .arg("agent")
            .arg("--store")
            .arg(store)
            .args([
                "--events",
                "-",
                "--controller",
                &self.controller,
                "--repo",
                &self.repo,
            ])
            .arg("--enroll-secret-file")
            .arg(&self.secret)
            .args(["--hostname", &format!("ws-{n:03}"), "--region", "eu-west"])
            .args([
                "--checkin-secs",
                "1",
                "--min-wait-ms",
                "300",
                "--max-backoff-secs",
                "2",
                "--request-timeout-secs",
                "10",
                "--health-events",
                "0",
                "--health-secs",
                "1",
                "--health-after-secs",
                "1",
                "--inbox-poll-ms",
                "100",
            ])
            .env("RULEBOX_TEST_CRASH_ON_RULE", &self.crash_rule)
            .stdin(Stdio::piped())
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out)
                    .unwrap(),
            )
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out.with_extension("err"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        (child, stdin)
    }

    /// Restarts every agent that died (its content crashed it).
    fn supervise(&mut self) {
        for i in 0..self.agents.len() {
            if self.agents[i].child.try_wait().unwrap().is_some() {
                let (store, out, n) = {
                    let a = &self.agents[i];
                    (a.store.clone(), a.out.clone(), a.n)
                };
                let (child, stdin) = self.spawn(n, &store, &out);
                let a = &mut self.agents[i];
                a.child = child;
                a._stdin = stdin;
                a.restarts += 1;
            }
        }
    }

    /// Waits (supervising) until `done` holds, at most `limit`.
    fn wait_until(&mut self, limit: Duration, what: &str, mut done: impl FnMut(&Fleet) -> bool) {
        let start = Instant::now();
        loop {
            self.supervise();
            if done(self) {
                return;
            }
            if start.elapsed() >= limit {
                // Every agent that died or abandoned a release, with the end of what it said:
                // the reason is there.
                let mut died = String::new();
                for a in &self.agents {
                    let err = read(&a.out.with_extension("err"));
                    if a.restarts == 0 && !err.contains("abandoned") {
                        continue;
                    }
                    let lines: Vec<&str> = err.lines().collect();
                    let from = lines.len().saturating_sub(8);
                    let tail: Vec<&str> = lines
                        .iter()
                        .enumerate()
                        .filter(|(i, l)| {
                            *i >= from
                                || ["abandoned", "panicked", "fault injection", "error"]
                                    .iter()
                                    .any(|w| l.contains(w))
                        })
                        .map(|(_, l)| *l)
                        .collect();
                    died.push_str(&format!(
                        "\n--- agent {} restarted {} time(s); its errors and last lines:\n{}",
                        a.n,
                        a.restarts,
                        tail.join("\n")
                    ));
                }
                panic!(
                    "timed out waiting for {what}; agent 0: {}{died}",
                    read(&self.agents[0].out.with_extension("err"))
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
    }
}

/// The agent's JSON lines.
fn lines(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has(path: &Path, pred: impl Fn(&Value) -> bool) -> bool {
    lines(path).iter().any(pred)
}

fn store_state(store: &Path) -> Value {
    serde_json::from_str(&read(&store.join("state.json"))).unwrap_or(Value::Null)
}

fn plan(c: &TestContent, release: u64, previous: u64) -> String {
    let ring = |percent| RingPlan {
        percent,
        bake_secs: 1_200,
    };
    let plan = RolloutPlan {
        release,
        previous: Some(previous),
        rings: vec![ring(5.0), ring(25.0), ring(50.0), ring(100.0)],
        // Silence in controller time: 1200 s (the bake; no longer is allowed) is 6 s of wall time
        // at x200, so that an agent on a loaded 2-core machine is not taken for a dead one.
        gates: GateConfig {
            silence_secs: 1_200,
            ..GateConfig::default()
        },
        emergency: false,
        region_order: Vec::new(),
    };
    let path = c.dir().join(format!("plan-{release}.json"));
    std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
    path.display().to_string()
}

fn rollout(c: &TestContent, port: u16, args: &[&str]) -> std::process::Output {
    let url = format!("http://127.0.0.1:{port}");
    let token = c.files.token.display().to_string();
    let mut all = vec![
        "rollout",
        args[0],
        "--controller",
        &url,
        "--token-file",
        &token,
    ];
    all.extend_from_slice(&args[1..]);
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(&all)
        .output()
        .unwrap()
}

fn audit(c: &TestContent, port: u16, kind: &str) -> Vec<Value> {
    let out = rollout(
        c,
        port,
        &["audit", "--kind", kind, "--json", "--limit", "10000"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Replaces `path` atomically (nginx never serves half a write of ours).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Failed fetches of `release` with `class` an agent reported in its event stream.
fn failures(out: &Path, release: u64, class: &str) -> usize {
    lines(out)
        .iter()
        .filter(|v| {
            v["fetch"] == "failed"
                && v["step"] == "release"
                && v["release"] == release
                && v["class"] == class
        })
        .count()
}

/// Ring 0's hosts that reported failed fetches of the current release, as the controller counts
/// them.
fn ring0_fetch_failed(c: &TestContent, port: u16) -> u64 {
    let out = rollout(c, port, &["status", "--json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["status"]["rings"][0]["fetch_failed"].as_u64())
        .unwrap_or(0)
}

/// The repository (nginx) lies about the module release 42 adds: corrupt (one bit off, the signed
/// size) from before the rollout starts, then half of it. Every ring-0 host refuses each with its
/// class, reports it (the controller counts ring 0's failed fetches), installs nothing, keeps the
/// half for the resume. Then the file is made right again.
fn lying_repository(fleet: &mut Fleet, c: &TestContent, port: u16, lie: &Path, right: &[u8]) {
    let n = fleet.agents.len();
    let ring0 = n.div_ceil(20);
    let offered = |f: &Fleet| -> Vec<usize> {
        f.agents
            .iter()
            .filter(|a| has(&a.out, |v| v["fetch"] == "checked_in" && v["offer"] == 42))
            .map(|a| a.n)
            .collect()
    };
    fleet.wait_until(
        Duration::from_secs(90),
        "every ring-0 host to refuse the corrupt module (hash)",
        |f| {
            let o = offered(f);
            o.len() == ring0
                && o.iter()
                    .all(|&i| failures(&f.agents[i].out, 42, "hash") > 0)
        },
    );
    let ring0_hosts = offered(fleet);
    fleet.wait_until(
        Duration::from_secs(30),
        "the controller to count ring 0's failed fetches",
        |_| ring0_fetch_failed(c, port) == ring0 as u64,
    );
    replace(lie, &right[..right.len() / 2]);
    fleet.wait_until(
        Duration::from_secs(60),
        "every ring-0 host to refuse the truncated module (network)",
        |f| {
            ring0_hosts.iter().all(|&i| {
                lines(&f.agents[i].out).iter().any(|v| {
                    v["fetch"] == "failed"
                        && v["release"] == 42
                        && v["class"] == "network"
                        && v["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("truncated"))
                })
            })
        },
    );
    for a in &fleet.agents {
        assert!(
            store_state(&a.store)["current"].is_null(),
            "agent {}: nothing installed from a lying repository",
            a.n
        );
        assert!(
            !has(&a.out, |v| v["lifecycle"] == "installing"
                && v["release"] == 42),
            "agent {}",
            a.n
        );
        assert_eq!(
            failures(&a.out, 42, "hash") > 0,
            ring0_hosts.contains(&a.n),
            "agent {}: only the hosts offered 42 fetched it",
            a.n
        );
    }
    for &i in &ring0_hosts {
        let staged = std::fs::read_dir(fleet.agents[i].store.join("staging/release-42/modules"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .map(|e| e.metadata().unwrap().len())
            .collect::<Vec<_>>();
        assert_eq!(
            staged,
            [right.len() as u64 / 2],
            "agent {i}: the half kept for the resume"
        );
    }
    replace(lie, right);
}

/// Refusals of the agent API, audited: an unenrolled host, a check-in forged under another host's
/// id, a replayed check-in, a wrong enrolment secret.
fn refusals(fleet: &Fleet, c: &TestContent, port: u16) {
    let base = format!("http://127.0.0.1:{port}");
    let mut intruder = FakeAgent::enroll(&base, ENROLL_SECRET, labels("intruder"))
        .unwrap()
        .unwrap();
    intruder.checkin(Vec::new()).unwrap().unwrap();
    let old = intruder.body(Vec::new()).unwrap();
    intruder.checkin(Vec::new()).unwrap().unwrap();
    intruder.checkin(Vec::new()).unwrap().unwrap();
    let sig = intruder.key.sign_checkin(&old);
    let replayed = intruder.send_raw(&intruder.host_id, &sig, &old).unwrap();
    let refused = replayed.expect_err("a replayed check-in is refused");
    assert_eq!(
        (refused.status, refused.body.error),
        (409, ErrorCode::SeqConflict)
    );
    let real: Value =
        serde_json::from_str(&read(&fleet.agents[0].store.join("fetcher/state.json"))).unwrap();
    let real_id = real["host_id"].as_str().unwrap().to_owned();
    let body = intruder.body(Vec::new()).unwrap();
    let sig = intruder.key.sign_checkin(&body);
    let forged = intruder.send_raw(&real_id, &sig, &body).unwrap();
    let refused = forged.expect_err("a check-in forged under another host's id is refused");
    assert_eq!(
        (refused.status, refused.body.error),
        (401, ErrorCode::BadSignature)
    );
    let unknown = intruder
        .send_raw("00000000000000000000000000000000", &sig, &body)
        .unwrap();
    let refused = unknown.expect_err("an unenrolled host is refused");
    assert_eq!(
        (refused.status, refused.body.error),
        (401, ErrorCode::UnknownHost)
    );
    let wrong = FakeAgent::enroll(&base, "not-the-enrolment-secret", labels("intruder-2")).unwrap();
    assert_eq!(wrong.expect_err("a wrong secret is refused").status, 401);
    let audited = audit(c, port, "refused");
    let errors: Vec<&str> = audited
        .iter()
        .filter_map(|e| e["detail"]["error"].as_str())
        .collect();
    for code in [
        "seq_conflict",
        "bad_signature",
        "unknown_host",
        "unauthorized",
    ] {
        assert!(errors.contains(&code), "{code} audited: {audited:?}");
    }
    assert!(
        audited
            .iter()
            .any(|e| e["detail"]["error"] == "bad_signature" && e["detail"]["host_id"] == real_id),
        "the forged check-in is audited under the id it claimed: {audited:?}"
    );
}

/// The current rollout's page in headless Chromium, as the operator sees it: its DOM, and a
/// screenshot kept as `target/test-artifacts/fleet-<db>-<what>.png`. `None` (said once) without
/// Chromium.
fn dashboard(c: &TestContent, port: u16, db: &str, what: &str) -> Option<(i64, String)> {
    let Some(chromium) = testing::chromium() else {
        eprintln!("SKIPPED (dashboard): no Chromium at /usr/bin/chromium (or $RULEBOX_CHROMIUM)");
        return None;
    };
    let base = format!("http://127.0.0.1:{port}");
    let op = OperatorClient::new(&base, &c.token);
    let (status, current) = op.get("/v1/rollouts/current").unwrap();
    assert_eq!(status, 200, "{current}");
    let id = current["id"].as_i64().expect("the rollout's id");
    let page = format!("/ui/rollouts/{id}");
    let dom = testing::browse(&base, &op, &chromium, &page, None).expect("the page in Chromium");
    let (dir, db) = (testing::artifacts(), db.to_lowercase());
    std::fs::write(dir.join(format!("fleet-{db}-{what}.html")), &dom).unwrap();
    let shot = dir.join(format!("fleet-{db}-{what}.png"));
    testing::browse(&base, &op, &chromium, &page, Some(&shot)).expect("a screenshot");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "the screenshot shows a page"
    );
    Some((id, dom))
}

fn is_good(v: &Value, release: u64) -> bool {
    v["lifecycle"] == "good" && v["release"] == release
}

#[test]
fn a_real_fleet_takes_a_good_release_ring_by_ring_and_halts_a_crashing_one_in_ring_0_on_sqlite() {
    let _one_fleet_at_a_time = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    fleet_run(None);
}

#[test]
fn a_real_fleet_takes_a_good_release_ring_by_ring_and_halts_a_crashing_one_in_ring_0_on_postgresql()
{
    let _one_fleet_at_a_time = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pg) = TestPostgres::start(false).unwrap() else {
        eprintln!(
            "SKIPPED: no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) on this machine"
        );
        return;
    };
    fleet_run(Some(&pg.url));
}

/// The two runs share the machine's two cores: one fleet at a time.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The whole story against a controller on `postgres` (a database URL), or on SQLite.
fn fleet_run(postgres: Option<&str>) {
    let n: usize = std::env::var("RULEBOX_E2E_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let c = TestContent::new().unwrap();
    let art = |name: &str| {
        rulebox_example_artifacts::good()
            .find(|a| a.name == name)
            .unwrap()
            .bytes
    };
    c.publish_release(41, &[("office", art("office-shell"))])
        .unwrap();
    c.publish_release(
        42,
        &[
            ("office", art("office-shell")),
            ("lsass", art("lsass-access")),
        ],
    )
    .unwrap();
    // Release 43 adds a rule whose presence makes this test's agents abort when they run it.
    c.publish_release(
        43,
        &[
            ("office", art("office-shell")),
            ("lsass", art("lsass-access")),
            ("run-key", art("run-key")),
        ],
    )
    .unwrap();

    // The module 42 adds: nginx serves it from a file of the test's, which lies for a while.
    let mut added = c.added_modules(42, 41).unwrap();
    assert_eq!(added.len(), 1);
    let (lie_path, right) = added.pop().unwrap();
    let lie_file = c.dir().join("lie.wasm");
    let mut corrupt = right.clone();
    corrupt[right.len() / 2] ^= 1;
    replace(&lie_file, &corrupt);

    let db = match postgres {
        Some(url) => url.to_owned(),
        None => c.sqlite_url("ctl.db"),
    };
    let db_name = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let ctl_port = free_port();
    let ctl = serve(&c, &db, ctl_port);
    let controller = format!("http://127.0.0.1:{ctl_port}");
    let t0 = Instant::now();
    story(
        t0,
        &format!("controller started on {db_name} (controller time x200: a 20 min bake takes 6 s)"),
    );
    let web_port = free_port();
    let mut nginx = if std::env::var_os("RULEBOX_E2E_NO_NGINX").is_some() {
        None
    } else {
        Nginx::start(&c.repo_dir, c.dir(), web_port, Some((&lie_path, &lie_file)))
    };
    let repo = match &nginx {
        Some(_) => format!("http://127.0.0.1:{web_port}"),
        None => {
            story(
                t0,
                "nginx not used (not installed, or RULEBOX_E2E_NO_NGINX): the controller serves the repository at /repo/",
            );
            format!("{controller}/repo")
        }
    };
    let mut fleet = Fleet {
        agents: Vec::new(),
        controller: controller.clone(),
        repo,
        secret: c.files.enroll_secret.clone(),
        crash_rule: "registry-run-key-persistence".to_owned(),
    };
    for i in 0..n {
        let store = c.dir().join(format!("agent-{i:03}"));
        let init = Command::new(env!("CARGO_BIN_EXE_rulebox"))
            .args(["store", "init", "--store"])
            .arg(&store)
            .arg("--root")
            .arg(&c.root_path)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let out = c.dir().join(format!("agent-{i:03}.jsonl"));
        let (child, stdin) = fleet.spawn(i, &store, &out);
        fleet.agents.push(AgentProc {
            n: i,
            child,
            _stdin: stdin,
            store,
            out,
            restarts: 0,
        });
    }
    fleet.wait_until(Duration::from_secs(120), "every agent to enrol", |f| {
        f.agents
            .iter()
            .all(|a| has(&a.out, |v| v["fetch"] == "enrolled"))
    });
    story(
        t0,
        &format!("{n} agent processes enrolled (node keys in their stores)"),
    );
    // A few check-ins after enrolment, so every host counts as active.
    std::thread::sleep(Duration::from_secs(3));

    // A good release: every host, ring by ring.
    let start = rollout(
        &c,
        ctl_port,
        &["start", "--plan", &plan(&c, 42, 41), "--reason", "e2e good"],
    );
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    story(
        t0,
        "rollout of release 42 started: rings of 5%, 25%, 50%, 100%",
    );
    if nginx.is_some() {
        story(
            t0,
            "the repository serves 42's new module corrupt, then cut in half",
        );
        lying_repository(&mut fleet, &c, ctl_port, &lie_file, &right);
        story(
            t0,
            "ring 0 refused the corrupt module (hash) and the half (network), installed nothing; the file is right again",
        );
    } else {
        replace(&lie_file, &right);
        story(
            t0,
            "the lying repository needs nginx: not run (the controller's /repo/ serves the real files)",
        );
    }
    // kill -9 of the controller in the middle of the rollout (ring 1 open), then a restart on the
    // same database: it resumes from there.
    fleet.wait_until(Duration::from_secs(120), "ring 1 to open", |_| {
        audit(&c, ctl_port, "ring_opened").len() >= 2
    });
    let mut ctl = ctl;
    ctl.child.kill().unwrap(); // SIGKILL
    ctl.child.wait().unwrap();
    let t = Instant::now();
    fleet.wait_until(Duration::from_secs(10), "2 s without a controller", |_| {
        t.elapsed() > Duration::from_secs(2)
    });
    drop(ctl);
    story(
        t0,
        "ring 1 open: controller killed with SIGKILL, down for 2 s, restarted on the same database",
    );
    let ctl = serve(&c, &db, ctl_port);
    fleet.wait_until(
        Duration::from_secs(150),
        "release 42 to be GOOD everywhere",
        |f| f.agents.iter().all(|a| has(&a.out, |v| is_good(v, 42))),
    );
    fleet.wait_until(
        Duration::from_secs(60),
        "the rollout of 42 to complete",
        |_| rollout(&c, ctl_port, &["status"]).status.code() == Some(0),
    );
    if let Some((id, dom)) = dashboard(&c, ctl_port, db_name, "complete") {
        assert!(
            dom.contains(r#"data-phase="complete""#),
            "rollout {id}: {dom}"
        );
        let rows = testing::ring_rows(&dom);
        assert_eq!(rows.len(), 4, "four rings on the page");
        for r in &rows {
            assert!(
                r.contains(r#"class="num peak">100%</td>"#),
                "every ring reached 100% on the new release: {r}"
            );
        }
        assert_eq!(
            dom.matches(r#"class="mark-open""#).count(),
            4,
            "each ring's opening marked in the picture"
        );
        story(
            t0,
            "dashboard (Chromium): rollout of 42 complete, every ring at 100%",
        );
    }
    let rings: Vec<u64> = audit(&c, ctl_port, "ring_opened")
        .iter()
        .map(|e| e["detail"]["ring"].as_u64().unwrap())
        .collect();
    assert_eq!(
        rings,
        [0, 1, 2, 3],
        "every ring opened once, in order, across the kill -9"
    );
    let mut offered: Vec<String> = audit(&c, ctl_port, "offer")
        .iter()
        .map(|e| e["detail"].to_string())
        .collect();
    assert_eq!(offered.len(), n, "each host offered 42 once: {offered:?}");
    offered.sort();
    offered.dedup();
    assert_eq!(offered.len(), n);
    story(
        t0,
        "release 42 GOOD on every host; every ring opened once, in order; each host offered it once",
    );
    for a in &fleet.agents {
        let s = store_state(&a.store);
        assert_eq!(s["current"], 42, "agent {}: {s}", a.n);
        assert_eq!(s["last_known_good"], 42, "agent {}: {s}", a.n);
    }
    assert!(fleet.agents.iter().all(|a| a.restarts == 0));

    // nginx stopped for a while: the agents keep running and do not hammer anything.
    if let Some(web) = nginx.as_mut() {
        let before = read(&web.log).lines().count();
        web.stop();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", web_port)).is_err(),
            "nginx is stopped: nothing listens on its port any more"
        );
        let t = Instant::now();
        fleet.wait_until(Duration::from_secs(30), "6 s without nginx", |_| {
            t.elapsed() > Duration::from_secs(6)
        });
        assert!(
            fleet.agents.iter().all(|a| a.restarts == 0),
            "the agents kept running"
        );
        story(
            t0,
            "nginx stopped for 6 s: every agent kept running its content, backing off",
        );
        web.restart(web_port);
        let t = Instant::now();
        fleet.wait_until(Duration::from_secs(30), "the agents to catch up", |_| {
            read(&web.log).lines().count() > before + n && t.elapsed() > Duration::from_secs(2)
        });
        // Each agent fetches timestamp.json once per interval (1 s + jitter), backing off while
        // the server is away: over the whole run, far below a tight loop.
        let errors: usize = fleet
            .agents
            .iter()
            .map(|a| {
                lines(&a.out)
                    .iter()
                    .filter(|v| v["fetch"] == "failed" && v["step"] == "timestamp")
                    .count()
            })
            .max()
            .unwrap();
        assert!(
            errors <= 20,
            "an agent failed {errors} timestamp fetches in 6 s: a tight loop"
        );
        assert!(
            errors >= 1,
            "no agent saw the outage: the repository was not really stopped"
        );
    }

    // A release that crashes the host: halted inside ring 0, reverted once.
    story(
        t0,
        "rollout of release 43 started (it crashes the host when it runs)",
    );
    let start = rollout(
        &c,
        ctl_port,
        &["start", "--plan", &plan(&c, 43, 42), "--reason", "e2e bad"],
    );
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    fleet.wait_until(
        Duration::from_secs(150),
        "the rollout of 43 to halt",
        |_| rollout(&c, ctl_port, &["status"]).status.code() == Some(2),
    );
    fleet.wait_until(
        Duration::from_secs(60),
        "the revert to be published",
        |_| c.repo_dir.join("reverts/43.revert.json").exists(),
    );
    if let Some((id, dom)) = dashboard(&c, ctl_port, db_name, "halted") {
        assert!(
            dom.contains(r#"data-phase="halted""#),
            "rollout {id}: {dom}"
        );
        assert!(dom.contains("HALTED in ring 0"), "{dom}");
        let gates = &dom[dom
            .find(r#"id="failing-gates""#)
            .expect("the failing gates")..];
        let gates = &gates[..gates.find("</ul>").unwrap()];
        assert!(
            gates.contains("<li"),
            "the page names a failing gate: {gates}"
        );
        assert!(
            dom.contains(r#"class="fail">FAIL</td>"#),
            "the gate table shows it"
        );
        let rows = testing::ring_rows(&dom);
        assert_eq!(rows.len(), 4);
        assert!(!rows[0].contains("not opened"), "{}", rows[0]);
        for r in &rows[1..] {
            assert!(r.contains("not opened"), "only ring 0 opened: {r}");
        }
        assert!(dom.contains(r#"class="mark-halt""#), "the halt is marked");
        story(
            t0,
            "dashboard (Chromium): rollout of 43 halted in ring 0, failing gate shown",
        );
    }
    let offered_43: Vec<&AgentProc> = fleet
        .agents
        .iter()
        .filter(|a| has(&a.out, |v| v["fetch"] == "checked_in" && v["offer"] == 43))
        .collect();
    let ring0 = n.div_ceil(20); // 5%, rounded up
    assert!(
        !offered_43.is_empty() && offered_43.len() <= ring0,
        "{} hosts were offered 43; ring 0 holds {ring0}",
        offered_43.len()
    );
    story(
        t0,
        &format!(
            "rollout of 43 halted with ring 0 ({} hosts) only; revert published",
            offered_43.len()
        ),
    );
    let crashed: Vec<usize> = offered_43.iter().map(|a| a.n).collect();
    fleet.wait_until(
        Duration::from_secs(60),
        "the ring-0 hosts to run 42 with 43 bad",
        |f| {
            crashed.iter().all(|&i| {
                let s = store_state(&f.agents[i].store);
                s["current"] == 42
                    && s["bad"]
                        .as_array()
                        .is_some_and(|b| b.contains(&Value::from(43)))
            })
        },
    );
    assert_eq!(
        audit(&c, ctl_port, "revert_published").len(),
        1,
        "the revert is published once"
    );
    for a in &fleet.agents {
        let s = store_state(&a.store);
        assert_eq!(s["current"], 42, "agent {} needs no repair: {s}", a.n);
    }
    story(
        t0,
        "ring-0 hosts back on 42 with 43 marked bad; no host needs repair",
    );
    if nginx.is_some() {
        let resumed = fleet
            .agents
            .iter()
            .filter(|a| {
                has(&a.out, |v| {
                    v["fetch"] == "delivered" && v["release"] == 42 && v["resumed"] == 1
                })
            })
            .count();
        assert_eq!(
            resumed, ring0,
            "the ring-0 hosts resumed the half they kept"
        );
    }
    refusals(&fleet, &c, ctl_port);
    story(
        t0,
        "an unenrolled host, a forged, a replayed check-in and a wrong secret: refused and audited",
    );
    let _ = &ctl.log;
    let _ = std::io::stderr().flush();
}
