//! The endpoint agent through its public API (`rulebox_agent::Agent`), in process, checked on its
//! typed `AgentEvent`s: each rule an agent must keep, the one activation path shared with the fleet
//! simulation and the release gate, the event socket's hardening, and drops counted and reported.
//!
//! Bundles here are signed by hand (as content forced past the release gate): the tests are about
//! what the endpoint does with signed content, not about the gate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rulebox_agent::{
    Agent, AgentConfig, AgentEvent, AgentOutput, AgentSummary, Alert, Baseline, BaselineReason,
    EventOrigin, HealthWindow, Lifecycle,
};
use rulebox_release::{BundleOptions, KeyFile, ModuleSource};
use rulebox_runtime::content::{
    ContentStore, Inbox, Manifest, REVERT_FORMAT, Revert, Signed, now_unix,
};
use rulebox_runtime::{Limits, Reason};
use rulebox_sdk::Event;

use crate::common::process;

/// A signing key, its content store, and a scratch folder.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: KeyFile,
    pub(crate) store: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = rulebox_release::generate_key().unwrap();
        let mut root =
            rulebox_release::build_root(1, now_unix() + 86_400, &[key.public.as_str()], 1).unwrap();
        rulebox_release::sign_root(&mut root, &key).unwrap();
        let store = dir.path().join("store");
        ContentStore::init(&store, &serde_json::to_vec(&root).unwrap()).unwrap();
        Fixture { dir, key, store }
    }

    /// A bundle of release `release` with `modules` (example artifact names, or `(name, bytes)`),
    /// `edit` applied to its options, signed by hand.
    pub(crate) fn bundle_with(
        &self,
        release: u64,
        modules: Vec<ModuleSource>,
        edit: impl FnOnce(&mut BundleOptions),
    ) -> PathBuf {
        let out = self
            .dir
            .path()
            .join(format!("bundle-{release}-{}", unique()));
        let mut options = BundleOptions::new(release, now_unix() + 86_400, "test");
        edit(&mut options);
        rulebox_release::build_bundle(&out, &modules, &options).unwrap();
        self.resign(&out, |_| {});
        out
    }

    pub(crate) fn bundle(&self, release: u64, names: &[&str]) -> PathBuf {
        self.bundle_with(release, artifacts(names), |_| {})
    }

    /// Edits the manifest of `bundle` and signs it again.
    pub(crate) fn resign(&self, bundle: &Path, edit: impl FnOnce(&mut Manifest)) {
        let path = bundle.join("manifest.json");
        let mut envelope: Signed<Manifest> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut envelope.signed);
        envelope.signatures.clear();
        rulebox_release::add_signature(&mut envelope, &self.key).unwrap();
        std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    }

    /// Installs `bundle` in the store, boots it and marks it GOOD, as an agent that ran it would have.
    pub(crate) fn install_good(&self, bundle: &Path) {
        let mut store = ContentStore::open(&self.store).unwrap();
        let release = store.install(bundle, now_unix()).unwrap().release;
        store.begin_boot(3).unwrap();
        store.mark_good(release).unwrap();
    }

    pub(crate) fn inbox(&self) -> Inbox {
        Inbox::new(self.store.join("inbox"))
    }

    /// A signed revert of `release`.
    pub(crate) fn revert(&self, release: u64, to: Option<u64>) -> Vec<u8> {
        let mut envelope = Signed {
            signed: Revert {
                format: REVERT_FORMAT,
                release,
                to,
                issued_unix: now_unix(),
                expires_unix: now_unix() + 3600,
                reason: "gate failed".to_owned(),
            },
            signatures: Vec::new(),
        };
        rulebox_release::add_signature(&mut envelope, &self.key).unwrap();
        serde_json::to_vec(&envelope).unwrap()
    }

    pub(crate) fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(baseline());
        config.store = Some(self.store.clone());
        config.inbox_poll = Duration::from_millis(20);
        // Long enough that no test reaches GOOD by accident.
        config.health = HealthWindow::new(u64::MAX, Duration::from_secs(3600));
        config
    }

    pub(crate) fn state(&self) -> rulebox_runtime::content::StoreState {
        ContentStore::open_read_only(&self.store)
            .unwrap()
            .state()
            .clone()
    }
}

fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn artifacts(names: &[&str]) -> Vec<ModuleSource> {
    names
        .iter()
        .map(|name| {
            let a = rulebox_example_artifacts::by_name(name).unwrap();
            ModuleSource::Bytes {
                name: a.name.to_owned(),
                bytes: a.bytes.to_vec(),
            }
        })
        .collect()
}

pub(crate) fn baseline() -> Baseline {
    Baseline::from_modules(rulebox_example_artifacts::good().map(|a| (a.name, a.bytes)))
}

/// Office spawning a shell: `office-spawns-shell` detects it.
pub(crate) fn office_shell() -> Event<'static> {
    process(
        r"C:\Windows\System32\cmd.exe",
        "cmd.exe /c whoami",
        r"C:\Program Files\Office\WINWORD.EXE",
    )
}

/// A running agent and everything it said so far.
pub(crate) struct Running {
    pub(crate) agent: Agent,
    output: AgentOutput,
    pub(crate) seen: Vec<AgentEvent>,
    line: u64,
}

impl Running {
    pub(crate) fn start(config: AgentConfig) -> Running {
        let (agent, output) = Agent::start(config).unwrap();
        Running {
            agent,
            output,
            seen: Vec::new(),
            line: 0,
        }
    }

    pub(crate) fn send(&mut self, event: Event<'static>) {
        self.line += 1;
        self.agent
            .sender()
            .send(event, EventOrigin::new("test", self.line))
            .unwrap();
    }

    /// Waits (at most 60 s) for an event matching `want`; returns it.
    pub(crate) fn wait(&mut self, what: &str, want: impl Fn(&AgentEvent) -> bool) -> AgentEvent {
        if let Some(e) = self.seen.iter().find(|e| want(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(event)) = self.output.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(event.clone());
                if want(&event) {
                    return event;
                }
            }
        }
        panic!("never saw {what}; saw:\n{}", self.lines());
    }

    pub(crate) fn lines(&self) -> String {
        self.seen
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the agent, reading the output meanwhile; returns the summary and every event.
    pub(crate) fn stop(self) -> (AgentSummary, Vec<AgentEvent>) {
        self.stop_with(Agent::stop)
    }

    /// Stops the agent as if it had died: the current start counts as failed.
    pub(crate) fn stop_failed(self) -> (AgentSummary, Vec<AgentEvent>) {
        self.stop_with(Agent::stop_failed)
    }

    fn stop_with(
        self,
        stop: fn(Agent) -> Result<AgentSummary, rulebox_agent::AgentError>,
    ) -> (AgentSummary, Vec<AgentEvent>) {
        let Running {
            agent,
            output,
            mut seen,
            ..
        } = self;
        let reader = std::thread::spawn(move || output.collect::<Vec<_>>());
        let summary = stop(agent).unwrap();
        seen.extend(reader.join().unwrap());
        (summary, seen)
    }
}

pub(crate) fn activated(release: Option<u64>) -> impl Fn(&AgentEvent) -> bool {
    move |e| matches!(e, AgentEvent::Lifecycle(Lifecycle::Activated { release: r, .. }) if *r == release)
}

pub(crate) fn detections_by(events: &[AgentEvent], rule: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Detection(d) if d.rule.id == rule))
        .count()
}

