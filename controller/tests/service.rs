//! The controller service over real HTTP on loopback, on real SQLite, and on a real PostgreSQL
//! server when the machine has one (the test starts it in a temporary folder; without
//! `/usr/lib/postgresql/*/bin/initdb` the PostgreSQL tests say they skipped). Agents are played by
//! the test through the protocol crate; every offer and revert they receive is verified against
//! the root as a host would.

use std::time::{Duration, Instant};

use rulebox_controller::testing::{
    ENROLL_SECRET, FakeAgent, INTERNAL_SECRET, OperatorClient, TestContent, TestPostgres,
    enroll_raw, labels, report,
};
use rulebox_controller::{RunningController, SqliteSync};
use rulebox_controlplane_proto::{
    EnrollRequest, ErrorCode, HealthReport, PROTOCOL_VERSION, ReportKind,
};
use rulebox_rollout::{GateConfig, RingPlan, RolloutPlan};
use rulebox_runtime::content::{Root, load_trusted_root, verify_offer_envelope, verify_revert};
use serde_json::{Value, json};

/// Controller time runs this many times as fast as the wall clock: a 20-minute bake is 2 s.
const SCALE: u32 = 600;

enum Db {
    Sqlite,
    Postgres,
}

struct Harness {
    content: TestContent,
    root: Root,
    rt: tokio::runtime::Runtime,
    running: Option<RunningController>,
    base: String,
    op: OperatorClient,
    _pg: Option<TestPostgres>,
}

