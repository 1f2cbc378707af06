//! The content store's on-disk protocol: every file and folder of a store, who writes it, who reads
//! it, and the naming rules of the inbox. Nothing else in the code base spells these names.
//!
//! | path | what | written by | read by |
//! |---|---|---|---|
//! | `lock` | advisory exclusive lock of the process that opened the store for writing; mode `0600`, the store owner's alone | [`ContentStore::open`] | the kernel (`flock`) |
//! | `root.json` | the trusted content root (signed envelope) | `init`, `update_root` | every open |
//! | `state.json` | [`StoreState`]: highest release, current, last-known-good, bad, boot record, installed hashes | install, boot guard, revert, rollback | every open |
//! | `quarantine.json` | the [`QuarantineEntry`] list: rule versions quarantined on this host | [`ContentStore::record_quarantine`], install | every open; checked before a rule is compiled |
//! | `releases/<n>/` | verified copy of release `n`: `manifest.json` + `modules/<sha256>.wasm`; old ones pruned (see [`StoreUsage`](super::StoreUsage)) | install (built under `releases/.tmp-<n>-<unique>/`, renamed into place) | re-verified at every load |
//! | `reports/<unix_ms>-<kind>.json` | a [`Report`] for people and fleet tooling ([`ReportKind`]); the newest 1,000 kept | boot guard, refusals, revert, rollback, rebuild | people |
//! | `inbox/<name>/` | a bundle delivered for the agent ([`Inbox::deliver_bundle`]) | `rulebox push`, a fetcher | the agent ([`Inbox::scan`]) |
//! | `inbox/<name>.revert.json` | a signed revert delivered for the agent ([`Inbox::deliver_revert`]) | `rulebox push`, a fetcher | the agent, before any bundle |
//! | `inbox/.push-*` | a delivery being copied (renamed to its final name when whole) | the deliverer | nobody: dot-prefixed entries are skipped; removed at open once stale |
//! | `inbox/.refused-<name>-<unix_ms>` | an entry the agent refused (kept for people; the newest 8, 64 MiB in all) | the agent ([`Inbox::refuse`]) | people |
//! | `cache/` | machine code this host compiled from verified modules ([`ModuleCache`]), mode 0700 | the agent | the agent |
//! | `owner-root.json` | the host owner's root (optional; signs policies) | `policy install` | every install |
//! | `policy.json` | the owner's signed policy (optional) | `policy install` | every install |
//! | `policy-state.json` | the releases whose verified manifest this host saw, and when it first saw each | install | every install |
//! | `.tmp-*` (anywhere above) | a write in progress ([`write_atomic`]) | the store | removed at the next open |
//!
//! The store folder and every folder above it must be changeable by the store's user (or root)
//! only ([`check_private_folder`](super::check_private_folder)); the store's folders are created
//! mode `0700`.
//!
//! [`ContentStore::open`]: super::ContentStore::open
//! [`ContentStore::record_quarantine`]: super::ContentStore::record_quarantine
//! [`StoreState`]: super::StoreState
//! [`QuarantineEntry`]: super::QuarantineEntry
//! [`Report`]: super::Report
//! [`ReportKind`]: super::ReportKind
//! [`Inbox::deliver_bundle`]: super::Inbox::deliver_bundle
//! [`Inbox::deliver_revert`]: super::Inbox::deliver_revert
//! [`Inbox::scan`]: super::Inbox::scan
//! [`Inbox::refuse`]: super::Inbox::refuse
//! [`ModuleCache`]: crate::ModuleCache
//! [`write_atomic`]: super::write_atomic

use std::path::{Path, PathBuf};

/// The store's lock file.
pub const LOCK_FILE: &str = "lock";
/// The trusted content root.
pub const ROOT_FILE: &str = "root.json";
/// The store's pointers and records.
pub const STATE_FILE: &str = "state.json";
/// The persisted quarantine list.
pub const QUARANTINE_FILE: &str = "quarantine.json";
/// The folder of installed releases.
pub const RELEASES_DIR: &str = "releases";
/// The folder of reports.
pub const REPORTS_DIR: &str = "reports";
/// The folder deliveries are dropped into.
pub const INBOX_DIR: &str = "inbox";
/// The module cache's folder.
pub const CACHE_DIR: &str = "cache";
/// The host owner's root of trust (optional).
pub const OWNER_ROOT_FILE: &str = "owner-root.json";
/// The owner's signed policy (optional).
pub const POLICY_FILE: &str = "policy.json";
/// The newest release whose verified manifest this host has seen.
pub const POLICY_STATE_FILE: &str = "policy-state.json";
/// How a signed revert is named in the inbox.
pub const REVERT_SUFFIX: &str = ".revert.json";
/// Prefix of an inbox entry the agent refused.
pub const REFUSED_PREFIX: &str = ".refused-";
/// Prefix of an inbox delivery still being copied.
pub const DELIVERY_PREFIX: &str = ".push-";
/// Prefix of every temporary file or folder the store creates; removed when the store opens.
pub const TMP_PREFIX: &str = ".tmp-";

/// The paths of one store folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    dir: PathBuf,
}

impl StoreLayout {
    /// The layout of the store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StoreLayout {
        StoreLayout { dir: dir.into() }
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `lock`.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// `root.json`.
    pub fn root(&self) -> PathBuf {
        self.dir.join(ROOT_FILE)
    }

    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// `quarantine.json`.
    pub fn quarantine(&self) -> PathBuf {
        self.dir.join(QUARANTINE_FILE)
    }

    /// `releases/`.
    pub fn releases(&self) -> PathBuf {
        self.dir.join(RELEASES_DIR)
    }

    /// `releases/<release>/`.
    pub fn release(&self, release: u64) -> PathBuf {
        self.releases().join(release.to_string())
    }

    /// `reports/`.
    pub fn reports(&self) -> PathBuf {
        self.dir.join(REPORTS_DIR)
    }

    /// `inbox/`.
    pub fn inbox(&self) -> PathBuf {
        self.dir.join(INBOX_DIR)
    }

    /// `cache/`.
    pub fn cache(&self) -> PathBuf {
        self.dir.join(CACHE_DIR)
    }

    /// `owner-root.json`.
    pub fn owner_root(&self) -> PathBuf {
        self.dir.join(OWNER_ROOT_FILE)
    }

    /// `policy.json`.
    pub fn policy(&self) -> PathBuf {
        self.dir.join(POLICY_FILE)
    }

    /// `policy-state.json`.
    pub fn policy_state(&self) -> PathBuf {
        self.dir.join(POLICY_STATE_FILE)
    }

    /// The folders the store creates when it is initialised or opened.
    pub(crate) fn folders(&self) -> [PathBuf; 3] {
        [self.releases(), self.reports(), self.inbox()]
    }
}