#[test]
fn a_release_installed_from_the_inbox_records_starting_before_it_runs_so_a_crash_after_the_update_counts()
 {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let mut config = f.config();
    config.boot_attempts = 2;
    let mut agent = Running::start(config.clone());
    agent.wait("release 1 active", activated(Some(1)));
    f.inbox()
        .deliver_bundle(&f.bundle(2, &["office-shell", "run-key"]))
        .unwrap();
    agent.wait("the install", |e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Installing {
                release: 2,
                previous: Some(1)
            })
        )
    });
    agent.wait("STARTING for release 2", |e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Starting {
                release: 2,
                attempt: 1,
                ..
            })
        )
    });
    agent.wait("release 2 active", activated(Some(2)));
    let starting = f.state().boot.starting.unwrap();
    assert_eq!((starting.release, starting.attempts), (2, 1));
    // The agent dies before release 2 reaches GOOD (a stop that does not end cleanly). The start
    // after the update is attempt 2 (the hot update counted as the first), and the next start
    // abandons it.
    drop(agent.stop_failed());
    let mut agent = Running::start(config.clone());
    agent.wait("attempt 2", |e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Starting {
                release: 2,
                attempt: 2,
                ..
            })
        )
    });
    drop(agent.stop_failed());
    let mut agent = Running::start(config);
    agent.wait("the fallback", |e| {
        matches!(
            e,
            AgentEvent::Alert(Alert::ReleaseAbandoned {
                from: 2,
                to: Some(1),
                ..
            })
        )
    });
    agent.wait("release 1 active", activated(Some(1)));
    drop(agent.stop());
    let state = f.state();
    assert_eq!(state.current, Some(1));
    assert!(state.bad.contains(&2));
}

/// A module with the id of `office-spawns-shell`, version 2.0.0, subscribed to file creation only,
/// that traps on every event it gets. Hand-written WebAssembly (text assembled here).
fn trapping_office_shell_v2() -> Vec<u8> {
    use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION, pack};
    use rulebox_sdk::{EventKind, EventKinds, RuleMetadata, Severity};
    let meta = postcard::to_allocvec(&RuleMetadata {
        schema_version: SCHEMA_VERSION,
        id: "office-spawns-shell".into(),
        name: "Office application spawns a shell (broken 2.0.0)".into(),
        version: "2.0.0".into(),
        severity: Severity::High,
        subscriptions: EventKinds::of(&[EventKind::FileCreate]),
    })
    .unwrap();
    let escaped: String = meta.iter().map(|b| format!("\\{b:02x}")).collect();
    let packed = pack(1024, u32::try_from(meta.len()).unwrap()).cast_signed();
    wat::parse_str(format!(
        r#"(module
  (memory (export "memory") 2)
  (data (i32.const 1024) "{escaped}")
  (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
  (func (export "rulebox_metadata") (result i64) i64.const {packed})
  (func (export "rulebox_input") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 65536))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "rulebox_on_event") (param i32) (result i64) unreachable))"#
    ))
    .unwrap()
}

fn file_create() -> Event<'static> {
    crate::common::empty(rulebox_sdk::EventKind::FileCreate)
}

fn restored(e: &AgentEvent) -> bool {
    matches!(e, AgentEvent::Alert(Alert::PreviousVersionRestored { rule_version, .. }) if rule_version == "1.0.0")
}

#[test]
fn the_health_window_records_good_and_settles_the_rule_set() {
    let broken = || {
        vec![ModuleSource::Bytes {
            name: "office-shell-2".to_owned(),
            bytes: trapping_office_shell_v2(),
        }]
    };
    // Before the window passes, the replaced version is the fallback: a quarantined new version
    // is replaced by it at once.
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let mut agent = Running::start(f.config());
    agent.wait("release 1 active", activated(Some(1)));
    f.inbox()
        .deliver_bundle(&f.bundle_with(2, broken(), |_| {}))
        .unwrap();
    agent.wait("release 2 active", activated(Some(2)));
    agent.send(file_create());
    agent.wait("the previous version restored", restored);
    drop(agent.stop());

    // With the window passed: GOOD recorded, last-known-good moved, and the rule set settled (the
    // replaced version is gone, so nothing is restored).
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let mut config = f.config();
    config.health = HealthWindow::new(3, Duration::ZERO);
    let mut agent = Running::start(config);
    // Release 1 reaches GOOD again at this start (3 events).
    for _ in 0..3 {
        agent.send(office_shell());
    }
    agent.wait("GOOD for release 1", |e| {
        matches!(e, AgentEvent::Lifecycle(Lifecycle::Good { release: 1 }))
    });
    f.inbox()
        .deliver_bundle(&f.bundle_with(2, broken(), |_| {}))
        .unwrap();
    agent.wait("release 2 active", activated(Some(2)));
    for _ in 0..3 {
        agent.send(office_shell());
    }
    agent.wait("GOOD for release 2", |e| {
        matches!(e, AgentEvent::Lifecycle(Lifecycle::Good { release: 2 }))
    });
    assert_eq!(f.state().last_known_good, Some(2));
    assert_eq!(f.state().boot.starting, None);
    agent.send(file_create());
    agent.wait("the quarantine", |e| {
        matches!(e, AgentEvent::Alert(Alert::RuleQuarantined { rule_version, .. }) if rule_version == "2.0.0")
    });
    let (_, seen) = agent.stop();
    assert!(
        !seen.iter().any(restored),
        "settled: nothing to restore: {seen:#?}"
    );
}

