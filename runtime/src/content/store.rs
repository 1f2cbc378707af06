//! The on-disk content store: verified copies of installed releases, the pointers to the current and
//! last-known-good release, the boot-guard records, the persisted quarantine list and reports. Every
//! file and folder is in the layout table of [`layout`](super::layout).
//!
//! Every file is replaced with [`write_atomic`]; a release folder is built under
//! `releases/.tmp-<n>-<unique>/`, fsynced, and renamed into place before `state.json` points at it.
//! A kill at any instant leaves either the old or the new content.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::boot_guard::BootRecord;
use super::format::{Root, RuleEntry};
use super::fsutil::{
    CappedReadError, TMP_PREFIX, create_private_dir, fsync_dir, pause_point, read_capped,
    remove_path, unique_suffix, write_atomic, write_new_synced,
};
use super::inbox::Inbox;
use super::layout::{QUARANTINE_FILE, STATE_FILE, StoreLayout};
use super::ownership::{UnsafeFolder, check_private_folder};
use super::retention::StoreUsage;
use super::verify::{
    BundleError, BundleLimits, Checks, RootError, VerifiedBundle, load_trusted_root,
    parse_trusted_root, read_signed_manifest, update_root, verify_bundle, verify_with,
};
use super::{now_unix, now_unix_ms};
use crate::quarantine::{QuarantineRecord, Reason};

/// Largest `state.json` read.
const MAX_STATE_BYTES: u64 = 1 << 20;
/// Largest `quarantine.json` read.
const MAX_QUARANTINE_BYTES: u64 = 16 << 20;
/// Most quarantine entries kept (the oldest go first).
const MAX_QUARANTINE_ENTRIES: usize = 10_000;
/// Installed releases kept besides the current and the last-known-good one (the newest go last).
pub const KEEP_OTHER_RELEASES: usize = 3;
/// Most reports kept in `reports/` (the oldest go first).
pub const MAX_REPORTS: usize = 1_000;
/// Most releases remembered as bad (the lowest numbers are forgotten first; the rollback counter
/// refuses them anyway).
const MAX_BAD_RELEASES: usize = 1_000;

/// The store's pointers and records (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreState {
    /// Format of this file; this runtime writes and reads 1.
    pub format: u32,
    /// The highest release ever accepted (rollback defence: nothing at or below it installs again).
    pub highest_release: Option<u64>,
    /// The release the agent runs; `None`: the built-in baseline content.
    pub current: Option<u64>,
    /// The last release that reached GOOD (passed its health window).
    pub last_known_good: Option<u64>,
    /// Releases that crash-looped (or were declared bad): never activated again unless forced.
    pub bad: BTreeSet<u64>,
    /// The boot guard's records.
    pub boot: BootRecord,
    /// Installed releases (folders under `releases/`) with their manifest's canonical hash: a
    /// release folder is used only if its manifest still has this hash.
    pub installed: BTreeMap<u64, String>,
    /// Why each bad release is bad, where it is known (left out of the JSON when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bad_reasons: BTreeMap<u64, BadReason>,
    /// The version of the trusted root whose [`release_counter`](Root::release_counter) the store
    /// applied (left out of the JSON when none was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_counter_root: Option<u64>,
}

impl StoreState {
    /// The format this runtime writes.
    pub const FORMAT: u32 = 1;

    /// Marks `release` bad for `reason` (keeping at most the newest 1,000 bad releases).
    pub(super) fn mark_bad(&mut self, release: u64, reason: BadReason) {
        self.bad.insert(release);
        self.bad_reasons.insert(release, reason);
        while self.bad.len() > MAX_BAD_RELEASES {
            if let Some(lowest) = self.bad.pop_first() {
                self.bad_reasons.remove(&lowest);
            }
        }
    }

    /// Clears `release`'s bad mark; whether it had one.
    pub(super) fn unmark_bad(&mut self, release: u64) -> bool {
        self.bad_reasons.remove(&release);
        self.bad.remove(&release)
    }

    /// The [`StoreError::BadRelease`] refusal of `release`.
    pub(super) fn bad_release(&self, release: u64) -> StoreError {
        StoreError::BadRelease {
            release,
            why: self.bad_reasons.get(&release).copied(),
        }
    }
}

/// Why a release is marked bad on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BadReason {
    /// It started `boot_attempts` times without reaching GOOD (the boot guard).
    CrashLoop,
    /// The vendor withdrew it with a signed revert.
    Withdrawn,
}

impl std::fmt::Display for BadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadReason::CrashLoop => "it failed to start",
            BadReason::Withdrawn => "the vendor withdrew it with a signed revert",
        })
    }
}

impl Default for StoreState {
    fn default() -> Self {
        StoreState {
            format: Self::FORMAT,
            highest_release: None,
            current: None,
            last_known_good: None,
            bad: BTreeSet::new(),
            boot: BootRecord::default(),
            installed: BTreeMap::new(),
            bad_reasons: BTreeMap::new(),
            release_counter_root: None,
        }
    }
}

/// A release for people: `release 42`, or `the baseline content` for `None` (what a store's
/// `current: None` means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseName(pub Option<u64>);

impl std::fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(r) => write!(f, "release {r}"),
            None => f.write_str("the baseline content"),
        }
    }
}

/// A rule version that was quarantined, kept across restarts (`quarantine.json`). The version stays
/// quarantined until a release with another version (or other bytes) of that rule is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineEntry {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's version.
    pub rule_version: String,
    /// SHA-256 of the module, hex.
    pub content_hash: String,
    /// Why.
    pub reason: QuarantineReason,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Why a rule version is on the quarantine list: a [`Reason`] this runtime knows, or a name it does
/// not (written by a newer runtime), kept as written so that the entry still keeps the rule out.
/// Stored as the reason's name (`"out_of_bounds"`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuarantineReason {
    /// A reason this runtime knows.
    Known(Reason),
    /// A name this runtime does not know (at most 64 bytes are kept).
    Unrecognized(String),
}

impl QuarantineReason {
    /// The reason's name.
    pub fn name(&self) -> &str {
        match self {
            QuarantineReason::Known(r) => r.name(),
            QuarantineReason::Unrecognized(name) => name,
        }
    }
}

impl From<Reason> for QuarantineReason {
    fn from(reason: Reason) -> Self {
        QuarantineReason::Known(reason)
    }
}

impl std::fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", crate::text::Escaped(self.name()))
    }
}

impl Serialize for QuarantineReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for QuarantineReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match Reason::from_name(&name) {
            Some(r) => QuarantineReason::Known(r),
            None => {
                let kept = &name[..name.floor_char_boundary(64)];
                QuarantineReason::Unrecognized(kept.to_owned())
            }
        })
    }
}

/// What a [`Report`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportKind {
    /// The boot guard went back to the last-known-good release.
    Fallback,
    /// The boot guard went back to the built-in baseline content.
    Baseline,
    /// An operator rolled back by hand.
    Rollback,
    /// A bundle was refused.
    Refusal,
    /// A signed revert was applied.
    Revert,
    /// A damaged `state.json` was rebuilt from the release folders.
    Rebuild,
}

impl ReportKind {
    /// The snake_case name used in JSON and in report file names.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Fallback => "fallback",
            ReportKind::Baseline => "baseline",
            ReportKind::Rollback => "rollback",
            ReportKind::Refusal => "refusal",
            ReportKind::Revert => "revert",
            ReportKind::Rebuild => "rebuild",
        }
    }
}

impl std::fmt::Display for ReportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A report written to `reports/` (fallbacks, rollbacks, refusals) for people and fleet tooling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// What happened.
    pub kind: ReportKind,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The release that was left (or refused), if any.
    pub from: Option<u64>,
    /// The release now current; `None`: the built-in baseline content (or unchanged, for refusals).
    pub to: Option<u64>,
    /// One line for people.
    pub reason: String,
    /// STARTING records without GOOD that triggered a fallback, if that was the cause.
    pub attempts: Option<u32>,
    /// The releases marked bad after this event.
    pub bad: Vec<u64>,
    /// The bundle folder, for refusals.
    pub source: Option<String>,
}

/// What [`ContentStore::install`] did.
#[derive(Debug)]
pub struct InstallOutcome {
    /// The release installed (now current).
    pub release: u64,
    /// The release that was current before.
    pub previous: Option<u64>,
    /// Quarantine entries dropped because the release brings another version of their rule.
    pub unquarantined: Vec<QuarantineEntry>,
    /// The verified content, ready to activate.
    pub bundle: VerifiedBundle,
}

/// One installed release, as [`ContentStore::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledRelease {
    /// The release number.
    pub release: u64,
    /// The manifest's canonical hash recorded at install.
    pub manifest_hash: String,
    /// When it was built (from its manifest), if the manifest could be read.
    pub created_unix: Option<u64>,
    /// When its manifest expires, if it could be read.
    pub expires_unix: Option<u64>,
    /// Whether the manifest has expired (the content keeps running; raise an alert).
    pub expired: bool,
    /// Number of rules, if the manifest could be read.
    pub rules: Option<usize>,
    /// The release notes, if the manifest could be read.
    pub notes: Option<String>,
    /// Whether it is the current release.
    pub current: bool,
    /// Whether it is the last-known-good release.
    pub last_known_good: bool,
    /// Whether it is marked bad.
    pub bad: bool,
    /// Why it is marked bad, if it is and that is known.
    pub bad_reason: Option<BadReason>,
    /// Whether it reached GOOD on this host at some point.
    pub reached_good: bool,
    /// Why the manifest copy fails its checks (signature, hash pin), if it does. Module hashes are
    /// checked only when the release is loaded.
    pub problem: Option<String>,
}

