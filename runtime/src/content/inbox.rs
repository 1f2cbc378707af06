//! The store's inbox: where bundles and signed reverts are delivered for the agent, and the rules by
//! which the agent takes them (see the layout table in [`layout`](super::layout)).
//!
//! - A delivery is written under a dot-prefixed name (`.push-*`) and renamed to its final name only
//!   when it is whole, so the agent never sees half a bundle. Every dot-prefixed entry is skipped.
//!   A delivery never follows a link (the folder named, or anything in it) and never widens access:
//!   every copy is created readable by its owner only (files `0600`, folders `0700`).
//! - Signed reverts (`<name>.revert.json`) are taken before bundles: a release the vendor withdrew
//!   must not be activated by a bundle waiting behind the withdrawal.
//! - Entries are taken in name order.
//! - A refused entry is renamed to `.refused-<name>-<unix_ms>` (kept for people, skipped afterwards);
//!   a taken one is removed. What is kept is bounded: the newest [`MAX_REFUSED_KEPT`] refused
//!   entries, [`MAX_REFUSED_BYTES`] in all; older ones (and one larger than that by itself) are
//!   removed, so whoever can feed the transport unsigned bundles cannot fill the disk.
//! - [`Inbox::clean`] (run when the store opens) applies that bound and removes deliveries that were
//!   never completed (`.push-*` older than [`STALE_DELIVERY`]).
//! - A revert is read with the one capped reader ([`read_capped`]): a link, a FIFO or a device named
//!   like a revert is refused without blocking, and nothing over [`MAX_REVERT_BYTES`] is read.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fsutil::{
    CappedReadError, create_private_dir, disk_usage, fsync_dir, read_capped, remove_path,
    unique_suffix, write_new_private,
};
use super::layout::{DELIVERY_PREFIX, REFUSED_PREFIX, REVERT_SUFFIX};
use super::now_unix_ms;
use super::revert::MAX_REVERT_BYTES;
use super::verify::BundleLimits;

