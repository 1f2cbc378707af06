//! [`EventSender`]: how events get into the agent, through one bounded queue shared with content
//! updates (so an update lands between two events), and the counters every event passes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError as QueueFull};

use rulebox_runtime::Content;
use rulebox_runtime::sdk::Event;

use crate::alert::Alert;
use crate::event::{AgentEvent, EventOrigin};

/// What the sandbox thread takes from the queue, in order.
pub(crate) enum Work {
    /// An event to evaluate.
    Event(Box<Event<'static>>, EventOrigin),
    /// Something a source reports (an unreadable record, a refused peer), in the stream's order.
    Notice(Box<AgentEvent>),
    /// Make the rule set run this content (generation numbers each activation).
    Activate(Box<Content>, u64),
    /// The release activated as this generation passed its health window.
    Settle(u64),
    /// Finish: everything queued before was processed.
    Stop,
}

/// The agent's counters, shared by its threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub processed: AtomicU64,
    pub dropped: AtomicU64,
    pub unreadable: AtomicU64,
    pub refused: AtomicU64,
    pub peers_refused: AtomicU64,
    /// Detections the rules raised.
    pub detections: AtomicU64,
    /// Nanoseconds the sandbox thread spent evaluating events over every rule.
    pub evaluation_ns: AtomicU64,
    /// The generation of the content the sandbox thread runs.
    pub active_generation: AtomicU64,
    /// Events processed since that content was activated.
    pub since_activation: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The agent stopped: it takes no more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the agent has stopped")]
pub struct AgentStopped;

/// Why [`EventSender::try_send`] did not queue an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The queue was full: the event was dropped, counted, and an
    /// [`Alert::EventsDropped`](crate::Alert::EventsDropped) reports it.
    #[error("the agent's event queue is full: the event was dropped (counted and reported)")]
    Dropped,
    /// The agent has stopped.
    #[error("the agent has stopped")]
    Stopped,
}

/// A handle that puts events into a running agent. Cheap to clone; `Send`. Every clone feeds the same
/// bounded queue, so events from all sources are evaluated in the order they were queued.
#[derive(Clone)]
pub struct EventSender {
    tx: SyncSender<Work>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender").finish_non_exhaustive()
    }
}

impl EventSender {
    pub(crate) fn new(tx: SyncSender<Work>, counters: Arc<Counters>) -> EventSender {
        EventSender { tx, counters }
    }

    /// Queues `event`, waiting while the queue is full (back-pressure: nothing is dropped).
    pub fn send(&self, event: Event<'static>, origin: EventOrigin) -> Result<(), AgentStopped> {
        self.tx
            .send(Work::Event(Box::new(event), origin))
            .map_err(|_| AgentStopped)?;
        Counters::add(&self.counters.received);
        Ok(())
    }

    /// Queues `event` if there is room; otherwise drops it, counts it, and the agent reports the
    /// drops ([`Alert::EventsDropped`](crate::Alert::EventsDropped)). For sources that must never
    /// wait.
    pub fn try_send(&self, event: Event<'static>, origin: EventOrigin) -> Result<(), TrySendError> {
        match self.tx.try_send(Work::Event(Box::new(event), origin)) {
            Ok(()) => {
                Counters::add(&self.counters.received);
                Ok(())
            }
            Err(QueueFull::Full(_)) => {
                Counters::add(&self.counters.dropped);
                Err(TrySendError::Dropped)
            }
            Err(QueueFull::Disconnected(_)) => Err(TrySendError::Stopped),
        }
    }

    /// Reports a record of a source that could not be read as an event: counted, and an
    /// [`Alert::EventUnreadable`](crate::Alert::EventUnreadable) goes into the stream in order.
    pub fn report_unreadable(
        &self,
        origin: &EventOrigin,
        error: &dyn std::fmt::Display,
    ) -> Result<(), AgentStopped> {
        Counters::add(&self.counters.unreadable);
        self.notice(Alert::EventUnreadable {
            source: origin.source.to_string(),
            line: origin.line,
            error: error.to_string(),
        })
    }

    /// Reports that a source failed (stopped delivering events).
    pub fn report_source_failed(
        &self,
        source: &str,
        error: &dyn std::fmt::Display,
    ) -> Result<(), AgentStopped> {
        self.notice(Alert::SourceFailed {
            source: source.to_owned(),
            error: error.to_string(),
        })
    }

    /// Puts an alert into the stream, in the queue's order.
    pub(crate) fn notice(&self, alert: Alert) -> Result<(), AgentStopped> {
        self.tx
            .send(Work::Notice(Box::new(AgentEvent::Alert(alert))))
            .map_err(|_| AgentStopped)
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}
