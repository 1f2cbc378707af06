//! The fetcher's whole loop, in a real agent with a real store, against a scripted controller and
//! a repository server on 127.0.0.1 that serves the published files, or lies about them when told:
//! `seq` conflicts, a rolled-back `timestamp.json`, a long outage with the report spool full, a
//! server that sends too much, the wrong bytes, half a file, a redirect or a body that never ends,
//! and a root rotation (the real next root, and a forged one).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rulebox_controller::testing::{TestContent, labels};
use rulebox_controlplane_proto::{
    CheckinRequest, CheckinResponse, EnrollResponse, ErrorBody, ErrorCode, FetchFailureClass,
    PROTOCOL_VERSION, ReportKind, repo,
};
use rulebox_release::{add_signature, build_root, declare_role, generate_key, sign_root};
use rulebox_runtime::content::{
    ContentStore, Inbox, OFFER_FORMAT, Offer, RoleName, Signed, StoreLayout, now_unix,
};

use super::testserver::{Reply, Request, answer, ok, serve};
use crate::{
    Agent, AgentConfig, AgentEvent, AgentOutput, Baseline, FetchConfig, FetchEvent, HealthWindow,
    Lifecycle,
};

/// The host id the scripted controller gives.
const HOST: &str = "0123456789abcdef0123456789abcdef";

fn json(status: &str, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap();
    answer(
        status,
        &[
            ("Content-Length", body.len().to_string()),
            ("Content-Type", "application/json".into()),
        ],
        &body,
    )
}

/// What the scripted controller does, and what it saw.
#[derive(Default)]
struct Script {
    /// Every check-in is `503 unavailable` while set.
    down: bool,
    /// The next check-in is `409 seq_conflict` with this `last_seq`.
    conflict: Option<u64>,
    /// The offer in every answer.
    offer: Option<Signed<Offer>>,
    /// Every check-in received (refused ones included).
    checkins: Vec<CheckinRequest>,
}

fn controller(script: Arc<Mutex<Script>>) -> String {
    let (url, _) = serve(move |req, _| {
        let mut s = script.lock().unwrap();
        match req.path.as_str() {
            "/v1/enroll" => json(
                "201 Created",
                &EnrollResponse {
                    protocol: PROTOCOL_VERSION,
                    host_id: HOST.to_owned(),
                    interval_secs: 1,
                },
            ),
            "/v1/checkin" => {
                let error = |status, error, last_seq| {
                    json(
                        status,
                        &ErrorBody {
                            error,
                            message: "scripted".to_owned(),
                            last_seq,
                        },
                    )
                };
                if s.down {
                    return error("503 Service Unavailable", ErrorCode::Unavailable, None);
                }
                let Ok(checkin) = serde_json::from_slice::<CheckinRequest>(&req.body) else {
                    return error("400 Bad Request", ErrorCode::BadRequest, None);
                };
                let seq = checkin.seq;
                s.checkins.push(checkin);
                if let Some(last) = s.conflict.take() {
                    return error("409 Conflict", ErrorCode::SeqConflict, Some(last));
                }
                json(
                    "200 OK",
                    &CheckinResponse {
                        protocol: PROTOCOL_VERSION,
                        ack_seq: seq,
                        interval_secs: 1,
                        offer: s.offer.clone(),
                        reverts: Vec::new(),
                    },
                )
            }
            _ => error_404(),
        }
    });
    url
}

fn error_404() -> Reply {
    answer("404 Not Found", &[("Content-Length", "0".into())], b"")
}

/// A lie told once, for one path, instead of the file.
type Lie = Box<dyn Fn(&Request) -> Reply + Send>;

/// What the repository server serves: the published folder, with lies queued per path and
/// replacements per path; and how often each path was asked for.
struct RepoScript {
    dir: PathBuf,
    lies: HashMap<String, VecDeque<Lie>>,
    replaced: HashMap<String, Vec<u8>>,
    /// Each request per path: the start of the range it asked for.
    hits: HashMap<String, Vec<Option<u64>>>,
}

