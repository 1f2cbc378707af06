//! The sandbox thread: owns the rule set, takes events and content from the one queue in order, and
//! writes detections and alerts to the output.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use rulebox_runtime::{
    Activation, Alert as RuleAlert, Content, Outcome, QuarantineRecord, RuleSet, Runtime,
    SandboxThread, SkippedRule,
};

use crate::alert::Alert;
use crate::event::{AgentEvent, Detection, EventRef};
use crate::lifecycle::Lifecycle;
use crate::sender::{Counters, Work};

/// What the sandbox thread tells the control thread.
pub(crate) enum ControlMsg {
    /// A rule was quarantined at run time: persist it.
    Quarantined(Arc<QuarantineRecord>),
    /// The content of this generation runs now.
    Activated {
        /// The activation's generation.
        generation: u64,
        /// Its release.
        release: Option<u64>,
        /// How many of its rules run (added, replaced or unchanged).
        loaded: usize,
    },
    /// The embedder asked for an inbox scan now.
    CheckInbox,
    /// The embedder asked the agent to stop; `clean: false` counts the current start as failed.
    Stop {
        /// Whether the stop takes back the current start (see [`Agent::stop`](crate::Agent::stop)).
        clean: bool,
    },
}

pub(crate) struct Worker {
    pub set: RuleSet,
    pub output: SyncSender<AgentEvent>,
    pub control: Sender<ControlMsg>,
    pub counters: Arc<Counters>,
    pub generation: u64,
}

impl Worker {
    pub(crate) fn new(
        runtime: &Runtime,
        output: SyncSender<AgentEvent>,
        control: Sender<ControlMsg>,
        counters: Arc<Counters>,
    ) -> Worker {
        Worker {
            set: RuleSet::new(runtime),
            output,
            control,
            counters,
            generation: 0,
        }
    }

    pub(crate) fn emit(&self, event: AgentEvent) {
        // An embedder that dropped the output only loses the output; the agent goes on.
        let _ = self.output.send(event);
    }

    /// The loop: returns when told to stop or when every sender is gone. Returns the number of events
    /// processed.
    pub(crate) fn run(mut self, thread: &SandboxThread, queue: Receiver<Work>) -> u64 {
        let mut outcome = Outcome::default();
        let mut processed = 0u64;
        while let Ok(work) = queue.recv() {
            match work {
                Work::Event(event, origin) => {
                    processed += 1;
                    let started = std::time::Instant::now();
                    let result = self.set.process_into(thread, &event, &mut outcome);
                    let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.counters
                        .evaluation_ns
                        .fetch_add(spent, Ordering::Relaxed);
                    self.counters
                        .detections
                        .fetch_add(outcome.detections.len() as u64, Ordering::Relaxed);
                    Counters::add(&self.counters.processed);
                    self.counters
                        .since_activation
                        .fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = result {
                        Counters::add(&self.counters.refused);
                        self.emit(
                            Alert::EventRefused {
                                error: e.to_string(),
                                event: EventRef::of(&event, &origin),
                            }
                            .into(),
                        );
                        continue;
                    }
                    if outcome.detections.is_empty() && outcome.alerts.is_empty() {
                        continue;
                    }
                    let event_ref = EventRef::of(&event, &origin);
                    for d in outcome.detections.drain(..) {
                        self.emit(AgentEvent::Detection(Detection {
                            rule: d.rule,
                            output: d.detection,
                            event: event_ref.clone(),
                        }));
                    }
                    for alert in outcome.alerts.drain(..) {
                        self.rule_alert(alert, &event_ref);
                    }
                }
                Work::Notice(event) => self.emit(*event),
                Work::Activate(content, generation) => self.activate(thread, &content, generation),
                Work::Settle(generation) => {
                    if generation == self.generation {
                        self.set.settle();
                    }
                }
                Work::Stop => break,
            }
        }
        processed
    }

    fn rule_alert(&self, alert: RuleAlert, event: &EventRef) {
        let alert = match alert {
            RuleAlert::RuleQuarantined(record) => {
                let alert = Alert::quarantined(&record, event.clone());
                let _ = self.control.send(ControlMsg::Quarantined(record));
                alert
            }
            RuleAlert::BudgetStrike {
                rule,
                fault,
                strike,
                allowed,
            } => Alert::strike(&rule, &fault, strike, allowed, event.clone()),
            RuleAlert::PreviousVersionRestored {
                quarantined,
                restored,
            } => {
                // The quarantine itself comes as its own `RuleQuarantined` alert (persisted there).
                Alert::PreviousVersionRestored {
                    rule_id: restored.id.clone(),
                    rule_version: restored.version.clone(),
                    quarantined_version: quarantined.rule_version.clone(),
                    reason: quarantined.reason,
                    message: quarantined.message.clone(),
                    event: event.clone(),
                }
            }
            _ => {
                // A kind of rule alert this agent does not know: never dropped silently.
                Alert::SourceFailed {
                    source: "rule set".to_owned(),
                    error: format!("an alert of a kind this agent does not know, on {event}"),
                }
            }
        };
        self.emit(alert.into());
    }

    /// Activates `content` as `generation` and reports how it went.
    pub(crate) fn activate(&mut self, thread: &SandboxThread, content: &Content, generation: u64) {
        let activation = self.set.activate(thread, content);
        self.generation = generation;
        self.counters.since_activation.store(0, Ordering::Relaxed);
        self.counters
            .active_generation
            .store(generation, Ordering::Relaxed);
        for event in activation_events(&activation, self.set.active_count()) {
            self.emit(event);
        }
        let _ = self.control.send(ControlMsg::Activated {
            generation,
            release: content.release(),
            loaded: activation.loaded().count(),
        });
    }
}

/// The events that report an activation: one per rule not loaded, then [`Lifecycle::Activated`].
fn activation_events(a: &Activation, active: usize) -> Vec<AgentEvent> {
    let mut events = Vec::new();
    for skipped in &a.skipped {
        events.push(match skipped {
            SkippedRule::Quarantined { rule } => Lifecycle::RuleSkipped {
                release: a.release,
                rule_id: rule.id.clone(),
                rule_version: rule.version.clone(),
            }
            .into(),
            SkippedRule::DoesNotCompile {
                rule,
                reason,
                message,
            } => Alert::unreadable_module(a.release, rule, *reason, message).into(),
            other => Alert::ModuleUnreadable {
                release: a.release,
                rule_id: String::new(),
                rule_version: String::new(),
                reason: rulebox_runtime::Reason::HostError,
                message: other.to_string(),
            }
            .into(),
        });
    }
    for m in &a.mismatched {
        events.push(Alert::mismatch(a.release, m).into());
    }
    for record in &a.refused {
        events.push(Alert::refused(a.release, record).into());
    }
    events.push(
        Lifecycle::Activated {
            release: a.release,
            active,
            added: a.added.len(),
            replaced: a.replaced.len(),
            unchanged: a.unchanged.len(),
            removed: a.removed.len(),
            not_loaded: a.skipped.len() + a.mismatched.len() + a.refused.len(),
        }
        .into(),
    );
    events
}
