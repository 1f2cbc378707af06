//! The endpoint agent against a hostile host: another process or user holding its store, a store
//! others may write, a full disk (a real one: a small tmpfs, where mounting is permitted), clean
//! restarts and quiet hosts, content in which no rule loads, content that expires while it runs,
//! reverts swapped for FIFOs or links, and a transport fed unsigned bundles. Each test shows the
//! attack refused: the agent always runs content (a release or its baseline) and says why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rulebox_agent::{AgentEvent, Alert, BaselineReason, HealthWindow, Lifecycle};
use rulebox_runtime::content::{ContentStore, MAX_REFUSED_KEPT, Manifest, now_unix};

use crate::agent::{Fixture, Running, activated, artifacts, detections_by, office_shell};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn store_unavailable(e: &AgentEvent) -> bool {
    matches!(e, AgentEvent::Alert(Alert::StoreUnavailable { .. }))
}

fn on_baseline(reason: BaselineReason) -> impl Fn(&AgentEvent) -> bool {
    move |e| matches!(e, AgentEvent::Lifecycle(Lifecycle::Baseline { reason: r }) if *r == reason)
}

fn good(release: u64) -> impl Fn(&AgentEvent) -> bool {
    move |e| matches!(e, AgentEvent::Lifecycle(Lifecycle::Good { release: r }) if *r == release)
}

fn store_failed(needle: &'static str) -> impl Fn(&AgentEvent) -> bool {
    move |e| matches!(e, AgentEvent::Alert(Alert::StoreFailed { operation, .. }) if operation.contains(needle))
}

/// The names in a folder.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_agent_whose_store_another_process_holds_runs_the_baseline_and_takes_the_store_when_freed() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    // Another process has the store (here: a handle in this process, a lock of its own).
    let holder = ContentStore::open(&f.store).unwrap();
    let mut agent = Running::start(f.config());
    let alert = agent.wait("the store_unavailable alert", store_unavailable);
    assert!(alert.to_string().contains("in use"), "{alert}");
    agent.wait(
        "the baseline",
        on_baseline(BaselineReason::StoreUnavailable),
    );
    agent.wait("the baseline active", activated(None));
    // Never nothing: the baseline detects.
    agent.send(office_shell());
    agent.wait(
        "a baseline detection",
        |e| matches!(e, AgentEvent::Detection(d) if d.rule.id == "office-spawns-shell"),
    );
    // The holder goes: the agent takes its store and runs its release, with STARTING recorded.
    drop(holder);
    agent.wait("STARTING for release 1", |e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Starting { release: 1, .. })
        )
    });
    agent.wait("release 1 active", activated(Some(1)));
    assert_eq!(f.state().boot.starting.map(|s| s.release), Some(1));
    agent.stop();
}

#[cfg(unix)]
#[test]
fn an_agent_whose_store_others_can_write_runs_the_baseline_and_alerts() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    std::fs::set_permissions(&f.store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut agent = Running::start(f.config());
    let alert = agent.wait("the store_unavailable alert", store_unavailable);
    assert!(alert.to_string().contains("not safe to trust"), "{alert}");
    agent.wait("the baseline active", activated(None));
    let (_, seen) = agent.stop();
    assert!(
        !seen.iter().any(activated(Some(1))),
        "the store's content never runs"
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    _parent: tempfile::TempDir,
    dir: PathBuf,
}

impl Tmpfs {
    /// A tmpfs of `mib` MiB, or `None` where mounting is not permitted (said on stderr).
    fn mount(mib: u32) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a small tmpfs (a real full disk) needs root");
            return None;
        }
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs is not permitted here");
            return None;
        }
        Some(Tmpfs {
            _parent: parent,
            dir,
        })
    }

    /// Fills the file system: writes `filler` until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 64 << 10];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever a partial write left, nothing more fits.
        while file.write_all(&[0u8; 512]).is_ok() {}
        while file.write_all(&[0u8]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// A store named `name` on `disk`, trusting the fixture's root.
fn store_on(disk: &Tmpfs, f: &Fixture, name: &str) -> PathBuf {
    let root = std::fs::read(f.store.join("root.json")).unwrap();
    let dir = disk.dir.join(name);
    ContentStore::init(&dir, &root).unwrap();
    dir
}

#[test]
fn a_full_disk_never_leaves_the_agent_running_nothing() {
    let Some(disk) = Tmpfs::mount(16) else {
        return;
    };
    let f = Fixture::new();
    let store = store_on(&disk, &f, "store");
    {
        let mut s = ContentStore::open(&store).unwrap();
        s.install(&f.bundle(1, &["office-shell"]), now_unix())
            .unwrap();
        s.begin_boot(3).unwrap();
        s.mark_good(1).unwrap();
        s.inbox()
            .deliver_bundle(&f.bundle(2, &["office-shell", "run-key"]))
            .unwrap();
    }
    let filler = disk.fill();
    let mut config = f.config();
    config.store = Some(store.clone());
    // The agent starts on a full disk: STARTING cannot be written, so it runs what reached GOOD
    // here (release 1) and says so.
    let mut agent = Running::start(config);
    let alert = agent.wait(
        "STARTING cannot be recorded",
        store_failed("record STARTING"),
    );
    assert!(alert.to_string().contains("reached GOOD"), "{alert}");
    agent.wait("release 1 active", activated(Some(1)));
    agent.send(office_shell());
    agent.wait("a detection", |e| matches!(e, AgentEvent::Detection(_)));
    // The delivered release cannot be installed: a disk error, never a refusal of the bundle.
    agent.wait("the install waits", store_failed("stays in the inbox"));
    let inbox = store.join("inbox");
    let waiting = names(&inbox);
    assert!(
        waiting.iter().any(|n| n.starts_with("bundle-2-"))
            && !waiting.iter().any(|n| n.starts_with(".refused")),
        "kept in the inbox, not refused: {waiting:?}"
    );
    // Space again: the boot record is written and the waiting release lands.
    std::fs::remove_file(&filler).unwrap();
    agent.agent.check_inbox();
    agent.wait("release 2 installed", |e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Installing { release: 2, .. })
        )
    });
    agent.wait("release 2 active", activated(Some(2)));
    let (_, seen) = agent.stop();
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, AgentEvent::Alert(Alert::UpdateRefused { .. }))),
        "{seen:#?}"
    );

    // A release that never reached GOOD is not run without its boot record: the baseline is.
    let f = Fixture::new();
    let store = store_on(&disk, &f, "store-2");
    {
        let mut s = ContentStore::open(&store).unwrap();
        s.install(&f.bundle(1, &["office-shell"]), now_unix())
            .unwrap();
    }
    let filler = disk.fill();
    let mut config = f.config();
    config.store = Some(store.clone());
    let mut agent = Running::start(config);
    agent.wait(
        "STARTING cannot be recorded",
        store_failed("record STARTING"),
    );
    agent.wait(
        "the baseline",
        on_baseline(BaselineReason::StoreUnavailable),
    );
    agent.wait("the baseline active", activated(None));
    agent.send(office_shell());
    agent.wait("a baseline detection", |e| {
        matches!(e, AgentEvent::Detection(_))
    });
    std::fs::remove_file(&filler).unwrap();
    // Retried every few seconds: release 1 runs once its start can be recorded.
    agent.wait("release 1 active", activated(Some(1)));
    agent.stop();
}

