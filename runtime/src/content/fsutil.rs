//! Crash-safe file writes, reads capped before they start, and the test-only pause hook.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use super::layout::TMP_PREFIX;

/// The environment variable naming the install step to pause at (test builds only; see
/// [`PAUSE_STEPS`]).
#[cfg(any(test, feature = "fault-injection"))]
pub const PAUSE_ENV: &str = "RULEBOX_TEST_PAUSE_AT";

/// The install steps a test build can pause at, in order: `copy-module` (before each module is
/// copied into the temporary release folder), `write-manifest` (before the manifest copy is
/// written), `rename-release` (before the temporary folder is renamed to `releases/<release>`),
/// `write-state` (before `state.json` is replaced).
#[cfg(any(test, feature = "fault-injection"))]
pub const PAUSE_STEPS: &[&str] = &[
    "copy-module",
    "write-manifest",
    "rename-release",
    "write-state",
];

/// In builds with `cfg(test)` or the `fault-injection` feature: if [`PAUSE_ENV`] names `step`, print
/// `PAUSED <step>` on stderr and sleep 60 s so a test can `kill -9` the process right there. In other
/// builds this does nothing and the variable is never read.
#[cfg(any(test, feature = "fault-injection"))]
pub(crate) fn pause_point(step: &str) {
    if std::env::var_os(PAUSE_ENV).is_some_and(|v| v == step) {
        let mut err = io::stderr().lock();
        // Nothing useful can be done if stderr is closed; the pause still happens.
        let _ = writeln!(err, "PAUSED {step}");
        let _ = err.flush();
        drop(err);
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// In builds with `cfg(test)` or the `fault-injection` feature: if [`PAUSE_ENV`] names `step`, print
/// `PAUSED <step>` on stderr and sleep 60 s. In this build it does nothing.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn pause_point(_step: &str) {}

/// A suffix unique within this process and very likely across processes: pid, time, counter.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:08x}-{n}", std::process::id())
}

/// Makes a rename or file creation in `dir` durable: fsyncs the folder itself. On Windows, where a
/// folder cannot be opened for syncing, this does nothing (NTFS journals its metadata).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a crash at any instant leaves either the old file or the new
/// one, whole: write a temporary file in the same folder, fsync it, rename it over `path`, fsync the
/// folder. The temporary file is removed if any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        name.to_string_lossy(),
        unique_suffix()
    ));
    let result = (|| {
        let mut file = File::options().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        fsync_dir(&dir)
    })();
    if result.is_err() {
        // Best effort: the store also removes leftovers when it opens.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a new file (which must not exist) and fsyncs it. The caller fsyncs the folder.
pub(crate) fn write_new_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::options().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// [`write_new_synced`], the file readable and writable by its owner only (mode `0600` on Unix),
/// whatever the umask: for copies of what someone delivered, which must never become readable by
/// more users than the original.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // `create_new` (O_CREAT | O_EXCL) never follows a link at `path`: it fails.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates the folder `path` (its parent must exist), accessible by its owner only (mode `0700` on
/// Unix), whatever the umask.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Removes a file, a link (never followed) or a folder with everything in it.
pub(crate) fn remove_path(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// What a file or folder holds on disk ([`disk_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Bytes in regular files (their length), links and folders not followed.
    pub bytes: u64,
    /// Files, folders and other entries counted.
    pub entries: u64,
    /// The walk stopped at its entry limit: there is more than counted.
    pub truncated: bool,
}

impl DiskUsage {
    /// The sum of two usages.
    pub fn plus(self, other: DiskUsage) -> DiskUsage {
        DiskUsage {
            bytes: self.bytes.saturating_add(other.bytes),
            entries: self.entries.saturating_add(other.entries),
            truncated: self.truncated || other.truncated,
        }
    }
}

/// What `path` holds: the bytes of every regular file in it (itself, if it is one), never following
/// a link, counting at most `max_entries` entries (then `truncated`). A missing path holds nothing.
pub fn disk_usage(path: &Path, max_entries: u64) -> io::Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    let mut pending = vec![path.to_path_buf()];
    while let Some(next) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        usage.entries += 1;
        if usage.entries > max_entries {
            usage.truncated = true;
            break;
        }
        if meta.is_file() {
            usage.bytes = usage.bytes.saturating_add(meta.len());
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&next)? {
                let queued = u64::try_from(pending.len()).unwrap_or(u64::MAX);
                if usage.entries.saturating_add(queued) >= max_entries {
                    usage.truncated = true;
                    return Ok(usage);
                }
                pending.push(entry?.path());
            }
        }
    }
    Ok(usage)
}

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CappedReadError {
    /// The file (or what it points to) is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The file is larger than the cap (`size` is what the file system says, or `cap + 1` if the
    /// file grew while being read).
    #[error("{size} bytes is over the cap")]
    TooLarge {
        /// The size found.
        size: u64,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(io::Error),
}

/// Whether a capped read follows a symbolic link named by the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// A symbolic link is refused ([`CappedReadError::NotAFile`]): for every file the agent and the
    /// store read, which are never links.
    Refuse,
    /// A symbolic link to a regular file is followed: for files a person names on a command line
    /// (keys, modules, bundles being built or validated).
    Follow,
}