/// Most refused entries kept for people (the newest).
pub const MAX_REFUSED_KEPT: usize = 8;
/// Most bytes the kept refused entries may hold together.
pub const MAX_REFUSED_BYTES: u64 = 64 << 20;
/// Age after which an unfinished delivery (`.push-*`) is a leftover of a delivery that died.
pub const STALE_DELIVERY: Duration = Duration::from_secs(600);
/// Most files and folders one delivered bundle may hold (a bundle is a manifest, its modules and
/// its packs' rule data).
const MAX_DELIVERY_ENTRIES: u64 = 10_000;
/// Deepest folder nesting a delivered bundle may have (`<bundle>/modules/<file>` is depth 2).
const MAX_DELIVERY_DEPTH: u32 = 4;

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

    /// Moves a refused entry aside, to `.refused-<name>-<unix_ms>`, then applies the bound on what
    /// is kept ([`MAX_REFUSED_KEPT`], [`MAX_REFUSED_BYTES`]). Returns where the entry is kept, or
    /// `None` if the bound removed it at once (it alone is over [`MAX_REFUSED_BYTES`]).
    pub fn refuse(&self, entry: &InboxEntry) -> io::Result<Option<PathBuf>> {
        let target = self.dir.join(format!(
            "{REFUSED_PREFIX}{}-{}",
            entry.name(),
            now_unix_ms()
        ));
        std::fs::rename(entry.path(), &target)?;
        self.prune_refused()?;
        Ok(std::fs::symlink_metadata(&target).is_ok().then_some(target))
    }

    /// Removes leftovers: deliveries never completed (`.push-*` entries older than
    /// [`STALE_DELIVERY`]) and refused entries beyond the bound. Returns how many were removed.
    pub fn clean(&self) -> io::Result<usize> {
        let mut removed = 0;
        for (name, path) in self.hidden_entries()? {
            if !name.starts_with(DELIVERY_PREFIX) {
                continue;
            }
            let age = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a >= STALE_DELIVERY) {
                remove_path(&path)?;
                tracing::info!(path = %path.display(), "removed an unfinished inbox delivery");
                removed += 1;
            }
        }
        Ok(removed + self.prune_refused()?)
    }

    /// The kept refused entries, newest first, with the bytes each holds.
    pub fn refused(&self) -> io::Result<Vec<(PathBuf, u64)>> {
        let mut kept: Vec<(u64, PathBuf, u64)> = Vec::new();
        for (name, path) in self.hidden_entries()? {
            let Some(rest) = name.strip_prefix(REFUSED_PREFIX) else {
                continue;
            };
            // `<name>-<unix_ms>`; an entry named otherwise sorts as the oldest.
            let at = rest
                .rsplit_once('-')
                .and_then(|(_, ms)| ms.parse::<u64>().ok())
                .unwrap_or(0);
            let usage = disk_usage(&path, MAX_DELIVERY_ENTRIES)?;
            let bytes = if usage.truncated {
                u64::MAX
            } else {
                usage.bytes
            };
            kept.push((at, path, bytes));
        }
        kept.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        Ok(kept.into_iter().map(|(_, p, b)| (p, b)).collect())
    }

    /// Removes the refused entries beyond the newest [`MAX_REFUSED_KEPT`] and [`MAX_REFUSED_BYTES`].
    fn prune_refused(&self) -> io::Result<usize> {
        let mut removed = 0;
        let (mut count, mut bytes) = (0usize, 0u64);
        for (path, size) in self.refused()? {
            let total = bytes.saturating_add(size);
            if count < MAX_REFUSED_KEPT && total <= MAX_REFUSED_BYTES {
                count += 1;
                bytes = total;
                continue;
            }
            remove_path(&path)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The dot-prefixed entries of the inbox (a missing inbox has none).
    fn hidden_entries(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                found.push((name, entry.path()));
            }
        }
        Ok(found)
    }

    /// Removes an entry that was taken.
    pub fn remove(&self, entry: &InboxEntry) -> io::Result<()> {
        remove_path(entry.path())
    }

    /// Delivers the bundle folder `bundle`: copies it to `.push-<name>-<unique>`, fsyncs every file
    /// and folder, and renames it to `<name>` (the bundle folder's name without leading dots).
    /// Returns the final path. Only folders and regular files are copied, and no link is followed:
    /// `bundle` itself, or anything in it, being a link, FIFO or device refuses the delivery (each
    /// file is opened without following links and non-blocking, then checked on its descriptor).
    /// Files over the bundle caps are refused before they are read. The copies are readable by
    /// their owner only. The agent verifies everything; a delivery does not need to be trusted.
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
            write_new_private(&tmp, bytes)?;
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

