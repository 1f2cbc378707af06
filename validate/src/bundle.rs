//! Reading a bundle folder before it is signed: exactly the endpoint's structure checks
//! ([`check_bundle_structure`]); the signatures are checked later, by `rulebox bundle verify` and by
//! every endpoint.

use std::path::{Path, PathBuf};

use rulebox_runtime::content::{BundleContents, BundleLimits, check_bundle_structure};

use crate::error::ValidateError;

/// Reads the bundle in `dir` (signed or not) with the endpoint's own structure checks and size caps:
/// the manifest, its format, ABI, schema and runtime versions, every entry, exactly the listed files,
/// and each module's size and SHA-256. Anything an endpoint would refuse for its structure is refused
/// here ([`ValidateError::Refused`]).
pub fn read_bundle(dir: &Path) -> Result<BundleContents, ValidateError> {
    check_bundle_structure(dir, &BundleLimits::default()).map_err(|source| ValidateError::Refused {
        path: dir.to_path_buf(),
        source,
    })
}

/// Reads a regular file of at most `cap` bytes (the runtime's one capped reader; a link named on the
/// command line is followed).
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ValidateError> {
    use rulebox_runtime::content::CappedReadError;
    let io = |source| ValidateError::Io {
        path: PathBuf::from(path),
        source,
    };
    rulebox_runtime::content::read_capped_following_links(path, cap).map_err(|e| match e {
        CappedReadError::TooLarge { size } => ValidateError::TooLarge {
            path: path.to_path_buf(),
            size,
            cap,
        },
        CappedReadError::NotAFile => io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )),
        CappedReadError::Io(source) => io(source),
        other => io(std::io::Error::other(other.to_string())),
    })
}