#[test]
fn a_quarantined_rule_version_is_written_back_and_not_loaded_again() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell", "panics"]));
    let mut agent = Running::start(f.config());
    agent.send(office_shell());
    agent.wait("the quarantine", |e| {
        matches!(e, AgentEvent::Alert(Alert::RuleQuarantined { rule_id, reason: Reason::GuestPanic, .. }) if rule_id == "faulty-panics")
    });
    let (_, seen) = agent.stop();
    assert_eq!(detections_by(&seen, "office-spawns-shell"), 1);
    let listed = ContentStore::open_read_only(&f.store).unwrap();
    assert!(
        listed
            .quarantined()
            .iter()
            .any(|q| q.rule_id == "faulty-panics" && q.rule_version == "1.0.0"),
        "written back: {:?}",
        listed.quarantined()
    );

    let mut agent = Running::start(f.config());
    agent.wait("the skipped rule", |e| {
        matches!(e, AgentEvent::Lifecycle(Lifecycle::RuleSkipped { rule_id, .. }) if rule_id == "faulty-panics")
    });
    agent.send(office_shell());
    let (summary, seen) = agent.stop();
    assert_eq!(summary.processed, 1);
    assert_eq!(detections_by(&seen, "office-spawns-shell"), 1);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, AgentEvent::Alert(Alert::RuleQuarantined { .. }))),
        "the quarantined version never ran again: {seen:#?}"
    );
}

#[test]
fn a_module_that_is_not_its_manifest_entry_is_not_loaded_and_dropped_rules_are_removed() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell", "run-key"]));
    let mut agent = Running::start(f.config());
    agent.wait("release 1 active", activated(Some(1)));
    // Release 2 drops run-key, and its entry for office-shell misstates the version.
    let two = f.bundle(2, &["office-shell", "lsass-access"]);
    f.resign(&two, |m| {
        let entry = m
            .rules
            .iter_mut()
            .find(|r| r.id == "office-spawns-shell")
            .unwrap();
        entry.version = "9.9.9".to_owned();
    });
    f.inbox().deliver_bundle(&two).unwrap();
    let event = agent.wait("release 2 active", activated(Some(2)));
    let AgentEvent::Lifecycle(Lifecycle::Activated {
        active,
        removed,
        not_loaded,
        ..
    }) = event
    else {
        unreachable!()
    };
    // run-key removed; office-shell removed too, since its only entry is refused.
    assert_eq!(
        (active, removed, not_loaded),
        (1, 2, 1),
        "{}",
        agent.lines()
    );
    agent.wait("the mismatch", |e| {
        matches!(e, AgentEvent::Alert(Alert::ManifestMismatch { rule_version, module_rule_version, .. })
            if rule_version == "9.9.9" && module_rule_version == "1.0.0")
    });
    agent.send(office_shell());
    let (summary, seen) = agent.stop();
    assert_eq!(summary.processed, 1);
    assert_eq!(
        detections_by(&seen, "office-spawns-shell"),
        0,
        "a module the manifest misstates never runs"
    );
}

