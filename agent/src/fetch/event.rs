//! [`FetchEvent`]: what the fetcher tells the embedder, in the agent's event stream
//! (`"type": "fetch"` in JSON).

use rulebox_controlplane_proto::FetchFailureClass;
use rulebox_runtime::text::Escaped;
use serde::Serialize;

/// A step of the fetcher. In JSON: `"type": "fetch"`, `"fetch"`: the variant's snake_case name, then
/// its fields (`docs/agent.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fetch", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FetchEvent {
    /// The controller enrolled this host's node key.
    Enrolled {
        /// The host id it gave.
        host_id: String,
    },
    /// A check-in was answered with an offer or reverts (plain check-ins are not reported).
    CheckedIn {
        /// Its `seq`.
        seq: u64,
        /// Reports it carried.
        reports: usize,
        /// The release offered, if any.
        offer: Option<u64>,
        /// Reverts in the answer.
        reverts: usize,
    },
    /// A release was downloaded, hash-checked and handed to the inbox (it is verified and installed
    /// from there).
    Delivered {
        /// The release.
        release: u64,
        /// Files whose download resumed a broken one.
        resumed: usize,
    },
    /// `timestamp.json` named a newer root (or was signed by rotated role keys): root `version` was
    /// fetched from the repository, verified on top of the trusted one, and handed to the store.
    RootFetched {
        /// The new root's version.
        version: u64,
    },
    /// A signed revert (from a check-in or `timestamp.json`) was handed to the inbox.
    RevertDelivered {
        /// The withdrawn release.
        release: u64,
    },
    /// A step failed; the fetcher waits `retry_in_ms` (backoff with full jitter) and tries again.
    Failed {
        /// What it was doing: `enroll`, `checkin`, `timestamp`, `revert`, `release`.
        step: &'static str,
        /// The release it was about, if any.
        release: Option<u64>,
        /// The class of failure.
        class: FetchFailureClass,
        /// The error.
        message: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
}

impl std::fmt::Display for FetchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchEvent::Enrolled { host_id } => {
                write!(f, "fetch: enrolled as {}", Escaped(host_id))
            }
            FetchEvent::CheckedIn {
                seq,
                reports,
                offer,
                reverts,
            } => {
                write!(f, "fetch: check-in {seq} ({reports} reports sent)")?;
                if let Some(r) = offer {
                    write!(f, "; offered release {r}")?;
                }
                if *reverts > 0 {
                    write!(f, "; {reverts} reverts")?;
                }
                Ok(())
            }
            FetchEvent::Delivered { release, resumed } => write!(
                f,
                "fetch: release {release} downloaded and delivered ({resumed} downloads resumed)"
            ),
            FetchEvent::RootFetched { version } => write!(
                f,
                "fetch: root version {version} fetched and verified; the store takes it"
            ),
            FetchEvent::RevertDelivered { release } => {
                write!(f, "fetch: the signed revert of release {release} delivered")
            }
            FetchEvent::Failed {
                step,
                release,
                class,
                message,
                retry_in_ms,
            } => {
                write!(f, "fetch: {step}")?;
                if let Some(r) = release {
                    write!(f, " of release {r}")?;
                }
                write!(
                    f,
                    " failed ({}): {}; next attempt in {:.1} s",
                    class.name(),
                    Escaped(message),
                    *retry_in_ms as f64 / 1000.0
                )
            }
        }
    }
}
