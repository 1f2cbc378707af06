//! The store's inbox: where bundles and signed reverts are delivered for the agent, and the rules by
//! which the agent takes them (see the layout table in [`layout`](super::layout)).
//!
//! - A delivery is written under a dot-prefixed name (`.push-*`) and renamed to its final name only
//!   when it is whole, so the agent never sees half a bundle. Every dot-prefixed entry is skipped.
//! - Signed reverts (`<name>.revert.json`) are taken before bundles: a release the vendor withdrew
//!   must not be activated by a bundle waiting behind the withdrawal.
//! - Entries are taken in name order.
//! - A refused entry is renamed to `.refused-<name>-<unix_ms>` (kept for people, skipped afterwards);
//!   a taken one is removed.
//! - A revert is read with the one capped reader ([`read_capped`]): a link, a FIFO or a device named
//!   like a revert is refused without blocking, and nothing over [`MAX_REVERT_BYTES`] is read.

use std::io;
use std::path::{Path, PathBuf};

use super::fsutil::{CappedReadError, fsync_dir, read_capped, unique_suffix};
use super::layout::{DELIVERY_PREFIX, REFUSED_PREFIX, REVERT_SUFFIX};
use super::now_unix_ms;
use super::revert::MAX_REVERT_BYTES;

/// A store's inbox folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbox {
    dir: PathBuf,
}

/// One entry found by [`Inbox::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboxEntry {
    /// `<name>.revert.json`: a signed revert (whatever the file really is; reading it decides).
    Revert {
        /// The entry's path.
        path: PathBuf,
    },
    /// A folder: a bundle.
    Bundle {
        /// The entry's path.
        path: PathBuf,
    },
}

impl InboxEntry {
    /// The entry's path.
    pub fn path(&self) -> &Path {
        match self {
            InboxEntry::Revert { path } | InboxEntry::Bundle { path } => path,
        }
    }

    /// The entry's file name, as text (lossy: names come from whoever wrote the inbox; escape it
    /// before showing it).
    pub fn name(&self) -> String {
        self.path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Inbox {
    /// The inbox in `dir` (usually [`ContentStore::inbox`](super::ContentStore::inbox)).
    pub fn new(dir: impl Into<PathBuf>) -> Inbox {
        Inbox { dir: dir.into() }
    }

    /// The inbox folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entries to take, in the order to take them: every revert (by name), then every bundle
    /// folder (by name). Dot-prefixed entries are skipped, and so is anything that is neither a
    /// folder nor named like a revert (a link to a folder included: a bundle is delivered as a
    /// folder). A missing inbox holds nothing.
    pub fn scan(&self) -> io::Result<Vec<InboxEntry>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut reverts = Vec::new();
        let mut bundles = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if name.ends_with(REVERT_SUFFIX) {
                reverts.push(path);
            } else if entry.file_type()?.is_dir() {
                bundles.push(path);
            }
        }
        reverts.sort();
        bundles.sort();
        Ok(reverts
            .into_iter()
            .map(|path| InboxEntry::Revert { path })
            .chain(bundles.into_iter().map(|path| InboxEntry::Bundle { path }))
            .collect())
    }

    /// Reads a revert entry: a regular file (not a link, FIFO or device) of at most
    /// [`MAX_REVERT_BYTES`].
    pub fn read_revert(&self, path: &Path) -> Result<Vec<u8>, CappedReadError> {
        read_capped(path, u64::try_from(MAX_REVERT_BYTES).unwrap_or(u64::MAX))
    }

    /// Moves a refused entry aside, to `.refused-<name>-<unix_ms>`, and returns where.
    pub fn refuse(&self, entry: &InboxEntry) -> io::Result<PathBuf> {
        let target = self.dir.join(format!(
            "{REFUSED_PREFIX}{}-{}",
            entry.name(),
            now_unix_ms()
        ));
        std::fs::rename(entry.path(), &target)?;
        Ok(target)
    }

    /// Removes an entry that was taken.
    pub fn remove(&self, entry: &InboxEntry) -> io::Result<()> {
        match entry {
            InboxEntry::Revert { path } => std::fs::remove_file(path),
            InboxEntry::Bundle { path } => std::fs::remove_dir_all(path),
        }
    }

