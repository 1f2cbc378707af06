//! Who may change a folder the host trusts: the content store, its module cache. A user who can
//! write such a folder, or any folder above it, can replace `root.json` (and so choose all content)
//! or plant machine code in the cache; such folders are refused.
//!
//! The rules (Unix; other platforms have no such check):
//!
//! - the folder itself is a real folder (not a symbolic link), owned by this process's effective
//!   user, and neither group nor others may write to it;
//! - every folder above it, along the path as given and along its canonical form, is owned by root
//!   or by this process's effective user, and neither group nor others may write to it unless it has
//!   the sticky bit (`/tmp`: others may add entries there but never rename or remove ours); a
//!   symbolic link on the way must be owned by root or by this user too.

use std::path::{Path, PathBuf};

/// A folder the host refuses to trust, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` {problem}", path.display())]
pub struct UnsafeFolder {
    /// The folder (the store, the cache, or one above it).
    pub path: PathBuf,
    /// What is wrong, in words ("is owned by uid 1000, not by this process (uid 0)").
    pub problem: String,
}

/// Checks that `dir` and every folder above it can be changed only by this process's user (or
/// root): see the module docs. `dir` must exist.
pub fn check_private_folder(dir: &Path) -> Result<(), UnsafeFolder> {
    #[cfg(unix)]
    {
        unix::check(dir)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use super::UnsafeFolder;

    const GROUP_OR_OTHER_WRITE: u32 = 0o022;
    const STICKY: u32 = 0o1000;

    fn refuse(path: &Path, problem: String) -> UnsafeFolder {
        UnsafeFolder {
            path: path.to_path_buf(),
            problem,
        }
    }

    fn meta(path: &Path) -> Result<std::fs::Metadata, UnsafeFolder> {
        std::fs::symlink_metadata(path).map_err(|e| refuse(path, format!("cannot be read: {e}")))
    }

    pub(super) fn check(dir: &Path) -> Result<(), UnsafeFolder> {
        let me = rustix::process::geteuid().as_raw();
        let own = meta(dir)?;
        if own.file_type().is_symlink() {
            return Err(refuse(dir, "is a symbolic link, not a folder".to_owned()));
        }
        if !own.is_dir() {
            return Err(refuse(dir, "is not a folder".to_owned()));
        }
        if own.uid() != me {
            return Err(refuse(
                dir,
                format!(
                    "is owned by uid {}, not by this process (uid {me})",
                    own.uid()
                ),
            ));
        }
        if own.mode() & GROUP_OR_OTHER_WRITE != 0 {
            return Err(refuse(
                dir,
                format!(
                    "may be written by group or others (mode {:o})",
                    own.mode() & 0o7777
                ),
            ));
        }
        let absolute = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| refuse(dir, format!("cannot be located: {e}")))?
                .join(dir)
        };
        let canonical = std::fs::canonicalize(dir)
            .map_err(|e| refuse(dir, format!("cannot be resolved: {e}")))?;
        for path in [absolute, canonical] {
            let mut above: Option<PathBuf> = path.parent().map(Path::to_path_buf);
            while let Some(folder) = above {
                check_above(&folder, me)?;
                above = folder.parent().map(Path::to_path_buf);
            }
        }
        Ok(())
    }

    /// A folder (or link) on the way to a trusted folder.
    fn check_above(path: &Path, me: u32) -> Result<(), UnsafeFolder> {
        let m = meta(path)?;
        if m.uid() != 0 && m.uid() != me {
            return Err(refuse(
                path,
                format!(
                    "(above a trusted folder) is owned by uid {}, neither root nor this process (uid {me})",
                    m.uid()
                ),
            ));
        }
        // A link's own mode means nothing; its target is checked along the canonical path.
        if m.is_dir() && m.mode() & GROUP_OR_OTHER_WRITE != 0 && m.mode() & STICKY == 0 {
            return Err(refuse(
                path,
                format!(
                    "(above a trusted folder) may be written by group or others without the sticky bit (mode {:o})",
                    m.mode() & 0o7777
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_folder_under_tmp_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        std::fs::create_dir(&dir).unwrap();
        mode(&dir, 0o755);
        check_private_folder(&dir).unwrap();
    }

    #[test]
    fn a_folder_others_may_write_or_under_such_a_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("shared");
        let dir = parent.join("store");
        std::fs::create_dir_all(&dir).unwrap();
        mode(&dir, 0o777);
        let err = check_private_folder(&dir).unwrap_err();
        assert_eq!(err.path, dir);
        assert!(err.problem.contains("group or others"), "{err}");
        mode(&dir, 0o700);
        mode(&parent, 0o775);
        let err = check_private_folder(&dir).unwrap_err();
        assert_eq!(err.path, parent);
        // The sticky bit keeps others from renaming or removing what is ours.
        mode(&parent, 0o1777);
        check_private_folder(&dir).unwrap();
    }

    #[test]
    fn a_folder_owned_by_another_user_or_a_link_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("skipped: changing a folder's owner needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("theirs");
        let dir = parent.join("store");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(12_345), None).unwrap();
        let err = check_private_folder(&dir).unwrap_err();
        assert!(err.problem.contains("owned by uid 12345"), "{err}");
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        std::os::unix::fs::chown(&parent, Some(12_345), None).unwrap();
        let err = check_private_folder(&dir).unwrap_err();
        assert_eq!(err.path, parent);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(
            check_private_folder(&link)
                .unwrap_err()
                .problem
                .contains("symbolic link")
        );
    }
}
