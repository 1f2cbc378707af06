//! The shared prefilter index: one [`Prefilter`](crate::Prefilter) over the rules of many packs,
//! so that a rule set scans each event once instead of once per pack.
//!
//! The vendor-side compiler (`rulebox_sigma::index_data`) writes, for the packs of a release in
//! order, every rule's kinds, fields and needs (what the pack's own prefilter reads of it, nothing
//! it evaluates) into one frame:
//!
//! ```text
//!  header := "RBSP"  u32 (little-endian) length n   n bytes: the index's pack id   optional
//!  index  := "RBSI"  u32 (little-endian) length n   n bytes: postcard IndexData
//!  data   := header? index
//! ```
//!
//! The engine loaded with it is an ordinary ABI 3 pack to the sandbox, whose metadata names
//! [`INDEX_PACK_NAME`], whose version is the [`IndexData::digest`] of the packs it covers, and
//! whose rules are the covered packs' rules, in order; it never evaluates any. The host asks it
//! for each event's candidates (the rules it would run), records them instead of running them,
//! and hands each covered pack its own in the batch (`rulebox_sdk::batch`), which then runs them
//! without scanning the event itself. The host uses it only when the digest is that of the packs
//! it has loaded, in that order, all from the engine module the index runs in: a stale index is
//! never used, and without it every pack runs its own prefilter, as it always could.

use alloc::string::String;
use alloc::vec::Vec;

use rulebox_sdk::{EventKinds, PackError, Severity};
use serde::{Deserialize, Serialize};

use crate::prefilter::Needs;
use crate::program::{FieldSpec, MAX_ITEMS, Need};

/// The magic of the index frame.
pub const INDEX_MAGIC: [u8; 4] = *b"RBSI";

/// The version of the [`IndexData`] encoding; the engine refuses any other.
pub const INDEX_FORMAT: u32 = 1;

/// The metadata name of an engine loaded with an index (the host recognizes an index by it).
pub const INDEX_PACK_NAME: &str = rulebox_sdk::abi::INDEX_PACK_NAME;

/// Most rules one index covers.
pub const MAX_INDEX_RULES: usize = 1 << 20;

/// An index: the rules of the packs it covers, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexData {
    /// [`INDEX_FORMAT`].
    pub format: u32,
    /// What the host compares with the packs it loaded (`rulebox_runtime::index_digest` of their
    /// rule data's hashes, in order).
    pub digest: String,
    /// Every rule of every covered pack, pack after pack, each pack's in its index order.
    pub rules: Vec<IndexRule>,
}

/// What the index knows of one rule: no more than its pack's prefilter reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRule {
    /// The rule id (as its pack reports it).
    pub id: String,
    /// The rule version (as its pack reports it).
    pub version: String,
    /// The rule's severity (as its pack reports it).
    pub severity: Severity,
    /// The event kinds the rule subscribes to.
    pub kinds: EventKinds,
    /// The fields the needs name ([`Program::fields`](crate::Program::fields), whole).
    pub fields: Vec<FieldSpec>,
    /// [`Program::needs`](crate::Program::needs).
    pub needs: Vec<Vec<Need>>,
}

impl Needs for IndexRule {
    fn kinds(&self) -> EventKinds {
        self.kinds
    }
    fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }
    fn needs(&self) -> &[Vec<Need>] {
        &self.needs
    }
}

/// Appends the index frame of `index` to `out` (after the header, if any).
///
/// # Panics
///
/// If the encoding is 4 GiB or more.
pub fn push_index(out: &mut Vec<u8>, index: &IndexData) {
    let body = postcard::to_allocvec(index).unwrap_or_default();
    let len = u32::try_from(body.len()).expect("an index under 4 GiB");
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
}

/// Decodes and checks the body of an index frame: its format, its size, and that every need names
/// a field the rule has.
pub fn decode_index(body: &[u8]) -> Result<IndexData, PackError> {
    let index: IndexData = postcard::from_bytes(body)
        .map_err(|_| PackError::new("the prefilter index does not decode"))?;
    if index.format != INDEX_FORMAT {
        return Err(PackError::new(alloc::format!(
            "the prefilter index is format {}; this engine reads format {INDEX_FORMAT}",
            index.format
        )));
    }
    if index.rules.is_empty() || index.rules.len() > MAX_INDEX_RULES {
        return Err(PackError::new(alloc::format!(
            "the prefilter index covers {} rules; an index covers 1 to {MAX_INDEX_RULES}",
            index.rules.len()
        )));
    }
    for (i, rule) in index.rules.iter().enumerate() {
        let bad_field = rule
            .needs
            .iter()
            .flatten()
            .any(|n| n.field.is_some_and(|f| usize::from(f) >= rule.fields.len()));
        if bad_field || rule.fields.len() > MAX_ITEMS {
            return Err(PackError::new(alloc::format!(
                "rule {i} of the prefilter index names a field it does not have"
            )));
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use rulebox_sdk::EventKind;

    fn rule(field: u16) -> IndexRule {
        IndexRule {
            id: "r".into(),
            version: "1".into(),
            severity: Severity::Low,
            kinds: EventKinds::of(&[EventKind::ProcessStart]),
            fields: vec![FieldSpec {
                names: vec!["CommandLine".into()],
                elements: false,
            }],
            needs: vec![vec![Need {
                field: Some(field),
                text: "mimikatz".into(),
            }]],
        }
    }

    fn body(index: &IndexData) -> Vec<u8> {
        let mut out = Vec::new();
        push_index(&mut out, index);
        out[8..].to_vec()
    }

    #[test]
    fn an_index_round_trips_and_a_bad_one_is_refused_with_its_reason() {
        let good = IndexData {
            format: INDEX_FORMAT,
            digest: "d".into(),
            rules: vec![rule(0)],
        };
        assert_eq!(decode_index(&body(&good)).unwrap(), good);
        let e = decode_index(b"junk").unwrap_err();
        assert!(e.0.contains("does not decode"), "{e}");
        let old = IndexData {
            format: INDEX_FORMAT + 1,
            ..good.clone()
        };
        let e = decode_index(&body(&old)).unwrap_err();
        assert!(e.0.contains("format 2"), "{e}");
        let empty = IndexData {
            rules: vec![],
            ..good.clone()
        };
        let e = decode_index(&body(&empty)).unwrap_err();
        assert!(e.0.contains("covers 0 rules"), "{e}");
        let past = IndexData {
            rules: vec![rule(0), rule(1)],
            ..good
        };
        let e = decode_index(&body(&past)).unwrap_err();
        assert!(e.0.contains("rule 1 "), "{e}");
    }
}