/// The bytes of `file` from `from` on: `206` with its `Content-Range`, or `200` for all of it.
fn file_reply(bytes: &[u8], from: Option<u64>) -> Reply {
    match from.and_then(|f| usize::try_from(f).ok()) {
        Some(from) if from > 0 && from < bytes.len() => answer(
            "206 Partial Content",
            &[
                ("Content-Length", (bytes.len() - from).to_string()),
                (
                    "Content-Range",
                    format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
                ),
            ],
            &bytes[from..],
        ),
        _ => ok(bytes),
    }
}

fn repository(script: Arc<Mutex<RepoScript>>) -> String {
    let (url, _) = serve(move |req, _| {
        let mut s = script.lock().unwrap();
        s.hits
            .entry(req.path.clone())
            .or_default()
            .push(req.range_from);
        if let Some(lie) = s.lies.get_mut(&req.path).and_then(|q| q.pop_front()) {
            return lie(req);
        }
        if let Some(bytes) = s.replaced.get(&req.path) {
            return ok(bytes);
        }
        match std::fs::read(s.dir.join(req.path.trim_start_matches('/'))) {
            Ok(bytes) => file_reply(&bytes, req.range_from),
            Err(_) => error_404(),
        }
    });
    url
}

/// A store on the content's root, an agent with the fetcher on it, the scripted controller and
/// the repository server; the agent's events are collected.
struct Fixture {
    content: TestContent,
    store: PathBuf,
    _store_dir: tempfile::TempDir,
    ctl: Arc<Mutex<Script>>,
    repo: Arc<Mutex<RepoScript>>,
    events: Arc<Mutex<Vec<AgentEvent>>>,
    agent: Option<Agent>,
}

fn art(name: &str) -> &'static [u8] {
    rulebox_example_artifacts::good()
        .find(|a| a.name == name)
        .unwrap()
        .bytes
}

impl Fixture {
    fn new() -> Fixture {
        let content = TestContent::new().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = store_dir.path().join("store");
        ContentStore::init(&store, &std::fs::read(&content.root_path).unwrap()).unwrap();
        let repo = Arc::new(Mutex::new(RepoScript {
            dir: content.repo_dir.clone(),
            lies: HashMap::new(),
            replaced: HashMap::new(),
            hits: HashMap::new(),
        }));
        Fixture {
            content,
            store,
            _store_dir: store_dir,
            ctl: Arc::new(Mutex::new(Script::default())),
            repo,
            events: Arc::new(Mutex::new(Vec::new())),
            agent: None,
        }
    }

    /// Publishes release `release` of the named example modules, and signs a fresh timestamp.
    fn publish(&self, release: u64, modules: &[&str]) {
        let modules: Vec<(&str, &[u8])> = modules.iter().map(|m| (*m, art(m))).collect();
        self.content.publish_release(release, &modules).unwrap();
        self.sign_timestamp();
    }

    fn sign_timestamp(&self) {
        self.content
            .repo()
            .unwrap()
            .write_timestamp(
                std::slice::from_ref(&self.content.timestamp_key),
                now_unix(),
                3600,
                true,
            )
            .unwrap();
    }

    fn timestamp_bytes(&self) -> Vec<u8> {
        std::fs::read(self.content.repo_dir.join(repo::TIMESTAMP_FILE)).unwrap()
    }

    /// An offer of `release` to this host, signed by the rollout role.
    fn offer(&self, release: u64) -> Signed<Offer> {
        let (bytes, hash) = self.content.repo().unwrap().manifest(release).unwrap();
        let mut envelope = Signed {
            signed: Offer {
                format: OFFER_FORMAT,
                host_id: HOST.to_owned(),
                release,
                manifest_sha256: hash,
                size: bytes.len() as u64,
                issued_unix: now_unix(),
                expires_unix: now_unix() + 900,
            },
            signatures: Vec::new(),
        };
        add_signature(&mut envelope, &self.content.rollout_key.key).unwrap();
        envelope
    }

