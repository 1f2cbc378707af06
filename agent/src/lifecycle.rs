//! [`Lifecycle`]: the steps of the agent's life that a person or a check-in reports: what it runs,
//! what it installed or reverted, when a release passed its health window.

use rulebox_runtime::text::Escaped;
use serde::Serialize;

use rulebox_runtime::content::ReleaseName;

/// Why the agent runs its built-in baseline content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BaselineReason {
    /// The agent was started without a store.
    SafeMode,
    /// No release is current: none is installed, an operator's rebuild left none current, or an
    /// earlier fallback went to the baseline.
    NothingInstalled,
    /// The boot guard abandoned the release and there was no usable last-known-good one.
    FellBack,
    /// A signed revert withdrew the running release and no installed release could replace it.
    Reverted,
    /// The content store cannot be opened, or the boot guard cannot record STARTING for a release
    /// that never reached GOOD here (a full disk): the baseline runs until the store works again.
    StoreUnavailable,
}

/// What an agent did, counted from its start to its stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AgentSummary {
    /// Events accepted into the queue.
    pub received: u64,
    /// Events processed by the rules.
    pub processed: u64,
    /// Events dropped because the queue was full ([`EventSender::try_send`](crate::EventSender::try_send)).
    pub dropped: u64,
    /// Records of event sources that could not be read as events.
    pub unreadable: u64,
    /// Events refused before reaching any rule (over the runtime's caps).
    pub refused: u64,
    /// Peers of the event socket refused.
    pub peers_refused: u64,
}

impl std::fmt::Display for AgentSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events read, {} processed, {} dropped, {} unreadable, {} refused, {} peers refused",
            self.received,
            self.processed,
            self.dropped,
            self.unreadable,
            self.refused,
            self.peers_refused
        )
    }
}

/// A lifecycle event. In JSON: `"type": "lifecycle"`, `"lifecycle"`: the variant's snake_case name,
/// then its fields (`docs/agent.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "lifecycle", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Lifecycle {
    /// The boot guard recorded STARTING for a release, durably, before it runs.
    Starting {
        /// The release.
        release: u64,
        /// This start's number since the release last reached GOOD.
        attempt: u32,
        /// Starts without GOOD after which it is abandoned.
        attempts_allowed: u32,
    },
    /// The agent runs its built-in baseline content.
    Baseline {
        /// Why.
        reason: BaselineReason,
    },
    /// A rule of the release was left out because this version of it is quarantined on this host.
    RuleSkipped {
        /// The release.
        release: Option<u64>,
        /// The rule id.
        rule_id: String,
        /// The rule version.
        rule_version: String,
    },
    /// Content is active in the rule set (between two events: none is lost or processed twice).
    Activated {
        /// The release (`null`: the baseline content).
        release: Option<u64>,
        /// Rules running.
        active: usize,
        /// Rules added.
        added: usize,
        /// Rules replaced by another version.
        replaced: usize,
        /// Rules unchanged (same module, same limits).
        unchanged: usize,
        /// Rules removed (the content no longer has them).
        removed: usize,
        /// Rules of the content not loaded (refused, mismatched, skipped, not compiling).
        not_loaded: usize,
    },
    /// A delivered release passed every check and is installed; it is activated next.
    Installing {
        /// The release.
        release: u64,
        /// The release that was current.
        previous: Option<u64>,
    },
    /// A signed revert was applied: the release is marked bad on this host (unless the owner's
    /// policy pins it).
    Reverted {
        /// The withdrawn release.
        release: u64,
        /// The release now current (`null`: the baseline content).
        current: Option<u64>,
        /// Whether the withdrawn release was running (and was replaced).
        was_current: bool,
        /// Whether it was marked bad (`false`: it is the release the owner's policy pins, which a
        /// revert stops but never marks bad).
        marked_bad: bool,
        /// The vendor's reason.
        reason: String,
    },
    /// A release passed its health window: GOOD is recorded, it is last-known-good, and the
    /// versions its update replaced are dropped.
    Good {
        /// The release.
        release: u64,
    },
    /// The agent stopped: every queued event was processed.
    Stopped(AgentSummary),
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lifecycle::Starting {
                release,
                attempt,
                attempts_allowed,
            } => write!(
                f,
                "starting release {release} (attempt {attempt} of {attempts_allowed})"
            ),
            Lifecycle::Baseline { reason } => match reason {
                BaselineReason::SafeMode => {
                    f.write_str("safe mode: running the built-in baseline content only")
                }
                BaselineReason::NothingInstalled => {
                    f.write_str("no release is current; running the baseline content")
                }
                BaselineReason::StoreUnavailable => f.write_str(
                    "the content store cannot be used; running the baseline content until it can",
                ),
                BaselineReason::FellBack => {
                    f.write_str("no usable release; running the baseline content")
                }
                BaselineReason::Reverted => f.write_str(
                    "the revert left no usable installed release; running the baseline content",
                ),
            },
            Lifecycle::RuleSkipped {
                rule_id,
                rule_version,
                ..
            } => write!(
                f,
                "not loaded: {} {} is quarantined on this host",
                Escaped(rule_id),
                Escaped(rule_version)
            ),
            Lifecycle::Activated {
                release,
                active,
                added,
                replaced,
                unchanged,
                removed,
                not_loaded,
            } => write!(
                f,
                "{} active: {active} rules ({added} added, {replaced} replaced, {unchanged} unchanged, {removed} removed, {not_loaded} not loaded)",
                ReleaseName(*release)
            ),
            Lifecycle::Installing { release, previous } => {
                write!(f, "installed release {release} (")?;
                match previous {
                    Some(p) => write!(f, "previous: release {p}")?,
                    None => f.write_str("previous: the baseline content")?,
                }
                f.write_str("); activating")
            }
            Lifecycle::Reverted {
                release,
                current,
                was_current,
                marked_bad,
                reason,
            } => {
                write!(
                    f,
                    "applied the signed revert of release {release} ({}); {}: {}",
                    Escaped(reason),
                    if *was_current {
                        "now running"
                    } else {
                        "it was not running; still running"
                    },
                    ReleaseName(*current)
                )?;
                if !marked_bad {
                    write!(
                        f,
                        " (release {release} is not marked bad: the owner's policy pins it)"
                    )?;
                }
                Ok(())
            }
            Lifecycle::Good { release } => {
                write!(f, "release {release} is GOOD (last-known-good)")
            }
            Lifecycle::Stopped(summary) => write!(f, "stopped: {summary}"),
        }
    }
}
