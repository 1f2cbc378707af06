//! The control thread: the boot guard, the inbox (reverts first), installs, the health window, and
//! the persistence of quarantines. It owns the content store; the sandbox thread owns the rule set.
//!
//! The seven rules an agent must keep, and where they are kept here:
//!
//! 1. STARTING again after every install, before the new content runs: [`Control::take_bundle`]
//!    calls `begin_boot` right after `install` and activates what it decides.
//! 2. At the end of the health window, GOOD in the store *and* `settle` in the rule set:
//!    [`Control::check_health`].
//! 3. Quarantined rule versions are not compiled ([`Content::from_bundle`] with
//!    `is_quarantined`), and new quarantines are written back ([`Control::persist`]).
//! 4. Each module checked against its manifest entry, and rules the release dropped removed:
//!    [`RuleSet::activate`](rulebox_runtime::RuleSet::activate), on the sandbox thread.
//! 5. Reverts before bundles, dot-prefixed entries skipped, refused entries renamed:
//!    [`Inbox`](rulebox_runtime::content::Inbox), used by [`Control::poll`].
//! 6. The module cache at the store's `cache/` folder: [`ContentStore::cache_dir`].
//! 7. An alert whenever expired content is activated: [`Control::bundle_content`].

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rulebox_runtime::content::{BootDecision, ContentStore, InboxEntry, VerifiedBundle, now_unix};
use rulebox_runtime::{Content, ModuleCache, QuarantineRecord, Runtime};

use crate::alert::Alert;
use crate::config::HealthWindow;
use crate::error::AgentError;
use crate::event::AgentEvent;
use crate::lifecycle::{AgentSummary, BaselineReason, Lifecycle};
use crate::sender::{Counters, Work};
use crate::transport::Transport;
use crate::worker::ControlMsg;

/// The longest the control thread sleeps, so the health window's time criterion is checked often.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// The shortest inbox poll interval.
const MIN_POLL: Duration = Duration::from_millis(10);

/// A release activated and not yet GOOD.
struct Window {
    generation: u64,
    release: u64,
    started: Instant,
}