    fn fetch_config(&self, spool_reports: usize) -> FetchConfig {
        let mut fetch = FetchConfig::new(
            controller(self.ctl.clone()),
            repository(self.repo.clone()),
            "secret",
            labels("ws-test"),
        );
        fetch.interval = Duration::from_secs(1);
        fetch.max_backoff = Duration::from_secs(2);
        fetch.min_wait = Duration::from_millis(50);
        fetch.startup_delay = false;
        fetch.request_timeout = Duration::from_millis(1500);
        fetch.spool_reports = spool_reports;
        fetch
    }

    fn start(&mut self, spool_reports: usize) {
        let mut config = AgentConfig::new(Baseline::from_modules([(
            "office-shell",
            art("office-shell"),
        )]));
        config.store = Some(self.store.clone());
        config.inbox_poll = Duration::from_millis(50);
        config.health = HealthWindow::new(0, Duration::from_millis(200));
        config.fetch = Some(self.fetch_config(spool_reports));
        let (agent, output) = Agent::start(config).unwrap();
        let events = self.events.clone();
        std::thread::spawn(move || collect(output, &events));
        self.agent = Some(agent);
    }

    /// Hands a published release to the inbox, as `rulebox push` does.
    fn push(&self, release: u64) {
        Inbox::new(StoreLayout::new(&self.store).inbox())
            .deliver_bundle(&self.content.dir().join(format!("bundle-{release}")))
            .unwrap();
    }

    fn events(&self) -> Vec<AgentEvent> {
        self.events.lock().unwrap().clone()
    }

    fn fetch_events(&self) -> Vec<FetchEvent> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                AgentEvent::Fetch(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn is_good(&self, release: u64) -> bool {
        self.events().iter().any(
            |e| matches!(e, AgentEvent::Lifecycle(Lifecycle::Good { release: r }) if *r == release),
        )
    }

    fn store(&self) -> ContentStore {
        ContentStore::open_read_only(&self.store).unwrap()
    }

    fn fetcher_state(&self) -> super::identity::FetchState {
        super::identity::Identity::open(&self.store).unwrap().load()
    }

    fn checkins(&self) -> Vec<CheckinRequest> {
        self.ctl.lock().unwrap().checkins.clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            let _ = agent.stop();
        }
    }
}

fn collect(output: AgentOutput, events: &Mutex<Vec<AgentEvent>>) {
    for event in output {
        events.lock().unwrap().push(event);
    }
}

