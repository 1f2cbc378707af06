//! What the host knows about a loaded rule.

use rulebox_sdk::{EventKinds, Severity};
use serde::Serialize;

/// A loaded rule's identity, from its metadata and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RuleInfo {
    /// The rule's id.
    pub id: String,
    /// The rule's name.
    pub name: String,
    /// The rule's version.
    pub version: String,
    /// Default severity of its detections.
    pub severity: Severity,
    /// The event kinds it is called for.
    #[serde(serialize_with = "ser_kinds")]
    pub subscriptions: EventKinds,
    /// SHA-256 of the module bytes, hex.
    pub content_hash: String,
    /// Where the module came from.
    pub source: String,
    /// Whether the module uses WASI preview 1.
    pub wasi: bool,
}

fn ser_kinds<S: serde::Serializer>(kinds: &EventKinds, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(kinds.iter().map(|k| k.name()))
}
