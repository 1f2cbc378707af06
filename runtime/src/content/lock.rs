//! The store's lock (`STORE/lock`): an exclusive advisory `flock` held by the one process that has
//! the store open for writing, released by the kernel when that process dies.
//!
//! `flock` needs no more than a read-only descriptor, so whoever can open the file can hold the lock
//! and keep the agent from its store. The lock file is therefore the store owner's alone: created
//! mode `0600`, opened without following a link, and checked on the descriptor (a regular file owned
//! by this process's user, no access for group or others). A lock file that fails the check (one an
//! older version made `0644`, or one put there by someone else) is replaced by a fresh one before it
//! is locked, so a descriptor another user opened on it holds a lock on a file the store no longer
//! uses. (Replacing it is only possible because the store folder is this user's: see
//! [`check_private_folder`](super::check_private_folder).)

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::fsutil::{TMP_PREFIX, fsync_dir, unique_suffix};
use super::layout::StoreLayout;
use super::ownership::UnsafeFolder;
use super::store::{StoreError, io_at};

/// How long a held lock is waited for before the store is called locked: a lock can outlive its
/// holder by a moment (a process that is exiting, a supervisor restarting the agent, a child forked
/// by another thread that has not yet reached exec and still shares the descriptor).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the exclusive lock of the store in `dir`.
pub(super) fn take(dir: &Path) -> Result<File, StoreError> {
    let file = open_private(dir)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_at(&StoreLayout::new(dir).lock())(e));
            }
        }
    }
}

/// Opens (creating it if needed) the lock file, replacing one that is not the store owner's alone.
#[cfg(unix)]
fn open_private(dir: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::MetadataExt;

    use rustix::fs::{Mode, OFlags};

    let path = StoreLayout::new(dir).lock();
    let me = rustix::process::geteuid().as_raw();
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for attempt in 0..2 {
        let file = match rustix::fs::open(&path, flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => File::from(fd),
            // `O_NOFOLLOW`: a link where the lock belongs.
            Err(rustix::io::Errno::LOOP) if attempt == 0 => {
                replace(dir, &path)?;
                continue;
            }
            Err(e) => return Err(io_at(&path)(e.into())),
        };
        let meta = file.metadata().map_err(io_at(&path))?;
        if meta.is_file() && meta.uid() == me && meta.mode() & 0o077 == 0 {
            return Ok(file);
        }
        if attempt == 0 {
            drop(file);
            replace(dir, &path)?;
            continue;
        }
        return Err(StoreError::Unsafe(UnsafeFolder {
            path,
            problem: format!(
                "is not this process's own lock file (owner uid {}, mode {:o}) and cannot be replaced",
                meta.uid(),
                meta.mode() & 0o7777
            ),
        }));
    }
    Err(StoreError::Unsafe(UnsafeFolder {
        path,
        problem: "cannot be made this process's own lock file".to_owned(),
    }))
}

/// Puts a fresh, private lock file at `path` (atomically: a new inode renamed over the old entry).
#[cfg(unix)]
fn replace(dir: &Path, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;

    let tmp = dir.join(format!("{TMP_PREFIX}lock-{}", unique_suffix()));
    let created = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp));
    let result = created.and_then(|_| std::fs::rename(&tmp, path).map_err(io_at(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    fsync_dir(dir).map_err(io_at(dir))?;
    tracing::warn!(path = %path.display(), "replaced a store lock file that was not the store's own");
    Ok(())
}

/// Opens (creating it if needed) the lock file.
#[cfg(not(unix))]
fn open_private(dir: &Path) -> Result<File, StoreError> {
    let path = StoreLayout::new(dir).lock();
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))
}