fn wait(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_seq_conflict_moves_seq_past_the_controllers_last_and_the_retry_is_accepted() {
    let mut f = Fixture::new();
    f.publish(1, &["office-shell"]);
    f.ctl.lock().unwrap().conflict = Some(41);
    f.start(100);
    wait(Duration::from_secs(20), "three check-ins", || {
        f.checkins().len() >= 3
    });
    let seqs: Vec<u64> = f.checkins().iter().map(|c| c.seq).collect();
    assert_eq!(seqs[0], 1, "the first check-in of a new host");
    assert_eq!(
        seqs[1], 42,
        "retried at once past the controller's last seq"
    );
    assert_eq!(seqs[2], 43);
    assert!(
        f.fetcher_state().next_seq >= 44,
        "persisted: {:?}",
        f.fetcher_state()
    );
    assert!(
        !f.fetch_events().iter().any(|e| matches!(
            e,
            FetchEvent::Failed {
                step: "checkin",
                ..
            }
        )),
        "a conflict answered by a retry is not a failure: {:?}",
        f.fetch_events()
    );
}

#[test]
fn a_timestamp_below_the_last_version_accepted_is_refused_as_a_rollback() {
    let mut f = Fixture::new();
    f.publish(1, &["office-shell"]);
    let old = f.timestamp_bytes();
    for _ in 0..3 {
        f.sign_timestamp();
    }
    let newest: serde_json::Value = serde_json::from_slice(&f.timestamp_bytes()).unwrap();
    let newest = newest["signed"]["version"].as_u64().unwrap();
    f.start(100);
    wait(Duration::from_secs(20), "the newest timestamp", || {
        f.fetcher_state().timestamp_version == Some(newest)
    });
    // Someone on the path serves an old, validly signed timestamp (freezing the host on old data).
    f.repo
        .lock()
        .unwrap()
        .replaced
        .insert(format!("/{}", repo::TIMESTAMP_FILE), old);
    wait(
        Duration::from_secs(20),
        "the rollback to be refused",
        || {
            f.fetch_events().iter().any(|e| {
            matches!(e, FetchEvent::Failed { step: "timestamp", class: FetchFailureClass::Signature, message, .. }
                if message.contains("older than version"))
        })
        },
    );
    assert_eq!(
        f.fetcher_state().timestamp_version,
        Some(newest),
        "the highest version accepted is kept"
    );
}

#[test]
fn offline_reports_wait_on_disk_bounded_and_the_drop_count_goes_with_the_next_checkin() {
    let mut f = Fixture::new();
    for r in 1..=4 {
        f.publish(
            r,
            if r % 2 == 1 {
                &["office-shell"]
            } else {
                &["office-shell", "lsass-access"]
            },
        );
    }
    f.ctl.lock().unwrap().down = true;
    f.start(3);
    // Offline: releases pushed by hand (air-gapped) are installed and reach GOOD; each makes an
    // `installing` and a `good` report, which wait in the spool.
    for r in 1..=4 {
        f.push(r);
        wait(
            Duration::from_secs(30),
            "the pushed release to be good",
            || f.is_good(r),
        );
    }
    let made = f
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                AgentEvent::Lifecycle(Lifecycle::Installing { .. } | Lifecycle::Good { .. })
            )
        })
        .count() as u64;
    assert_eq!(made, 8);
    let spool: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.store.join("fetcher/spool.json")).expect("the spool is on disk"),
    )
    .unwrap();
    assert_eq!(
        spool["reports"].as_array().unwrap().len(),
        3,
        "bounded: {spool}"
    );
    assert_eq!(spool["dropped"], made - 3, "{spool}");
    assert!(
        f.fetch_events().iter().any(|e| matches!(
            e,
            FetchEvent::Failed {
                step: "checkin",
                class: FetchFailureClass::Status,
                ..
            }
        )),
        "the outage was seen"
    );
    assert_eq!(
        f.store().state().current,
        Some(4),
        "the content runs offline"
    );

    f.ctl.lock().unwrap().down = false;
    wait(Duration::from_secs(20), "two accepted check-ins", || {
        f.checkins().len() >= 2
    });
    let checkins = f.checkins();
    let first = &checkins[0];
    assert_eq!(first.dropped_reports, made - 3);
    let kinds: Vec<&ReportKind> = first.reports.iter().map(|r| &r.kind).collect();
    assert_eq!(kinds.len(), 4, "three spooled and the heartbeat: {kinds:?}");
    assert_eq!(
        kinds[2],
        &ReportKind::Good { release: 4 },
        "the newest kept"
    );
    assert_eq!(kinds[3], &ReportKind::Heartbeat);
    assert_eq!(checkins[1].dropped_reports, 0, "counted once");
    assert_eq!(checkins[1].reports.len(), 1, "only the heartbeat is left");
}