#[test]
fn reverts_are_taken_before_bundles_hidden_entries_are_skipped_and_refused_ones_moved_aside() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let inbox = f.inbox();
    // Waiting before the agent starts: release 2, its signed withdrawal (named to sort after the
    // bundle), a hidden delivery of release 3, and a forged revert.
    let two = inbox
        .deliver_bundle(&f.bundle(2, &["office-shell", "run-key"]))
        .unwrap();
    inbox
        .deliver_revert("zz-withdraw-2", &f.revert(2, Some(1)))
        .unwrap();
    let hidden = inbox.dir().join(".push-release-3");
    std::fs::rename(
        inbox
            .deliver_bundle(&f.bundle(3, &["office-shell"]))
            .unwrap(),
        &hidden,
    )
    .unwrap();
    inbox.deliver_revert("forged", b"{\"signed\":{}}").unwrap();

    let mut agent = Running::start(f.config());
    agent.wait("the bundle refused", |e| {
        matches!(e, AgentEvent::Alert(Alert::UpdateRefused { .. }))
    });
    let (_, seen) = agent.stop();
    let position = |want: &dyn Fn(&AgentEvent) -> bool| seen.iter().position(want);
    let reverted = position(&|e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Reverted {
                release: 2,
                was_current: false,
                ..
            })
        )
    })
    .expect("the revert was applied");
    let refused = position(&|e| {
        matches!(e, AgentEvent::Alert(Alert::UpdateRefused { bundle, error, .. })
            if *bundle == two.file_name().unwrap().to_string_lossy() && error.contains("marked bad"))
    })
    .expect("the withdrawn release was refused");
    assert!(reverted < refused, "the revert came first");
    assert!(
        seen.iter().any(|e| matches!(e, AgentEvent::Alert(Alert::RevertRefused { file, .. }) if file == "forged.revert.json")),
        "{seen:#?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, AgentEvent::Lifecycle(Lifecycle::Installing { .. }))),
        "nothing was installed: {seen:#?}"
    );
    let state = f.state();
    assert_eq!(state.current, Some(1));
    assert!(state.bad.contains(&2));
    // The hidden delivery is untouched; the refused entries are moved aside, never taken again.
    assert!(hidden.join("manifest.json").is_file());
    let mut names: Vec<String> = std::fs::read_dir(inbox.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with(".push-release-3"), "{names:?}");
    assert!(
        names[1..].iter().all(|n| n.starts_with(".refused-")),
        "{names:?}"
    );
    assert!(inbox.scan().unwrap().is_empty());
}

#[test]
fn the_module_cache_lives_in_the_store_cache_folder() {
    let f = Fixture::new();
    let bundle = f.bundle(1, &["office-shell", "run-key"]);
    f.install_good(&bundle);
    let mut agent = Running::start(f.config());
    agent.wait("release 1 active", activated(Some(1)));
    drop(agent.stop());
    let cache = f.store.join("cache");
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let manifest = rulebox_runtime::content::check_bundle_structure(
        &bundle,
        &rulebox_runtime::content::BundleLimits::default(),
    )
    .unwrap();
    for (entry, _) in manifest.modules() {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&entry.sha256) && n.ends_with(".cwasm")),
            "{} is cached: {names:?}",
            entry.id
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}

#[test]
fn running_expired_content_raises_an_alert() {
    let f = Fixture::new();
    let now = now_unix();
    let bundle = f.bundle_with(1, artifacts(&["office-shell"]), |o| {
        o.created_unix = Some(now - 100);
        o.expires_unix = now - 10;
    });
    // Installed while it was still valid.
    let mut store = ContentStore::open(&f.store).unwrap();
    store.install(&bundle, now - 50).unwrap();
    drop(store);
    let mut agent = Running::start(f.config());
    agent.wait("the expiry alert", |e| {
        matches!(e, AgentEvent::Alert(Alert::ContentExpired { release: 1, expires_unix }) if *expires_unix == now - 10)
    });
    agent.send(office_shell());
    let (_, seen) = agent.stop();
    assert_eq!(
        detections_by(&seen, "office-spawns-shell"),
        1,
        "expired content keeps running"
    );
}