pub(crate) struct Control {
    pub runtime: Runtime,
    pub store: Option<ContentStore>,
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
            reported_drops: 0,
            inbox_failing: false,
            transport_failing: false,
        }
    }

    /// Decides what to run at start-up (STARTING is recorded durably before this returns) and
    /// compiles it. Returns the content, its generation and the events that report the decision.
    pub(crate) fn boot(&mut self) -> Result<(Content, u64, Vec<AgentEvent>), AgentError> {
        let mut events = Vec::new();
        let content = match self.store.as_mut() {
            None => {
                events.push(
                    Lifecycle::Baseline {
                        reason: BaselineReason::SafeMode,
                    }
                    .into(),
                );
                self.baseline.clone()
            }
            Some(store) => {
                let decision = store
                    .begin_boot(self.boot_attempts)
                    .map_err(AgentError::BootGuard)?;
                self.decided(decision, &mut events)
            }
        };
        self.generation += 1;
        Ok((content, self.generation, events))
    }

    /// The content a boot decision names, and the events that report it.
    fn decided(&self, decision: BootDecision, events: &mut Vec<AgentEvent>) -> Content {
        match decision {
            BootDecision::Start {
                release,
                attempt,
                bundle,
            } => {
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
                events.push(
                    Alert::ReleaseAbandoned {
                        from,
                        to: Some(to),
                        reason: reason.to_string(),
                        report: Some(report.display().to_string()),
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
                events.push(Lifecycle::Baseline { reason: why }.into());
                self.baseline.clone()
            }
        }
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
    /// the module cache; an expired manifest is reported (the content still runs).
    fn bundle_content(&self, bundle: &VerifiedBundle, events: &mut Vec<AgentEvent>) -> Content {
        if bundle.is_expired(now_unix()) {
            events.push(
                Alert::ContentExpired {
                    release: bundle.release(),
                    expires_unix: bundle.manifest().expires_unix,
                }
                .into(),
            );
        }
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
    ) -> Result<AgentSummary, AgentError> {
        if let Some(t) = self.transport.as_mut() {
            for event in &boot_events {
                t.observe(event);
            }
        }
        let mut next_poll = Instant::now();
        loop {
            let wait = next_poll
                .saturating_duration_since(Instant::now())
                .min(MAX_WAIT);
            match messages.recv_timeout(wait) {
                Ok(ControlMsg::Quarantined(record)) => self.persist(&record),
                Ok(ControlMsg::Activated {
                    generation,
                    release,
                }) => {
                    if generation == self.generation {
                        self.window = release.map(|release| Window {
                            generation,
                            release,
                            started: Instant::now(),
                        });
                    }
                }
                Ok(ControlMsg::CheckInbox) => next_poll = Instant::now(),
                Ok(ControlMsg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_poll {
                self.poll();
                next_poll = Instant::now() + self.inbox_poll;
            }
            self.check_health();
            self.check_drops();
        }
        self.shutdown(messages, worker)
    }

    /// Stops the sandbox thread after everything queued, persists the last quarantines, reports.
    fn shutdown(
        mut self,
        messages: Receiver<ControlMsg>,
        worker: JoinHandle<u64>,
    ) -> Result<AgentSummary, AgentError> {
        let _ = self.work.send(Work::Stop);
        let processed = worker
            .join()
            .map_err(|_| AgentError::Panicked { what: "sandbox" })?;
        while let Ok(msg) = messages.try_recv() {
            if let ControlMsg::Quarantined(record) = msg {
                self.persist(&record);
            }
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
            Ok(()) => self.emit(Lifecycle::Good { release }.into()),
            Err(e) => self.store_failed(&format!("record GOOD for release {release}"), &e),
        }
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
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let inbox = store.inbox();
        if let Some(t) = self.transport.as_mut() {
            match t.poll(&inbox) {
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
        for entry in entries {
            match &entry {
                InboxEntry::Revert { .. } => self.take_revert(&entry),
                InboxEntry::Bundle { .. } => self.take_bundle(&entry),
                _ => {}
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

    /// A signed revert: verified and applied; if it withdrew the running release, the content the
    /// store goes back to replaces it without stopping the event stream.
    fn take_revert(&mut self, entry: &InboxEntry) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let inbox = store.inbox();
        let outcome = match inbox.read_revert(entry.path()) {
            Ok(bytes) => store
                .apply_revert(&bytes, now_unix())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("cannot read it: {e}")),
        };
        match outcome {
            Ok(outcome) => {
                self.emit(
                    Lifecycle::Reverted {
                        release: outcome.revert.release,
                        current: outcome.current,
                        was_current: outcome.was_current,
                        reason: outcome.revert.reason.clone(),
                    }
                    .into(),
                );
                if outcome.was_current {
                    let mut events = Vec::new();
                    let content = match &outcome.bundle {
                        Some(bundle) => self.bundle_content(bundle, &mut events),
                        None => {
                            events.push(
                                Lifecycle::Baseline {
                                    reason: BaselineReason::Reverted,
                                }
                                .into(),
                            );
                            self.baseline.clone()
                        }
                    };
                    self.emit_all(events);
                    self.activate(content);
                }
                self.remove(entry);
            }
            Err(error) => {
                self.emit(
                    Alert::RevertRefused {
                        file: entry.name(),
                        error,
                    }
                    .into(),
                );
                self.move_aside(entry);
            }
        }
    }

    /// A bundle: verified and installed (the owner's policy included), then the boot guard records
    /// STARTING before the new content runs (rule 1), then it is activated.
    fn take_bundle(&mut self, entry: &InboxEntry) {
        let boot_attempts = self.boot_attempts;
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.install(entry.path(), now_unix()) {
            Ok(installed) => {
                let decision = store.begin_boot(boot_attempts);
                self.emit(
                    Lifecycle::Installing {
                        release: installed.release,
                        previous: installed.previous,
                    }
                    .into(),
                );
                match decision {
                    Ok(decision) => {
                        let mut events = Vec::new();
                        let content = self.decided(decision, &mut events);
                        self.emit_all(events);
                        self.activate(content);
                    }
                    Err(e) => self.store_failed("record STARTING for the new release", &e),
                }
                self.remove(entry);
            }
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
                    }
                    .into(),
                );
                self.move_aside(entry);
            }
        }
    }
}