/// Everything `rulebox store status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// The store folder.
    pub dir: PathBuf,
    /// When the status was taken, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// The trusted root's version.
    pub root_version: u64,
    /// The trusted root's expiry.
    pub root_expires_unix: u64,
    /// Whether the trusted root has expired (informational: rotate it).
    pub root_expired: bool,
    /// The current release (`None`: baseline content).
    pub current: Option<u64>,
    /// Whether the current release's manifest has expired: it keeps running, but an alert is due.
    pub current_expired: bool,
    /// The last-known-good release.
    pub last_known_good: Option<u64>,
    /// The highest release accepted.
    pub highest_release: Option<u64>,
    /// Releases marked bad.
    pub bad: Vec<u64>,
    /// The boot guard's records.
    pub boot: BootRecord,
    /// Installed releases, oldest first.
    pub installed: Vec<InstalledRelease>,
    /// Persisted quarantine entries.
    pub quarantine: Vec<QuarantineEntry>,
    /// How much the store holds on disk.
    pub usage: StoreUsage,
}

/// Why a store operation failed. Every refusal leaves the store unchanged. Each message is whole
/// (it names its cause; `source()` is not used), so printing an error chain shows each cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or folder of the store cannot be read or written (a full disk, a failing one, a
    /// permission): a problem of this host, never a verdict on content.
    #[error("store: `{}`: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// The folder is not an initialised store (no `state.json`).
    #[error("`{}` is not an initialised content store (no state.json)", dir.display())]
    NotInitialized {
        /// The folder.
        dir: PathBuf,
    },
    /// `init` on a folder that already holds a store.
    #[error("`{}` already holds a content store", dir.display())]
    AlreadyInitialized {
        /// The folder.
        dir: PathBuf,
    },
    /// Another process has the store open for writing (the agent, most likely).
    #[error("the content store `{}` is in use by another process (is the agent running?)", dir.display())]
    Locked {
        /// The folder.
        dir: PathBuf,
    },
    /// The store's folder, or one above it, may be changed by another user (who could then replace
    /// the trusted root and choose all content), or its lock file is not the store's own.
    #[error("the content store is not safe to trust: {0}")]
    Unsafe(UnsafeFolder),
    /// A change was asked of a store opened read-only.
    #[error("the content store was opened read-only")]
    ReadOnly,
    /// `state.json` or `quarantine.json` cannot be understood.
    #[error("store file `{}` is damaged: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The trusted root cannot be used, or a new root was refused.
    #[error(transparent)]
    Root(#[from] RootError),
    /// A bundle was refused.
    #[error("bundle refused: {0}")]
    Bundle(BundleError),
    /// The release is marked bad on this host and is never activated again unless forced.
    #[error(
        "release {release} is marked bad on this machine{}; it will not be activated again unless forced",
        why.map(|w| format!(" ({w})")).unwrap_or_default()
    )]
    BadRelease {
        /// The release.
        release: u64,
        /// Why it is bad, if known.
        why: Option<BadReason>,
    },
    /// A bundle carries the number of a release this host installed, but other content (another
    /// manifest hash): never "already installed", never installed over the one this host has.
    #[error(
        "release {release} conflicts with the release {release} installed here: its manifest hash is {offered}, the installed one's is {installed}"
    )]
    ReleaseConflict {
        /// The release number.
        release: u64,
        /// The installed release's manifest hash.
        installed: String,
        /// The bundle's manifest hash.
        offered: String,
    },
    /// The release is not installed in the store.
    #[error("release {release} is not installed in the store")]
    NotInstalled {
        /// The release.
        release: u64,
    },
    /// An installed release fails re-verification (damaged on disk, or signed by keys the current
    /// root no longer trusts).
    #[error("installed release {release} fails verification: {error}")]
    ReleaseUnusable {
        /// The release.
        release: u64,
        /// What failed.
        error: BundleError,
    },
    /// An installed release's folder holds another manifest than the one installed.
    #[error(
        "the folder of release {release} holds release {found_release} with manifest hash {found_hash}; the store installed {expected_hash}"
    )]
    ReleaseMismatch {
        /// The release.
        release: u64,
        /// The release its manifest names.
        found_release: u64,
        /// Its manifest hash.
        found_hash: String,
        /// The hash recorded at install.
        expected_hash: String,
    },
    /// A rollback without a target, and no last-known-good release.
    #[error("there is no last-known-good release to roll back to")]
    NoLastKnownGood,
    /// `mark_good` for a release that is not current.
    #[error("release {release} is not the current release (that is {})", ReleaseName(*current))]
    NotCurrent {
        /// The release given.
        release: u64,
        /// The current release.
        current: Option<u64>,
    },
    /// A release the owner's signed policy does not allow, or a policy problem.
    #[error("customer policy: {0}")]
    Policy(super::policy::PolicyError),
    /// A revert instruction was refused.
    #[error("revert refused: {0}")]
    Revert(super::revert::RevertError),
    /// A store file cannot be encoded (not expected to happen).
    #[error("cannot encode `{what}`: {error}")]
    Encode {
        /// Which file.
        what: &'static str,
        /// The error.
        error: serde_json::Error,
    },
}

impl From<BundleError> for StoreError {
    fn from(e: BundleError) -> Self {
        StoreError::Bundle(e)
    }
}

impl From<super::policy::PolicyError> for StoreError {
    fn from(e: super::policy::PolicyError) -> Self {
        StoreError::Policy(e)
    }
}

impl From<super::revert::RevertError> for StoreError {
    fn from(e: super::revert::RevertError) -> Self {
        StoreError::Revert(e)
    }
}

impl From<UnsafeFolder> for StoreError {
    fn from(e: UnsafeFolder) -> Self {
        StoreError::Unsafe(e)
    }
}

