//! Reading a bundle folder before it is signed: the manifest and its modules, checked against each
//! other (the signatures are checked later, by `rulebox bundle verify` and by every endpoint).

use std::path::{Path, PathBuf};

use rulebox_runtime::content::{
    BundleLimits, Manifest, RuleEntry, Signed, manifest_hash, module_file_name,
};
use sha2::{Digest, Sha256};

use crate::error::ValidateError;

/// A bundle's manifest, its canonical hash, and each entry with its module bytes.
#[derive(Debug, Clone)]
pub struct BundleContent {
    /// The manifest (signatures, if any, are not looked at).
    pub manifest: Manifest,
    /// The manifest's canonical hash, which a report is bound to.
    pub manifest_hash: String,
    /// Each rule entry with its module bytes, in manifest order.
    pub modules: Vec<(RuleEntry, Vec<u8>)>,
}

/// Reads `dir/manifest.json` (signed or not) and every module it lists, refusing a manifest or
/// module over the endpoint's size caps, a module file name other than `modules/<sha256>.wasm`, and
/// a module whose size or SHA-256 differs from its entry.
pub fn read_bundle(dir: &Path) -> Result<BundleContent, ValidateError> {
    let limits = BundleLimits::default();
    let bad = |problem: String| ValidateError::Bundle {
        path: dir.to_path_buf(),
        problem,
    };
    let path = dir.join("manifest.json");
    let bytes = read_capped(&path, limits.max_manifest_bytes)?;
    let envelope: Signed<Manifest> =
        serde_json::from_slice(&bytes).map_err(|source| ValidateError::Json {
            path: path.clone(),
            source,
        })?;
    let manifest = envelope.signed;
    let hash = manifest_hash(&manifest).map_err(ValidateError::Encode)?;
    let mut modules = Vec::with_capacity(manifest.rules.len());
    let mut total = 0u64;
    for entry in &manifest.rules {
        if entry.file != module_file_name(&entry.sha256) {
            return Err(bad(format!(
                "rule `{}`: file `{}` is not `modules/<its sha256>.wasm`",
                entry.id.escape_debug(),
                entry.file.escape_debug()
            )));
        }
        if entry.size > limits.max_module_bytes {
            return Err(bad(format!(
                "rule `{}`: module of {} bytes is over the cap of {}",
                entry.id, entry.size, limits.max_module_bytes
            )));
        }
        total = total.saturating_add(entry.size);
        if total > limits.max_total_bytes {
            return Err(bad(format!(
                "modules total more than the cap of {} bytes",
                limits.max_total_bytes
            )));
        }
        let file = dir.join(&entry.file);
        let module = read_capped(&file, entry.size)?;
        if u64::try_from(module.len()).unwrap_or(u64::MAX) != entry.size {
            return Err(bad(format!(
                "rule `{}`: `{}` is {} bytes, the manifest says {}",
                entry.id,
                entry.file,
                module.len(),
                entry.size
            )));
        }
        if hex::encode(Sha256::digest(&module)) != entry.sha256 {
            return Err(bad(format!(
                "rule `{}`: `{}` does not have the manifest's SHA-256",
                entry.id, entry.file
            )));
        }
        modules.push((entry.clone(), module));
    }
    Ok(BundleContent {
        manifest,
        manifest_hash: hash,
        modules,
    })
}

/// Reads a regular file of at most `cap` bytes (the cap is checked before and while reading).
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
