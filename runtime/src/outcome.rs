//! What processing events produced: detections with the rule that made them, alerts, and the
//! errors of events that could not be handed to the rules.

use std::sync::Arc;

use rulebox_sdk::Detection;

use crate::quarantine::Alert;
use crate::rule_info::RuleInfo;

/// A detection, with the rule that made it.
#[derive(Debug, Clone)]
pub struct RuleDetection {
    /// The rule.
    pub rule: Arc<RuleInfo>,
    /// What it reported.
    pub detection: Detection<'static>,
}

/// What processing one event produced.
///
/// Reuse one `Outcome` across events ([`RuleSet::process_into`](crate::RuleSet::process_into),
/// [`RuleSet::process_encoded`](crate::RuleSet::process_encoded)):
/// clearing it keeps the detections' strings for the next event's detections to be written into,
/// so that in the steady state reporting a detection allocates nothing.
#[derive(Default)]
pub struct Outcome {
    /// Detections of every rule that ran, in rule order.
    pub detections: Vec<RuleDetection>,
    /// Alerts about rules (quarantines, strikes) raised by this event.
    pub alerts: Vec<Alert>,
    /// How many rules were called.
    pub rules_run: u32,
    /// Detections of earlier events, kept for their allocations.
    pub(crate) spare: Vec<Detection<'static>>,
}

/// Most detections an [`Outcome`] keeps for reuse.
pub(crate) const MAX_SPARE: usize = 256;
/// Largest detection (bytes of string and field storage) an [`Outcome`] keeps for reuse, so that a
/// rule reporting huge values cannot make the host hold on to their memory: at most
/// `MAX_SPARE × MAX_SPARE_BYTES` (1 MiB) stays allocated between events.
const MAX_SPARE_BYTES: usize = 4096;

/// The heap bytes a detection holds.
fn held_bytes(d: &Detection<'static>) -> usize {
    let text = |c: &std::borrow::Cow<'static, str>| match c {
        std::borrow::Cow::Owned(s) => s.capacity(),
        std::borrow::Cow::Borrowed(_) => 0,
    };
    text(&d.rule_id)
        + text(&d.title)
        + d.fields.capacity() * std::mem::size_of::<rulebox_sdk::Field<'static>>()
        + d.fields
            .iter()
            .map(|f| text(&f.name) + text(&f.value))
            .sum::<usize>()
}

impl Outcome {
    /// Empties the outcome, keeping its allocations (the strings of small detections included).
    pub fn clear(&mut self) {
        self.rules_run = 0;
        if self.detections.is_empty() && self.alerts.is_empty() {
            return;
        }
        for d in self.detections.drain(..) {
            if self.spare.len() < MAX_SPARE && held_bytes(&d.detection) <= MAX_SPARE_BYTES {
                self.spare.push(d.detection);
            }
        }
        self.detections.clear();
        self.alerts.clear();
        self.rules_run = 0;
    }
}

impl Clone for Outcome {
    fn clone(&self) -> Outcome {
        Outcome {
            detections: self.detections.clone(),
            alerts: self.alerts.clone(),
            rules_run: self.rules_run,
            spare: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("detections", &self.detections)
            .field("alerts", &self.alerts)
            .field("rules_run", &self.rules_run)
            .finish_non_exhaustive()
    }
}

/// An event that could not be handed to the rules (counted, never silently dropped).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event does not encode.
    #[error("event does not encode: {0}")]
    Encode(#[from] rulebox_sdk::WireError),
    /// The event carries more untyped fields than the runtime accepts.
    #[error("event has {count} untyped fields; the limit is {limit}")]
    TooManyFields {
        /// Fields in `extra`.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The encoded event is larger than the runtime accepts.
    #[error("event is {size} bytes encoded; the limit is {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// What processing a batch of events produced ([`RuleSet::process_batch`](crate::RuleSet::process_batch)):
/// for each event, in order, its [`Outcome`] or why it was refused.
///
/// Reuse one across batches: its outcomes keep their allocations.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The outcomes of the accepted events, in order.
    pub(crate) outcomes: Vec<Outcome>,
    /// For each event: the index of its outcome, or why it was refused.
    pub(crate) slots: Vec<Result<usize, EventError>>,
    /// Outcomes in use (the rest are kept for their allocations).
    pub(crate) used: usize,
}

impl BatchOutcome {
    /// How many events the batch had.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the batch had no event.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Event `i`'s outcome, or why it was refused; `None` if `i` is out of range.
    pub fn get(&self, i: usize) -> Option<Result<&Outcome, &EventError>> {
        self.slots.get(i).map(|slot| match slot {
            Ok(j) => Ok(&self.outcomes[*j]),
            Err(e) => Err(e),
        })
    }

    /// Each event's outcome or why it was refused, in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<&Outcome, &EventError>> {
        (0..self.slots.len()).filter_map(|i| self.get(i))
    }

    /// Empties it, keeping the allocations.
    pub(crate) fn reset(&mut self) {
        self.slots.clear();
        for o in &mut self.outcomes[..self.used] {
            o.clear();
        }
        self.used = 0;
    }

    /// A cleared outcome for the next accepted event; its index.
    pub(crate) fn next_outcome(&mut self) -> usize {
        if self.used == self.outcomes.len() {
            self.outcomes.push(Outcome::default());
        }
        self.used += 1;
        self.used - 1
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rulebox_sdk::{Field, Severity};

    use super::*;

    fn detection(value_len: usize) -> RuleDetection {
        RuleDetection {
            rule: Arc::new(RuleInfo {
                id: "r".into(),
                name: String::new(),
                version: "1".into(),
                severity: Severity::Low,
                subscriptions: rulebox_sdk::EventKinds::all(),
                content_hash: String::new(),
                source: String::new(),
                wasi: false,
                pack: None,
                index: 0,
            }),
            detection: Detection {
                rule_id: Cow::Owned("r".into()),
                title: Cow::Owned("t".into()),
                severity: Severity::Low,
                fields: vec![Field {
                    name: Cow::Owned("n".into()),
                    value: Cow::Owned("v".repeat(value_len)),
                }],
            },
        }
    }

    #[test]
    fn clearing_keeps_small_detections_only_and_at_most_max_spare() {
        let mut outcome = Outcome::default();
        outcome.detections.push(detection(10));
        outcome.detections.push(detection(64 << 10));
        outcome.clear();
        assert!(outcome.detections.is_empty());
        assert_eq!(outcome.spare.len(), 1, "the 64 KiB detection is not kept");
        for _ in 0..3 {
            outcome
                .detections
                .extend((0..MAX_SPARE).map(|_| detection(10)));
            outcome.clear();
        }
        assert_eq!(outcome.spare.len(), MAX_SPARE);
    }
}
