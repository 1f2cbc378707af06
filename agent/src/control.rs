//! The control thread: the boot guard, the inbox (reverts first), installs, the health window, and
//! the persistence of quarantines. It owns the content store; the sandbox thread owns the rule set.
//!
//! The rules an agent must keep, and where they are kept here:
//!
//! 1. STARTING again after every install and every revert, before the new content runs:
//!    [`Control::take_bundle`] and [`Control::take_revert`] call `begin_boot` and activate what it
//!    decides.
//! 2. At the end of the health window, GOOD in the store *and* `settle` in the rule set:
//!    [`Control::check_health`]. A release of which no rule loaded never reaches GOOD: the boot
//!    guard abandons it at once ([`Control::activated`]).
//! 3. Quarantined rule versions are not compiled ([`Content::from_bundle`] with
//!    `is_quarantined`), and new quarantines are written back ([`Control::persist`]).
//! 4. Each module checked against its manifest entry, and rules the release dropped removed:
//!    [`RuleSet::activate`](rulebox_runtime::RuleSet::activate), on the sandbox thread.
//! 5. Reverts before bundles, dot-prefixed entries skipped, refused entries renamed (and bounded),
//!    dead deliveries cleaned (at open and every 10 minutes):
//!    [`Inbox`](rulebox_runtime::content::Inbox), used by [`Control::poll`]. A store that fails
//!    (a full disk) never refuses the delivery: it stays in the inbox and is tried again.
//! 6. The module cache at the store's `cache/` folder: [`ContentStore::cache_dir`].
//! 7. An alert whenever expired content is activated, and when running content expires:
//!    [`Control::bundle_content`], [`Control::check_expiry`].
//! 8. Never nothing: a store that cannot be opened, or a STARTING record that cannot be written,
//!    runs the baseline (or a release that reached GOOD here), alerts, and is tried again
//!    ([`Control::retry`]).
//! 9. A clean stop takes back its start from the STARTING record ([`Control::shutdown`]): only a
//!    start that did not end cleanly counts toward a fallback.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rulebox_runtime::content::{
    BootDecision, ContentStore, InboxEntry, STALE_DELIVERY, StoreError, VerifiedBundle, now_unix,
};
use rulebox_runtime::{Content, ModuleCache, QuarantineRecord, Runtime};

use crate::alert::Alert;
use crate::config::HealthWindow;
use crate::event::AgentEvent;
use crate::lifecycle::{AgentSummary, BaselineReason, Lifecycle};
use crate::sender::{Counters, Work};
use crate::transport::Transport;
use crate::worker::ControlMsg;

/// The longest the control thread sleeps, so the health window's time criterion is checked often.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// The shortest inbox poll interval.
const MIN_POLL: Duration = Duration::from_millis(10);
/// How often a store that cannot be opened, or a STARTING record that cannot be written, is tried
/// again.
pub(crate) const STORE_RETRY: Duration = Duration::from_secs(5);
/// How long a delivery that the store could not take (a disk error, not a refusal) waits before it
/// is tried again.
pub(crate) const INSTALL_RETRY: Duration = Duration::from_secs(30);

/// A release activated and not yet GOOD.
struct Window {
    generation: u64,
    release: u64,
    started: Instant,
}

/// What waits for the store to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The store could not be opened: the baseline runs.
    Open,
    /// STARTING could not be recorded: the baseline (or a release that reached GOOD here) runs.
    Boot,
}

/// What runs when the boot guard cannot record STARTING.
enum Meanwhile<'a> {
    /// The current release if it reached GOOD on this host (and is not bad and has starts left),
    /// else the baseline.
    KnownGood,
    /// This release (content the host already ran: a revert's target).
    Bundle(u64, &'a VerifiedBundle),
}

/// The running release's manifest expiry, and whether it was reported.
struct Expiry {
    release: u64,
    expires_unix: u64,
    reported: bool,
}