fn harness(db: Db) -> Option<Harness> {
    let content = TestContent::new().unwrap();
    let (url, pg) = match db {
        Db::Sqlite => (content.sqlite_url("controller.db"), None),
        Db::Postgres => match TestPostgres::start(false).unwrap() {
            Some(pg) => (pg.url.clone(), Some(pg)),
            None => {
                eprintln!(
                    "SKIPPED: no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) on this machine"
                );
                return None;
            }
        },
    };
    let old = [("office", rulebox_example_artifacts::OFFICE_SHELL.bytes)];
    let new = [
        ("office", rulebox_example_artifacts::OFFICE_SHELL.bytes),
        ("lsass", rulebox_example_artifacts::LSASS_ACCESS.bytes),
    ];
    content.publish_release(41, &old).unwrap();
    content.publish_release(42, &new).unwrap();
    let mut config = content.config(url, SCALE).unwrap();
    config.sqlite_sync = SqliteSync::Normal;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt.block_on(rulebox_controller::start(config)).unwrap();
    let base = format!("http://{}", running.addr());
    let root = load_trusted_root(&content.root_path).unwrap();
    Some(Harness {
        op: OperatorClient::new(&base, &content.token),
        content,
        root,
        rt,
        running: Some(running),
        base,
        _pg: pg,
    })
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

/// Rings of 5, 25, 50 and 100% of the fleet, each baking exactly the default floor (20 minutes).
fn plan(release: u64) -> RolloutPlan {
    let ring = |percent| RingPlan {
        percent,
        bake_secs: 1_200,
    };
    RolloutPlan {
        release,
        previous: Some(41),
        rings: vec![ring(5.0), ring(25.0), ring(50.0), ring(100.0)],
        gates: GateConfig::default(),
        emergency: false,
        region_order: Vec::new(),
    }
}

fn fleet(h: &Harness, n: usize) -> Vec<FakeAgent> {
    (0..n)
        .map(|i| {
            let mut a = FakeAgent::enroll(&h.base, ENROLL_SECRET, labels(&format!("ws-{i:03}")))
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

fn start_rollout(h: &Harness, release: u64) -> i64 {
    let (status, body) =
        h.op.post(
            "/v1/rollouts",
            &json!({ "plan": plan(release), "reason": "weekly content" }),
        )
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// How a played agent behaves once it runs the new release.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Reports GOOD, then healthy heartbeats.
    Healthy,
    /// Reports GOOD, then heartbeats with a quarantined rule.
    Quarantines,
    /// Never reports again (it crashed at boot); its clock is a year ahead before that.
    GoesSilentWithAWrongClock,
}

/// What the played fleet saw.
#[derive(Default)]
struct Seen {
    offered: Vec<String>,
    reverted: Vec<String>,
}

/// One round: every agent checks in once and acts on the answer as a host would (offers and
/// reverts verified against the root first).
fn round(h: &Harness, agents: &mut [FakeAgent], behaviour: Behaviour, seen: &mut Seen) {
    let now = rulebox_runtime::content::now_unix();
    for a in agents.iter_mut() {
        if behaviour == Behaviour::GoesSilentWithAWrongClock && a.state.release == Some(42) {
            continue;
        }
        let mut reports = Vec::new();
        if a.state.release == Some(42) {
            let quarantined = u32::from(behaviour == Behaviour::Quarantines);
            reports.push(report(ReportKind::Heartbeat, Some(42), quarantined));
        } else {
            reports.push(a.report(ReportKind::Heartbeat));
        }
        let answer = a.checkin(reports).unwrap().unwrap();
        for revert in &answer.reverts {
            let bytes = serde_json::to_vec(revert).unwrap();
            let r = verify_revert(&bytes, &h.root, now).unwrap();
            if a.state.release == Some(r.release) {
                a.state.release = r.to;
                let left = a.report(ReportKind::Reverted {
                    release: r.release,
                    to: r.to,
                });
                a.state.bad.push(r.release);
                a.checkin(vec![left]).unwrap().unwrap();
                seen.reverted.push(a.host_id.clone());
            } else if !a.state.bad.contains(&r.release) {
                a.state.bad.push(r.release);
            }
        }
        if let Some(offer) = &answer.offer {
            let o = verify_offer_envelope(offer, &h.root, &a.host_id, now).unwrap();
            let manifest = std::fs::read(
                h.content
                    .repo_dir
                    .join(rulebox_controlplane_proto::repo::manifest_file(o.release)),
            )
            .unwrap();
            assert_eq!(manifest.len() as u64, o.size);
            seen.offered.push(a.host_id.clone());
            let installing = a.report(ReportKind::Installing { release: o.release });
            a.state.release = Some(o.release);
            let mut good = report(ReportKind::Good { release: o.release }, Some(o.release), 0);
            if behaviour == Behaviour::GoesSilentWithAWrongClock {
                good.at_unix = now + 365 * 86_400;
            }
            a.checkin(vec![installing, good]).unwrap().unwrap();
        }
    }
}

fn view(h: &Harness, id: i64) -> Value {
    let (status, body) = h.op.get(&format!("/v1/rollouts/{id}")).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn phase(v: &Value) -> String {
    let p = &v["status"]["phase"];
    p.as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default()
}

fn drive_until(
    h: &Harness,
    agents: &mut [FakeAgent],
    id: i64,
    behaviour: Behaviour,
    seen: &mut Seen,
    done: impl Fn(&Value) -> bool,
    limit: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        round(h, agents, behaviour, seen);
        let v = view(h, id);
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit(h: &Harness, id: i64, kind: &str) -> Vec<Value> {
    let (status, body) =
        h.op.get(&format!("/v1/audit?rollout={id}&kind={kind}&limit=10000"))
            .unwrap();
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn good_release_reaches_every_ring_in_order(db: Db) {
    let Some(h) = harness(db) else { return };
    let mut agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let mut seen = Seen::default();
    let v = drive_until(
        &h,
        &mut agents,
        id,
        Behaviour::Healthy,
        &mut seen,
        |v| phase(v) == "complete",
        // A liveness bound, not a speed target: about 12 s on an idle machine, several times
        // that with every core busy.
        Duration::from_secs(180),
    );
    // Every host took it and confirmed GOOD; every ring opened once, in order.
    let rings = v["status"]["rings"].as_array().unwrap();
    let sizes: Vec<u64> = rings.iter().map(|r| r["hosts"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [1, 4, 5, 10]);
    for r in rings {
        assert_eq!(r["took"], r["hosts"], "{v:#}");
        assert_eq!(r["good"], r["hosts"], "{v:#}");
    }
    let opened: Vec<u64> = audit(&h, id, "ring_opened")
        .iter()
        .map(|e| e["detail"]["ring"].as_u64().unwrap())
        .collect();
    assert_eq!(opened, [0, 1, 2, 3]);
    assert_eq!(audit(&h, id, "complete").len(), 1);
    assert_eq!(
        audit(&h, id, "offer").len(),
        20,
        "one first-offer record per host"
    );
    assert!(audit(&h, id, "gate_evaluation").len() >= 4);
    // An offer went to each host once it ran nothing newer, and never again once it did.
    seen.offered.sort();
    seen.offered.dedup();
    assert_eq!(seen.offered.len(), 20);
    assert!(seen.reverted.is_empty());
}

#[test]
fn a_good_release_reaches_every_ring_in_order_on_sqlite() {
    good_release_reaches_every_ring_in_order(Db::Sqlite);
}

#[test]
fn a_good_release_reaches_every_ring_in_order_on_postgres() {
    good_release_reaches_every_ring_in_order(Db::Postgres);
}

fn quarantine_in_ring_0_halts_and_publishes_one_revert(db: Db) {
    let Some(h) = harness(db) else { return };
    let mut agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let mut seen = Seen::default();
    let v = drive_until(
        &h,
        &mut agents,
        id,
        Behaviour::Quarantines,
        &mut seen,
        |v| phase(v) == "halted",
        Duration::from_secs(30),
    );
    let halted = &v["status"]["phase"]["halted"];
    assert_eq!(halted["ring"], 0, "{v:#}");
    assert_eq!(halted["reverted"], true);
    assert!(
        halted["failures"][0]
            .as_str()
            .unwrap()
            .contains("quarantine")
    );
    // Only ring 0's host was ever offered the release.
    assert_eq!(seen.offered.len(), 1, "{:?}", seen.offered);
    // A few more rounds: the revert reaches the host that took it, and nobody is offered again.
    let v = drive_until(
        &h,
        &mut agents,
        id,
        Behaviour::Quarantines,
        &mut seen,
        |v| v["status"]["rings"][0]["reverted"] == 1,
        Duration::from_secs(20),
    );
    assert_eq!(seen.offered.len(), 1);
    assert_eq!(seen.reverted, seen.offered);
    assert_eq!(v["offered"], json!([1, 0, 0, 0]));
    // Exactly one revert: one audit record, one published file, listed in timestamp.json.
    assert_eq!(audit(&h, id, "halt").len(), 1);
    assert_eq!(audit(&h, id, "revert").len(), 1);
    let start = Instant::now();
    while audit(&h, id, "revert_published").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "revert never published"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reverts: Vec<_> = std::fs::read_dir(h.content.repo_dir.join("reverts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(reverts, ["42.revert.json"]);
    let ts = std::fs::read(h.content.repo_dir.join("timestamp.json")).unwrap();
    let ts = rulebox_runtime::content::verify_timestamp(
        &ts,
        &h.root,
        rulebox_runtime::content::now_unix(),
        None,
    )
    .unwrap();
    assert_eq!(ts.reverts.len(), 1);
    assert_eq!(ts.reverts[0].release, 42);
    // A reverted release cannot resume.
    let (status, body) =
        h.op.post(
            &format!("/v1/rollouts/{id}/resume"),
            &json!({ "reason": "try again" }),
        )
        .unwrap();
    assert_eq!(status, 409, "{body}");
}

#[test]
fn a_quarantine_in_ring_0_halts_and_publishes_one_revert_on_sqlite() {
    quarantine_in_ring_0_halts_and_publishes_one_revert(Db::Sqlite);
}

#[test]
fn a_quarantine_in_ring_0_halts_and_publishes_one_revert_on_postgres() {
    quarantine_in_ring_0_halts_and_publishes_one_revert(Db::Postgres);
}

#[test]
fn silence_is_measured_with_the_controllers_clock_not_the_hosts() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let mut agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let mut seen = Seen::default();
    // The canary reports GOOD stamped a year ahead by its own clock, then never again.
    let v = drive_until(
        &h,
        &mut agents,
        id,
        Behaviour::GoesSilentWithAWrongClock,
        &mut seen,
        |v| phase(v) == "halted",
        Duration::from_secs(30),
    );
    let failure = v["status"]["phase"]["halted"]["failures"][0]
        .as_str()
        .unwrap();
    assert!(failure.starts_with("silence"), "{failure}");
    assert_eq!(seen.offered.len(), 1);
}

#[test]
fn enrolment_needs_the_secret_and_internal_hosts_need_the_internal_one() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let refused = FakeAgent::enroll(&h.base, "not-the-secret-at-all-0000", labels("a"))
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body.error, ErrorCode::Unauthorized);
    let mut internal = labels("b");
    internal.vendor_internal = true;
    let refused = FakeAgent::enroll(&h.base, ENROLL_SECRET, internal.clone())
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.status, 403);
    FakeAgent::enroll(&h.base, INTERNAL_SECRET, internal)
        .unwrap()
        .unwrap();
    // Terminal escapes in a label are refused.
    let refused = FakeAgent::enroll(&h.base, ENROLL_SECRET, labels("x\u{1b}[2J"))
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.body.error, ErrorCode::BadRequest);
    // The same node key enrolled again keeps its host id.
    let a = FakeAgent::enroll(&h.base, ENROLL_SECRET, labels("c"))
        .unwrap()
        .unwrap();
    let again = enroll_raw(
        &h.base,
        &EnrollRequest {
            protocol: PROTOCOL_VERSION,
            secret: ENROLL_SECRET.to_owned(),
            public_key: a.key.public_hex(),
            labels: labels("c-renamed"),
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(again.host_id, a.host_id);
    let refused = enroll_raw(
        &h.base,
        &EnrollRequest {
            protocol: 2,
            secret: ENROLL_SECRET.to_owned(),
            public_key: a.key.public_hex(),
            labels: labels("c"),
        },
    )
    .unwrap()
    .unwrap_err();
    assert_eq!(refused.body.error, ErrorCode::UnsupportedProtocol);
}

fn reports_stored(h: &Harness) -> i64 {
    let svc = h.running.as_ref().unwrap().service().clone();
    h.rt.block_on(async move {
        let row: (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM reports")
            .fetch_one(svc.store.pool())
            .await
            .unwrap();
        row.0
    })
}

#[test]
fn a_forged_or_replayed_checkin_is_refused_and_a_retry_gets_the_same_answer() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let mut agents = fleet(&h, 2);
    let (a, b) = agents.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let hb: HealthReport = a.report(ReportKind::Heartbeat);
    let body = a.body(vec![hb]).unwrap();
    let sig = a.key.sign_checkin(&body);

    // Another host's key signing for this host; a body changed after signing; an unknown host.
    let forged = b.key.sign_checkin(&body);
    let err = a.send_raw(&a.host_id, &forged, &body).unwrap().unwrap_err();
    assert_eq!((err.status, err.body.error), (401, ErrorCode::BadSignature));
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|&c| c == b'1').unwrap();
    tampered[pos] = b'9';
    let err = a
        .send_raw(&a.host_id, &sig, &tampered)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.body.error, ErrorCode::BadSignature);
    let err = a
        .send_raw(&"0".repeat(32), &sig, &body)
        .unwrap()
        .unwrap_err();
    assert_eq!((err.status, err.body.error), (401, ErrorCode::UnknownHost));
    // Nothing in the body can name a host: an extra field is refused (after the signature).
    let named = br#"{"protocol":1,"seq":9,"host_id":"x","state":{"release":null,"last_known_good":null,"bad":[]},"reports":[],"dropped_reports":0}"#;
    let err = a
        .send_raw(&a.host_id, &a.key.sign_checkin(named), named)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.body.error, ErrorCode::BadRequest);

    // Accepted once; the same request again (a retry) gets the same answer and stores nothing.
    let before = reports_stored(&h);
    let first = a.send_raw(&a.host_id, &sig, &body).unwrap().unwrap();
    assert_eq!(reports_stored(&h), before + 1);
    let retry = a.send_raw(&a.host_id, &sig, &body).unwrap().unwrap();
    assert_eq!(retry, first);
    assert_eq!(reports_stored(&h), before + 1);
    // The same seq with another body, and an older seq (a replay), are refused as conflicts.
    let other = a.body(vec![]).unwrap();
    let err = a
        .send_raw(&a.host_id, &a.key.sign_checkin(&other), &other)
        .unwrap()
        .unwrap_err();
    assert_eq!((err.status, err.body.error), (409, ErrorCode::SeqConflict));
    assert_eq!(err.body.last_seq, Some(a.seq));
    a.seq += 1;
    a.checkin(vec![]).unwrap().unwrap();
    let err = a.send_raw(&a.host_id, &sig, &body).unwrap().unwrap_err();
    assert_eq!(err.body.error, ErrorCode::SeqConflict);
    assert_eq!(reports_stored(&h), before + 1);
}

#[test]
fn the_bake_floor_the_operator_credential_and_publication_are_enforced() {
    let Some(h) = harness(Db::Sqlite) else { return };
    fleet(&h, 3);
    // A plan file that lowers its own minimum and bakes the canary for 2 s.
    let mut quick = plan(42);
    quick.gates.min_bake_secs = 1;
    quick.gates.heartbeat_secs = 1;
    quick.gates.silence_secs = 2;
    quick.rings[0].bake_secs = 2;
    let (status, body) =
        h.op.post("/v1/rollouts", &json!({ "plan": quick, "reason": "fast" }))
            .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at least 1200 s"),
        "{body}"
    );
    // Without the credential, or with another, nothing happens.
    let stranger = OperatorClient::new(&h.base, "0123456789abcdef0123456789abcdef");
    let (status, body) = stranger
        .post("/v1/rollouts", &json!({ "plan": plan(42), "reason": "x" }))
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = stranger.get("/v1/rollouts").unwrap();
    assert_eq!(status, 401);
    // A release that is not published is refused.
    let (status, body) =
        h.op.post("/v1/rollouts", &json!({ "plan": plan(43), "reason": "x" }))
            .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not published"),
        "{body}"
    );
    let (_, list) = h.op.get("/v1/rollouts").unwrap();
    assert_eq!(list, json!([]));
}

#[test]
fn an_operator_halt_stops_offers_and_resume_goes_on() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let mut agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let (status, body) =
        h.op.post(
            &format!("/v1/rollouts/{id}/halt"),
            &json!({ "reason": "dashboard looks odd" }),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["phase"]["halted"]["by"], "alice");
    let mut seen = Seen::default();
    for _ in 0..5 {
        round(&h, &mut agents, Behaviour::Healthy, &mut seen);
    }
    assert!(seen.offered.is_empty(), "no offer while halted");
    let (status, body) =
        h.op.post(
            &format!("/v1/rollouts/{id}/resume"),
            &json!({ "reason": "false alarm" }),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    drive_until(
        &h,
        &mut agents,
        id,
        Behaviour::Healthy,
        &mut seen,
        |v| v["status"]["rings"][1]["opened"] == true,
        Duration::from_secs(30),
    );
    let halts = audit(&h, id, "halt");
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0]["actor"], "alice");
    assert_eq!(halts[0]["reason"], "dashboard looks odd");
    assert_eq!(audit(&h, id, "resume")[0]["reason"], "false alarm");
    // While one rollout is in progress, another cannot start.
    let (status, _) =
        h.op.post("/v1/rollouts", &json!({ "plan": plan(43), "reason": "x" }))
            .unwrap();
    assert!(status == 409 || status == 422);
}

