//! Check-in: every interval, `POST /v1/checkin` with the spooled health reports and the host's
//! content state; the answer carries the next interval, an offer (if any) and the reverts the host
//! must apply.
//!
//! The request is authenticated by the host's node key: header [`HEADER_HOST`] names the host id the
//! controller gave it, header [`HEADER_SIGNATURE`] holds the hex ed25519 signature over
//! [`CONTEXT_CHECKIN`] followed by the exact body bytes. Nothing in the body names the host.

use rulebox_runtime::content::{Offer, Revert, Signed};
use serde::{Deserialize, Serialize};

use crate::report::HealthReport;

/// Domain-separation context prefixed to the body before the node key signs it.
pub const CONTEXT_CHECKIN: &[u8] = b"rulebox-checkin-v1\0";
/// The header naming the host (its id from enrolment).
pub const HEADER_HOST: &str = "Rulebox-Host";
/// The header holding the signature (128 hex digits).
pub const HEADER_SIGNATURE: &str = "Rulebox-Signature";
/// Most reports one check-in may carry; the agent sends the oldest first and keeps the rest spooled.
pub const MAX_REPORTS_PER_CHECKIN: usize = 500;
/// Largest check-in body accepted, in bytes.
pub const MAX_CHECKIN_BYTES: usize = 1 << 20;
/// Most releases a host may list as bad.
pub const MAX_BAD_RELEASES: usize = 1000;

/// `POST /v1/checkin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The protocol version the agent speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub protocol: u32,
    /// Strictly increasing per host, persisted by the agent *before* it sends. A retry of the same
    /// request (same `seq`, same body) gets the stored answer and changes nothing; a lower `seq` is
    /// refused with `409 seq_conflict` (whose body gives the last `seq` accepted).
    pub seq: u64,
    /// What the host runs.
    pub state: HostContentState,
    /// Spooled reports, oldest first, at most [`MAX_REPORTS_PER_CHECKIN`].
    pub reports: Vec<HealthReport>,
    /// Reports the agent had to drop since its last accepted check-in (its spool was full).
    pub dropped_reports: u64,
}

/// What content a host runs, as its store says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostContentState {
    /// The current release (`None`: the baseline content built into the agent).
    pub release: Option<u64>,
    /// The last-known-good release.
    pub last_known_good: Option<u64>,
    /// Releases this host marked bad (withdrawn by a revert, or abandoned by its boot guard), at
    /// most [`MAX_BAD_RELEASES`]: never offered to it again.
    pub bad: Vec<u64>,
    /// The version of the content root the host trusts, if it reports it.
    #[serde(default)]
    pub root_version: Option<u64>,
}

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinResponse {
    /// The protocol version of the answer.
    pub protocol: u32,
    /// The `seq` of the request this answers.
    pub ack_seq: u64,
    /// Seconds until the next check-in (the agent adds full jitter: uniform in `[0, interval]`).
    pub interval_secs: u64,
    /// A release this host may take now, signed by the root's rollout role; `null` for none.
    pub offer: Option<Signed<Offer>>,
    /// Signed reverts of releases this host runs, holds as last-known-good, or was offered, that it
    /// has not yet listed as bad. The same reverts are listed in the repository's `timestamp.json`.
    pub reverts: Vec<Signed<Revert>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ReportKind;

    #[test]
    fn a_checkin_reads_in_its_documented_form() {
        let text = r#"{ "protocol": 1, "seq": 17,
            "state": { "release": 41, "last_known_good": 41, "bad": [40] },
            "reports": [ { "at_unix": 1, "kind": { "good": { "release": 41 } }, "content_release": 41,
                           "quarantined_rules": 0, "boot_guard_reverts": 0, "events": 10,
                           "detections": 1, "mean_latency_us": 12.5 } ],
            "dropped_reports": 0 }"#;
        let req: CheckinRequest = serde_json::from_str(text).unwrap();
        assert_eq!(req.seq, 17);
        assert_eq!(req.state.bad, [40]);
        assert_eq!(req.state.root_version, None);
        assert_eq!(req.reports[0].kind, ReportKind::Good { release: 41 });
        let err = serde_json::from_str::<CheckinRequest>(
            &text.replace(r#""seq": 17"#, r#""seq": 17, "host_id": "someone-else""#),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `host_id`"), "{err}");
    }
}
