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
    check_bundle_structure(dir, &BundleLimits::default()).map_err(|error| ValidateError::Refused {
        path: dir.to_path_buf(),
        error,
    })
}

/// Reads a regular file of at most `cap` bytes (the runtime's one capped reader; a link named on the
/// command line is followed).
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ValidateError> {
    use rulebox_runtime::content::CappedReadError;
    let io = |error| ValidateError::Io {
        path: PathBuf::from(path),
        error,
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

#[cfg(test)]
mod tests {
    use rulebox_runtime::content::{
        BundleError, MANIFEST_FORMAT, Manifest, RUNTIME_VERSION, RuleEntry, Signed,
        module_file_name,
    };
    use rulebox_runtime::sdk::abi::{ABI_VERSION, SCHEMA_VERSION};

    use super::*;

    /// An unsigned bundle of the office-shell example rule in `dir`.
    fn unsigned_bundle(dir: &Path) {
        let bytes = rulebox_example_artifacts::by_name("office-shell")
            .unwrap()
            .bytes;
        let sha256 = rulebox_runtime::content_hash(bytes);
        let entry = RuleEntry {
            id: "office-spawns-shell".into(),
            version: "1.0.0".into(),
            file: module_file_name(&sha256),
            sha256,
            size: u64::try_from(bytes.len()).unwrap(),
            limits: None,
        };
        std::fs::create_dir_all(dir.join("modules")).unwrap();
        std::fs::write(dir.join(&entry.file), bytes).unwrap();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            release: 1,
            created_unix: 1,
            expires_unix: u64::MAX,
            min_runtime: RUNTIME_VERSION.into(),
            abi_version: ABI_VERSION,
            schema_versions: vec![SCHEMA_VERSION],
            rules: vec![entry],
            engines: Vec::new(),
            packs: Vec::new(),
            notes: String::new(),
        };
        let envelope = Signed {
            signed: manifest,
            signatures: Vec::new(),
        };
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn the_gate_reads_bundles_with_the_endpoints_structure_checks() {
        let dir = tempfile::tempdir().unwrap();
        unsigned_bundle(dir.path());
        assert_eq!(read_bundle(dir.path()).unwrap().modules().len(), 1);
        // The exact-file-listing check: a file the manifest does not list.
        std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        let err = read_bundle(dir.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                ValidateError::Refused {
                    error: BundleError::ExtraFile { path },
                    ..
                } if path == "notes.txt"
            ),
            "{err}"
        );
    }
}