pub(crate) struct Control {
    pub runtime: Runtime,
    pub store: Option<ContentStore>,
    pub store_dir: Option<PathBuf>,
    pub cache: Option<ModuleCache>,
    pub baseline: Content,
    pub boot_attempts: u32,
    pub health: HealthWindow,
    pub inbox_poll: Duration,
    pub work: SyncSender<Work>,
    pub output: SyncSender<AgentEvent>,
    pub counters: Arc<Counters>,
    pub transport: Option<Box<dyn Transport>>,
    generation: u64,
    window: Option<Window>,
    /// Whether this process's start of the current release is counted in its STARTING record (and
    /// so is taken back by a clean stop).
    counted_start: bool,
    pending: Option<Pending>,
    retry_at: Instant,
    install_retry_at: Option<Instant>,
    /// When the inbox's leftovers are next cleaned (an agent may run for months between opens).
    clean_at: Instant,
    expiry: Option<Expiry>,
    reported_drops: u64,
    inbox_failing: bool,
    transport_failing: bool,
}

impl Control {
    #[allow(
        clippy::too_many_arguments,
        reason = "every part of the control thread, assembled once by Agent::start"
    )]
    pub(crate) fn new(
        runtime: Runtime,
        store: Option<ContentStore>,
        cache: Option<ModuleCache>,
        baseline: Content,
        config: &crate::AgentConfig,
        work: SyncSender<Work>,
        output: SyncSender<AgentEvent>,
        counters: Arc<Counters>,
        transport: Option<Box<dyn Transport>>,
    ) -> Control {
        Control {
            runtime,
            store,
            store_dir: config.store.clone(),
            cache,
            baseline,
            boot_attempts: config.boot_attempts,
            health: config.health,
            // A zero interval would scan the inbox in a tight loop.
            inbox_poll: config.inbox_poll.max(MIN_POLL),
            work,
            output,
            counters,
            transport,
            generation: 0,
            window: None,
            counted_start: false,
            pending: None,
            retry_at: Instant::now() + STORE_RETRY,
            install_retry_at: None,
            clean_at: Instant::now() + STALE_DELIVERY,
            expiry: None,
            reported_drops: 0,
            inbox_failing: false,
            transport_failing: false,
        }
    }

    /// Decides what to run at start-up (STARTING is recorded durably before this returns, when the
    /// store allows) and compiles it. `open_error` is why the store could not be opened, if it
    /// could not. Returns the content, its generation and the events that report the decision.
    pub(crate) fn boot(
        &mut self,
        open_error: Option<StoreError>,
    ) -> (Content, u64, Vec<AgentEvent>) {
        let mut events = Vec::new();
        let content = match (&self.store_dir, open_error) {
            (None, _) => {
                events.push(
                    Lifecycle::Baseline {
                        reason: BaselineReason::SafeMode,
                    }
                    .into(),
                );
                self.baseline.clone()
            }
            (Some(dir), Some(error)) => {
                events.push(
                    Alert::StoreUnavailable {
                        store: dir.display().to_string(),
                        error: error.to_string(),
                    }
                    .into(),
                );
                events.push(
                    Lifecycle::Baseline {
                        reason: BaselineReason::StoreUnavailable,
                    }
                    .into(),
                );
                self.pending = Some(Pending::Open);
                self.baseline.clone()
            }
            (Some(_), None) => self.begin(&mut events, Meanwhile::KnownGood),
        };
        self.generation += 1;
        (content, self.generation, events)
    }

    /// Asks the boot guard what to run and compiles it. When STARTING cannot be recorded, the
    /// content is what can run without it (`meanwhile`), and the boot is tried again later
    /// ([`retry`](Self::retry)).
    fn begin(&mut self, events: &mut Vec<AgentEvent>, meanwhile: Meanwhile<'_>) -> Content {
        let boot_attempts = self.boot_attempts;
        let Some(store) = self.store.as_mut() else {
            return self.baseline.clone();
        };
        let error = match store.begin_boot(boot_attempts) {
            Ok(decision) => {
                self.pending = None;
                return self.decided(decision, events);
            }
            Err(error) => error,
        };
        self.counted_start = false;
        self.pending = Some(Pending::Boot);
        self.retry_at = Instant::now() + STORE_RETRY;
        let mut reported = Vec::new();
        let known_good = match meanwhile {
            Meanwhile::Bundle(release, bundle) => Some((release, bundle.clone(), false)),
            Meanwhile::KnownGood => self.known_good().map(|(r, b)| (r, b, true)),
        };
        let (what, content) = match known_good {
            Some((release, bundle, good)) => {
                let what = if good {
                    format!("release {release}, which reached GOOD on this host")
                } else {
                    format!("release {release}")
                };
                (what, self.bundle_content(&bundle, &mut reported))
            }
            None => (
                "the baseline content".to_owned(),
                self.baseline_content(BaselineReason::StoreUnavailable, &mut reported),
            ),
        };
        events.push(
            Alert::StoreFailed {
                operation: format!(
                    "record STARTING (running {what} meanwhile; trying again every {} s)",
                    STORE_RETRY.as_secs()
                ),
                error: error.to_string(),
            }
            .into(),
        );
        events.append(&mut reported);
        content
    }

    /// The current release, if it reached GOOD on this host, is not bad and has not used up its
    /// starts: what may run when its start cannot be recorded.
    fn known_good(&self) -> Option<(u64, VerifiedBundle)> {
        let store = self.store.as_ref()?;
        let state = store.state();
        let release = state.current?;
        let attempts = state
            .boot
            .starting
            .filter(|s| s.release == release)
            .map_or(0, |s| s.attempts);
        if state.bad.contains(&release)
            || !state.boot.reached_good.contains(&release)
            || attempts >= self.boot_attempts.max(1)
        {
            return None;
        }
        store.load_release(release).ok().map(|b| (release, b))
    }

    /// The content a boot decision names, and the events that report it.
    fn decided(&mut self, decision: BootDecision, events: &mut Vec<AgentEvent>) -> Content {
        match decision {
            BootDecision::Start {
                release,
                attempt,
                bundle,
            } => {
                self.counted_start = true;
                events.push(self.starting(release, attempt));
                self.bundle_content(&bundle, events)
            }
            BootDecision::FellBack {
                from,
                to,
                reason,
                report,
                bundle,
            } => {
                self.counted_start = true;
                events.push(
                    Alert::ReleaseAbandoned {
                        from,
                        to: Some(to),
                        reason: reason.to_string(),
                        report: report.map(|p| p.display().to_string()),
                    }
                    .into(),
                );
                events.push(self.starting(to, 1));
                self.bundle_content(&bundle, events)
            }
            BootDecision::Baseline {
                from,
                reason,
                report,
            } => {
                let why = match from {
                    Some(from) => {
                        events.push(
                            Alert::ReleaseAbandoned {
                                from,
                                to: None,
                                reason: reason.map(|r| r.to_string()).unwrap_or_default(),
                                report: report.map(|p| p.display().to_string()),
                            }
                            .into(),
                        );
                        BaselineReason::FellBack
                    }
                    None => BaselineReason::NothingInstalled,
                };
                self.baseline_content(why, events)
            }
        }
    }

    /// The baseline content, to run for `reason` (reported in `events`): no start of a release is
    /// pending, and no release's expiry is watched.
    fn baseline_content(
        &mut self,
        reason: BaselineReason,
        events: &mut Vec<AgentEvent>,
    ) -> Content {
        self.counted_start = false;
        self.expiry = None;
        events.push(Lifecycle::Baseline { reason }.into());
        self.baseline.clone()
    }

    fn starting(&self, release: u64, attempt: u32) -> AgentEvent {
        Lifecycle::Starting {
            release,
            attempt,
            attempts_allowed: self.boot_attempts.max(1),
        }
        .into()
    }

    /// Compiles a verified release, leaving out the rule versions quarantined on this host, through
    /// the module cache; an expired manifest is reported (the content still runs), and its expiry is
    /// watched while it runs ([`check_expiry`](Self::check_expiry)).
    fn bundle_content(&mut self, bundle: &VerifiedBundle, events: &mut Vec<AgentEvent>) -> Content {
        let expires_unix = bundle.manifest().expires_unix;
        let expired = bundle.is_expired(now_unix());
        if expired {
            events.push(
                Alert::ContentExpired {
                    release: bundle.release(),
                    expires_unix,
                }
                .into(),
            );
        }
        self.expiry = Some(Expiry {
            release: bundle.release(),
            expires_unix,
            reported: expired,
        });
        let store = self.store.as_ref();
        let content = Content::from_bundle(&self.runtime, bundle, self.cache.as_ref(), |entry| {
            store.is_some_and(|s| s.is_quarantined(entry))
        });
        // A quarantined rule inside a pack stays off; the rest of its pack runs.
        match store {
            Some(s) => content.with_quarantined(s.quarantined()),
            None => content,
        }
    }

    fn emit(&mut self, event: AgentEvent) {
        if let Some(t) = self.transport.as_mut() {
            t.observe(&event);
        }
        let _ = self.output.send(event);
    }

    fn emit_all(&mut self, events: Vec<AgentEvent>) {
        for event in events {
            self.emit(event);
        }
    }

    fn store_failed(&mut self, operation: &str, error: &dyn std::fmt::Display) {
        self.emit(
            Alert::StoreFailed {
                operation: operation.to_owned(),
                error: error.to_string(),
            }
            .into(),
        );
    }

    /// Hands `content` to the sandbox thread as the next generation.
    fn activate(&mut self, content: Content) {
        self.generation += 1;
        self.window = None;
        #[cfg(feature = "fault-injection")]
        crate::testing::crash_if_asked(&content);
        // Fails only if the sandbox thread is gone, which `stop` reports.
        let _ = self
            .work
            .send(Work::Activate(Box::new(content), self.generation));
    }

    /// The loop, until told to stop. `boot_events` (emitted by the sandbox thread, before the boot
    /// content's activation) are shown to the transport first.
    pub(crate) fn run(
        mut self,
        boot_events: Vec<AgentEvent>,
        messages: Receiver<ControlMsg>,
        worker: JoinHandle<u64>,
    ) -> Result<AgentSummary, crate::AgentError> {
        if let Some(t) = self.transport.as_mut() {
            for event in &boot_events {
                t.observe(event);
            }
        }
        let mut next_poll = Instant::now();
        let mut clean = true;
        loop {
            let wait = next_poll
                .saturating_duration_since(Instant::now())
                .min(MAX_WAIT);
            match messages.recv_timeout(wait) {
                Ok(ControlMsg::Quarantined(record)) => self.persist(&record),
                Ok(ControlMsg::Activated {
                    generation,
                    release,
                    loaded,
                }) => self.activated(generation, release, loaded),
                Ok(ControlMsg::CheckInbox) => {
                    // Asked for: a delivery the store could not take is tried again now too.
                    self.install_retry_at = self.install_retry_at.map(|_| Instant::now());
                    next_poll = Instant::now();
                }
                Ok(ControlMsg::Stop { clean: asked }) => {
                    clean = asked;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.retry();
            if Instant::now() >= next_poll {
                self.poll();
                next_poll = Instant::now() + self.inbox_poll;
            }
            self.check_health();
            self.check_expiry();
            self.check_drops();
        }
        self.shutdown(messages, worker, clean)
    }

    /// The sandbox thread runs generation `generation` now, with `loaded` of its rules running. The
    /// health window of a release starts; a release of which no rule loaded is abandoned at once (it
    /// must never become last-known-good, and the host must not run nothing).
    fn activated(&mut self, generation: u64, release: Option<u64>, loaded: usize) {
        if generation != self.generation {
            return;
        }
        let Some(release) = release else {
            self.window = None;
            return;
        };
        if loaded > 0 {
            self.window = Some(Window {
                generation,
                release,
                started: Instant::now(),
            });
            return;
        }
        self.window = None;
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let error = "no rule of it loaded on this host".to_owned();
        match store.abandon_unusable(release, error) {
            Ok(decision) => {
                let mut events = Vec::new();
                let content = self.decided(decision, &mut events);
                self.emit_all(events);
                self.activate(content);
            }
            Err(e) => {
                // The fallback cannot be recorded: run what runs without a record.
                self.store_failed(
                    &format!(
                        "abandon release {release}, of which no rule loaded (running the baseline content meanwhile)"
                    ),
                    &e,
                );
                let mut events = Vec::new();
                let baseline = self.baseline_content(BaselineReason::StoreUnavailable, &mut events);
                self.emit_all(events);
                self.activate(baseline);
            }
        }
    }

    /// Tries again what waits for the store: opening it, then recording STARTING.
    fn retry(&mut self) {
        let Some(pending) = self.pending else {
            return;
        };
        if Instant::now() < self.retry_at {
            return;
        }
        self.retry_at = Instant::now() + STORE_RETRY;
        if pending == Pending::Open {
            let Some(dir) = self.store_dir.clone() else {
                return;
            };
            match ContentStore::open(&dir) {
                Ok(store) => {
                    self.cache = Some(ModuleCache::open(&store.cache_dir()));
                    self.store = Some(store);
                    tracing::info!(store = %dir.display(), "the content store can be opened again");
                }
                // Reported once, at start-up; the baseline keeps running.
                Err(e) => {
                    tracing::debug!(store = %dir.display(), error = %e, "the content store still cannot be opened");
                    return;
                }
            }
        }
        let boot_attempts = self.boot_attempts;
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.begin_boot(boot_attempts) {
            Ok(decision) => {
                self.pending = None;
                let mut events = Vec::new();
                let content = self.decided(decision, &mut events);
                self.emit_all(events);
                self.activate(content);
            }
            // Reported when it first failed; what runs meanwhile keeps running.
            Err(e) => {
                self.pending = Some(Pending::Boot);
                tracing::debug!(error = %e, "the boot guard still cannot record STARTING");
            }
        }
    }

    /// Stops the sandbox thread after everything queued, persists the last quarantines, takes back
    /// a counted start that did not reach GOOD (a clean stop is not a failed start), reports.
    fn shutdown(
        mut self,
        messages: Receiver<ControlMsg>,
        worker: JoinHandle<u64>,
        clean: bool,
    ) -> Result<AgentSummary, crate::AgentError> {
        let _ = self.work.send(Work::Stop);
        let processed = worker
            .join()
            .map_err(|_| crate::AgentError::Panicked { what: "sandbox" })?;
        while let Ok(msg) = messages.try_recv() {
            if let ControlMsg::Quarantined(record) = msg {
                self.persist(&record);
            }
        }
        if clean
            && self.counted_start
            && let Some(store) = self.store.as_mut()
            && let Err(e) = store.record_clean_stop()
        {
            self.store_failed("record the clean stop", &e);
        }
        self.check_drops();
        let c = &self.counters;
        let summary = AgentSummary {
            received: Counters::get(&c.received),
            processed,
            dropped: Counters::get(&c.dropped),
            unreadable: Counters::get(&c.unreadable),
            refused: Counters::get(&c.refused),
            peers_refused: Counters::get(&c.peers_refused),
        };
        self.emit(Lifecycle::Stopped(summary).into());
        Ok(summary)
    }

    /// Rule 3: a quarantine survives restarts.
    fn persist(&mut self, record: &QuarantineRecord) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if let Err(e) = store.record_quarantine(record) {
            let what = format!(
                "persist the quarantine of {}",
                rulebox_runtime::text::Escaped(&record.rule_id)
            );
            self.store_failed(&what, &e);
        }
    }

    /// Rule 2: GOOD in the store, and the rule set settled.
    fn check_health(&mut self) {
        let Some(window) = &self.window else {
            return;
        };
        let active = Counters::get(&self.counters.active_generation);
        if active != window.generation
            || !self.health.passed(
                Counters::get(&self.counters.since_activation),
                window.started.elapsed(),
            )
        {
            return;
        }
        let (release, generation) = (window.release, window.generation);
        self.window = None;
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let recorded = store.mark_good(release);
        // Settled before GOOD is reported: an event sent after the report meets a settled set.
        let _ = self.work.send(Work::Settle(generation));
        match recorded {
            Ok(()) => {
                self.counted_start = false;
                self.emit(Lifecycle::Good { release }.into());
            }
            Err(e) => self.store_failed(&format!("record GOOD for release {release}"), &e),
        }
    }

    /// Rule 7: content that expires while it runs is reported when it expires, not at the next
    /// restart.
    fn check_expiry(&mut self) {
        let Some(expiry) = self.expiry.as_mut() else {
            return;
        };
        if expiry.reported || now_unix() < expiry.expires_unix {
            return;
        }
        expiry.reported = true;
        let alert = Alert::ContentExpired {
            release: expiry.release,
            expires_unix: expiry.expires_unix,
        };
        self.emit(alert.into());
    }

    /// Drops are counted by the senders; each rise is reported once.
    fn check_drops(&mut self) {
        let total = Counters::get(&self.counters.dropped);
        if total > self.reported_drops {
            let dropped = total - self.reported_drops;
            self.reported_drops = total;
            self.emit(Alert::EventsDropped { dropped, total }.into());
        }
    }

    /// The transport, then the inbox: every revert, then every bundle (rule 5).
    fn poll(&mut self) {
        self.take_roots();
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let inbox = store.inbox();
        if let Some(t) = self.transport.as_mut() {
            t.observe_store(&crate::transport::StoreView {
                root: store.root(),
                state: store.state(),
                processed: Counters::get(&self.counters.processed),
                quarantined: store.quarantined().len().try_into().unwrap_or(u32::MAX),
                detections: Counters::get(&self.counters.detections),
                evaluation_ns: Counters::get(&self.counters.evaluation_ns),
            });
            let result = t.poll(&inbox);
            let events = t.take_events();
            for event in events {
                let _ = self.output.send(event);
            }
            match result {
                Ok(()) => self.transport_failing = false,
                // Reported once until a poll succeeds again.
                Err(e) if !self.transport_failing => {
                    self.transport_failing = true;
                    let error = e.to_string();
                    self.emit(Alert::TransportFailed { error }.into());
                }
                Err(_) => {}
            }
        }
        if Instant::now() >= self.clean_at {
            self.clean_at = Instant::now() + STALE_DELIVERY;
            if let Err(e) = inbox.clean() {
                tracing::warn!(error = %e, "cannot clean the inbox's leftovers");
            }
        }
        let entries = match inbox.scan() {
            Ok(entries) => {
                self.inbox_failing = false;
                entries
            }
            Err(e) => {
                // Reported once until the inbox can be read again.
                if !self.inbox_failing {
                    self.inbox_failing = true;
                    self.store_failed("scan the inbox", &e);
                }
                return;
            }
        };
        if self.install_retry_at.is_some_and(|at| Instant::now() < at) {
            // The store could not take the last delivery; nothing is taken until it is retried.
            return;
        }
        for entry in entries {
            match &entry {
                InboxEntry::Revert { .. } => self.take_revert(&entry),
                InboxEntry::Bundle { .. } => self.take_bundle(&entry),
                _ => {}
            }
            if self.install_retry_at.is_some() {
                return;
            }
        }
    }

    /// The newer roots the transport verified, applied in order by the store (which checks the
    /// chain again and persists each); the first refused one stops the rest.
    fn take_roots(&mut self) {
        let Some(roots) = self.transport.as_mut().map(|t| t.take_roots()) else {
            return;
        };
        for bytes in roots {
            let Some(store) = self.store.as_mut() else {
                return;
            };
            match store.update_root(&bytes) {
                Ok(root) => tracing::info!(version = root.version, "the trusted root was rotated"),
                Err(e) => {
                    self.store_failed("update the trusted root", &e);
                    return;
                }
            }
        }
    }

    fn move_aside(&mut self, entry: &InboxEntry) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        if let Err(e) = store.inbox().refuse(entry) {
            self.store_failed("move a refused inbox entry aside", &e);
        }
    }

    fn remove(&mut self, entry: &InboxEntry) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        if let Err(e) = store.inbox().remove(entry) {
            self.store_failed("remove a taken inbox entry", &e);
        }
    }

    /// The store could not take `entry` (a disk error, an unreadable policy file: a problem of this
    /// host, not of the delivery): it stays in the inbox and is tried again after
    /// [`INSTALL_RETRY`]; reported once until a delivery is taken again.
    fn keep_for_later(&mut self, entry: &InboxEntry, error: &StoreError) {
        let reported = self.install_retry_at.is_some();
        self.install_retry_at = Some(Instant::now() + INSTALL_RETRY);
        if !reported {
            let what = format!(
                "take the delivery {} (it stays in the inbox and is tried again every {} s)",
                rulebox_runtime::text::Escaped(&entry.name()),
                INSTALL_RETRY.as_secs()
            );
            self.store_failed(&what, error);
        }
    }

    /// A signed revert: verified and applied; if it withdrew the running release, the boot guard
    /// records STARTING for the content the store goes back to, which then replaces it without
    /// stopping the event stream.
    fn take_revert(&mut self, entry: &InboxEntry) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let inbox = store.inbox();
        let outcome = match inbox.read_revert(entry.path()) {
            Ok(bytes) => store.apply_revert(&bytes, now_unix()).map_err(Err),
            Err(rulebox_runtime::content::CappedReadError::Io(e)) => Err(Err(StoreError::Io {
                path: entry.path().to_path_buf(),
                error: e,
            })),
            Err(e) => Err(Ok(format!("cannot read it: {e}"))),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(Err(e)) if !e.is_refusal() => return self.keep_for_later(entry, &e),
            Err(refused) => {
                let error = match refused {
                    Ok(text) => text,
                    Err(e) => e.to_string(),
                };
                self.emit(
                    Alert::RevertRefused {
                        file: entry.name(),
                        error,
                    }
                    .into(),
                );
                return self.move_aside(entry);
            }
        };
        self.install_retry_at = None;
        self.emit(
            Lifecycle::Reverted {
                release: outcome.revert.release,
                current: outcome.current,
                was_current: outcome.was_current,
                marked_bad: !outcome.pinned,
                reason: outcome.revert.reason.clone(),
            }
            .into(),
        );
        if outcome.was_current {
            let mut events = Vec::new();
            let content = match (&outcome.bundle, outcome.current) {
                (Some(bundle), Some(release)) => {
                    self.begin(&mut events, Meanwhile::Bundle(release, bundle))
                }
                _ => self.baseline_content(BaselineReason::Reverted, &mut events),
            };
            self.emit_all(events);
            self.activate(content);
        }
        self.remove(entry);
    }

    /// A bundle: verified and installed (the owner's policy included), then the boot guard records
    /// STARTING before the new content runs (rule 1), then it is activated. If STARTING cannot be
    /// recorded, the content already running keeps running and the start is tried again.
    fn take_bundle(&mut self, entry: &InboxEntry) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.install(entry.path(), now_unix()) {
            Ok(installed) => {
                self.install_retry_at = None;
                self.emit(
                    Lifecycle::Installing {
                        release: installed.release,
                        previous: installed.previous,
                    }
                    .into(),
                );
                let boot_attempts = self.boot_attempts;
                let decision = self
                    .store
                    .as_mut()
                    .map(|store| store.begin_boot(boot_attempts));
                match decision {
                    Some(Ok(decision)) => {
                        self.pending = None;
                        let mut events = Vec::new();
                        let content = self.decided(decision, &mut events);
                        self.emit_all(events);
                        self.activate(content);
                    }
                    Some(Err(e)) => {
                        // The running content keeps running: nothing new runs uncounted.
                        self.pending = Some(Pending::Boot);
                        self.retry_at = Instant::now() + STORE_RETRY;
                        self.store_failed(
                            &format!(
                                "record STARTING for the new release {} (the content already running keeps running; trying again every {} s)",
                                installed.release,
                                STORE_RETRY.as_secs()
                            ),
                            &e,
                        );
                    }
                    None => {}
                }
                self.remove(entry);
            }
            Err(e) if !e.is_refusal() => self.keep_for_later(entry, &e),
            Err(e) => {
                let report = store
                    .report_refusal(entry.path(), &e)
                    .map(|p| p.display().to_string());
                let report = match report {
                    Ok(path) => Some(path),
                    Err(write) => {
                        self.store_failed("write the refusal report", &write);
                        None
                    }
                };
                self.emit(
                    Alert::UpdateRefused {
                        bundle: entry.name(),
                        error: e.to_string(),
                        report,
                        class: crate::fetch::refusal_class(&e),
                    }
                    .into(),
                );
                self.move_aside(entry);
            }
        }
    }
}