#[test]
fn one_controller_at_a_time_holds_the_lease_and_a_standby_takes_over() {
    let Some(mut h) = harness(Db::Sqlite) else {
        return;
    };
    let config = {
        let mut c = h
            .content
            .config(h.content.sqlite_url("controller.db"), SCALE)
            .unwrap();
        c.sqlite_sync = SqliteSync::Normal;
        c
    };
    let standby = h.rt.block_on(rulebox_controller::start(config)).unwrap();
    let standby_op = OperatorClient::new(&format!("http://{}", standby.addr()), &h.content.token);
    let active = |op: &OperatorClient| op.get("/v1/controller").unwrap().1["active"] == true;
    // Never both, and one of them within a few ticks. Which one is not fixed: the first usually
    // holds it, but on a loaded machine a stall past the 1 s lease hands it to the standby, which
    // is the lease doing its job (CI saw it once with chromium and PostgreSQL tests alongside).
    let start = Instant::now();
    let first_holds = loop {
        let (first, second) = (active(&h.op), active(&standby_op));
        assert!(!(first && second), "both controllers report the lease");
        if first != second {
            break first;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no controller took the lease"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The holder stops (giving the lease up); the other takes over.
    let first = h.running.take().unwrap();
    let (holder, other, other_op) = if first_holds {
        (first, standby, &standby_op)
    } else {
        (standby, first, &h.op)
    };
    h.rt.block_on(holder.shutdown());
    let start = Instant::now();
    while !active(other_op) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the standby never took over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    h.rt.block_on(other.shutdown());
}

#[path = "service/bus.rs"]
mod bus;
#[path = "service/dashboard.rs"]
mod dashboard;