impl StoreError {
    /// Whether this is a verdict on the content offered (a bundle or a revert refused, a release
    /// marked bad, a conflicting release, the owner's policy saying no): the delivery is refused
    /// for good.
    /// Every other error is a problem of this host (a full disk, a damaged or unreadable store or
    /// policy file): the delivery is kept and tried again.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Bundle(_)
                | StoreError::Revert(_)
                | StoreError::BadRelease { .. }
                | StoreError::ReleaseConflict { .. }
                | StoreError::Policy(super::policy::PolicyError::Refused(_))
        )
    }
}

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The content store. Open it with [`ContentStore::open`] (exclusive: takes the store's lock, cleans
/// up what an interrupted write left) or [`ContentStore::open_read_only`] (for status tools: no lock,
/// no writes). Create one with [`ContentStore::init`].
#[derive(Debug)]
pub struct ContentStore {
    pub(super) dir: PathBuf,
    pub(super) root: Root,
    pub(super) state: StoreState,
    pub(super) quarantine: Vec<QuarantineEntry>,
    pub(super) limits: BundleLimits,
    /// The locked lock file; `None` for a read-only store.
    lock: Option<File>,
}

impl ContentStore {
    /// Creates a store in `dir` (created if missing) trusting the root envelope `root_bytes`, which
    /// must be a valid root signed by a threshold of its own keys. Refused if `dir` already holds an
    /// initialised store. Crash-safe: `state.json` is written last, and a half-done `init` can simply
    /// be run again.
    pub fn init(dir: &Path, root_bytes: &[u8]) -> Result<ContentStore, StoreError> {
        Self::init_with(dir, root_bytes, BundleLimits::default())
    }

    /// [`init`](Self::init) with other bundle size caps.
    pub fn init_with(
        dir: &Path,
        root_bytes: &[u8],
        limits: BundleLimits,
    ) -> Result<ContentStore, StoreError> {
        let root = parse_trusted_root(root_bytes)?;
        if std::fs::symlink_metadata(dir).is_err() {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            create_private_dir(dir).map_err(io_at(dir))?;
        }
        check_private_folder(dir)?;
        let lock = super::lock::take(dir)?;
        let layout = StoreLayout::new(dir);
        if layout.state().exists() {
            return Err(StoreError::AlreadyInitialized {
                dir: dir.to_path_buf(),
            });
        }
        create_folders(&layout)?;
        fsync_dir(dir).map_err(io_at(dir))?;
        let root_path = layout.root();
        write_atomic(&root_path, root_bytes).map_err(io_at(&root_path))?;
        let mut store = ContentStore {
            dir: dir.to_path_buf(),
            root,
            state: StoreState::default(),
            quarantine: Vec::new(),
            limits,
            lock: Some(lock),
        };
        store.save_quarantine()?;
        store.save_state(StoreState::default())?;
        // A root that declares a release counter starts the numbering there.
        store.apply_release_counter()?;
        Ok(store)
    }

    /// Opens the store in `dir` for writing. Refuses a folder that another user could change
    /// ([`StoreError::Unsafe`]: the folder, or one above it, not this user's or root's, or writable
    /// by group or others; see [`check_private_folder`]). Takes the store's exclusive lock (refused
    /// with [`StoreError::Locked`] if another process holds it; the lock goes when the store is
    /// dropped or the process dies; the lock file is this user's alone), removes the leftovers of
    /// interrupted writes (every `.tmp-*`, release folders no state references, unfinished inbox
    /// deliveries, refused inbox entries over their bound, reports over theirs), and reads the
    /// trusted root (checked: valid and self-signed), `state.json` and `quarantine.json`.
    pub fn open(dir: &Path) -> Result<ContentStore, StoreError> {
        Self::open_with(dir, BundleLimits::default())
    }

    /// [`open`](Self::open) with other bundle size caps.
    pub fn open_with(dir: &Path, limits: BundleLimits) -> Result<ContentStore, StoreError> {
        if !StoreLayout::new(dir).state().exists() {
            return Err(StoreError::NotInitialized {
                dir: dir.to_path_buf(),
            });
        }
        check_private_folder(dir)?;
        let lock = super::lock::take(dir)?;
        let mut store = Self::read(dir, limits)?;
        store.lock = Some(lock);
        store.remove_leftovers(true)?;
        create_folders(&store.layout())?;
        // A rotation whose state write did not complete.
        if let Err(e) = store.apply_release_counter() {
            tracing::warn!(error = %e, "cannot apply the trusted root's release counter yet");
        }
        Ok(store)
    }

    /// Opens the store without its lock and without changing anything, for status tools that may run
    /// while the agent holds the store. Every change is refused with [`StoreError::ReadOnly`]. The
    /// view is a snapshot: each file is replaced atomically, so each is read whole, but the agent may
    /// change them at any time.
    pub fn open_read_only(dir: &Path) -> Result<ContentStore, StoreError> {
        if !StoreLayout::new(dir).state().exists() {
            return Err(StoreError::NotInitialized {
                dir: dir.to_path_buf(),
            });
        }
        Self::read(dir, BundleLimits::default())
    }

    /// [`open`](Self::open) the store in `dir`, or [`init`](Self::init) it with `root_bytes` if it
    /// is not initialised yet (an existing store keeps its own root; rotate with
    /// [`update_root`](Self::update_root)).
    pub fn open_or_init(dir: &Path, root_bytes: &[u8]) -> Result<ContentStore, StoreError> {
        match Self::open(dir) {
            Err(StoreError::NotInitialized { .. }) => Self::init(dir, root_bytes),
            other => other,
        }
    }

    /// Recovery for a damaged `state.json` (which atomic writes never produce, but a failing disk
    /// can): takes the lock, moves the damaged file aside (`state.json.damaged-<unix_ms>`), and
    /// rebuilds the state from the release folders: every folder whose content passes
    /// re-verification is installed again, the highest release is the highest folder (so rollback
    /// protection survives), and no release is current, last-known-good or bad: the agent runs the
    /// baseline until an operator picks a release with [`rollback`](Self::rollback) or a new release
    /// is installed. The quarantine list is kept if it is readable. Writes a `rebuild` report and
    /// returns its path.
    pub fn rebuild_state(dir: &Path) -> Result<(ContentStore, PathBuf), StoreError> {
        check_private_folder(dir)?;
        let lock = super::lock::take(dir)?;
        let layout = StoreLayout::new(dir);
        let root = load_trusted_root(&layout.root())?;
        let quarantine_path = layout.quarantine();
        let quarantine = read_json(&quarantine_path, MAX_QUARANTINE_BYTES).unwrap_or_default();
        let mut store = ContentStore {
            dir: dir.to_path_buf(),
            root,
            state: StoreState::default(),
            quarantine,
            limits: BundleLimits::default(),
            lock: Some(lock),
        };
        // The release folders are what the state is rebuilt from: none is a leftover here.
        store.remove_leftovers(false)?;
        create_folders(&layout)?;
        let state_path = layout.state();
        let aside = dir.join(format!("{STATE_FILE}.damaged-{}", now_unix_ms()));
        let moved = match std::fs::rename(&state_path, &aside) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_at(&state_path)(e)),
        };

        let mut state = StoreState::default();
        let mut skipped = Vec::new();
        let releases = layout.releases();
        for entry in std::fs::read_dir(&releases).map_err(io_at(&releases))? {
            let entry = entry.map_err(io_at(&releases))?;
            let name = entry.file_name();
            let Some(release) = name
                .to_str()
                .and_then(|n| n.parse::<u64>().ok().filter(|r| r.to_string() == n))
            else {
                continue;
            };
            // Only verified content is ever renamed into `releases/`: the folder's release was
            // accepted once, whatever state it is in now.
            state.highest_release = state.highest_release.max(Some(release));
            match verify_with(&entry.path(), &store.root, Checks::INSTALLED, &store.limits) {
                Ok(bundle) if bundle.release() == release => {
                    state
                        .installed
                        .insert(release, bundle.manifest_hash().to_owned());
                }
                Ok(bundle) => {
                    skipped.push(format!("{release} (holds release {})", bundle.release()))
                }
                Err(e) => skipped.push(format!("{release} ({e})")),
            }
        }
        if let Some(counter) = store.root.release_counter {
            // The counter was applied when this root was installed; releases above it may have
            // been accepted since. Applying it again would lower the rollback counter.
            state.highest_release = state.highest_release.max(Some(counter));
            state.release_counter_root = Some(store.root.version);
        }
        let installed: Vec<String> = state.installed.keys().map(u64::to_string).collect();
        let mut reason = format!(
            "state rebuilt from the release folders: installed [{}], highest release {}",
            installed.join(", "),
            state
                .highest_release
                .map_or_else(|| "none".to_owned(), |r| r.to_string())
        );
        if moved {
            reason.push_str(&format!(
                "; the damaged state was moved to {}",
                aside.display()
            ));
        }
        if !skipped.is_empty() {
            reason.push_str(&format!("; unusable folders: {}", skipped.join(", ")));
        }
        let report = store.write_report(&Report {
            kind: ReportKind::Rebuild,
            at_unix_ms: now_unix_ms(),
            from: None,
            to: None,
            reason,
            attempts: None,
            bad: Vec::new(),
            source: None,
        })?;
        store.save_state(state)?;
        if !quarantine_path.exists() {
            store.save_quarantine()?;
        }
        tracing::warn!(report = %report.display(), "content store state rebuilt");
        Ok((store, report))
    }

    fn read(dir: &Path, limits: BundleLimits) -> Result<ContentStore, StoreError> {
        let layout = StoreLayout::new(dir);
        let root = load_trusted_root(&layout.root())?;
        let state_path = layout.state();
        let state: StoreState = read_json(&state_path, MAX_STATE_BYTES)?;
        if state.format != StoreState::FORMAT {
            return Err(StoreError::Corrupt {
                path: state_path,
                problem: format!(
                    "format {} is not the format this runtime reads ({})",
                    state.format,
                    StoreState::FORMAT
                ),
            });
        }
        let quarantine_path = layout.quarantine();
        let quarantine: Vec<QuarantineEntry> = if quarantine_path.exists() {
            read_json(&quarantine_path, MAX_QUARANTINE_BYTES)?
        } else {
            Vec::new()
        };
        Ok(ContentStore {
            dir: dir.to_path_buf(),
            root,
            state,
            quarantine,
            limits,
            lock: None,
        })
    }

    /// Removes what interrupted writes and deliveries left: `.tmp-*` files and folders in the store,
    /// `releases/` and `reports/`; release folders `state.json` does not reference (an install killed
    /// before its state was written, or a prune killed after); then applies the inbox's and the
    /// reports' bounds. A failure to remove a leftover is logged, not fatal: a store that cannot
    /// delete still opens (the disk may be full or failing; the agent must run).
    fn remove_leftovers(&self, unreferenced_releases: bool) -> Result<(), StoreError> {
        let layout = self.layout();
        for dir in [self.dir.clone(), layout.releases(), layout.reports()] {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_at(&dir))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let unreferenced_release = unreferenced_releases
                    && dir == layout.releases()
                    && name.parse::<u64>().is_ok_and(|r| {
                        r.to_string() == name && !self.state.installed.contains_key(&r)
                    });
                if !name.starts_with(TMP_PREFIX) && !unreferenced_release {
                    continue;
                }
                let path = entry.path();
                match remove_path(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed the leftover of an interrupted write")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove the leftover of an interrupted write")
                    }
                }
            }
        }
        if let Err(e) = self.inbox().clean() {
            tracing::warn!(error = %e, "cannot clean the inbox's leftovers");
        }
        if let Err(e) = self.prune_reports() {
            tracing::warn!(error = %e, "cannot prune old reports");
        }
        Ok(())
    }

    pub(super) fn writable(&self) -> Result<(), StoreError> {
        if self.lock.is_some() {
            Ok(())
        } else {
            Err(StoreError::ReadOnly)
        }
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths of the store's files and folders.
    pub fn layout(&self) -> StoreLayout {
        StoreLayout::new(&self.dir)
    }

    /// The folder bundles and reverts are delivered into for the agent.
    pub fn inbox_dir(&self) -> PathBuf {
        self.layout().inbox()
    }

    /// The inbox, to scan or deliver to.
    pub fn inbox(&self) -> Inbox {
        Inbox::new(self.inbox_dir())
    }

    /// The folder of the module cache ([`ModuleCache::open`](crate::ModuleCache::open) it there).
    pub fn cache_dir(&self) -> PathBuf {
        self.layout().cache()
    }

    /// The folder reports are written to.
    pub fn reports_dir(&self) -> PathBuf {
        self.layout().reports()
    }

    /// The folder of an installed release.
    pub fn release_dir(&self, release: u64) -> PathBuf {
        self.layout().release(release)
    }

    /// The trusted root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The pointers and records, as last written.
    pub fn state(&self) -> &StoreState {
        &self.state
    }

    /// The bundle size caps in force.
    pub fn limits(&self) -> &BundleLimits {
        &self.limits
    }

    /// Replaces `state.json` with `state` (atomically), then adopts it.
    pub(super) fn save_state(&mut self, state: StoreState) -> Result<(), StoreError> {
        self.writable()?;
        let bytes = serde_json::to_vec_pretty(&state).map_err(|error| StoreError::Encode {
            what: STATE_FILE,
            error,
        })?;
        let path = self.layout().state();
        write_atomic(&path, &bytes).map_err(io_at(&path))?;
        self.state = state;
        Ok(())
    }

    fn save_quarantine(&self) -> Result<(), StoreError> {
        self.writable()?;
        let bytes =
            serde_json::to_vec_pretty(&self.quarantine).map_err(|error| StoreError::Encode {
                what: QUARANTINE_FILE,
                error,
            })?;
        let path = self.layout().quarantine();
        write_atomic(&path, &bytes).map_err(io_at(&path))
    }

    /// Writes `report` to `reports/<unix_ms>-<kind>.json` (atomically) and returns its path.
    pub fn write_report(&self, report: &Report) -> Result<PathBuf, StoreError> {
        self.writable()?;
        let kind = report.kind.name();
        let dir = self.reports_dir();
        let mut path = dir.join(format!("{}-{kind}.json", report.at_unix_ms));
        let mut n = 1u32;
        while path.exists() {
            path = dir.join(format!("{}-{kind}-{n}.json", report.at_unix_ms));
            n = n.saturating_add(1);
        }
        let bytes = serde_json::to_vec_pretty(report).map_err(|error| StoreError::Encode {
            what: "report",
            error,
        })?;
        write_atomic(&path, &bytes).map_err(io_at(&path))?;
        if let Err(e) = self.prune_reports() {
            tracing::warn!(error = %e, "cannot prune old reports");
        }
        Ok(path)
    }

    /// Writes a `refusal` report for a bundle that [`install`](Self::install) refused. The store is
    /// otherwise unchanged.
    pub fn report_refusal(
        &self,
        bundle_dir: &Path,
        error: &StoreError,
    ) -> Result<PathBuf, StoreError> {
        let from = match error {
            StoreError::BadRelease { release, .. }
            | StoreError::ReleaseConflict { release, .. } => Some(*release),
            StoreError::Bundle(
                BundleError::AlreadyInstalled { release }
                | BundleError::Rollback { release, .. }
                | BundleError::TooFarAhead { release, .. },
            ) => Some(*release),
            _ => None,
        };
        self.write_report(&Report {
            kind: ReportKind::Refusal,
            at_unix_ms: now_unix_ms(),
            from,
            to: self.state.current,
            reason: error.to_string(),
            attempts: None,
            bad: self.state.bad.iter().copied().collect(),
            source: Some(bundle_dir.display().to_string()),
        })
    }

    /// Verifies the bundle in `bundle_dir` ([`verify_bundle`] against the trusted root, the highest
    /// release accepted and `now_unix`), copies it into `releases/<release>` and makes it current:
    ///
    /// 1. each module (and engine) is written to `releases/.tmp-<release>-<unique>/modules/`, each
    ///    pack's rule data to `.../data/`, and fsynced, then the manifest, then the folder;
    /// 2. the folder is renamed to `releases/<release>` and `releases/` is fsynced;
    /// 3. `state.json` is replaced (highest release, current, installed hash);
    /// 4. quarantine entries of rules the release brings in another version are dropped.
    ///
    /// A kill before step 3 completes leaves the old content current (the folder, if renamed, is not
    /// referenced and is replaced by the next install of that release); after it, the new. A refused
    /// bundle leaves the store unchanged. A release marked bad is refused with
    /// [`StoreError::BadRelease`].
    pub fn install(
        &mut self,
        bundle_dir: &Path,
        now_unix: u64,
    ) -> Result<InstallOutcome, StoreError> {
        self.writable()?;
        let bundle = match verify_bundle(
            bundle_dir,
            &self.root,
            self.state.highest_release,
            now_unix,
            &self.limits,
        ) {
            Ok(b) => b,
            Err(
                e @ (BundleError::AlreadyInstalled { release }
                | BundleError::Rollback { release, .. }),
            ) => {
                if self.state.bad.contains(&release) {
                    return Err(self.state.bad_release(release));
                }
                return Err(self.conflict(bundle_dir, release).unwrap_or(e.into()));
            }
            Err(e) => return Err(e.into()),
        };
        let release = bundle.release();
        if self.state.bad.contains(&release) {
            return Err(self.state.bad_release(release));
        }
        // The owner's signed policy (if any) has the last word, before anything is written.
        self.check_policy(&bundle, now_unix)?;
        self.write_release(&bundle)?;

        let previous = self.state.current;
        let mut state = self.state.clone();
        state.highest_release = Some(release);
        state.current = Some(release);
        state
            .installed
            .insert(release, bundle.manifest_hash().to_owned());
        state.boot.starting = None;
        pause_point("write-state");
        self.save_state(state)?;

        // The install is committed. Drop quarantine entries the release supersedes; if that write
        // fails the stale entries name another version or hash than the new rules, so they match
        // nothing.
        // A rule of a pack is quarantined under its engine's hash.
        let superseded = |q: &QuarantineEntry| {
            let m = bundle.manifest();
            let in_rules = m.rules.iter().any(|r| {
                r.id == q.rule_id && (r.version != q.rule_version || r.sha256 != q.content_hash)
            });
            let in_packs = m.packs.iter().any(|p| {
                p.rules.iter().any(|r| {
                    r.id == q.rule_id && (r.version != q.rule_version || p.engine != q.content_hash)
                })
            });
            in_rules || in_packs
        };
        let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.quarantine)
            .into_iter()
            .partition(|q| superseded(q));
        self.quarantine = kept;
        if !dropped.is_empty()
            && let Err(e) = self.save_quarantine()
        {
            tracing::warn!(error = %e, "could not rewrite the quarantine list after an install");
        }
        if let Err(e) = self.prune_releases() {
            tracing::warn!(error = %e, "could not remove old release folders after an install");
        }
        tracing::info!(release, ?previous, "installed a content release");
        Ok(InstallOutcome {
            release,
            previous,
            unquarantined: dropped,
            bundle,
        })
    }

    /// For a bundle refused as not newer (`release` at or below the highest accepted): if this host
    /// installed a release of that number with another manifest, the bundle is a conflicting
    /// release, not the same one ([`StoreError::ReleaseConflict`]). The manifest's signatures were
    /// checked by the refusal that got here.
    fn conflict(&self, bundle_dir: &Path, release: u64) -> Option<StoreError> {
        let installed = self.state.installed.get(&release)?;
        let (manifest, _) = read_signed_manifest(bundle_dir, &self.root, &self.limits).ok()?;
        let offered = super::format::manifest_hash(&manifest).ok()?;
        (offered != *installed).then(|| StoreError::ReleaseConflict {
            release,
            installed: installed.clone(),
            offered,
        })
    }

    /// Copies a verified bundle into `releases/<release>` (steps 1 and 2 of [`install`](Self::install)).
    fn write_release(&self, bundle: &VerifiedBundle) -> Result<(), StoreError> {
        let releases = self.layout().releases();
        let tmp = releases.join(format!(
            "{TMP_PREFIX}{}-{}",
            bundle.release(),
            unique_suffix()
        ));
        let result = (|| {
            let modules = tmp.join("modules");
            std::fs::create_dir(&tmp).map_err(io_at(&tmp))?;
            std::fs::create_dir(&modules).map_err(io_at(&modules))?;
            let data = tmp.join("data");
            if !bundle.packs().is_empty() {
                std::fs::create_dir(&data).map_err(io_at(&data))?;
            }
            for (file, bytes) in bundle.files() {
                pause_point("copy-module");
                let path = tmp.join(file);
                write_new_synced(&path, bytes).map_err(io_at(&path))?;
            }
            fsync_dir(&modules).map_err(io_at(&modules))?;
            if !bundle.packs().is_empty() {
                fsync_dir(&data).map_err(io_at(&data))?;
            }
            pause_point("write-manifest");
            let manifest = tmp.join("manifest.json");
            write_new_synced(&manifest, bundle.manifest_bytes()).map_err(io_at(&manifest))?;
            fsync_dir(&tmp).map_err(io_at(&tmp))?;
            let target = self.release_dir(bundle.release());
            if std::fs::symlink_metadata(&target).is_ok() {
                // A folder from an install killed before state.json referenced it.
                std::fs::remove_dir_all(&target).map_err(io_at(&target))?;
            }
            pause_point("rename-release");
            std::fs::rename(&tmp, &target).map_err(io_at(&target))?;
            fsync_dir(&releases).map_err(io_at(&releases))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Re-verifies installed release `release` and returns its content: the manifest signature
    /// against the trusted root, the module sizes and hashes, and the manifest hash recorded at
    /// install. The rollback and expiry checks do not apply (an installed release keeps running after
    /// its manifest expires; [`status`](Self::status) flags it).
    pub fn load_release(&self, release: u64) -> Result<VerifiedBundle, StoreError> {
        let Some(pinned) = self.state.installed.get(&release) else {
            return Err(StoreError::NotInstalled { release });
        };
        let bundle = verify_with(
            &self.release_dir(release),
            &self.root,
            Checks::INSTALLED,
            &self.limits,
        )
        .map_err(|error| StoreError::ReleaseUnusable { release, error })?;
        if bundle.release() != release || bundle.manifest_hash() != pinned {
            return Err(StoreError::ReleaseMismatch {
                release,
                found_release: bundle.release(),
                found_hash: bundle.manifest_hash().to_owned(),
                expected_hash: pinned.clone(),
            });
        }
        Ok(bundle)
    }

    /// Rotates the trusted root ([`update_root`]: root `N + 1` signed by a threshold of root `N`'s
    /// keys and of its own) and persists it. Releases signed only by keys the new root drops stop
    /// verifying: rotate signing keys with an overlap (see `docs/content.md`).
    ///
    /// A new root that carries a [`release_counter`](Root::release_counter) resets the rollback
    /// counter: the highest accepted release becomes that number (recovery from a fast-forwarded
    /// release number; `docs/content.md`). A content root that shares a key with the owner's root
    /// is refused (the vendor's keys must never sign the owner's policy).
    pub fn update_root(&mut self, new_envelope_bytes: &[u8]) -> Result<&Root, StoreError> {
        self.writable()?;
        let root = update_root(&self.root, new_envelope_bytes)?;
        if let Some(owner) = self.owner_root()? {
            super::policy::check_roots_apart(&root, &owner)?;
        }
        let path = self.layout().root();
        write_atomic(&path, new_envelope_bytes).map_err(io_at(&path))?;
        self.root = root;
        // If this write fails, the next open applies the counter (it is recorded with the root
        // version that carried it).
        self.apply_release_counter()?;
        Ok(&self.root)
    }

    /// Applies the trusted root's release counter, once per root version: the highest accepted
    /// release becomes the counter.
    fn apply_release_counter(&mut self) -> Result<(), StoreError> {
        let Some(counter) = self.root.release_counter else {
            return Ok(());
        };
        if self.state.release_counter_root == Some(self.root.version) {
            return Ok(());
        }
        let previous = self.state.highest_release;
        let mut state = self.state.clone();
        state.highest_release = Some(counter);
        state.release_counter_root = Some(self.root.version);
        self.save_state(state)?;
        tracing::warn!(
            ?previous,
            counter,
            root = self.root.version,
            "the trusted root set the release counter"
        );
        Ok(())
    }

    /// Records durably that the rule version of `record` was quarantined, so that
    /// [`is_quarantined`](Self::is_quarantined) keeps it out at the next start. Returns `false` (and
    /// writes nothing) if that exact rule id, version and module hash is already recorded, or if the
    /// record names no rule (a module refused before its metadata could be read: it is refused again
    /// at every load anyway). The list keeps the newest 10,000 entries.
    pub fn record_quarantine(&mut self, record: &QuarantineRecord) -> Result<bool, StoreError> {
        self.writable()?;
        if record.rule_id.is_empty()
            || self.is_listed(&record.rule_id, &record.rule_version, &record.content_hash)
        {
            return Ok(false);
        }
        self.quarantine.push(QuarantineEntry {
            rule_id: record.rule_id.clone(),
            rule_version: record.rule_version.clone(),
            content_hash: record.content_hash.clone(),
            reason: QuarantineReason::Known(record.reason),
            at_unix_ms: now_unix_ms(),
        });
        if self.quarantine.len() > MAX_QUARANTINE_ENTRIES {
            let excess = self.quarantine.len() - MAX_QUARANTINE_ENTRIES;
            self.quarantine.drain(..excess);
        }
        if let Err(e) = self.save_quarantine() {
            self.quarantine.pop();
            return Err(e);
        }
        Ok(true)
    }

    /// The persisted quarantine entries, oldest first.
    pub fn quarantined(&self) -> &[QuarantineEntry] {
        &self.quarantine
    }

    /// Whether the rule version a manifest entry names (its id, version and module hash) is
    /// quarantined on this host: the agent does not load it.
    pub fn is_quarantined(&self, entry: &RuleEntry) -> bool {
        self.is_listed(&entry.id, &entry.version, &entry.sha256)
    }

    fn is_listed(&self, rule_id: &str, rule_version: &str, content_hash: &str) -> bool {
        self.quarantine.iter().any(|q| {
            q.rule_id == rule_id && q.rule_version == rule_version && q.content_hash == content_hash
        })
    }

    /// [`status_at`](Self::status_at) the system clock's time.
    pub fn status(&self) -> StoreStatus {
        self.status_at(now_unix())
    }

    /// The store's state for people: pointers, boot records, bad releases, every installed release
    /// with its manifest's expiry (each manifest copy is read and its signature and hash checked;
    /// module hashes are checked when a release is loaded), and the quarantine list.
    pub fn status_at(&self, now_unix: u64) -> StoreStatus {
        let installed = self
            .state
            .installed
            .iter()
            .map(|(&release, hash)| {
                let mut item = InstalledRelease {
                    release,
                    manifest_hash: hash.clone(),
                    created_unix: None,
                    expires_unix: None,
                    expired: false,
                    rules: None,
                    notes: None,
                    current: self.state.current == Some(release),
                    last_known_good: self.state.last_known_good == Some(release),
                    bad: self.state.bad.contains(&release),
                    bad_reason: self.state.bad_reasons.get(&release).copied(),
                    reached_good: self.state.boot.reached_good.contains(&release),
                    problem: None,
                };
                match read_signed_manifest(&self.release_dir(release), &self.root, &self.limits) {
                    Ok((manifest, _)) => {
                        item.created_unix = Some(manifest.created_unix);
                        item.expires_unix = Some(manifest.expires_unix);
                        item.expired = now_unix >= manifest.expires_unix;
                        item.rules = Some(
                            manifest.rules.len()
                                + manifest.packs.iter().map(|p| p.rules.len()).sum::<usize>(),
                        );
                        item.notes = Some(manifest.notes.clone());
                        match super::format::manifest_hash(&manifest) {
                            Ok(found) if found == *hash && manifest.release == release => {}
                            Ok(found) => {
                                item.problem = Some(format!(
                                    "the folder holds release {} with manifest hash {found}; installed {hash}",
                                    manifest.release
                                ));
                            }
                            Err(e) => item.problem = Some(e.to_string()),
                        }
                    }
                    Err(e) => item.problem = Some(e.to_string()),
                }
                item
            })
            .collect::<Vec<_>>();
        let current_expired = installed.iter().any(|r| r.current && r.expired);
        StoreStatus {
            dir: self.dir.clone(),
            at_unix: now_unix,
            root_version: self.root.version,
            root_expires_unix: self.root.expires_unix,
            root_expired: now_unix >= self.root.expires_unix,
            current: self.state.current,
            current_expired,
            last_known_good: self.state.last_known_good,
            highest_release: self.state.highest_release,
            bad: self.state.bad.iter().copied().collect(),
            boot: self.state.boot.clone(),
            installed,
            quarantine: self.quarantine.clone(),
            usage: self.usage(),
        }
    }
}

/// Creates the store's folders if they are missing (mode `0700`: the store's user's alone).
fn create_folders(layout: &StoreLayout) -> Result<(), StoreError> {
    for path in layout.folders() {
        match create_private_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_at(&path)(e)),
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, cap: u64) -> Result<T, StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = read_capped(path, cap).map_err(|e| match e {
        CappedReadError::NotAFile => corrupt("not a regular file".to_owned()),
        CappedReadError::TooLarge { size } => corrupt(format!("{size} bytes; the limit is {cap}")),
        CappedReadError::Io(error) => StoreError::Io {
            path: path.to_path_buf(),
            error,
        },
    })?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::content::format::{Manifest, Signed};
    use crate::content::layout::{CACHE_DIR, INBOX_DIR, RELEASES_DIR, REPORTS_DIR, ROOT_FILE};
    use crate::content::testutil::*;
    use crate::content::verify::MAX_RELEASE_STEP;

    /// A store trusting root v1 = {key 1}, threshold 1.
    pub(crate) fn new_store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let root_bytes = root_bytes(&root(1, &[&key(1)], 1), &[&key(1)]);
        let store = ContentStore::init(&dir.path().join("store"), &root_bytes).unwrap();
        (dir, store)
    }

    /// A quarantine record of a rule version, as the rule set makes them.
    pub(crate) fn record(id: &str, version: &str, hash: &str, reason: Reason) -> QuarantineRecord {
        QuarantineRecord {
            format: QuarantineRecord::FORMAT,
            rule_id: id.to_owned(),
            rule_version: version.to_owned(),
            content_hash: hash.to_owned(),
            source: String::new(),
            reason,
            message: String::new(),
            backtrace: None,
            event: None,
            event_json: None,
            limits: crate::Limits::default(),
            max_wasm_stack: 0,
            epoch_tick_ms: 0,
            strikes: 0,
            at_unix_ms: 0,
            runtime_version: String::new(),
            pack: None,
        }
    }

    #[test]
    fn a_record_without_a_rule_id_is_not_listed_and_an_unknown_reason_is_kept() {
        let (_tmp, mut store) = new_store();
        assert!(
            !store
                .record_quarantine(&record("", "", "h", Reason::NotWasm))
                .unwrap()
        );
        assert!(store.quarantined().is_empty());
        // A reason a newer runtime wrote still keeps the rule out, and is written back as it was.
        let entries: Vec<QuarantineEntry> = serde_json::from_str(
            r#"[{"rule_id":"r","rule_version":"1","content_hash":"h","reason":"from_the_future","at_unix_ms":1}]"#,
        )
        .unwrap();
        assert_eq!(
            entries[0].reason,
            QuarantineReason::Unrecognized("from_the_future".to_owned())
        );
        assert!(
            serde_json::to_string(&entries)
                .unwrap()
                .contains("\"from_the_future\"")
        );
    }

    /// Installs a standard release `n` (signed by key 1).
    pub(crate) fn install(store: &mut ContentStore, n: u64) -> InstallOutcome {
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), n, &[&key(1)]);
        store.install(bundle.path(), NOW).unwrap()
    }

    /// Everything a refusal must leave unchanged.
    fn snapshot(store: &ContentStore) -> (Vec<u8>, Vec<u8>, Vec<u8>, BTreeSet<String>) {
        let list = std::fs::read_dir(store.dir().join(RELEASES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (
            std::fs::read(store.dir().join(STATE_FILE)).unwrap(),
            std::fs::read(store.dir().join(QUARANTINE_FILE)).unwrap(),
            std::fs::read(store.dir().join(ROOT_FILE)).unwrap(),
            list,
        )
    }

    #[test]
    fn init_install_status_and_reload() {
        let (_tmp, mut store) = new_store();
        let status = store.status_at(NOW);
        assert_eq!(status.current, None);
        assert_eq!(status.highest_release, None);
        assert!(status.installed.is_empty());
        for sub in [RELEASES_DIR, REPORTS_DIR, INBOX_DIR] {
            assert!(store.dir().join(sub).is_dir(), "{sub}");
        }
        assert_eq!(store.inbox_dir(), store.dir().join("inbox"));

        let outcome = install(&mut store, 3);
        assert_eq!(outcome.release, 3);
        assert_eq!(outcome.previous, None);
        let outcome = install(&mut store, 4);
        assert_eq!(outcome.previous, Some(3));
        let status = store.status_at(NOW);
        assert_eq!(status.current, Some(4));
        assert_eq!(status.highest_release, Some(4));
        assert!(!status.current_expired);
        assert_eq!(status.installed.len(), 2);
        let r4 = &status.installed[1];
        assert_eq!(r4.release, 4);
        assert!(r4.current && !r4.bad && !r4.last_known_good && !r4.expired);
        assert_eq!(r4.expires_unix, Some(LATER));
        assert_eq!(r4.rules, Some(3));
        assert_eq!(r4.problem, None);
        assert_eq!(r4.manifest_hash, outcome.bundle.manifest_hash());

        // The copy is byte-identical and re-verifies; state survives a reopen.
        let loaded = store.load_release(4).unwrap();
        assert_eq!(loaded.manifest(), outcome.bundle.manifest());
        assert_eq!(loaded.modules()[0].1, outcome.bundle.modules()[0].1);
        let dir = store.dir().to_path_buf();
        drop(store);
        let store = ContentStore::open(&dir).unwrap();
        assert_eq!(store.state().current, Some(4));
        assert_eq!(store.state().installed.len(), 2);
        assert!(matches!(
            store.load_release(9),
            Err(StoreError::NotInstalled { release: 9 })
        ));
        let json = serde_json::to_string(&store.status_at(NOW)).unwrap();
        assert!(json.contains("\"current\":4"), "{json}");
    }

    #[test]
    fn an_expired_installed_release_keeps_loading_and_is_flagged() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        let status = store.status_at(LATER);
        assert!(status.current_expired);
        assert!(status.installed[0].expired);
        store.load_release(1).unwrap();
    }

    #[test]
    fn init_and_open_refuse_what_they_must() {
        let (tmp, store) = new_store();
        let dir = store.dir().to_path_buf();
        // Locked while open for writing, readable meanwhile.
        assert!(matches!(
            ContentStore::open(&dir),
            Err(StoreError::Locked { .. })
        ));
        let mut ro = ContentStore::open_read_only(&dir).unwrap();
        assert!(matches!(
            ro.record_quarantine(&record("a", "1", "h", Reason::Trap)),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(ro.begin_boot(3), Err(StoreError::ReadOnly)));
        drop(store);
        let root_bytes = std::fs::read(dir.join(ROOT_FILE)).unwrap();
        assert!(matches!(
            ContentStore::init(&dir, &root_bytes),
            Err(StoreError::AlreadyInitialized { .. })
        ));
        assert!(matches!(
            ContentStore::open(&tmp.path().join("nothing")),
            Err(StoreError::NotInitialized { .. })
        ));
        // A root that is not self-signed cannot start a store.
        let bad_root = root_bytes_unsigned();
        assert!(matches!(
            ContentStore::init(&tmp.path().join("other"), &bad_root),
            Err(StoreError::Root(RootError::NotSelfSigned { .. }))
        ));
        // A damaged state file is reported, not papered over.
        std::fs::write(dir.join(STATE_FILE), b"{\"format\":1,").unwrap();
        let err = ContentStore::open(&dir).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    fn root_bytes_unsigned() -> Vec<u8> {
        serde_json::to_vec(&Signed {
            signed: root(1, &[&key(1)], 1),
            signatures: vec![],
        })
        .unwrap()
    }

    #[test]
    fn every_refusal_leaves_the_store_unchanged() {
        let (tmp, mut store) = new_store();
        install(&mut store, 5);
        store
            .record_quarantine(&record("x", "1", "h", Reason::Trap))
            .unwrap();
        let before = snapshot(&store);
        let mods = modules();
        let bytes: Vec<&[u8]> = mods.iter().map(|(_, b)| *b).collect();
        let base = manifest(6, &mods);

        type Case = (&'static str, Box<dyn Fn(&Path)>);
        let with = |f: fn(&mut Manifest)| {
            let mut m = base.clone();
            f(&mut m);
            m
        };
        let cases: Vec<Case> = vec![
            ("wrong signature", {
                let m = base.clone();
                let bytes = bytes.clone();
                Box::new(move |d| {
                    write_bundle(d, &m, &[&key(1)], &bytes);
                    let p = d.join("manifest.json");
                    let text = std::fs::read_to_string(&p).unwrap();
                    std::fs::write(&p, text.replace("release 6", "release X")).unwrap();
                })
            }),
            ("unknown key", {
                let (m, bytes) = (base.clone(), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(2)], &bytes))
            }),
            ("below threshold", {
                let (m, bytes) = (base.clone(), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[], &bytes))
            }),
            ("older version", {
                let (m, bytes) = (with(|m| m.release = 4), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("same version", {
                let (m, bytes) = (manifest(5, &mods), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("conflicting release", {
                // Validly signed, numbered like the installed release, other content.
                let (m, bytes) = (with(|m| m.release = 5), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("fast-forward", {
                let (m, bytes) = (with(|m| m.release = u64::MAX), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("expired", {
                let (m, bytes) = (with(|m| m.expires_unix = NOW), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("hash differs", {
                let (m, bytes) = (base.clone(), bytes.clone());
                Box::new(move |d| {
                    write_bundle(d, &m, &[&key(1)], &bytes);
                    let p = d.join(&m.rules[0].file);
                    let mut b = std::fs::read(&p).unwrap();
                    b[10] ^= 1;
                    std::fs::write(&p, b).unwrap();
                })
            }),
            ("truncated", {
                let (m, bytes) = (base.clone(), bytes.clone());
                Box::new(move |d| {
                    write_bundle(d, &m, &[&key(1)], &bytes);
                    let p = d.join(&m.rules[2].file);
                    std::fs::write(&p, &bytes[2][..100]).unwrap();
                })
            }),
            ("oversized manifest", {
                Box::new(move |d| {
                    std::fs::create_dir_all(d).unwrap();
                    std::fs::File::create(d.join("manifest.json"))
                        .unwrap()
                        .set_len(2 << 30)
                        .unwrap();
                })
            }),
            ("oversized module", {
                let (m, bytes) = (base.clone(), bytes.clone());
                Box::new(move |d| {
                    write_bundle(d, &m, &[&key(1)], &bytes);
                    std::fs::File::create(d.join(&m.rules[1].file))
                        .unwrap()
                        .set_len(2 << 30)
                        .unwrap();
                })
            }),
            ("unknown ABI", {
                let (m, bytes) = (with(|m| m.abi_version = 99), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("unsupported schema", {
                let (m, bytes) = (with(|m| m.schema_versions = vec![]), bytes.clone());
                Box::new(move |d| write_bundle(d, &m, &[&key(1)], &bytes))
            }),
            ("path traversal", {
                let (m, bytes) = (base.clone(), bytes.clone());
                let evil = with(|m| m.rules[0].file = "../../state.json".into());
                Box::new(move |d| {
                    // The modules under their real names; the manifest points outside the bundle.
                    write_bundle(d, &m, &[&key(1)], &bytes);
                    let envelope = sign(&evil, &[&key(1)]);
                    std::fs::write(
                        d.join("manifest.json"),
                        serde_json::to_vec(&envelope).unwrap(),
                    )
                    .unwrap();
                })
            }),
        ];
        for (name, make) in cases {
            let bundle = tmp.path().join(name.replace(' ', "-"));
            make(&bundle);
            let start = std::time::Instant::now();
            let err = store.install(&bundle, NOW).unwrap_err();
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "{name}"
            );
            let ok = match name {
                "wrong signature" => {
                    matches!(err, StoreError::Bundle(BundleError::BadSignature { .. }))
                }
                "unknown key" => matches!(err, StoreError::Bundle(BundleError::UnknownKey { .. })),
                "below threshold" => {
                    matches!(err, StoreError::Bundle(BundleError::BelowThreshold { .. }))
                }
                "older version" => matches!(
                    err,
                    StoreError::Bundle(BundleError::Rollback {
                        release: 4,
                        highest: 5
                    })
                ),
                "same version" => matches!(
                    err,
                    StoreError::Bundle(BundleError::AlreadyInstalled { release: 5 })
                ),
                "conflicting release" => {
                    matches!(&err, StoreError::ReleaseConflict { release: 5, installed, offered }
                        if installed != offered)
                }
                "fast-forward" => matches!(
                    err,
                    StoreError::Bundle(BundleError::TooFarAhead {
                        release: u64::MAX,
                        base: 5,
                        ..
                    })
                ),
                "expired" => matches!(err, StoreError::Bundle(BundleError::Expired { .. })),
                "hash differs" => {
                    matches!(err, StoreError::Bundle(BundleError::MixAndMatch { .. }))
                }
                "truncated" | "oversized module" => {
                    matches!(err, StoreError::Bundle(BundleError::SizeMismatch { .. }))
                }
                "oversized manifest" => matches!(
                    err,
                    StoreError::Bundle(BundleError::ManifestTooLarge { .. })
                ),
                "unknown ABI" => matches!(
                    err,
                    StoreError::Bundle(BundleError::UnsupportedAbi { found: 99, .. })
                ),
                "unsupported schema" => matches!(
                    err,
                    StoreError::Bundle(BundleError::UnsupportedSchema { .. })
                ),
                "path traversal" => {
                    matches!(err, StoreError::Bundle(BundleError::BadFileName { .. }))
                }
                _ => false,
            };
            assert!(ok, "{name}: {err}");
            assert!(err.is_refusal(), "{name}: {err}");
            if name == "conflicting release" {
                assert!(
                    !err.to_string().contains("already installed"),
                    "{name}: {err}"
                );
            } else {
                assert!(
                    err.to_string().starts_with("bundle refused: "),
                    "{name}: {err}"
                );
            }
            assert_eq!(snapshot(&store), before, "{name} changed the store");
            assert_eq!(store.state().current, Some(5));
        }
        // A refusal report is written on request, and only then.
        let bundle = tmp.path().join("expired");
        let err = store.install(&bundle, NOW).unwrap_err();
        let report = store.report_refusal(&bundle, &err).unwrap();
        let report: Report = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
        assert_eq!(report.kind, ReportKind::Refusal);
        assert!(report.reason.contains("expired"), "{}", report.reason);
        assert_eq!(snapshot(&store), before);
        store.load_release(5).unwrap();
    }

    #[test]
    fn open_removes_the_leftovers_of_a_crash_and_keeps_the_old_content() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        let dir = store.dir().to_path_buf();
        let state_before = std::fs::read(dir.join(STATE_FILE)).unwrap();
        drop(store);

        // Killed while copying release 2: a half-filled temp folder ...
        let tmp_release = dir.join(RELEASES_DIR).join(".tmp-2-1234-abcd-0");
        std::fs::create_dir_all(tmp_release.join("modules")).unwrap();
        std::fs::write(tmp_release.join("modules").join("x.wasm"), b"\0as").unwrap();
        // ... and killed while writing state.json: a half-written temp file beside it.
        let tmp_state = dir.join(".tmp-state.json-1234-abcd-1");
        std::fs::write(&tmp_state, b"{\"format\":1,\"highest_rel").unwrap();
        let tmp_report = dir.join(REPORTS_DIR).join(".tmp-1-fallback.json-9");
        std::fs::write(&tmp_report, b"{").unwrap();

        let mut store = ContentStore::open(&dir).unwrap();
        assert!(!tmp_release.exists() && !tmp_state.exists() && !tmp_report.exists());
        assert_eq!(std::fs::read(dir.join(STATE_FILE)).unwrap(), state_before);
        assert_eq!(store.state().current, Some(1));
        store.load_release(1).unwrap();

        // Killed after the rename but before state.json: releases/2 exists, unreferenced. The store
        // still runs release 1, and installing release 2 again replaces the folder.
        let outcome = install(&mut store, 2);
        let copy = dir.join(RELEASES_DIR).join("2-copy");
        std::fs::rename(dir.join(RELEASES_DIR).join("2"), &copy).unwrap();
        drop(store);
        std::fs::write(dir.join(STATE_FILE), &state_before).unwrap();
        std::fs::rename(&copy, dir.join(RELEASES_DIR).join("2")).unwrap();
        std::fs::write(dir.join(RELEASES_DIR).join("2").join("junk"), b"junk").unwrap();
        let mut store = ContentStore::open(&dir).unwrap();
        assert_eq!(store.state().current, Some(1));
        assert!(matches!(
            store.load_release(2),
            Err(StoreError::NotInstalled { release: 2 })
        ));
        let again = install(&mut store, 2);
        assert_eq!(again.bundle.manifest_hash(), outcome.bundle.manifest_hash());
        assert!(!dir.join(RELEASES_DIR).join("2").join("junk").exists());
        store.load_release(2).unwrap();
    }

    #[test]
    fn damaged_or_swapped_release_copies_are_refused_on_load() {
        let (_tmp, mut store) = new_store();
        let first = install(&mut store, 1);
        install(&mut store, 2);
        // Flip a byte of a module of release 2.
        let file = &first.bundle.manifest().rules[0].file;
        let path = store.release_dir(2).join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = store.load_release(2).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::ReleaseUnusable {
                    release: 2,
                    error: BundleError::MixAndMatch { .. }
                }
            ),
            "{err}"
        );
        // Release 1's folder holding release 2's (validly signed) manifest.
        std::fs::copy(
            store.release_dir(2).join("manifest.json"),
            store.release_dir(1).join("manifest.json"),
        )
        .unwrap();
        let err = store.load_release(1).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::ReleaseMismatch {
                    release: 1,
                    found_release: 2,
                    ..
                }
            ),
            "{err}"
        );
        let status = store.status_at(NOW);
        assert!(status.installed[0].problem.is_some());
    }

    #[test]
    fn a_release_with_a_pack_is_stored_whole_and_a_pack_rules_quarantine_ends_with_its_new_version()
    {
        let (_tmp, mut store) = new_store();
        let bundle = tempfile::tempdir().unwrap();
        let m1 = pack_bundle(bundle.path(), 1, b"rules v1", &[&key(1)]);
        store.install(bundle.path(), NOW).unwrap();
        let dir = store.release_dir(1);
        assert_eq!(
            std::fs::read(dir.join(&m1.packs[0].file)).unwrap(),
            b"rules v1"
        );
        assert_eq!(
            std::fs::read(dir.join(&m1.engines[0].file)).unwrap(),
            ENGINE
        );
        let loaded = store.load_release(1).unwrap();
        assert_eq!(&loaded.packs()[0].1[..], b"rules v1");
        assert_eq!(store.status_at(NOW).installed[0].rules, Some(5));
        // A rule of the pack is quarantined under the engine's hash; p2 too, under another
        // version than the next release brings.
        let engine = &m1.packs[0].engine;
        for id in ["p1", "p2"] {
            store
                .record_quarantine(&record(id, "1", engine, Reason::Trap))
                .unwrap();
        }
        // Release 2: new data, p1 in version 2, p2 unchanged.
        let bundle = tempfile::tempdir().unwrap();
        let mods = modules();
        let mut m2 = manifest(2, &mods);
        m2.format = super::super::format::MANIFEST_FORMAT_PACKS;
        m2.engines = vec![engine_entry(ENGINE)];
        m2.packs = vec![pack_entry(
            "pack",
            ENGINE,
            b"rules v2",
            &[("p1", "2"), ("p2", "1")],
        )];
        write_bundle(
            bundle.path(),
            &m2,
            &[&key(1)],
            &mods.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
        );
        std::fs::write(bundle.path().join(&m2.engines[0].file), ENGINE).unwrap();
        std::fs::create_dir_all(bundle.path().join("data")).unwrap();
        std::fs::write(bundle.path().join(&m2.packs[0].file), b"rules v2").unwrap();
        let outcome = store.install(bundle.path(), NOW).unwrap();
        let dropped: Vec<&str> = outcome
            .unquarantined
            .iter()
            .map(|q| q.rule_id.as_str())
            .collect();
        assert_eq!(dropped, ["p1"]);
        let kept: Vec<&str> = store
            .quarantined()
            .iter()
            .map(|q| q.rule_id.as_str())
            .collect();
        assert_eq!(kept, ["p2"]);
    }

    #[test]
    fn quarantine_persists_until_a_new_version_of_the_rule_arrives() {
        let (_tmp, mut store) = new_store();
        let first = install(&mut store, 1);
        let (e0, e1) = (
            &first.bundle.manifest().rules[0],
            &first.bundle.manifest().rules[1],
        );
        assert!(
            store
                .record_quarantine(&record(
                    &e0.id,
                    &e0.version,
                    &e0.sha256,
                    Reason::OutOfBounds
                ))
                .unwrap()
        );
        assert!(
            !store
                .record_quarantine(&record(&e0.id, &e0.version, &e0.sha256, Reason::Trap))
                .unwrap()
        );
        assert!(
            store
                .record_quarantine(&record(&e1.id, &e1.version, &e1.sha256, Reason::Deadline))
                .unwrap()
        );
        assert!(store.is_quarantined(e0));
        assert!(!store.is_quarantined(&RuleEntry {
            version: "2.0.0".into(),
            ..e0.clone()
        }));
        let dir = store.dir().to_path_buf();
        drop(store);
        let mut store = ContentStore::open(&dir).unwrap();
        assert_eq!(store.quarantined().len(), 2);
        assert_eq!(
            store.quarantined()[0].reason,
            QuarantineReason::Known(Reason::OutOfBounds)
        );
        assert_eq!(store.status_at(NOW).quarantine.len(), 2);

        // Release 2 brings rule e0 in version 2.0.0; e1 is unchanged.
        let mods = modules();
        let mut m = manifest(2, &mods);
        m.rules[0].version = "2.0.0".into();
        let bundle = tempfile::tempdir().unwrap();
        write_bundle(
            bundle.path(),
            &m,
            &[&key(1)],
            &mods.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
        );
        let outcome = store.install(bundle.path(), NOW).unwrap();
        assert_eq!(outcome.unquarantined.len(), 1);
        assert_eq!(outcome.unquarantined[0].rule_id, e0.id);
        assert!(!store.is_quarantined(e0));
        assert!(store.is_quarantined(e1));
        drop(store);
        let store = ContentStore::open(&dir).unwrap();
        assert_eq!(store.quarantined().len(), 1);
    }

    #[test]
    fn a_damaged_state_is_rebuilt_from_the_release_folders() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        install(&mut store, 2);
        store
            .record_quarantine(&record("r", "1", "h", Reason::Trap))
            .unwrap();
        let dir = store.dir().to_path_buf();
        drop(store);
        std::fs::write(dir.join(STATE_FILE), b"\0\0\0garbage").unwrap();
        assert!(matches!(
            ContentStore::open(&dir),
            Err(StoreError::Corrupt { .. })
        ));
        let (mut store, report) = ContentStore::rebuild_state(&dir).unwrap();
        let report: Report = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
        assert_eq!(report.kind, ReportKind::Rebuild);
        assert!(report.reason.contains("damaged"), "{}", report.reason);
        assert_eq!(store.state().highest_release, Some(2));
        assert_eq!(
            store.state().installed.keys().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(store.state().current, None);
        assert_eq!(store.quarantined().len(), 1);
        // Rollback protection survived; an operator can pick a release.
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), 2, &[&key(1)]);
        assert!(matches!(
            store.install(bundle.path(), NOW),
            Err(StoreError::Bundle(BundleError::AlreadyInstalled {
                release: 2
            }))
        ));
        store.rollback(Some(2), false).unwrap();
        drop(store);
        assert_eq!(ContentStore::open(&dir).unwrap().state().current, Some(2));
    }

    #[test]
    fn open_or_init_creates_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let bytes = root_bytes(&root(1, &[&key(1)], 1), &[&key(1)]);
        let mut store = ContentStore::open_or_init(&dir, &bytes).unwrap();
        install(&mut store, 1);
        drop(store);
        let store = ContentStore::open_or_init(&dir, &bytes).unwrap();
        assert_eq!(store.state().current, Some(1));
    }

    /// The child half of `a_kill_at_every_install_step_leaves_old_or_new_content`: installs the
    /// bundle named by `RULEBOX_TEST_BUNDLE` into the store named by `RULEBOX_TEST_STORE`. Does
    /// nothing when run on its own.
    #[test]
    #[ignore = "run as a child process by a_kill_at_every_install_step_leaves_old_or_new_content"]
    fn child_installs_a_bundle() {
        let (Some(store), Some(bundle)) = (
            std::env::var_os("RULEBOX_TEST_STORE"),
            std::env::var_os("RULEBOX_TEST_BUNDLE"),
        ) else {
            return;
        };
        let mut store = ContentStore::open(Path::new(&store)).unwrap();
        store.install(Path::new(&bundle), NOW).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_kill_at_every_install_step_leaves_old_or_new_content() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};

        let exe = std::env::current_exe().unwrap();
        for step in crate::content::testing::PAUSE_STEPS
            .iter()
            .copied()
            .chain([""])
        {
            let (_tmp, mut store) = new_store();
            let old = install(&mut store, 1);
            let dir = store.dir().to_path_buf();
            drop(store);
            let bundle = tempfile::tempdir().unwrap();
            standard_bundle(bundle.path(), 2, &[&key(1)]);

            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "content::store::tests::child_installs_a_bundle",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(crate::content::testing::PAUSE_ENV, step)
                .env("RULEBOX_TEST_STORE", &dir)
                .env("RULEBOX_TEST_BUNDLE", bundle.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if step.is_empty() {
                assert!(child.wait().unwrap().success());
            } else {
                let stderr = child.stderr.take().unwrap();
                let paused = std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                    .any(|line| line == format!("PAUSED {step}"));
                assert!(paused, "the child never paused at {step}");
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
            }

            let mut store = ContentStore::open(&dir).unwrap();
            let leftovers: Vec<_> = std::fs::read_dir(dir.join(RELEASES_DIR))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(TMP_PREFIX))
                .collect();
            assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
            let current = store.state().current.unwrap();
            let loaded = store.load_release(current).unwrap();
            if step.is_empty() {
                assert_eq!(current, 2);
            } else {
                // Killed before state.json was replaced: the old release, whole.
                assert_eq!(current, 1, "{step}");
                assert_eq!(loaded.manifest_hash(), old.bundle.manifest_hash());
                // And the new one still installs.
                store.install(bundle.path(), NOW).unwrap();
                store.load_release(2).unwrap();
            }
        }
    }

    #[test]
    fn the_root_rotates_through_the_store() {
        let (_tmp, mut store) = new_store();
        let v2 = root(2, &[&key(1), &key(2)], 1);
        let err = store.update_root(&root_bytes(&v2, &[&key(2)])).unwrap_err();
        assert!(
            matches!(err, StoreError::Root(RootError::NotSignedByCurrent { .. })),
            "{err}"
        );
        assert_eq!(store.root().version, 1);
        store
            .update_root(&root_bytes(&v2, &[&key(1), &key(2)]))
            .unwrap();
        let dir = store.dir().to_path_buf();
        drop(store);
        let mut store = ContentStore::open(&dir).unwrap();
        assert_eq!(store.root(), &v2);
        // A release signed by the new key alone now installs.
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), 1, &[&key(2)]);
        store.install(bundle.path(), NOW).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_store_whose_folder_or_parents_another_user_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let (tmp, store) = new_store();
        let dir = store.dir().to_path_buf();
        drop(store);
        chmod(&dir, 0o777);
        let err = ContentStore::open(&dir).unwrap_err();
        assert!(
            matches!(&err, StoreError::Unsafe(u) if u.path == dir),
            "{err}"
        );
        chmod(&dir, 0o700);
        chmod(tmp.path(), 0o777);
        let err = ContentStore::open(&dir).unwrap_err();
        assert!(
            matches!(&err, StoreError::Unsafe(u) if u.path == tmp.path()),
            "{err}"
        );
        // Init refuses too, before writing anything.
        let other = tmp.path().join("other");
        let root = std::fs::read(dir.join(ROOT_FILE)).unwrap();
        chmod(&dir, 0o700);
        assert!(matches!(
            ContentStore::init(&other, &root),
            Err(StoreError::Unsafe(_))
        ));
        chmod(tmp.path(), 0o700);
        ContentStore::open(&dir).unwrap();
        if rustix::process::geteuid().is_root() {
            // Owned by another user: whoever that is could replace root.json.
            std::os::unix::fs::chown(&dir, Some(54_321), None).unwrap();
            let err = ContentStore::open(&dir).unwrap_err();
            assert!(err.to_string().contains("owned by uid 54321"), "{err}");
        }
        // The module cache checks the folders above it the same way.
        std::os::unix::fs::chown(&dir, Some(0), None).ok();
        chmod(&dir, 0o777);
        assert!(!crate::ModuleCache::open(&dir.join(CACHE_DIR)).is_enabled());
    }

    #[test]
    fn a_root_rotation_resets_a_fast_forwarded_release_counter() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 3);
        // A key holder jumps the counter far ahead (within the step bound) ...
        install(&mut store, 900_000);
        // ... and the vendor's next real release is refused as a rollback.
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), 4, &[&key(2)]);
        // Root 2 drops key 1 (the one that signed 900000), adds key 2, and resets the counter.
        let mut v2 = root(2, &[&key(2)], 1);
        v2.release_counter = Some(3);
        assert!(matches!(
            store.install(bundle.path(), NOW),
            Err(StoreError::Bundle(BundleError::UnknownKey { .. }))
        ));
        store
            .update_root(&root_bytes(&v2, &[&key(1), &key(2)]))
            .unwrap();
        assert_eq!(store.state().highest_release, Some(3));
        assert_eq!(store.state().release_counter_root, Some(2));
        assert_eq!(store.install(bundle.path(), NOW).unwrap().release, 4);
        // The reset applies once: a reopen does not lower the counter again.
        let dir = store.dir().to_path_buf();
        drop(store);
        let store = ContentStore::open(&dir).unwrap();
        assert_eq!(store.state().highest_release, Some(4));
        // A fresh store trusting a root with a counter starts its numbering there.
        let tmp = tempfile::tempdir().unwrap();
        let mut start = root(1, &[&key(1)], 1);
        start.release_counter = Some(2_026_000_000);
        let mut store =
            ContentStore::init(&tmp.path().join("s"), &root_bytes(&start, &[&key(1)])).unwrap();
        assert_eq!(store.state().highest_release, Some(2_026_000_000));
        install(&mut store, 2_026_000_001);
    }

    #[test]
    fn a_release_number_far_ahead_is_refused_so_it_cannot_block_every_later_release() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 7);
        let before = store.state().clone();
        for release in [u64::MAX, 7 + MAX_RELEASE_STEP + 1] {
            let bundle = tempfile::tempdir().unwrap();
            standard_bundle(bundle.path(), release, &[&key(1)]);
            let err = store.install(bundle.path(), NOW).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Bundle(BundleError::TooFarAhead { base: 7, .. })
                ),
                "{err}"
            );
            assert_eq!(store.state(), &before);
        }
        install(&mut store, 7 + MAX_RELEASE_STEP);
        // On a fresh store the step counts from 0 (or the root's counter).
        let (_tmp, mut store) = new_store();
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), u64::MAX, &[&key(1)]);
        assert!(matches!(
            store.install(bundle.path(), NOW),
            Err(StoreError::Bundle(BundleError::TooFarAhead { base: 0, .. }))
        ));
    }

    #[test]
    fn a_disk_error_is_never_a_refusal_of_the_bundle() {
        let io = StoreError::Io {
            path: PathBuf::from("x"),
            error: io::Error::from_raw_os_error(28), // ENOSPC
        };
        assert!(!io.is_refusal());
        assert!(StoreError::Bundle(BundleError::Expired { expires: 1, now: 2 }).is_refusal());
        assert!(!StoreError::Policy(super::super::PolicyError::NoOwnerRoot).is_refusal());
    }
}