#[test]
fn a_manifest_that_lowers_a_rules_fuel_is_applied_by_the_agent_the_simulation_and_the_validator() {
    const FUEL: u64 = 100;
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let lowered = f.bundle_with(2, artifacts(&["office-shell"]), |o| {
        o.limits = BTreeMap::from([(
            "office-spawns-shell".to_owned(),
            Limits {
                fuel_per_event: FUEL,
                ..Limits::default()
            },
        )]);
    });

    // The agent: a hot update to the same module under the lowered fuel.
    let mut agent = Running::start(f.config());
    agent.wait("release 1 active", activated(Some(1)));
    agent.send(office_shell());
    f.inbox().deliver_bundle(&lowered).unwrap();
    agent.wait("release 2 active", activated(Some(2)));
    agent.send(office_shell());
    agent.wait("out of fuel", |e| {
        matches!(
            e,
            AgentEvent::Alert(Alert::RuleQuarantined {
                reason: Reason::OutOfFuel,
                ..
            })
        )
    });
    let (_, seen) = agent.stop();
    assert_eq!(
        detections_by(&seen, "office-spawns-shell"),
        1,
        "release 1 detected, release 2 ran out of fuel: {seen:#?}"
    );

    // A real host of the fleet simulation.
    let runtime = crate::common::runtime();
    let rt = runtime.clone();
    let (root, dir) = (
        std::fs::read(f.store.join("root.json")).unwrap(),
        f.dir.path().join("sim-store"),
    );
    let bundle = lowered.clone();
    let run = runtime.run_sandboxed(move |thread| {
        let mut store = ContentStore::init(&dir, &root).unwrap();
        let verified = store.install(&bundle, now_unix()).unwrap().bundle;
        let mut runner =
            rulebox_fleet_sim::real::RealRunner::new(&rt, thread, Default::default()).unwrap();
        runner.run_content(&mut store, &verified).unwrap()
    });
    assert_eq!(run.fuel_per_event.get("office-spawns-shell"), Some(&FUEL));
    assert_eq!(run.quarantined, 1);

    // The release gate.
    let options = rulebox_validate::Options {
        generated_per_kind: 2,
        ..Default::default()
    };
    let report = rulebox_validate::validate_bundle(&lowered, &options, &mut |_| {}).unwrap();
    let rule = &report.rules[0];
    assert_eq!(rule.fuel.budget, FUEL);
    assert_eq!(
        rule.fault.as_ref().map(|f| f.reason.as_str()),
        Some("out_of_fuel"),
        "{:?}",
        rule.failures
    );
    assert!(!report.passed);
}

#[test]
fn try_send_on_a_full_queue_drops_counts_and_reports() {
    let mut config = AgentConfig::new(baseline());
    config.queue = 1;
    config.output_queue = 1;
    let (agent, output) = Agent::start(config).unwrap();
    // Nobody reads the output yet: the sandbox thread soon waits on it, and the queue fills.
    let events = agent.sender();
    let mut dropped = 0;
    for line in 0..200 {
        if events
            .try_send(office_shell(), EventOrigin::new("burst", line))
            .is_err()
        {
            dropped += 1;
        }
    }
    assert!(dropped > 0, "the queue of one must overflow");
    let reader = std::thread::spawn(move || output.collect::<Vec<_>>());
    let summary = agent.stop().unwrap();
    let seen = reader.join().unwrap();
    assert_eq!(summary.dropped, dropped);
    assert_eq!(summary.received + summary.dropped, 200);
    assert_eq!(summary.processed, summary.received);
    let reported: u64 = seen
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Alert(Alert::EventsDropped { dropped, .. }) => Some(*dropped),
            _ => None,
        })
        .sum();
    assert_eq!(reported, dropped, "every drop is reported");
}