/// Reads a regular file of at most `cap` bytes, refusing a symbolic link: the one capped reader of
/// everything the agent and the content store read ([`read_capped_with`] with [`Links::Refuse`]).
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    read_capped_with(path, cap, Links::Refuse)
}

/// [`read_capped_with`] with [`Links::Follow`]: for files a person names on a command line.
pub fn read_capped_following_links(path: &Path, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    read_capped_with(path, cap, Links::Follow)
}

/// Reads a regular file of at most `cap` bytes.
///
/// The file is opened with `O_NONBLOCK` (so a FIFO or a device put where a file belongs cannot block
/// the open) and, with [`Links::Refuse`], `O_NOFOLLOW` (a link is refused by the kernel, with no
/// window between a check and the open). Everything else is decided on the open descriptor: it must
/// be a regular file (`fstat`), its size must be at most `cap`, and the read stops after `cap + 1`
/// bytes, so a file that grows while being read can never make this read more than that.
pub fn read_capped_with(path: &Path, cap: u64, links: Links) -> Result<Vec<u8>, CappedReadError> {
    read_open_capped(open_regular(path, links)?, cap)
}

/// The part of [`read_capped_with`] after the open: `file` (opened non-blocking) must be a regular
/// file of at most `cap` bytes, checked on the descriptor; the read stops after `cap + 1` bytes.
pub(crate) fn read_open_capped(file: File, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    let meta = file.metadata().map_err(CappedReadError::Io)?;
    if !meta.is_file() {
        return Err(CappedReadError::NotAFile);
    }
    if meta.len() > cap {
        return Err(CappedReadError::TooLarge { size: meta.len() });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(CappedReadError::Io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap {
        return Err(CappedReadError::TooLarge {
            size: cap.saturating_add(1),
        });
    }
    Ok(bytes)
}

/// Opens `path` read-only, non-blocking, close-on-exec and (with [`Links::Refuse`]) without following
/// a final symbolic link.
#[cfg(unix)]
fn open_regular(path: &Path, links: Links) -> Result<File, CappedReadError> {
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        // `O_NOFOLLOW` on a link.
        Err(rustix::io::Errno::LOOP) if links == Links::Refuse => Err(CappedReadError::NotAFile),
        Err(e) => Err(CappedReadError::Io(io::Error::from(e))),
    }
}

/// Opens `path` read-only; a link is refused by checking before the open (the platform has no
/// `O_NOFOLLOW`).
#[cfg(not(unix))]
fn open_regular(path: &Path, links: Links) -> Result<File, CappedReadError> {
    if links == Links::Refuse {
        let link = std::fs::symlink_metadata(path).map_err(CappedReadError::Io)?;
        if !link.file_type().is_file() {
            return Err(CappedReadError::NotAFile);
        }
    }
    File::open(path).map_err(CappedReadError::Io)
}

/// Creates a FIFO at `path` (tests of what happens when one is put where a file belongs).
#[cfg(all(test, unix))]
pub(crate) fn make_fifo(path: &Path) {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    mknodat(CWD, path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).expect("mkfifo");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn write_atomic_into_a_missing_folder_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("state.json");
        assert!(write_atomic(&path, b"x").is_err());
    }

    #[test]
    fn capped_reads_refuse_large_files_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let file = File::create(&path).unwrap();
        file.set_len(2 << 30).unwrap(); // sparse 2 GiB: reading it would take seconds
        let start = std::time::Instant::now();
        match read_capped(&path, 1 << 20) {
            Err(CappedReadError::TooLarge { size }) => assert_eq!(size, 2 << 30),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"12345");
        assert!(matches!(
            read_capped(&path, 4),
            Err(CappedReadError::TooLarge { size: 5 })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn capped_reads_refuse_links_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_capped(&link, 10),
            Err(CappedReadError::NotAFile)
        ));
        assert!(matches!(
            read_capped(Path::new("/dev/zero"), 10),
            Err(CappedReadError::NotAFile)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn capped_reads_refuse_a_link_to_a_regular_file_unless_asked_to_follow() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        std::fs::write(&target, b"{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read_capped(&link, 10),
            Err(CappedReadError::NotAFile)
        ));
        assert_eq!(read_capped_following_links(&link, 10).unwrap(), b"{}");
    }

    #[cfg(unix)]
    #[test]
    fn capped_reads_refuse_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("revert.json");
        make_fifo(&fifo);
        // No writer: a blocking open would wait forever. Both modes refuse at once.
        let start = std::time::Instant::now();
        for links in [Links::Refuse, Links::Follow] {
            assert!(matches!(
                read_capped_with(&fifo, 10, links),
                Err(CappedReadError::NotAFile)
            ));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn pause_point_does_nothing_for_other_steps() {
        // The variable is not set by the test runner; an unrelated step returns at once.
        let start = std::time::Instant::now();
        pause_point("no-such-step");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