#[test]
fn clean_restarts_inside_the_health_window_never_mark_a_good_release_bad() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    f.install_good(&f.bundle(2, &["office-shell", "run-key"]));
    // Five SIGTERMs or reboots, each before the health window passed.
    for _ in 0..5 {
        let mut agent = Running::start(f.config());
        agent.wait("release 2 active", activated(Some(2)));
        agent.stop();
        let state = f.state();
        assert_eq!(state.current, Some(2));
        assert_eq!(
            state.boot.starting, None,
            "a clean stop takes its start back"
        );
    }
    let state = f.state();
    assert!(state.bad.is_empty(), "{:?}", state.bad);
    assert_eq!(state.last_known_good, Some(2));
    // Starts that do not end cleanly still count, but a release GOOD here is not marked bad.
    for _ in 0..3 {
        let mut agent = Running::start(f.config());
        agent.wait("release 2 active", activated(Some(2)));
        agent.stop_failed();
    }
    let mut agent = Running::start(f.config());
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
    agent.stop();
    let state = f.state();
    assert_eq!(state.current, Some(1));
    assert!(
        state.bad.is_empty(),
        "never marked bad by the boot guard alone: {:?}",
        state.bad
    );
}

#[test]
fn a_quiet_host_reaches_good_by_the_time_criterion() {
    let f = Fixture::new();
    let mut s = ContentStore::open(&f.store).unwrap();
    s.install(&f.bundle(1, &["office-shell"]), now_unix())
        .unwrap();
    drop(s);
    let mut config = f.config();
    // No event ever arrives; a count-only window would never pass.
    config.health =
        HealthWindow::new(u64::MAX, Duration::ZERO).with_or_after(Some(Duration::from_secs(1)));
    let mut agent = Running::start(config);
    agent.wait("GOOD for release 1", good(1));
    agent.stop();
    assert_eq!(f.state().last_known_good, Some(1));
    assert!(
        HealthWindow::default().or_after.is_some(),
        "quiet hosts reach GOOD by default"
    );
}