#[test]
fn every_agent_event_has_a_versioned_json_form_and_terminal_safe_text() {
    let (agent, output) = Agent::start(AgentConfig::new(baseline())).unwrap();
    let events = agent.sender();
    events
        .report_unreadable(
            &EventOrigin::new("evil\u{1b}[2Jsource", 7),
            &"bad \u{9b}record",
        )
        .unwrap();
    events
        .send(office_shell(), EventOrigin::new("test", 8))
        .unwrap();
    let reader = std::thread::spawn(move || output.collect::<Vec<_>>());
    agent.stop().unwrap();
    let seen = reader.join().unwrap();
    assert!(matches!(
        seen.first(),
        Some(AgentEvent::Lifecycle(Lifecycle::Baseline {
            reason: BaselineReason::SafeMode
        }))
    ));
    for event in &seen {
        let line = event.to_json_line();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["format"], rulebox_agent::OUTPUT_FORMAT, "{line}");
        let kind = value["type"].as_str().unwrap();
        match event {
            AgentEvent::Detection(d) => {
                assert_eq!(kind, "detection");
                assert_eq!(value["rule_id"], d.rule.id.as_str());
                assert_eq!(value["event"]["line"], 8);
            }
            AgentEvent::Alert(a) => {
                assert_eq!(kind, "alert");
                assert_eq!(value["alert"], a.name());
                assert_eq!(value["severity"], a.severity().name());
            }
            AgentEvent::Lifecycle(_) => {
                assert_eq!(kind, "lifecycle");
                assert!(value["lifecycle"].is_string(), "{line}");
            }
            _ => unreachable!("a kind of event this test does not know"),
        }
        for text in [line, event.to_string()] {
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{text:?}"
            );
        }
    }
    let unreadable = seen
        .iter()
        .find(|e| matches!(e, AgentEvent::Alert(Alert::EventUnreadable { .. })))
        .unwrap();
    assert!(
        unreadable.to_string().contains("evil\\u{1b}[2Jsource"),
        "{unreadable}"
    );
    assert_eq!(detections_by(&seen, "office-spawns-shell"), 1);
}