    /// Delivers the bundle folder `bundle`: copies it (folders and regular files only; a link or
    /// device inside is refused) to `.push-<name>-<unique>`, fsyncs every file and folder, and
    /// renames it to `<name>` (the bundle folder's name without leading dots). Returns the final
    /// path. The agent verifies everything; a delivery does not need to be trusted.
    pub fn deliver_bundle(&self, bundle: &Path) -> io::Result<PathBuf> {
        let name = visible_name(bundle)?;
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self
            .dir
            .join(format!("{DELIVERY_PREFIX}{name}-{}", unique_suffix()));
        let result = copy_tree(bundle, &tmp).and_then(|()| {
            let target = self.dir.join(&name);
            std::fs::rename(&tmp, &target)?;
            fsync_dir(&self.dir)?;
            Ok(target)
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Delivers a signed revert: writes `bytes` to `.push-<stem>-<unique>`, fsyncs it, and renames
    /// it to `<stem>.revert.json`, where `stem` is `name` without leading dots and without a
    /// `.json` / `.revert.json` ending. Returns the final path.
    pub fn deliver_revert(&self, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let stem = name.trim_start_matches('.');
        let stem = stem.strip_suffix(".json").unwrap_or(stem);
        let stem = stem.strip_suffix(".revert").unwrap_or(stem);
        if stem.is_empty() || stem.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a revert needs a plain file name",
            ));
        }
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self
            .dir
            .join(format!("{DELIVERY_PREFIX}{stem}-{}", unique_suffix()));
        let result = (|| {
            super::fsutil::write_new_synced(&tmp, bytes)?;
            let target = self.dir.join(format!("{stem}{REVERT_SUFFIX}"));
            std::fs::rename(&tmp, &target)?;
            fsync_dir(&self.dir)?;
            Ok(target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// The name a delivery of `path` gets: its file name without leading dots.
fn visible_name(path: &Path) -> io::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_start_matches('.').to_owned())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` has no usable file name", path.display()),
        ));
    }
    Ok(name)
}

/// Copies the folder `from` to `to` (created): folders and regular files only, each file fsynced,
/// then each folder.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&path, &dest)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &dest)?;
            std::fs::File::open(&dest)?.sync_all()?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is not a regular file or folder (links and devices are not delivered)",
                    path.display()
                ),
            ));
        }
    }
    fsync_dir(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverts_come_first_and_hidden_or_stray_entries_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        for name in ["b-bundle", "a-bundle", ".push-x-1", ".refused-y-2"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("z.revert.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("m.revert.json"), b"{}").unwrap();
        std::fs::write(dir.path().join(".hidden.revert.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let names: Vec<(bool, String)> = inbox
            .scan()
            .unwrap()
            .iter()
            .map(|e| (matches!(e, InboxEntry::Revert { .. }), e.name()))
            .collect();
        assert_eq!(
            names,
            vec![
                (true, "m.revert.json".to_owned()),
                (true, "z.revert.json".to_owned()),
                (false, "a-bundle".to_owned()),
                (false, "b-bundle".to_owned()),
            ]
        );
        assert!(
            Inbox::new(dir.path().join("missing"))
                .scan()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_refused_entry_is_moved_aside_and_never_scanned_again() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        std::fs::create_dir(dir.path().join("bundle")).unwrap();
        let entry = inbox.scan().unwrap().remove(0);
        let aside = inbox.refuse(&entry).unwrap();
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".refused-bundle-")
        );
        assert!(inbox.scan().unwrap().is_empty());
    }

    #[test]
    fn deliveries_appear_whole_under_their_final_names() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path().join("inbox"));
        let bundle = dir.path().join("release-7");
        std::fs::create_dir_all(bundle.join("modules")).unwrap();
        std::fs::write(bundle.join("manifest.json"), b"{}").unwrap();
        std::fs::write(bundle.join("modules").join("a.wasm"), b"\0asm").unwrap();
        let target = inbox.deliver_bundle(&bundle).unwrap();
        assert_eq!(target, inbox.dir().join("release-7"));
        assert_eq!(
            std::fs::read(target.join("modules").join("a.wasm")).unwrap(),
            b"\0asm"
        );
        let revert = inbox.deliver_revert("withdraw-7.json", b"{}").unwrap();
        assert_eq!(revert, inbox.dir().join("withdraw-7.revert.json"));
        let found: Vec<_> = inbox.scan().unwrap().iter().map(InboxEntry::name).collect();
        assert_eq!(found, vec!["withdraw-7.revert.json", "release-7"]);
        // Nothing half-copied is left behind.
        let hidden = std::fs::read_dir(inbox.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_inside_a_bundle_is_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path().join("inbox"));
        let bundle = dir.path().join("b");
        std::fs::create_dir(&bundle).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", bundle.join("manifest.json")).unwrap();
        assert!(inbox.deliver_bundle(&bundle).is_err());
        assert!(inbox.scan().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(inbox.dir()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_revert_that_is_a_link_or_a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        let link = dir.path().join("a.revert.json");
        std::os::unix::fs::symlink("/proc/self/pagemap", &link).unwrap();
        super::super::fsutil::make_fifo(&dir.path().join("b.revert.json"));
        let entries = inbox.scan().unwrap();
        assert_eq!(entries.len(), 2);
        for entry in &entries {
            assert!(matches!(
                inbox.read_revert(entry.path()),
                Err(CappedReadError::NotAFile)
            ));
        }
    }
}
