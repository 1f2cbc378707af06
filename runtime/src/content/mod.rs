//! Signed content releases: bundle formats and TUF-style checks, the on-disk content store with
//! crash-safe writes, and the boot guard that falls back to last-known-good content.
//!
//! The pieces, in the order an agent uses them:
//!
//! - [`load_trusted_root`] / [`update_root`]: the endpoint's trust anchor (a [`Root`] naming the
//!   ed25519 keys and how many signatures a manifest needs) and its rotation.
//! - [`verify_bundle`]: every check a bundle directory must pass before anything in it is used:
//!   sizes capped before reading, signature threshold, expiry (freeze), rollback, ABI and schema
//!   versions, minimum runtime, module sizes and hashes (mix-and-match), no extra or missing files.
//! - [`check_bundle_structure`]: the same checks but the signatures and the time-dependent ones, for a
//!   bundle that is not signed yet (the release gate runs it).
//! - [`ContentStore`]: the store folder (releases, pointers to the current and last-known-good
//!   release, boot records, quarantine list, reports), laid out as [`layout`] says, refused if
//!   another user could change it ([`check_private_folder`]), bounded in what it keeps
//!   ([`StoreUsage`], the retention rules). Every write is temp file + fsync + rename + fsync of the
//!   folder ([`write_atomic`]); everything read back is re-verified before use; every file is read
//!   with the one capped reader ([`read_capped`]).
//! - [`Inbox`]: where bundles and signed reverts are delivered for the agent.
//! - [`verify_timestamp`] / [`verify_offer`]: what a content fetcher checks before it fetches: the
//!   repository's `timestamp.json` (the root's timestamp role) and the controller's offer (the root's
//!   rollout role); see [`Roles`] for what each online role may sign.
//! - [`ContentStore::begin_boot`] / [`ContentStore::mark_good`] / [`ContentStore::rollback`]: the
//!   boot guard.
//! - [`ContentStore::set_policy`] / [`CustomerPolicy`]: the owner's signed policy (pin, N-k, delay,
//!   pause), checked by [`ContentStore::install`]; [`ContentStore::apply_revert`]: the vendor's
//!   signed revert of a halted release (`docs/rollout.md`).
//!
//! Formats, the threat model and the recovery rules are in `docs/content.md`.

mod boot_guard;
mod format;
pub(crate) mod fsutil;
mod inbox;
pub mod layout;
mod lock;
mod offer;
mod ownership;
mod policy;
mod retention;
mod revert;
mod role;
mod store;
mod timestamp;
mod verify;

/// Test-only hooks (builds with the `fault-injection` feature): the install steps the store can
/// pause at, for tests that kill the process there. Not part of the supported API.
#[cfg(any(test, feature = "fault-injection"))]
#[doc(hidden)]
pub mod testing {
    pub use super::fsutil::{PAUSE_ENV, PAUSE_STEPS};
}

#[cfg(test)]
mod testutil;

pub use boot_guard::{BootDecision, BootRecord, FallbackReason, RollbackOutcome, Starting};
pub use format::{
    CONTEXT_MANIFEST, CONTEXT_ROOT, EngineEntry, KeyEntry, ListedFile, MANIFEST_FORMAT,
    MANIFEST_FORMAT_PACKS, MAX_ENGINES, MAX_MANIFEST_RULES, MAX_PACKS, Manifest, PackEntry,
    PackRuleEntry, RoleKeys, RoleName, Roles, Root, RuleEntry, Signable, Signature, Signed,
    data_file_name, key_id, manifest_hash, module_file_name, signing_bytes,
};
pub use fsutil::{
    CappedReadError, DiskUsage, Links, disk_usage, fsync_dir, read_capped,
    read_capped_following_links, read_capped_with, write_atomic,
};
pub use inbox::{Inbox, InboxEntry, MAX_REFUSED_BYTES, MAX_REFUSED_KEPT, STALE_DELIVERY};
pub use layout::{OWNER_ROOT_FILE, POLICY_FILE, POLICY_STATE_FILE, REVERT_SUFFIX, StoreLayout};
pub use offer::{
    CONTEXT_OFFER, MAX_HOST_ID_BYTES, MAX_OFFER_BYTES, OFFER_FORMAT, Offer, OfferError,
    verify_offer, verify_offer_envelope,
};
pub use ownership::{UnsafeFolder, check_private_folder};
pub use policy::{
    CONTEXT_POLICY, CustomerPolicy, MAX_SEEN_RELEASES, POLICY_FORMAT, PolicyError, PolicyMode,
    PolicyViolation, SeenRelease, SeenReleases, verify_policy,
};
pub use retention::StoreUsage;
pub use revert::{
    CONTEXT_REVERT, MAX_REVERT_BYTES, MAX_REVERT_VALIDITY_SECS, REVERT_FORMAT, Revert, RevertError,
    RevertOutcome, verify_revert,
};
pub use role::RoleError;
pub use store::{
    BadReason, ContentStore, InstallOutcome, InstalledRelease, KEEP_OTHER_RELEASES, MAX_REPORTS,
    QuarantineEntry, QuarantineReason, ReleaseName, Report, ReportKind, StoreError, StoreState,
    StoreStatus,
};
pub use timestamp::{
    CONTEXT_TIMESTAMP, MAX_TIMESTAMP_BYTES, TIMESTAMP_FORMAT, Timestamp, TimestampError,
    TimestampRelease, TimestampRevert, verify_timestamp,
};
pub use verify::{
    BundleContents, BundleError, BundleLimits, MAX_RELEASE_STEP, MAX_ROOT_BYTES, RUNTIME_VERSION,
    RootError, SignatureError, VerifiedBundle, check_bundle_structure, load_trusted_root,
    parse_trusted_root, update_root, verify_bundle, verify_envelope,
};

/// Seconds since the Unix epoch, by the system clock (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, by the system clock (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