#[test]
fn a_transport_delivers_through_the_inbox_and_observes_lifecycle_events() {
    struct Once {
        bundle: Option<PathBuf>,
        seen: std::sync::mpsc::Sender<AgentEvent>,
    }
    impl rulebox_agent::Transport for Once {
        fn poll(&mut self, inbox: &Inbox) -> Result<(), rulebox_agent::TransportError> {
            if let Some(bundle) = self.bundle.take() {
                inbox.deliver_bundle(&bundle)?;
            }
            Ok(())
        }
        fn observe(&mut self, event: &AgentEvent) {
            let _ = self.seen.send(event.clone());
        }
    }
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let (tx, observed) = std::sync::mpsc::channel();
    let transport = Once {
        bundle: Some(f.bundle(2, &["office-shell", "run-key"])),
        seen: tx,
    };
    let mut config = f.config();
    config.health = HealthWindow::new(1, Duration::ZERO);
    let (agent, output) = Agent::start_with_transport(config, Box::new(transport)).unwrap();
    let reader = std::thread::spawn(move || output.collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while !got
        .iter()
        .any(|e| matches!(e, AgentEvent::Lifecycle(Lifecycle::Good { release: 2 })))
    {
        assert!(Instant::now() < deadline, "no GOOD for release 2: {got:#?}");
        if let Ok(e) = observed.recv_timeout(Duration::from_millis(100)) {
            got.push(e);
        }
        if got.iter().any(|e| {
            matches!(
                e,
                AgentEvent::Lifecycle(Lifecycle::Installing { release: 2, .. })
            )
        }) {
            let _ = agent
                .sender()
                .try_send(office_shell(), EventOrigin::new("test", 1));
        }
    }
    agent.stop().unwrap();
    reader.join().unwrap();
    assert!(got.iter().all(|e| !e.is_detection()));
    assert_eq!(f.state().last_known_good, Some(2));
}

#[cfg(unix)]
mod socket {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use rulebox_agent::{SocketAccess, SocketSource};
    use rulebox_runtime::events::ReadLimits;

    use super::*;

    const LINE: &str = r#"{"host":"h","pid":1,"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Office\\WINWORD.EXE"}}}"#;

    #[test]
    fn the_event_socket_is_private_and_refuses_an_oversize_record_without_losing_the_next() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sock");
        // Something that is not a socket is never replaced.
        std::fs::write(&path, b"precious").unwrap();
        let (agent, output) = Agent::start(AgentConfig::new(baseline())).unwrap();
        let limits = ReadLimits {
            max_record_bytes: 64 << 10,
            ..ReadLimits::default()
        };
        assert!(matches!(
            SocketSource::bind(&path, SocketAccess::default(), limits, agent.sender()),
            Err(rulebox_agent::SocketError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_file(&path).unwrap();

        let socket =
            SocketSource::bind(&path, SocketAccess::default(), limits, agent.sender()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "only the agent's own user (and root) may connect"
        );
        let mut conn = UnixStream::connect(&path).unwrap();
        // 16 MiB of one record, then a good one.
        let chunk = format!("{{\"host\":\"{}", "x".repeat(1 << 20));
        conn.write_all(chunk.as_bytes()).unwrap();
        let filler = vec![b'y'; 1 << 20];
        for _ in 0..15 {
            conn.write_all(&filler).unwrap();
        }
        conn.write_all(b"\"}\n").unwrap();
        conn.write_all(LINE.as_bytes()).unwrap();
        conn.write_all(b"\n").unwrap();
        drop(conn);
        let reader = std::thread::spawn(move || output.collect::<Vec<_>>());
        // The connection is read to its end before the agent stops.
        let deadline = Instant::now() + Duration::from_secs(60);
        while agent.summary().received < 1 {
            assert!(Instant::now() < deadline, "the good record never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        socket.stop();
        assert!(!path.exists(), "the socket is removed when stopped");
        let summary = agent.stop().unwrap();
        let seen = reader.join().unwrap();
        assert_eq!((summary.received, summary.unreadable), (1, 1), "{seen:#?}");
        assert!(
            seen.iter().any(
                |e| matches!(e, AgentEvent::Alert(Alert::EventUnreadable { line: 1, error, .. })
                if error.contains("over the limit"))
            ),
            "{seen:#?}"
        );
        assert_eq!(detections_by(&seen, "office-spawns-shell"), 1);
    }

    /// The child half of `a_socket_peer_with_another_uid_is_refused_and_counted`: connects to the
    /// socket named by `RULEBOX_TEST_SOCKET` and writes one event. Does nothing when run on its own.
    #[test]
    #[ignore = "run as a child process under another uid"]
    fn child_writes_one_event_to_the_socket() {
        let Some(path) = std::env::var_os("RULEBOX_TEST_SOCKET") else {
            return;
        };
        let mut conn = UnixStream::connect(path).unwrap();
        // The agent may close the connection before this is written: that is the point.
        let _ = writeln!(conn, "{LINE}");
    }

    #[test]
    fn a_socket_peer_with_another_uid_is_refused_and_counted() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        if !is_root() {
            eprintln!(
                "a_socket_peer_with_another_uid_is_refused_and_counted: skipped: needs root to run a child under another uid"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("events.sock");
        let (agent, output) = Agent::start(AgentConfig::new(baseline())).unwrap();
        // A mode that lets the kernel admit anyone: the peer check is what refuses.
        let mut access = SocketAccess::default();
        access.mode = Some(0o666);
        let socket =
            SocketSource::bind(&path, access, ReadLimits::default(), agent.sender()).unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "agent::socket::child_writes_one_event_to_the_socket",
                "--ignored",
                "--test-threads=1",
            ])
            .env("RULEBOX_TEST_SOCKET", &path)
            // (std drops root's supplementary groups when it changes the uid.)
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the child connected and wrote");
        // The agent's own user is let in.
        let mut conn = UnixStream::connect(&path).unwrap();
        writeln!(conn, "{LINE}").unwrap();
        drop(conn);
        let reader = std::thread::spawn(move || output.collect::<Vec<_>>());
        let deadline = Instant::now() + Duration::from_secs(60);
        while agent.summary().received < 1 || agent.summary().peers_refused < 1 {
            assert!(Instant::now() < deadline, "{:?}", agent.summary());
            std::thread::sleep(Duration::from_millis(20));
        }
        socket.stop();
        let summary = agent.stop().unwrap();
        let seen = reader.join().unwrap();
        assert_eq!((summary.received, summary.peers_refused), (1, 1));
        assert!(
            seen.iter().any(|e| matches!(
                e,
                AgentEvent::Alert(Alert::PeerRefused {
                    uid: Some(65534),
                    ..
                })
            )),
            "{seen:#?}"
        );
        assert_eq!(detections_by(&seen, "office-spawns-shell"), 1);
    }

    fn is_root() -> bool {
        // The effective uid, without another dependency: the owner of a file this process creates.
        use std::os::unix::fs::MetadataExt;
        let probe = tempfile::NamedTempFile::new().unwrap();
        std::fs::metadata(probe.path()).unwrap().uid() == 0
    }
}
