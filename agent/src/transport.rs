//! [`Transport`]: where a content fetcher (network, message queue, management tool) plugs into the
//! agent. It hands complete bundles and signed reverts to the one way in, the store's inbox, so
//! verification, the owner's policy, the boot guard and install stay the same for every delivery;
//! and it sees the lifecycle events a check-in reports.

use rulebox_runtime::content::{Inbox, Root, StoreState};

use crate::event::AgentEvent;

/// An error of a transport, reported as [`Alert::TransportFailed`](crate::Alert::TransportFailed);
/// the agent goes on with the content it has.
pub type TransportError = Box<dyn std::error::Error + Send + Sync>;

/// Brings content to the host. The agent calls it on its control thread (never the sandbox thread,
/// so events keep flowing while it works).
pub trait Transport: Send {
    /// Called before every inbox scan (every [`AgentConfig::inbox_poll`](crate::AgentConfig)).
    /// Deliver what is complete with [`Inbox::deliver_bundle`] / [`Inbox::deliver_revert`]; the scan
    /// that follows takes it. Keep it short: a long poll delays the health window and the next scan
    /// (do slow downloads on a thread of the transport's own and deliver here).
    ///
    /// # Return Value
    ///
    /// `Err` is reported as an alert (once until a poll succeeds again); the agent calls `poll` again
    /// at the next scan.
    fn poll(&mut self, inbox: &Inbox) -> Result<(), TransportError>;

    /// Every alert and lifecycle event the control thread emits, in order (installing, good, update
    /// refused, reverted, release abandoned, content expired, ...), for a check-in to report.
    /// Detections and per-event alerts do not pass here.
    fn observe(&mut self, event: &AgentEvent) {
        let _ = event;
    }

    /// Called before every [`poll`](Self::poll) with what the store holds: the trusted root and the
    /// store's state (what a check-in reports, what an offer is checked against).
    fn observe_store(&mut self, view: &StoreView<'_>) {
        let _ = view;
    }

    /// Newer trusted roots the transport fetched (the exact signed bytes of root `N + 1`, then
    /// `N + 2`, ...), taken before every poll: the control thread applies each in order with
    /// [`ContentStore::update_root`](rulebox_runtime::content::ContentStore::update_root) (signed by
    /// a threshold of the current root's keys and of its own), which persists it. A refused one is
    /// reported as [`Alert::StoreFailed`](crate::Alert::StoreFailed) and the rest are dropped.
    fn take_roots(&mut self) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// Events of the transport's own for the agent's stream, taken after every poll.
    fn take_events(&mut self) -> Vec<AgentEvent> {
        Vec::new()
    }
}

/// What the store holds, as of one poll.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoreView<'a> {
    /// The trusted content root.
    pub root: &'a Root,
    /// The store's state (current, last-known-good, bad and installed releases).
    pub state: &'a StoreState,
    /// Events processed by the rules since the agent started.
    pub processed: u64,
    /// Rule versions quarantined on this host.
    pub quarantined: u32,
    /// Detections the rules raised since the agent started.
    pub detections: u64,
    /// Nanoseconds spent evaluating events over every rule since the agent started (divided by
    /// the events processed: the mean evaluation time of one event).
    pub evaluation_ns: u64,
}
