//! Health reports: what an agent tells the controller about itself, spooled on disk while offline
//! and sent with the next check-in.

use serde::{Deserialize, Serialize};

/// Longest text (a refusal reason, a fetch error message) the controller keeps from one report, in
/// bytes; longer text is cut at a character boundary and marked with `…`.
pub const MAX_REPORT_TEXT_BYTES: usize = 1024;

/// What an agent reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    /// When, in seconds since the Unix epoch. On the wire this is the **host's** clock and only
    /// informational: the controller replaces it with its own receive time before any gate reads
    /// the report, so a host with a wrong clock can neither hide its silence nor age its cohort.
    pub at_unix: u64,
    /// What kind of report.
    pub kind: ReportKind,
    /// The release the agent runs (`None`: the baseline content built into the agent).
    pub content_release: Option<u64>,
    /// Rules quarantined on this host in the running content.
    pub quarantined_rules: u32,
    /// Boot-guard fallbacks since the agent was installed.
    pub boot_guard_reverts: u32,
    /// Events processed since the last heartbeat.
    pub events: u64,
    /// Detections raised since the last heartbeat.
    pub detections: u64,
    /// Mean time to evaluate one event over every rule, microseconds, since the last heartbeat
    /// (finite, at least 0).
    pub mean_latency_us: f64,
}

/// Kinds of report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReportKind {
    /// The periodic heartbeat.
    Heartbeat,
    /// Sent before activating a release: from now on the host counts in the release's cohort, and
    /// silence counts against it.
    Installing {
        /// The release.
        release: u64,
    },
    /// The boot guard reached GOOD on the release: its content really ran through the health window.
    /// Only these count as success for a ring.
    Good {
        /// The release.
        release: u64,
    },
    /// The host refused the release (its owner's policy); it is not in the cohort.
    Refused {
        /// The release.
        release: u64,
        /// The host's reason.
        reason: String,
    },
    /// Fetching the offered release failed; nothing was installed. The agent retries with backoff.
    FetchFailed {
        /// The release.
        release: u64,
        /// What kind of failure.
        class: FetchFailureClass,
        /// The error, for people.
        message: String,
    },
    /// The host left `release` for `to`: a signed revert was applied, or its boot guard fell back.
    Reverted {
        /// The release left.
        release: u64,
        /// The release now running (`None`: the baseline content).
        to: Option<u64>,
    },
}

impl ReportKind {
    /// The kind's name as written in JSON (`heartbeat`, `installing`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ReportKind::Heartbeat => "heartbeat",
            ReportKind::Installing { .. } => "installing",
            ReportKind::Good { .. } => "good",
            ReportKind::Refused { .. } => "refused",
            ReportKind::FetchFailed { .. } => "fetch_failed",
            ReportKind::Reverted { .. } => "reverted",
        }
    }

    /// The release the report is about, for every kind but the heartbeat.
    pub fn release(&self) -> Option<u64> {
        match self {
            ReportKind::Heartbeat => None,
            ReportKind::Installing { release }
            | ReportKind::Good { release }
            | ReportKind::Refused { release, .. }
            | ReportKind::FetchFailed { release, .. }
            | ReportKind::Reverted { release, .. } => Some(*release),
        }
    }
}

/// Why a fetch failed, as an agent classifies it (each class has its own remedy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchFailureClass {
    /// The server could not be reached, or the connection broke.
    Network,
    /// The server answered with an unexpected HTTP status.
    Status,
    /// The server sent more bytes than the signed size allows.
    TooLarge,
    /// Bytes did not match the signed hash.
    Hash,
    /// A signature did not verify (offer, timestamp, manifest, revert).
    Signature,
    /// Signed data had expired (offer, timestamp, manifest).
    Expired,
    /// The store refused the release under the owner's policy.
    Policy,
    /// The host's disk: staging or install could not be written.
    Disk,
}

impl FetchFailureClass {
    /// The class's name as written in JSON.
    pub fn name(self) -> &'static str {
        match self {
            FetchFailureClass::Network => "network",
            FetchFailureClass::Status => "status",
            FetchFailureClass::TooLarge => "too_large",
            FetchFailureClass::Hash => "hash",
            FetchFailureClass::Signature => "signature",
            FetchFailureClass::Expired => "expired",
            FetchFailureClass::Policy => "policy",
            FetchFailureClass::Disk => "disk",
        }
    }
}

/// How much a host's owner cares if it misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// Workstations, test machines.
    Low,
    /// Ordinary servers.
    Medium,
    /// Domain controllers, hospital systems, airport check-in.
    High,
}

impl Criticality {
    /// The name as written in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Criticality::Low => "low",
            Criticality::Medium => "medium",
            Criticality::High => "high",
        }
    }
}

/// Cuts `text` to at most [`MAX_REPORT_TEXT_BYTES`] bytes at a character boundary, marking a cut
/// with `…`. Returns whether it cut.
pub fn bound_text(text: &mut String) -> bool {
    if text.len() <= MAX_REPORT_TEXT_BYTES {
        return false;
    }
    let keep = text.floor_char_boundary(MAX_REPORT_TEXT_BYTES - '…'.len_utf8());
    text.truncate(keep);
    text.push('…');
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_kinds_have_their_documented_json_form() {
        let kinds = [
            (ReportKind::Heartbeat, r#""heartbeat""#),
            (
                ReportKind::Good { release: 42 },
                r#"{"good":{"release":42}}"#,
            ),
            (
                ReportKind::FetchFailed {
                    release: 42,
                    class: FetchFailureClass::TooLarge,
                    message: "x".into(),
                },
                r#"{"fetch_failed":{"release":42,"class":"too_large","message":"x"}}"#,
            ),
            (
                ReportKind::Reverted {
                    release: 42,
                    to: Some(41),
                },
                r#"{"reverted":{"release":42,"to":41}}"#,
            ),
        ];
        for (kind, json) in kinds {
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
            assert_eq!(serde_json::from_str::<ReportKind>(json).unwrap(), kind);
            assert!(json.contains(kind.name()));
        }
        assert!(serde_json::from_str::<ReportKind>(r#"{"good":{"release":1,"x":2}}"#).is_err());
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let mut text = "é".repeat(MAX_REPORT_TEXT_BYTES);
        assert!(bound_text(&mut text));
        assert!(text.len() <= MAX_REPORT_TEXT_BYTES);
        assert!(text.ends_with('…'));
        let mut short = "fine".to_owned();
        assert!(!bound_text(&mut short));
        assert_eq!(short, "fine");
    }
}