fn not_deliverable(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{}` {what} (only folders and regular files are delivered; links are never followed)",
            path.display()
        ),
    )
}

/// The budget of one delivery: entries copied and bytes read so far.
struct Budget {
    entries: u64,
    bytes: u64,
    limits: BundleLimits,
}

impl Budget {
    fn entry(&mut self, path: &Path) -> io::Result<()> {
        self.entries += 1;
        if self.entries > MAX_DELIVERY_ENTRIES {
            return Err(not_deliverable(path, "holds too many files to be a bundle"));
        }
        Ok(())
    }

    fn file_cap(&self) -> u64 {
        self.limits
            .max_module_bytes
            .max(self.limits.max_data_bytes)
            .max(self.limits.max_manifest_bytes)
    }

    fn add(&mut self, path: &Path, size: usize) -> io::Result<()> {
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(size).unwrap_or(u64::MAX));
        if self.bytes
            > self
                .limits
                .max_total_bytes
                .saturating_add(self.limits.max_manifest_bytes)
        {
            return Err(not_deliverable(path, "is larger than any bundle may be"));
        }
        Ok(())
    }
}

/// Copies the folder `from` to `to` (created): folders and regular files only, no link followed,
/// each file fsynced, then each folder.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let mut budget = Budget {
        entries: 0,
        bytes: 0,
        limits: BundleLimits::default(),
    };
    #[cfg(unix)]
    {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match rustix::fs::open(from, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(not_deliverable(from, "is not a folder"));
            }
            Err(e) => return Err(e.into()),
        };
        copy_dir_fd(&dir, from, to, 0, &mut budget)
    }
    #[cfg(not(unix))]
    {
        copy_dir_path(from, to, 0, &mut budget)
    }
}

/// Copies the folder open as `dir` (shown as `shown` in errors) to `to`, opening every entry relative
/// to `dir`: a folder swapped for a link between listing and opening is refused by the kernel.
#[cfg(unix)]
fn copy_dir_fd(
    dir: &std::os::fd::OwnedFd,
    shown: &Path,
    to: &Path,
    depth: u32,
    budget: &mut Budget,
) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    if depth > MAX_DELIVERY_DEPTH {
        return Err(not_deliverable(shown, "is nested too deep to be a bundle"));
    }
    create_private_dir(to)?;
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let text = name.to_string_lossy().into_owned();
        let path = shown.join(&text);
        budget.entry(&path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => return Err(not_deliverable(&path, "is a link")),
            Err(e) => return Err(e.into()),
        };
        let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        let dest = to.join(&text);
        match kind {
            rustix::fs::FileType::Directory => copy_dir_fd(&fd, &path, &dest, depth + 1, budget)?,
            rustix::fs::FileType::RegularFile => {
                let bytes = read_delivered(std::fs::File::from(fd), &path, budget)?;
                write_new_private(&dest, &bytes)?;
            }
            _ => return Err(not_deliverable(&path, "is not a regular file or folder")),
        }
    }
    fsync_dir(to)
}

/// Copies the folder `from` to `to` where descriptors cannot be opened relative to a folder.
#[cfg(not(unix))]
fn copy_dir_path(from: &Path, to: &Path, depth: u32, budget: &mut Budget) -> io::Result<()> {
    if depth > MAX_DELIVERY_DEPTH {
        return Err(not_deliverable(from, "is nested too deep to be a bundle"));
    }
    if !std::fs::symlink_metadata(from)?.is_dir() {
        return Err(not_deliverable(from, "is not a folder"));
    }
    create_private_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        budget.entry(&path)?;
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir_path(&path, &dest, depth + 1, budget)?;
        } else if kind.is_file() {
            let bytes = super::fsutil::read_capped(&path, budget.file_cap())
                .map_err(|e| capped_error(&path, e))?;
            budget.add(&path, bytes.len())?;
            write_new_private(&dest, &bytes)?;
        } else {
            return Err(not_deliverable(&path, "is not a regular file or folder"));
        }
    }
    fsync_dir(to)
}

/// Reads one delivered file through the one capped reader.
#[cfg(unix)]
fn read_delivered(file: std::fs::File, path: &Path, budget: &mut Budget) -> io::Result<Vec<u8>> {
    let bytes = super::fsutil::read_open_capped(file, budget.file_cap())
        .map_err(|e| capped_error(path, e))?;
    budget.add(path, bytes.len())?;
    Ok(bytes)
}

fn capped_error(path: &Path, e: CappedReadError) -> io::Error {
    match e {
        CappedReadError::Io(e) => e,
        CappedReadError::NotAFile => not_deliverable(path, "is not a regular file"),
        CappedReadError::TooLarge { size } => not_deliverable(
            path,
            &format!("is {size} bytes, larger than any module may be"),
        ),
    }
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
        let aside = inbox.refuse(&entry).unwrap().unwrap();
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

    #[test]
    fn refused_entries_are_bounded_in_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        for n in 0..(MAX_REFUSED_KEPT + 12) {
            let bundle = dir.path().join(format!("unsigned-{n}"));
            std::fs::create_dir(&bundle).unwrap();
            std::fs::write(bundle.join("manifest.json"), b"{}").unwrap();
            let entry = inbox.scan().unwrap().remove(0);
            assert!(inbox.refuse(&entry).unwrap().is_some());
        }
        assert_eq!(inbox.refused().unwrap().len(), MAX_REFUSED_KEPT);
        // One entry alone over the byte bound is not kept at all (a sparse file: no disk used).
        let big = dir.path().join("huge");
        std::fs::create_dir(&big).unwrap();
        std::fs::File::create(big.join("module.wasm"))
            .unwrap()
            .set_len(MAX_REFUSED_BYTES + 1)
            .unwrap();
        let entry = inbox.scan().unwrap().remove(0);
        assert_eq!(inbox.refuse(&entry).unwrap(), None);
        assert!(!big.exists());
        let kept = inbox.refused().unwrap();
        assert_eq!(kept.len(), MAX_REFUSED_KEPT);
        assert!(kept.iter().map(|(_, b)| b).sum::<u64>() <= MAX_REFUSED_BYTES);
    }

    #[test]
    fn unfinished_deliveries_are_removed_once_stale_and_refused_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        let stale = dir.path().join(".push-dead-1");
        let fresh = dir.path().join(".push-live-2");
        for d in [&stale, &fresh] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("manifest.json"), b"{").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - STALE_DELIVERY - Duration::from_secs(60);
        std::fs::File::open(&stale)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        for n in 0..(MAX_REFUSED_KEPT + 3) {
            std::fs::create_dir(dir.path().join(format!(".refused-b{n}-{}", 1_000 + n))).unwrap();
        }
        assert_eq!(inbox.clean().unwrap(), 4);
        assert!(!stale.exists(), "a delivery that died is removed");
        assert!(fresh.exists(), "one still being copied is left alone");
        assert_eq!(inbox.refused().unwrap().len(), MAX_REFUSED_KEPT);
        // The oldest refused entries went.
        assert!(!dir.path().join(".refused-b0-1000").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_delivery_never_follows_a_link_and_never_widens_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path().join("inbox"));
        let bundle = dir.path().join("release-9");
        std::fs::create_dir_all(bundle.join("modules")).unwrap();
        std::fs::write(bundle.join("manifest.json"), b"{}").unwrap();
        let module = bundle.join("modules").join("a.wasm");
        std::fs::write(&module, b"\0asm secret").unwrap();
        std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // The folder named is a link: refused.
        let link = dir.path().join("release-link");
        std::os::unix::fs::symlink(&bundle, &link).unwrap();
        assert!(inbox.deliver_bundle(&link).is_err());
        // A FIFO inside is refused without blocking.
        let fifo = bundle.join("modules").join("b.wasm");
        super::super::fsutil::make_fifo(&fifo);
        let start = std::time::Instant::now();
        assert!(inbox.deliver_bundle(&bundle).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
        std::fs::remove_file(&fifo).unwrap();
        assert!(inbox.scan().unwrap().is_empty());
        // A whole delivery: every copy readable by its owner only.
        let target = inbox.deliver_bundle(&bundle).unwrap();
        assert_eq!(mode(&target), 0o700);
        assert_eq!(mode(&target.join("modules")), 0o700);
        assert_eq!(mode(&target.join("modules").join("a.wasm")), 0o600);
        assert_eq!(mode(&target.join("manifest.json")), 0o600);
        let revert = inbox.deliver_revert("r", b"{}").unwrap();
        assert_eq!(mode(&revert), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_revert_swapped_for_a_fifo_after_the_listing_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::new(dir.path());
        let path = dir.path().join("w.revert.json");
        std::fs::write(&path, b"{}").unwrap();
        let entries = inbox.scan().unwrap();
        assert_eq!(entries.len(), 1);
        // Between the listing and the read, the file becomes a FIFO nobody writes to.
        std::fs::remove_file(&path).unwrap();
        super::super::fsutil::make_fifo(&path);
        let start = std::time::Instant::now();
        assert!(matches!(
            inbox.read_revert(entries[0].path()),
            Err(CappedReadError::NotAFile)
        ));
        assert!(start.elapsed() < Duration::from_secs(1));
        // And swapped for a link to /proc/self/pagemap: refused, nothing read.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/proc/self/pagemap", &path).unwrap();
        assert!(matches!(
            inbox.read_revert(entries[0].path()),
            Err(CappedReadError::NotAFile)
        ));
    }
}