/// Each lie the repository tells about a module of the offered release, in order, and the class
/// the fetcher must give it.
fn lies(module: &[u8]) -> Vec<(Lie, FetchFailureClass)> {
    let size = module.len();
    let bigger = {
        let mut b = module.to_vec();
        b.extend_from_slice(b"more");
        b
    };
    let wrong = {
        let mut w = module.to_vec();
        w[size / 2] ^= 1;
        w
    };
    let (elsewhere, _) = serve({
        let module = module.to_vec();
        move |_, _| ok(&module)
    });
    let elsewhere_url = format!("{elsewhere}/modules/m.wasm");
    let slow = module.to_vec();
    let cut = module.to_vec();
    vec![
        (
            Box::new(move |_: &Request| ok(&bigger)) as Lie,
            FetchFailureClass::TooLarge,
        ),
        (
            Box::new(move |_: &Request| ok(&wrong)),
            FetchFailureClass::Hash,
        ),
        (
            Box::new(move |_: &Request| {
                answer(
                    "302 Found",
                    &[
                        ("Location", elsewhere_url.clone()),
                        ("Content-Length", "0".into()),
                    ],
                    b"",
                )
            }),
            FetchFailureClass::Status,
        ),
        // Slow-loris: the right bytes from the start, one every 50 ms; the request's deadline
        // cuts it (what arrived is kept: it is the file's start).
        (
            Box::new(move |_: &Request| {
                let Reply::Raw(head) = answer(
                    "200 OK",
                    &[("Content-Length", slow.len().to_string())],
                    &slow[..16],
                ) else {
                    unreachable!()
                };
                Reply::Trickle(head, Duration::from_millis(50), slow[16..80].to_vec())
            }),
            FetchFailureClass::Network,
        ),
        // Half of the rest, then the connection closes.
        (
            Box::new(move |req: &Request| {
                let from = usize::try_from(req.range_from.unwrap_or(0)).unwrap();
                let rest = &cut[from..];
                answer(
                    if from > 0 {
                        "206 Partial Content"
                    } else {
                        "200 OK"
                    },
                    &[
                        ("Content-Length", rest.len().to_string()),
                        (
                            "Content-Range",
                            format!("bytes {from}-{}/{}", cut.len() - 1, cut.len()),
                        ),
                    ],
                    &rest[..rest.len() / 2],
                )
            }),
            FetchFailureClass::Network,
        ),
    ]
}

#[test]
fn a_repository_that_lies_is_refused_by_class_retried_with_backoff_and_the_running_content_kept() {
    let mut f = Fixture::new();
    f.publish(1, &["office-shell"]);
    f.publish(2, &["office-shell", "lsass-access"]);
    let new = f.content.added_modules(2, 1).unwrap();
    assert_eq!(new.len(), 1);
    let (path, module) = new.into_iter().next().unwrap();
    let told = lies(&module);
    let classes: Vec<FetchFailureClass> = told.iter().map(|(_, c)| *c).collect();
    f.repo
        .lock()
        .unwrap()
        .lies
        .insert(path.clone(), told.into_iter().map(|(l, _)| l).collect());
    f.start(100);
    f.push(1);
    wait(Duration::from_secs(30), "release 1 to be good", || {
        f.is_good(1)
    });
    f.ctl.lock().unwrap().offer = Some(f.offer(2));

    wait(Duration::from_secs(90), "release 2 to be good", || {
        f.is_good(2)
    });
    let failed: Vec<(FetchFailureClass, u64)> = f
        .fetch_events()
        .into_iter()
        .filter_map(|e| match e {
            FetchEvent::Failed {
                step: "release",
                release: Some(2),
                class,
                retry_in_ms,
                ..
            } => Some((class, retry_in_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        classes,
        "each lie refused with its class: {failed:?}"
    );
    // Retried with backoff: never sooner than the floor, and one request per attempt (the lies,
    // then the resumed download that succeeds).
    assert!(failed.iter().all(|(_, wait)| *wait >= 50), "{failed:?}");
    let hits = f.repo.lock().unwrap().hits[&path].clone();
    assert_eq!(hits.len(), classes.len() + 1, "{hits:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        f.repo.lock().unwrap().hits[&path].len(),
        hits.len(),
        "a release delivered is not downloaded again while the store installs it"
    );
    assert!(
        f.fetch_events()
            .iter()
            .any(|e| matches!(e, FetchEvent::Delivered { release: 2, resumed } if *resumed == 1)),
        "the last download resumed what the broken ones left: {:?}",
        f.fetch_events()
    );
    // Nothing of release 2 was installed before its bytes were right: release 1 ran until then.
    let events = f.events();
    let installing_2 = events
        .iter()
        .position(|e| {
            matches!(
                e,
                AgentEvent::Lifecycle(Lifecycle::Installing { release: 2, .. })
            )
        })
        .unwrap();
    let last_failure = events
        .iter()
        .rposition(|e| {
            matches!(
                e,
                AgentEvent::Fetch(FetchEvent::Failed {
                    release: Some(2),
                    ..
                })
            )
        })
        .unwrap();
    assert!(last_failure < installing_2);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AgentEvent::Alert(crate::Alert::UpdateRefused { .. }))),
        "the store never saw a bad bundle"
    );
    // Every failure reached the controller with its class, at the next check-in.
    let reported: Vec<FetchFailureClass> = f
        .checkins()
        .iter()
        .flat_map(|c| c.reports.clone())
        .filter_map(|r| match r.kind {
            ReportKind::FetchFailed {
                release: 2, class, ..
            } => Some(class),
            _ => None,
        })
        .collect();
    assert_eq!(reported, classes);
}

