//! What the host knows about a loaded rule, and about the pack it belongs to.

use std::sync::Arc;

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
    /// The rule pack the rule belongs to; `None` for a one-rule module.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_pack")]
    pub pack: Option<Arc<PackInfo>>,
    /// The rule's index in its pack (0 for a one-rule module).
    pub index: u32,
}

/// A loaded rule pack's identity, from its metadata, its module and its rule data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PackInfo {
    /// The pack's id.
    pub id: String,
    /// The pack's name.
    pub name: String,
    /// The pack's version.
    pub version: String,
    /// SHA-256 of the module bytes, hex.
    pub content_hash: String,
    /// SHA-256 of the rule data, hex (that of no bytes for a pack without data).
    pub data_hash: String,
    /// Where the module came from.
    pub source: String,
    /// How many rules the pack has.
    pub rules: u32,
    /// Whether the module uses WASI preview 1.
    pub wasi: bool,
}

fn ser_pack<S: serde::Serializer>(pack: &Option<Arc<PackInfo>>, s: S) -> Result<S::Ok, S::Error> {
    match pack {
        Some(p) => s.serialize_some(&**p),
        None => s.serialize_none(),
    }
}

fn ser_kinds<S: serde::Serializer>(kinds: &EventKinds, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(kinds.iter().map(|k| k.name()))
}
