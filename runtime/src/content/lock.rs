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

#[cfg(all(test, unix))]
mod tests {
    use std::io::BufRead;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use crate::content::ContentStore;
    use crate::content::store::tests::new_store;

    /// A uid no account uses: "another local user".
    const OTHER_UID: u32 = 54_321;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// The child half of the tests below: opens `RULEBOX_TEST_LOCK_FILE` read-only (all `flock`
    /// needs), takes an exclusive lock on it, says `HELD` and keeps it; or says why it could not.
    #[test]
    #[ignore = "run as a child process of another uid by the lock tests"]
    fn child_holds_a_file_lock() {
        let Some(path) = std::env::var_os("RULEBOX_TEST_LOCK_FILE") else {
            return;
        };
        match std::fs::File::open(&path) {
            Ok(file) => match file.try_lock() {
                Ok(()) => {
                    println!("HELD");
                    std::thread::sleep(std::time::Duration::from_secs(30));
                }
                Err(e) => println!("NOT LOCKED: {e}"),
            },
            Err(e) => println!("CANNOT OPEN: {e}"),
        }
    }

    /// Runs [`child_holds_a_file_lock`] as [`OTHER_UID`] on `path`; returns its first line and the
    /// child (still running if it holds the lock).
    fn as_other_user(path: &std::path::Path) -> (String, std::process::Child) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "content::lock::tests::child_holds_a_file_lock",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RULEBOX_TEST_LOCK_FILE", path)
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The test harness prints `test <name> ... ` before the child's own output, on its line.
        let line = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                ["HELD", "NOT LOCKED", "CANNOT OPEN"]
                    .iter()
                    .find_map(|m| l.find(m).map(|at| l[at..].to_owned()))
            })
            .unwrap_or_default();
        (line, child)
    }

    /// A store whose folders another user may enter (0755), so that only the lock file's own mode
    /// stands between that user and the lock.
    fn traversable_store() -> (tempfile::TempDir, ContentStore) {
        let (tmp, store) = new_store();
        for dir in [tmp.path(), store.dir()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (tmp, store)
    }

    #[test]
    fn another_user_cannot_open_the_store_lock() {
        if !is_root() {
            eprintln!("skipped: running a child as another user needs root");
            return;
        }
        let (_tmp, store) = traversable_store();
        let lock = store.layout().lock();
        let meta = std::fs::metadata(&lock).unwrap();
        assert_eq!(
            meta.mode() & 0o777,
            0o600,
            "the lock file is the owner's alone"
        );
        drop(store);
        // Control: a world-readable file in the same folder is open to that user, so what stops
        // it below is the lock file's mode.
        let control = lock.with_file_name("readable");
        std::fs::write(&control, b"").unwrap();
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (line, mut child) = as_other_user(&control);
        child.kill().ok();
        child.wait().unwrap();
        assert_eq!(line, "HELD");
        let (line, mut child) = as_other_user(&lock);
        child.kill().ok();
        child.wait().unwrap();
        assert!(line.starts_with("CANNOT OPEN"), "{line}");
    }

    #[test]
    fn a_lock_held_by_another_user_on_an_old_lock_file_does_not_keep_the_store_closed() {
        if !is_root() {
            eprintln!("skipped: running a child as another user needs root");
            return;
        }
        let (_tmp, store) = traversable_store();
        let dir = store.dir().to_path_buf();
        let lock = store.layout().lock();
        drop(store);
        // An older version made the lock 0644; another user opens it and holds the lock.
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (line, mut child) = as_other_user(&lock);
        assert_eq!(line, "HELD");
        // The store still opens: the lock file is replaced by a private one, and locked.
        let opened = ContentStore::open(&dir);
        child.kill().ok();
        child.wait().unwrap();
        let store = opened.unwrap();
        let meta = std::fs::metadata(&lock).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(matches!(
            ContentStore::open(&dir),
            Err(crate::content::StoreError::Locked { .. })
        ));
        drop(store);
        // A link where the lock belongs is replaced too, never followed.
        let target = dir.with_file_name("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        drop(ContentStore::open(&dir).unwrap());
        assert!(
            !std::fs::symlink_metadata(&lock)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
