//! A rule set's shared prefilter index: one scan of each event for the rules of many packs.
//!
//! An index is a rule pack (ABI 3) whose metadata names [`INDEX_PACK_NAME`]: the Sigma engine
//! loaded with the index data `rulebox_sigma::index_data` writes, for example. Its rules are the
//! rules of the packs it covers, in their order, and it never evaluates one: per event, it names
//! the rules worth running (`rule_begin`), which the host records instead of running
//! ([`LoadedPack::record_candidates`]), and hands each covered pack, in the batch, the list of its
//! own ([`rulebox_sdk::batch`]); that pack then runs those rules (each under its own budget, as
//! always) and skips its own prefilter. So an event is scanned once, not once per pack, and a pack
//! none of whose rules is named is not called at all.
//!
//! The index is content the host does not interpret, so it is used only while it provably
//! belongs to the packs loaded ([`IndexStatus::Current`]):
//! - its rules, in order, are exactly the rules of some loaded packs, each pack's whole, in that
//!   pack's order, with the same versions and subscriptions, each the current version of its id;
//! - its version is [`index_digest`] of those packs' rule data hashes, in that order: the compiler
//!   computed it from the very data the host loaded;
//! - every covered pack runs in the engine module the index runs in (so it reads the batch's
//!   candidate table).
//!
//! Otherwise it is [`IndexStatus::Stale`] (a pack was updated, added or removed since it was
//! built) and every pack runs its own prefilter, which is what a set without an index does. A
//! fault of the index (a trap, its fuel or time) stops it for good ([`IndexStatus::Stopped`]):
//! the packs fall back on the same batch, so no event and no rule is missed; installing it again
//! starts it afresh.
//!
//! Its own budget per event (fuel and deadline) is its limits' `fuel_per_event` and `deadline_ms`
//! times the number of packs it covers: it does in one scan the work of that many packs'
//! prefilters, each of which had that budget, so no event costs more than it could before, and
//! an event that a pack's prefilter scans within its budget does not stop the index.

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use rulebox_sdk::abi::INDEX_PACK_NAME;

use crate::pack::LoadedPack;
use crate::rule_info::PackInfo;

/// The digest an index's version must be for the packs whose rule data hashes
/// ([`PackInfo::data_hash`], [`content_hash`](crate::content_hash) of the data) are `data_hashes`,
/// in the index's order: SHA-256, in hex, of the hashes each followed by a newline.
pub fn index_digest<'a>(data_hashes: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for d in data_hashes {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Whether a set's shared prefilter index is in use ([`RuleSet::index_status`](crate::RuleSet::index_status)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexStatus {
    /// The set has no index.
    None,
    /// In use: it covers these packs and rules.
    Current {
        /// Packs covered.
        packs: usize,
        /// Rules covered.
        rules: usize,
    },
    /// Loaded but not used: it does not match the packs loaded (the text says how); every pack
    /// runs its own prefilter.
    Stale(String),
    /// It faulted and was stopped (the text says how); every pack runs its own prefilter.
    Stopped(String),
}

/// The index of a set, and where its rules are.
pub(crate) struct SharedIndex {
    pub(crate) pack: LoadedPack,
    pub(crate) status: IndexStatus,
    /// When current: per index rule, the position in the set's units and the member there.
    pub(crate) map: Vec<(usize, u32)>,
    /// When current: per unit position, whether the index covers it.
    pub(crate) covered: Vec<bool>,
}

impl SharedIndex {
    pub(crate) fn new(mut pack: LoadedPack) -> SharedIndex {
        pack.record_candidates();
        SharedIndex {
            pack,
            status: IndexStatus::Stale("not yet matched with the packs".into()),
            map: Vec::new(),
            covered: Vec::new(),
        }
    }

    /// The index's pack.
    pub(crate) fn info(&self) -> &Arc<PackInfo> {
        self.pack.info()
    }

    pub(crate) fn is_current(&self) -> bool {
        matches!(self.status, IndexStatus::Current { .. })
    }

    /// Stops the index after a fault (`why`).
    pub(crate) fn stop(&mut self, why: String) {
        tracing::warn!(
            index = %crate::text::Escaped(&self.pack.info().id),
            "the shared prefilter index stopped; every pack runs its own prefilter: {why}"
        );
        self.pack.release();
        self.status = IndexStatus::Stopped(why);
        self.map.clear();
        self.covered.clear();
    }
}

/// Per event of a batch, the candidates the index named for one unit: `events` (indices into the
/// batch, increasing), and for `events[k]` the members `members[starts[k]..starts[k + 1]]`.
#[derive(Debug, Default)]
pub(crate) struct UnitCandidates {
    pub(crate) events: Vec<usize>,
    pub(crate) starts: Vec<usize>,
    pub(crate) members: Vec<u32>,
}

impl UnitCandidates {
    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.starts.clear();
        self.members.clear();
    }

    /// Adds `member` on `event` (events in increasing order, members increasing within one).
    pub(crate) fn push(&mut self, event: usize, member: u32) {
        if self.events.last() != Some(&event) {
            self.events.push(event);
            self.starts.push(self.members.len());
        }
        self.members.push(member);
    }

    /// The members named on `events[k]`.
    pub(crate) fn list(&self, k: usize) -> &[u32] {
        let Some(&start) = self.starts.get(k) else {
            return &[];
        };
        let end = self
            .starts
            .get(k + 1)
            .copied()
            .unwrap_or(self.members.len());
        self.members.get(start..end).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_every_hash_and_their_order() {
        let ab = index_digest(["a", "b"]);
        assert_eq!(ab.len(), 64);
        assert_ne!(ab, index_digest(["b", "a"]));
        assert_ne!(ab, index_digest(["a"]));
        assert_ne!(index_digest(["ab"]), index_digest(["a", "b"]));
    }

    #[test]
    fn candidates_group_by_event() {
        let mut c = UnitCandidates::default();
        c.push(0, 1);
        c.push(0, 4);
        c.push(3, 2);
        assert_eq!(c.events, [0, 3]);
        assert_eq!(c.list(0), [1, 4]);
        assert_eq!(c.list(1), [2]);
        assert!(c.list(2).is_empty(), "past the events: nothing");
        c.clear();
        assert!(c.events.is_empty() && c.members.is_empty());
    }
}