/// Root version 2 of the content's root: the same keys and roles, signed by `signer`.
fn root_v2(content: &TestContent, signer: &rulebox_release::KeyFile) -> Vec<u8> {
    root_v2_with(content, signer, &content.timestamp_key)
}

/// Root version 2 signed by `signer`, with `timestamp` as the timestamp role's key.
fn root_v2_with(
    content: &TestContent,
    signer: &rulebox_release::KeyFile,
    timestamp: &rulebox_release::OnlineKey,
) -> Vec<u8> {
    let now = now_unix();
    let mut root = build_root(2, now + 365 * 86_400, &[signer.public.as_str()], 1).unwrap();
    for (role, key) in [
        (RoleName::Rollout, &content.rollout_key),
        (RoleName::Timestamp, timestamp),
    ] {
        declare_role(
            &mut root,
            role,
            &[key.key.public.as_str()],
            1,
            now + 90 * 86_400,
        )
        .unwrap();
    }
    sign_root(&mut root, signer).unwrap();
    serde_json::to_vec(&root).unwrap()
}

#[test]
fn a_timestamp_naming_a_newer_root_makes_the_fetcher_follow_the_chain_and_a_forged_root_is_refused()
{
    let mut f = Fixture::new();
    f.publish(1, &["office-shell"]);
    // Root 2, signed by the root's own key (so it chains), published; timestamp.json names it.
    let real = root_v2(&f.content, &f.content.root_key);
    f.content.repo().unwrap().publish_root(&real).unwrap();
    f.sign_timestamp();
    // First, the repository path serves a root 2 signed by a key root 1 does not know.
    let root_path = format!("/{}", repo::root_file(2));
    let forged = root_v2(&f.content, &generate_key().unwrap());
    f.repo
        .lock()
        .unwrap()
        .replaced
        .insert(root_path.clone(), forged);
    f.start(100);
    wait(
        Duration::from_secs(20),
        "the forged root to be refused",
        || {
            f.fetch_events().iter().any(|e| {
            matches!(e, FetchEvent::Failed { step: "timestamp", class: FetchFailureClass::Signature, message, .. }
                if message.contains("root/2.root.json"))
        })
        },
    );
    assert_eq!(f.store().root().version, 1, "the trusted root is kept");
    assert!(f.fetcher_state().timestamp_version.is_none());
    assert!(
        !f.fetch_events()
            .iter()
            .any(|e| matches!(e, FetchEvent::RootFetched { .. }))
    );

    // Then the real one: followed, persisted by the store, and the timestamp accepted on it.
    f.repo.lock().unwrap().replaced.remove(&root_path);
    wait(Duration::from_secs(20), "the store to trust root 2", || {
        f.store().root().version == 2
    });
    assert_eq!(
        std::fs::read(StoreLayout::new(&f.store).root()).unwrap(),
        real,
        "the exact signed bytes"
    );
    wait(
        Duration::from_secs(20),
        "the timestamp to be accepted",
        || f.fetcher_state().timestamp_version.is_some(),
    );
    wait(Duration::from_secs(5), "the root_fetched event", || {
        f.fetch_events()
            .iter()
            .any(|e| matches!(e, FetchEvent::RootFetched { version: 2 }))
    });
    let hits = f.repo.lock().unwrap().hits.get(&root_path).map(Vec::len);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        f.repo.lock().unwrap().hits.get(&root_path).map(Vec::len),
        hits,
        "once trusted, the root is not fetched again"
    );
}

