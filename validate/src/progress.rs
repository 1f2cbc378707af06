//! What a long validation run tells its caller as it goes: progress, and every fault found.

use rulebox_runtime::QuarantineRecord;
use rulebox_sdk::Event;

use crate::report::FaultSummary;

/// Progress of a long run (for a progress bar), and the faults as they are found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A rule starts: its position, its name and how many events it will see.
    Rule {
        /// 0-based position.
        index: usize,
        /// Rules (times schema versions) in all.
        of: usize,
        /// The rule id or source.
        name: String,
        /// Events it will be run on.
        events: u64,
    },
    /// More events were run.
    Events(u64),
    /// A rule faulted on an event. Sent for every fault, as it happens (the report lists the first
    /// [`MAX_LISTED_FAULTS`](crate::MAX_LISTED_FAULTS) and counts all); the rule then goes on
    /// with a fresh instance.
    Fault(Box<FaultFound>),
}

/// One fault the validator found, with what it takes to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultFound {
    /// The rule id.
    pub rule_id: String,
    /// The module's source, as in the report.
    pub source: String,
    /// Which events it was among: `"test"`, `"corpus"`, `"generated"` or `"boundary"`.
    pub origin: &'static str,
    /// The fault, as the report lists it.
    pub fault: FaultSummary,
    /// The quarantine record the runtime made, with the exact event bytes, limits and stack the
    /// rule ran under (`rulebox replay` runs it again). `None` for a budget hit that the rule's
    /// `budget_strikes` allowed: the runtime reset the rule instead of quarantining it.
    pub record: Option<QuarantineRecord>,
    /// The event, as read or generated (for an event file, when there is no record).
    pub event: Event<'static>,
}