#[test]
fn a_release_in_which_no_rule_loads_never_becomes_last_known_good() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    // Release 2's only module is not the rule its signed entry declares: nothing of it loads.
    let two = f.bundle(2, &["office-shell"]);
    f.resign(&two, |m: &mut Manifest| {
        m.rules[0].id = "not-office-shell".into()
    });
    let mut config = f.config();
    // A window that would pass at once: only the no-rule check keeps release 2 from GOOD.
    config.health = HealthWindow::new(0, Duration::ZERO);
    let mut agent = Running::start(config);
    agent.wait("GOOD for release 1", good(1));
    // Only what follows the delivery counts below (release 1 was activated once already).
    agent.seen.clear();
    f.inbox().deliver_bundle(&two).unwrap();
    agent.wait("release 2 active", activated(Some(2)));
    agent.wait("release 2 abandoned", |e| {
        matches!(
            e,
            AgentEvent::Alert(Alert::ReleaseAbandoned {
                from: 2,
                to: Some(1),
                ..
            })
        )
    });
    agent.wait("release 1 active again", |e| {
        matches!(
            e,
            AgentEvent::Lifecycle(Lifecycle::Activated {
                release: Some(1),
                active: 1,
                ..
            })
        )
    });
    agent.send(office_shell());
    let (_, seen) = agent.stop();
    assert!(!seen.iter().any(good(2)), "{seen:#?}");
    assert_eq!(
        detections_by(&seen, "office-spawns-shell"),
        1,
        "never nothing"
    );
    let state = f.state();
    assert_eq!(state.last_known_good, Some(1));
    assert_eq!(state.current, Some(1));
    assert!(state.bad.is_empty());
}

#[test]
fn content_that_expires_while_running_raises_an_alert_without_a_restart() {
    let f = Fixture::new();
    // Valid for a few seconds more: installed at `now` (the store takes the time it is given),
    // activated before it expires, then it expires while the agent runs.
    let now = now_unix();
    let expires = now + 8;
    let bundle = f.bundle_with(1, artifacts(&["office-shell"]), |o| {
        o.created_unix = Some(now - 60);
        o.expires_unix = expires;
    });
    let mut store = ContentStore::open(&f.store).unwrap();
    store.install(&bundle, now).unwrap();
    drop(store);
    let mut agent = Running::start(f.config());
    agent.wait("release 1 active", activated(Some(1)));
    assert!(
        !agent
            .seen
            .iter()
            .any(|e| matches!(e, AgentEvent::Alert(Alert::ContentExpired { .. }))),
        "not expired yet"
    );
    agent.wait("the expiry alert, while running", |e| {
        matches!(e, AgentEvent::Alert(Alert::ContentExpired { release: 1, expires_unix }) if *expires_unix == expires)
    });
    agent.send(office_shell());
    let (_, seen) = agent.stop();
    assert_eq!(
        detections_by(&seen, "office-spawns-shell"),
        1,
        "expired content keeps running"
    );
    let alerts = seen
        .iter()
        .filter(|e| matches!(e, AgentEvent::Alert(Alert::ContentExpired { .. })))
        .count();
    assert_eq!(alerts, 1, "reported once");
}

#[cfg(unix)]
#[test]
fn a_revert_swapped_for_a_fifo_or_linked_to_pagemap_never_blocks_the_agent() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let inbox = f.store.join("inbox");
    std::os::unix::fs::symlink("/proc/self/pagemap", inbox.join("a.revert.json")).unwrap();
    let fifo = inbox.join("b.revert.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    f.inbox()
        .deliver_bundle(&f.bundle(2, &["office-shell"]))
        .unwrap();
    let mut agent = Running::start(f.config());
    for file in ["a.revert.json", "b.revert.json"] {
        agent.wait(file, |e| {
            matches!(e, AgentEvent::Alert(Alert::RevertRefused { file: name, .. }) if name == file)
        });
    }
    // The control thread goes on: the bundle behind them lands, and a stop is prompt.
    agent.wait("release 2 active", activated(Some(2)));
    let start = Instant::now();
    agent.stop();
    assert!(start.elapsed() < Duration::from_secs(10));
    let left = names(&inbox);
    assert!(left.iter().all(|n| n.starts_with(".refused-")), "{left:?}");
}

#[test]
fn unsigned_bundles_fed_through_the_inbox_never_fill_the_disk() {
    let f = Fixture::new();
    f.install_good(&f.bundle(1, &["office-shell"]));
    let mut agent = Running::start(f.config());
    agent.wait("release 1 active", activated(Some(1)));
    let fed = MAX_REFUSED_KEPT + 6;
    for n in 0..fed {
        let bundle = f.bundle(10 + n as u64, &["office-shell"]);
        let manifest = bundle.join("manifest.json");
        let mut envelope: rulebox_runtime::content::Signed<Manifest> =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        envelope.signatures.clear();
        std::fs::write(&manifest, serde_json::to_vec(&envelope).unwrap()).unwrap();
        f.inbox().deliver_bundle(&bundle).unwrap();
    }
    // Wait until the agent took every delivery (each refused and moved aside, or removed).
    let deadline = Instant::now() + Duration::from_secs(60);
    while names(&f.store.join("inbox"))
        .iter()
        .any(|n| !n.starts_with('.'))
    {
        assert!(
            Instant::now() < deadline,
            "the agent never took every delivery"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, seen) = agent.stop();
    let refused = seen
        .iter()
        .filter(|e| matches!(e, AgentEvent::Alert(Alert::UpdateRefused { .. })))
        .count();
    assert_eq!(refused, fed, "each one refused and reported");
    let kept = names(&f.store.join("inbox"))
        .into_iter()
        .filter(|n| n.starts_with(".refused-"))
        .count();
    assert_eq!(kept, MAX_REFUSED_KEPT, "refused entries are bounded");
    assert_eq!(f.state().current, Some(1));
}