#[test]
fn heartbeats_carry_the_events_detections_and_mean_evaluation_time_since_the_last_one() {
    use rulebox_runtime::sdk::{Event, EventData, ProcessStart};
    let mut f = Fixture::new();
    f.publish(1, &["office-shell"]);
    f.start(100);
    wait(Duration::from_secs(20), "a first check-in", || {
        !f.checkins().is_empty()
    });
    let sender = f.agent.as_ref().unwrap().sender();
    for (line, parent) in (1..).zip(["WINWORD.EXE", "explorer.exe", "EXCEL.EXE", "WINWORD.EXE"]) {
        let mut body = ProcessStart::default();
        body.image = r"C:\Windows\System32\cmd.exe".into();
        body.parent_image = format!(r"C:\Program Files\{parent}").into();
        sender
            .send(
                Event::new(EventData::ProcessStart(body)),
                crate::EventOrigin::new("test", line),
            )
            .unwrap();
    }
    let detections = || {
        f.events()
            .iter()
            .filter(|e| matches!(e, AgentEvent::Detection(_)))
            .count() as u64
    };
    wait(Duration::from_secs(10), "the detections", || {
        detections() >= 2
    });
    let heartbeats = || -> Vec<rulebox_controlplane_proto::HealthReport> {
        f.checkins()
            .iter()
            .flat_map(|c| c.reports.clone())
            .filter(|r| r.kind == ReportKind::Heartbeat)
            .collect()
    };
    wait(
        Duration::from_secs(20),
        "heartbeats with the 4 events",
        || heartbeats().iter().map(|h| h.events).sum::<u64>() == 4,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let beats = heartbeats();
    assert_eq!(
        beats.iter().map(|h| h.events).sum::<u64>(),
        4,
        "each counted once"
    );
    assert_eq!(
        beats.iter().map(|h| h.detections).sum::<u64>(),
        detections(),
        "every detection counted once: {beats:?}"
    );
    for h in &beats {
        if h.events > 0 {
            assert!(
                h.mean_latency_us > 0.0 && h.mean_latency_us.is_finite(),
                "{h:?}"
            );
        } else {
            assert_eq!((h.detections, h.mean_latency_us), (0, 0.0), "{h:?}");
        }
    }
}

#[test]
fn a_timestamp_signed_by_a_rotated_timestamp_key_is_accepted_once_the_next_root_is_followed() {
    let mut f = Fixture::new();
    f.publish(1, &["office-shell"]);
    // Root 2 replaces the timestamp role's key; timestamp.json is signed by the new key only, so
    // root 1 cannot verify it until the chain is followed.
    let rotated = rulebox_release::generate_online_key(RoleName::Timestamp).unwrap();
    let root = root_v2_with(&f.content, &f.content.root_key, &rotated);
    let repo = f.content.repo().unwrap();
    repo.publish_root(&root).unwrap();
    repo.write_timestamp(std::slice::from_ref(&rotated), now_unix(), 3600, true)
        .unwrap();
    f.start(100);
    wait(Duration::from_secs(20), "the store to trust root 2", || {
        f.store().root().version == 2
    });
    wait(
        Duration::from_secs(20),
        "the timestamp to be accepted",
        || f.fetcher_state().timestamp_version.is_some(),
    );
}
