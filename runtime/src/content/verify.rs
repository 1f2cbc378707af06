//! The checks a root and a bundle must pass: TUF-style threshold signatures, root rotation, rollback,
//! freeze, mix-and-match and endless-data defences.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::format::{
    EngineEntry, ListedFile, MANIFEST_FORMAT, MANIFEST_FORMAT_PACKS, MAX_ENGINES,
    MAX_MANIFEST_RULES, MAX_PACKS, Manifest, PackEntry, Root, RuleEntry, Signable, Signature,
    Signed, data_file_name, decode_fixed, is_sha256_hex, manifest_hash, module_file_name,
    parse_version, signing_bytes,
};
use super::fsutil::{CappedReadError, read_capped};

/// This runtime's version (`rulebox-runtime`'s `CARGO_PKG_VERSION`), compared with
/// [`Manifest::min_runtime`].
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest root file accepted, in bytes.
pub const MAX_ROOT_BYTES: u64 = 1 << 20;

/// Most a release number may rise above the highest release a store accepted (or, on a store that
/// accepted none, above the root's [`release_counter`](Root::release_counter), else 0): one signed
/// manifest numbered `u64::MAX` cannot block every later release. A vendor that numbers releases
/// consecutively never comes near it; a root rotation resets the counter.
pub const MAX_RELEASE_STEP: u64 = 1_000_000;

/// Longest key id or file name quoted in an error (they come from untrusted input).
const MAX_QUOTED: usize = 100;

/// Untrusted text (a key id, a file name, a rule id from a manifest) shortened to [`MAX_QUOTED`]
/// bytes, with its control characters escaped so that it never reaches a terminal raw.
fn quote(text: &str) -> String {
    let short = &text[..text.floor_char_boundary(MAX_QUOTED)];
    let escaped = crate::text::Escaped(short).to_string();
    if short.len() < text.len() {
        format!("{escaped}...")
    } else {
        escaped
    }
}

/// Size caps applied to a bundle before any of it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundleLimits {
    /// Largest `manifest.json`, in bytes (default 1 MiB).
    pub max_manifest_bytes: u64,
    /// Largest module, in bytes (default 16 MiB).
    pub max_module_bytes: u64,
    /// Largest sum of all file sizes (modules, engines and rule data), in bytes (default 256 MiB).
    pub max_total_bytes: u64,
    /// Largest rule data file of a pack, in bytes (default 16 MiB, the most the runtime hands a
    /// pack: `MAX_RULE_DATA_BYTES`).
    pub max_data_bytes: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_manifest_bytes: 1 << 20,
            max_module_bytes: 16 << 20,
            max_total_bytes: 256 << 20,
            max_data_bytes: crate::pack::MAX_RULE_DATA_BYTES as u64,
        }
    }
}

/// Why a set of signatures does not meet a threshold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A signature by a key the root names does not verify (wrong key, altered content, malformed).
    #[error("the signature by key `{keyid}` does not verify over the signed content")]
    BadSignature {
        /// The key id.
        keyid: String,
    },
    /// Every signature is by a key the root does not name.
    #[error("signed only by keys the root does not name: {}", keyids.join(", "))]
    UnknownKey {
        /// The unknown key ids (at most 8 are listed).
        keyids: Vec<String>,
    },
    /// Too few distinct keys of the root signed.
    #[error("{have} valid signature(s) from distinct keys of the root; {need} required")]
    BelowThreshold {
        /// Valid signatures by distinct known keys.
        have: u32,
        /// The threshold.
        need: u32,
    },
    /// The keys given to check against are not a usable key set ([`verify_envelope`]).
    #[error("the keys to check against are not usable: {problem}")]
    BadKeySet {
        /// What is wrong.
        problem: String,
    },
}

/// Counts the valid signatures over `message` by distinct keys of `keys`; each key's first signature
/// is the one that counts, signatures by unknown keys are ignored. `Ok` with the count when it meets
/// `threshold`.
pub(crate) fn check_threshold(
    message: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<String, VerifyingKey>,
    threshold: u32,
) -> Result<u32, SignatureError> {
    let mut tried: BTreeSet<&str> = BTreeSet::new();
    let mut valid: u32 = 0;
    let mut bad: Option<String> = None;
    let mut unknown: Vec<String> = Vec::new();
    for s in signatures {
        let Some(key) = keys.get(&s.keyid) else {
            if unknown.len() < 8 && !unknown.contains(&s.keyid) {
                unknown.push(quote(&s.keyid));
            }
            continue;
        };
        if !tried.insert(s.keyid.as_str()) {
            continue;
        }
        let ok = decode_fixed::<64>(&s.sig)
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .is_some_and(|sig| key.verify_strict(message, &sig).is_ok());
        if ok {
            valid = valid.saturating_add(1);
        } else if bad.is_none() {
            bad = Some(quote(&s.keyid));
        }
    }
    if valid >= threshold {
        Ok(valid)
    } else if let Some(keyid) = bad {
        Err(SignatureError::BadSignature { keyid })
    } else if valid == 0 && !unknown.is_empty() {
        Err(SignatureError::UnknownKey { keyids: unknown })
    } else {
        Err(SignatureError::BelowThreshold {
            have: valid,
            need: threshold,
        })
    }
}

/// Checks the signatures of any signed document against the keys and threshold `signers` names
/// (a [`Root`] used as a key set: the content root for manifests and reverts, an owner root for
/// policies, a set of gate keys for validation reports), over the document's domain-separated
/// canonical bytes. Returns the number of valid signatures by distinct known keys.
pub fn verify_envelope<T: Signable>(
    envelope: &Signed<T>,
    signers: &Root,
) -> Result<u32, SignatureError> {
    let keys = signers
        .verifying_keys()
        .map_err(|problem| SignatureError::BadKeySet {
            problem: quote(&problem),
        })?;
    // Encoding a value that was decoded from JSON cannot fail; if it ever did, nothing verifies.
    let message = signing_bytes(&envelope.signed).map_err(|_| SignatureError::BadKeySet {
        problem: "the signed document cannot be encoded".to_owned(),
    })?;
    check_threshold(&message, &envelope.signatures, &keys, signers.threshold)
}

/// Why a root was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// The root file cannot be read.
    #[error("cannot read the root `{}`: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// The root file is not a regular file.
    #[error("the root `{}` is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The root is larger than [`MAX_ROOT_BYTES`].
    #[error("the root is {size} bytes; the limit is {cap}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// The root is not a valid signed root document.
    #[error("the root is not a valid signed root: {0}")]
    Parse(serde_json::Error),
    /// The root is inconsistent (threshold, keys).
    #[error("root version {version} is invalid: {problem}")]
    Invalid {
        /// The root's version.
        version: u64,
        /// What is wrong.
        problem: String,
    },
    /// The root is not signed by a threshold of its own keys.
    #[error("root version {version} is not signed by a threshold of its own keys: {error}")]
    NotSelfSigned {
        /// The root's version.
        version: u64,
        /// The signature problem.
        error: SignatureError,
    },
    /// A new root is not signed by a threshold of the current root's keys.
    #[error(
        "root version {version} is not signed by a threshold of the keys of the current root (version {current}): {error}"
    )]
    NotSignedByCurrent {
        /// The new root's version.
        version: u64,
        /// The current root's version.
        current: u64,
        /// The signature problem.
        error: SignatureError,
    },
    /// A new root skips versions: root `N + 1` must follow root `N`.
    #[error("root version {new} skips a version: the current root is version {current}, so only version {} is accepted", current.saturating_add(1))]
    VersionSkip {
        /// The current root's version.
        current: u64,
        /// The new root's version.
        new: u64,
    },
    /// A new root is not newer than the current one.
    #[error("root version {new} is not newer than the current root (version {current})")]
    NotNewer {
        /// The current root's version.
        current: u64,
        /// The new root's version.
        new: u64,
    },
    /// The root cannot be encoded canonically (not expected to happen).
    #[error("cannot encode the root canonically: {0}")]
    Encode(serde_json::Error),
}

/// Reads the endpoint's trusted root: at most [`MAX_ROOT_BYTES`], a valid signed root, consistent,
/// and signed by a threshold of its own keys. The endpoint trusts it as installed (it is the trust
/// anchor); these checks catch a damaged or hand-edited file.
pub fn load_trusted_root(path: &Path) -> Result<Root, RootError> {
    let bytes = read_capped(path, MAX_ROOT_BYTES).map_err(|e| match e {
        CappedReadError::NotAFile => RootError::NotAFile {
            path: path.to_path_buf(),
        },
        CappedReadError::TooLarge { size } => RootError::TooLarge {
            size,
            cap: MAX_ROOT_BYTES,
        },
        CappedReadError::Io(error) => RootError::Io {
            path: path.to_path_buf(),
            error,
        },
    })?;
    parse_trusted_root(&bytes)
}

/// [`load_trusted_root`] on bytes already in memory (e.g. a root built into the agent).
pub fn parse_trusted_root(bytes: &[u8]) -> Result<Root, RootError> {
    let (envelope, keys) = parse_root(bytes)?;
    let message = signing_bytes(&envelope.signed).map_err(RootError::Encode)?;
    check_threshold(
        &message,
        &envelope.signatures,
        &keys,
        envelope.signed.threshold,
    )
    .map_err(|error| RootError::NotSelfSigned {
        version: envelope.signed.version,
        error,
    })?;
    Ok(envelope.signed)
}

fn parse_root(bytes: &[u8]) -> Result<(Signed<Root>, BTreeMap<String, VerifyingKey>), RootError> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_ROOT_BYTES {
        return Err(RootError::TooLarge {
            size,
            cap: MAX_ROOT_BYTES,
        });
    }
    let envelope: Signed<Root> = serde_json::from_slice(bytes).map_err(RootError::Parse)?;
    let keys = envelope
        .signed
        .verifying_keys()
        .map_err(|problem| RootError::Invalid {
            version: envelope.signed.version,
            problem,
        })?;
    Ok((envelope, keys))
}

/// Accepts root `N + 1` on top of the trusted root `N` (The Update Framework's rotation rule): the
/// new root must be exactly one version newer, consistent, signed by a threshold of the *current*
/// root's keys, and signed by a threshold of its *own* keys. The caller persists the bytes (the
/// store does it in [`ContentStore::update_root`](super::ContentStore::update_root)). To move several
/// versions ahead, apply each root in turn.
pub fn update_root(current: &Root, new_envelope_bytes: &[u8]) -> Result<Root, RootError> {
    let (envelope, new_keys) = parse_root(new_envelope_bytes)?;
    let new = &envelope.signed;
    if new.version <= current.version {
        return Err(RootError::NotNewer {
            current: current.version,
            new: new.version,
        });
    }
    if new.version != current.version.saturating_add(1) {
        return Err(RootError::VersionSkip {
            current: current.version,
            new: new.version,
        });
    }
    let current_keys = current
        .verifying_keys()
        .map_err(|problem| RootError::Invalid {
            version: current.version,
            problem,
        })?;
    let message = signing_bytes(new).map_err(RootError::Encode)?;
    check_threshold(
        &message,
        &envelope.signatures,
        &current_keys,
        current.threshold,
    )
    .map_err(|error| RootError::NotSignedByCurrent {
        version: new.version,
        current: current.version,
        error,
    })?;
    check_threshold(&message, &envelope.signatures, &new_keys, new.threshold).map_err(|error| {
        RootError::NotSelfSigned {
            version: new.version,
            error,
        }
    })?;
    Ok(envelope.signed)
}

/// Why a bundle was refused. One variant per refusal; each message names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file of the bundle cannot be read (other than missing modules).
    #[error("cannot read `{}`: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A path in the bundle is a symbolic link, device, folder where a file belongs, or the like.
    #[error("`{}` is not a regular file (links and devices are refused)", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// `manifest.json` is larger than the cap (checked before reading it).
    #[error("manifest.json is {size} bytes; the limit is {cap}")]
    ManifestTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// `manifest.json` is not a valid signed manifest.
    #[error("manifest.json is not a valid signed manifest: {0}")]
    ManifestParse(serde_json::Error),
    /// The trusted root given to the check is itself inconsistent.
    #[error("the trusted root is invalid: {0}")]
    InvalidRoot(String),
    /// A signature by a key of the root does not verify.
    #[error("the signature by key `{keyid}` does not verify over the manifest")]
    BadSignature {
        /// The key id.
        keyid: String,
    },
    /// Every signature is by a key the root does not name.
    #[error("the manifest is signed only by keys the root does not name: {}", keyids.join(", "))]
    UnknownKey {
        /// The unknown key ids (at most 8).
        keyids: Vec<String>,
    },
    /// Too few distinct keys of the root signed the manifest.
    #[error(
        "the manifest has {have} valid signature(s) from distinct keys of the root; {need} required"
    )]
    BelowThreshold {
        /// Valid signatures.
        have: u32,
        /// The root's threshold.
        need: u32,
    },
    /// The manifest has expired (freeze attack defence).
    #[error("the manifest expired at {expires} (unix seconds); it is now {now}")]
    Expired {
        /// The manifest's expiry.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// The release is older than one already accepted (rollback attack defence).
    #[error("release {release} is older than release {highest}, already accepted")]
    Rollback {
        /// The bundle's release.
        release: u64,
        /// The highest release accepted.
        highest: u64,
    },
    /// The release is the one already accepted: nothing to do.
    #[error("release {release} is already installed")]
    AlreadyInstalled {
        /// The release.
        release: u64,
    },
    /// The release number jumps further than [`MAX_RELEASE_STEP`] above the highest accepted release
    /// (fast-forward defence: accepting it would block every release numbered below it).
    #[error(
        "release {release} is more than {max_step} above release {base}, the highest accepted (or the root's release counter); refused so that one release number cannot block every later release"
    )]
    TooFarAhead {
        /// The bundle's release.
        release: u64,
        /// What the step is counted from.
        base: u64,
        /// The largest step accepted.
        max_step: u64,
    },
    /// The manifest format is not one this runtime reads.
    #[error("manifest format {found} is not supported; this runtime reads formats 1 to {expected}")]
    UnsupportedFormat {
        /// The manifest's format.
        found: u32,
        /// The supported one.
        expected: u32,
    },
    /// The modules implement another guest ABI.
    #[error("the release is built for ABI version {found}; this runtime implements {expected}")]
    UnsupportedAbi {
        /// The manifest's ABI version.
        found: u32,
        /// The runtime's.
        expected: u32,
    },
    /// None of the release's event-schema versions is this runtime's.
    #[error("the release supports event-schema versions [{}]; this runtime supplies {ours}", offered.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))]
    UnsupportedSchema {
        /// The manifest's schema versions.
        offered: Vec<u32>,
        /// The runtime's.
        ours: u32,
    },
    /// `min_runtime` is not a `major.minor.patch` version.
    #[error("min_runtime `{value}` is not a major.minor.patch version")]
    BadMinRuntime {
        /// The manifest's value.
        value: String,
    },
    /// The release needs a newer runtime.
    #[error("the release needs rulebox-runtime {required} or later; this is {ours}")]
    RuntimeTooOld {
        /// The manifest's `min_runtime`.
        required: String,
        /// This runtime's version.
        ours: &'static str,
    },
    /// A rule entry is malformed (empty id, bad hash text, invalid limits).
    #[error("rule `{rule_id}`: {problem}")]
    InvalidEntry {
        /// The rule id.
        rule_id: String,
        /// What is wrong.
        problem: String,
    },
    /// A manifest of format 1 lists engines or packs, which only format 2 may carry (an older agent
    /// would never see them).
    #[error(
        "manifest format {format} cannot carry engines or packs; a release with packs is format {}",
        MANIFEST_FORMAT_PACKS
    )]
    PacksNeedFormat2 {
        /// The manifest's format.
        format: u32,
    },
    /// An engine states another ABI than rule packs' (`PACK_ABI_VERSION`).
    #[error(
        "engine `{file}` is built for ABI version {found}; engines are rule packs, ABI {expected}"
    )]
    EngineAbi {
        /// The engine's file.
        file: String,
        /// The ABI the entry states.
        found: u32,
        /// The rule packs' ABI.
        expected: u32,
    },
    /// The manifest lists more of something than this runtime accepts (checked before anything
    /// sized by it is allocated or read).
    #[error("the manifest lists {count} {what}; at most {max}")]
    TooMany {
        /// What: `engines`, `packs`, `rules`, or `rules in pack <id>`.
        what: String,
        /// How many it lists.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A pack entry is malformed (empty id or version, no rules, bad hash text, invalid limits).
    #[error("pack `{pack_id}`: {problem}")]
    InvalidPack {
        /// The pack id.
        pack_id: String,
        /// What is wrong.
        problem: String,
    },
    /// A pack names an engine the manifest does not list.
    #[error("pack `{pack_id}` is data for engine {engine}, which the manifest does not list")]
    UnknownEngine {
        /// The pack id.
        pack_id: String,
        /// The engine hash the pack names.
        engine: String,
    },
    /// An engine no pack uses (it would be shipped and never run).
    #[error("engine `{file}` is listed but no pack names it")]
    UnusedEngine {
        /// The engine's file.
        file: String,
    },
    /// A pack's data file is larger than the cap (checked before reading it).
    #[error("rule data `{file}` of pack `{pack_id}` is {size} bytes; the limit is {cap}")]
    DataTooLarge {
        /// The pack id.
        pack_id: String,
        /// The file.
        file: String,
        /// Its size (as the manifest states it).
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// A module's `file` is not `modules/<sha256>.wasm` (path traversal defence).
    #[error("rule `{rule_id}`: file `{file}` is not allowed; it must be exactly `{expected}`")]
    BadFileName {
        /// The rule id.
        rule_id: String,
        /// The file as written in the manifest.
        file: String,
        /// The only accepted name.
        expected: String,
    },
    /// Two entries have the same rule id.
    #[error("rule id `{rule_id}` appears more than once in the manifest")]
    DuplicateRule {
        /// The rule id.
        rule_id: String,
    },
    /// Two entries name the same module or data file.
    #[error("`{file}` is listed by more than one entry")]
    DuplicateModule {
        /// The file.
        file: String,
    },
    /// A module or engine is larger than the per-module cap (checked before reading it).
    #[error("module `{file}` is {size} bytes; the limit is {cap}")]
    ModuleTooLarge {
        /// The file.
        file: String,
        /// Its size (as the manifest states it).
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// The files together are larger than the bundle cap (checked before reading them).
    #[error("the bundle's files total at least {total} bytes; the limit is {cap}")]
    BundleTooLarge {
        /// The running total when the cap was passed.
        total: u64,
        /// The limit.
        cap: u64,
    },
    /// A module or data file the manifest lists is not in the bundle.
    #[error("`{file}` is listed in the manifest but missing from the bundle")]
    MissingModule {
        /// The file.
        file: String,
    },
    /// The bundle holds a file the manifest does not list.
    #[error("`{path}` is in the bundle but not listed in the manifest")]
    ExtraFile {
        /// The path, relative to the bundle.
        path: String,
    },
    /// A module's or data file's size differs from the manifest's (a truncated or padded file).
    #[error("`{file}` is {found} bytes; the manifest says {expected}")]
    SizeMismatch {
        /// The file.
        file: String,
        /// The manifest's size.
        expected: u64,
        /// The size found (for a file larger than the manifest says, the size the file system
        /// reports).
        found: u64,
    },
    /// A module's or data file's hash differs from the manifest's (mix-and-match defence, and a
    /// tampered file).
    #[error("`{file}` has SHA-256 {found}; the manifest says {expected}")]
    MixAndMatch {
        /// The file.
        file: String,
        /// The manifest's hash.
        expected: String,
        /// The module's hash.
        found: String,
    },
    /// The manifest cannot be encoded canonically (not expected to happen).
    #[error("cannot encode the manifest canonically: {0}")]
    Encode(serde_json::Error),
}

impl From<SignatureError> for BundleError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::BadSignature { keyid } => BundleError::BadSignature { keyid },
            SignatureError::UnknownKey { keyids } => BundleError::UnknownKey { keyids },
            SignatureError::BelowThreshold { have, need } => {
                BundleError::BelowThreshold { have, need }
            }
            SignatureError::BadKeySet { problem } => BundleError::InvalidRoot(problem),
        }
    }
}

impl BundleError {
    /// `true` for [`BundleError::AlreadyInstalled`]: the caller may treat the bundle as a no-op.
    pub fn is_already_installed(&self) -> bool {
        matches!(self, BundleError::AlreadyInstalled { .. })
    }
}

/// A bundle folder that passed the endpoint's structure checks ([`check_bundle_structure`]): the
/// manifest, its canonical hash, and the module bytes (read once, hashed, and handed out from memory
/// so nothing can change them between check and use). Its signatures are not checked: only a
/// [`VerifiedBundle`] is content an endpoint may run.
#[derive(Clone)]
pub struct BundleContents {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    manifest_hash: String,
    modules: Vec<(RuleEntry, Vec<u8>)>,
    engines: Vec<(EngineEntry, Vec<u8>)>,
    /// Shared, not copied, with the activated packs (`ContentPack`): tens of MiB for a real set.
    packs: Vec<(PackEntry, Arc<[u8]>)>,
}

impl std::fmt::Debug for BundleContents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleContents")
            .field("release", &self.manifest.release)
            .field("manifest_hash", &self.manifest_hash)
            .field(
                "rules",
                &self
                    .modules
                    .iter()
                    .map(|(e, _)| (&e.id, &e.version))
                    .collect::<Vec<_>>(),
            )
            .field(
                "packs",
                &self
                    .packs
                    .iter()
                    .map(|(p, _)| (&p.id, p.rules.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BundleContents {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The release number.
    pub fn release(&self) -> u64 {
        self.manifest.release
    }

    /// The manifest's canonical hash ([`manifest_hash`](super::manifest_hash)).
    pub fn manifest_hash(&self) -> &str {
        &self.manifest_hash
    }

    /// The exact bytes of `manifest.json` as checked (the signed envelope).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// Each rule entry with its module bytes, in manifest order.
    pub fn modules(&self) -> &[(RuleEntry, Vec<u8>)] {
        &self.modules
    }

    /// The rule entries with their module bytes, by value.
    pub fn into_modules(self) -> Vec<(RuleEntry, Vec<u8>)> {
        self.modules
    }

    /// Each engine entry with its module bytes, in manifest order.
    pub fn engines(&self) -> &[(EngineEntry, Vec<u8>)] {
        &self.engines
    }

    /// The module bytes of the engine whose SHA-256 is `sha256`, if the manifest lists it.
    pub fn engine(&self, sha256: &str) -> Option<&[u8]> {
        self.engines
            .iter()
            .find(|(e, _)| e.sha256 == sha256)
            .map(|(_, bytes)| bytes.as_slice())
    }

    /// Each pack entry with its rule data, in manifest order.
    pub fn packs(&self) -> &[(PackEntry, Arc<[u8]>)] {
        &self.packs
    }

    /// Every file's bytes by its path in the bundle (`modules/…`, `data/…`), in manifest order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let modules = self
            .modules
            .iter()
            .map(|(e, b)| (e.file.as_str(), b.as_slice()));
        let engines = self
            .engines
            .iter()
            .map(|(e, b)| (e.file.as_str(), b.as_slice()));
        let packs = self.packs.iter().map(|(p, b)| (p.file.as_str(), &b[..]));
        modules.chain(engines).chain(packs)
    }

    /// Whether the manifest has expired at `now_unix` (content already running keeps running; the
    /// caller raises an alert).
    pub fn is_expired(&self, now_unix: u64) -> bool {
        now_unix >= self.manifest.expires_unix
    }
}

/// A bundle that passed every check, its signatures included: [`BundleContents`] an endpoint may
/// run. Only [`verify_bundle`] and the store make one; it dereferences to its contents.
#[derive(Clone)]
pub struct VerifiedBundle(BundleContents);

impl std::fmt::Debug for VerifiedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VerifiedBundle").field(&self.0).finish()
    }
}

impl std::ops::Deref for VerifiedBundle {
    type Target = BundleContents;

    fn deref(&self) -> &BundleContents {
        &self.0
    }
}

impl VerifiedBundle {
    /// The rule entries with their module bytes, by value.
    pub fn into_modules(self) -> Vec<(RuleEntry, Vec<u8>)> {
        self.0.modules
    }
}

/// Which of the time-dependent checks apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks {
    /// Refuse releases at or below this one (`None`: no rollback check).
    pub highest_accepted: Option<u64>,
    /// Refuse releases more than [`MAX_RELEASE_STEP`] above this one (`None`: no step check).
    pub step_from: Option<u64>,
    /// Refuse expired manifests at this time (`None`: no expiry check).
    pub now_unix: Option<u64>,
}

impl Checks {
    /// No time-dependent check: for re-verifying an installed release.
    pub(crate) const INSTALLED: Checks = Checks {
        highest_accepted: None,
        step_from: None,
        now_unix: None,
    };
}

/// Verifies the bundle in the folder `dir` against the trusted `root`, in this order, refusing at the
/// first failure:
///
/// 1. `manifest.json` is a regular file of at most `limits.max_manifest_bytes` (checked before it is
///    read; the read itself stops after the cap) and parses as a signed manifest;
/// 2. the signatures by distinct keys of `root` meet its threshold;
/// 3. the manifest has not expired at `now_unix` (freeze);
/// 4. its release is above `highest_accepted` (equal: [`BundleError::AlreadyInstalled`]; below:
///    [`BundleError::Rollback`]) and at most [`MAX_RELEASE_STEP`] above it (or, with no highest
///    release, above the root's release counter or 0: [`BundleError::TooFarAhead`]);
/// 5. to 8. the structure ([`check_bundle_structure`]): format, ABI, schema and runtime versions;
///    every entry; exactly the listed files; each module's size and hash.
///
/// Steps 1 and 2 come first so that nothing but the capped manifest is read before the content is
/// known to come from the vendor.
pub fn verify_bundle(
    dir: &Path,
    root: &Root,
    highest_accepted: Option<u64>,
    now_unix: u64,
    limits: &BundleLimits,
) -> Result<VerifiedBundle, BundleError> {
    verify_with(
        dir,
        root,
        Checks {
            highest_accepted,
            step_from: Some(highest_accepted.or(root.release_counter).unwrap_or(0)),
            now_unix: Some(now_unix),
        },
        limits,
    )
}

/// The structure step of [`verify_bundle`], usable on a bundle that is not signed yet (the release
/// gate runs it): reads `manifest.json` (step 1; signatures, if any, are not looked at) and checks,
/// in this order, refusing at the first failure:
///
/// 5. format 1, this runtime's ABI version, this runtime's event-schema version among
///    `schema_versions`, `min_runtime` at most this runtime's version;
/// 6. every entry: a non-empty unique id, `file` exactly `modules/<sha256>.wasm`, valid limits, size
///    within the per-module cap, total within the bundle cap;
/// 7. the folder holds exactly `manifest.json` and the listed modules;
/// 8. each module: a regular file whose size is the manifest's (read with a cap of that size) and
///    whose SHA-256 is the manifest's (mix-and-match).
pub fn check_bundle_structure(
    dir: &Path,
    limits: &BundleLimits,
) -> Result<BundleContents, BundleError> {
    let (envelope, manifest_bytes) = read_manifest(dir, limits)?;
    check_structure(dir, envelope.signed, manifest_bytes, limits)
}

pub(crate) fn verify_with(
    dir: &Path,
    root: &Root,
    checks: Checks,
    limits: &BundleLimits,
) -> Result<VerifiedBundle, BundleError> {
    let (manifest, manifest_bytes) = read_signed_manifest(dir, root, limits)?;

    // 3. Freeze.
    if let Some(now) = checks.now_unix
        && now >= manifest.expires_unix
    {
        return Err(BundleError::Expired {
            expires: manifest.expires_unix,
            now,
        });
    }

    // 4. Rollback.
    if let Some(highest) = checks.highest_accepted {
        if manifest.release < highest {
            return Err(BundleError::Rollback {
                release: manifest.release,
                highest,
            });
        }
        if manifest.release == highest {
            return Err(BundleError::AlreadyInstalled {
                release: manifest.release,
            });
        }
    }
    if let Some(base) = checks.step_from
        && manifest.release > base.saturating_add(MAX_RELEASE_STEP)
    {
        return Err(BundleError::TooFarAhead {
            release: manifest.release,
            base,
            max_step: MAX_RELEASE_STEP,
        });
    }

    check_structure(dir, manifest, manifest_bytes, limits).map(VerifiedBundle)
}

/// Steps 5 to 8 (see [`check_bundle_structure`]).
fn check_structure(
    dir: &Path,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    limits: &BundleLimits,
) -> Result<BundleContents, BundleError> {
    // 5. Compatibility.
    check_compatibility(&manifest)?;

    // 6. Entries, before touching any module.
    let files = check_entries(&manifest, limits)?;

    // 7. Exactly the listed files.
    check_listing(dir, &files)?;

    // 8. Each module, engine and data file: size, then hash.
    let mut modules = Vec::with_capacity(manifest.rules.len());
    for entry in &manifest.rules {
        modules.push((entry.clone(), read_listed(dir, &listed_rule(entry))?));
    }
    let mut engines = Vec::with_capacity(manifest.engines.len());
    for entry in &manifest.engines {
        let file = ListedFile {
            file: &entry.file,
            sha256: &entry.sha256,
            size: entry.size,
            owner: "engine",
        };
        engines.push((entry.clone(), read_listed(dir, &file)?));
    }
    let mut packs = Vec::with_capacity(manifest.packs.len());
    for entry in &manifest.packs {
        let file = ListedFile {
            file: &entry.file,
            sha256: &entry.sha256,
            size: entry.size,
            owner: &entry.id,
        };
        packs.push((entry.clone(), Arc::from(read_listed(dir, &file)?)));
    }

    let manifest_hash = manifest_hash(&manifest).map_err(BundleError::Encode)?;
    Ok(BundleContents {
        manifest,
        manifest_bytes,
        manifest_hash,
        modules,
        engines,
        packs,
    })
}

/// Step 5: the manifest is for this runtime.
fn check_compatibility(manifest: &Manifest) -> Result<(), BundleError> {
    if manifest.format != MANIFEST_FORMAT && manifest.format != MANIFEST_FORMAT_PACKS {
        return Err(BundleError::UnsupportedFormat {
            found: manifest.format,
            expected: MANIFEST_FORMAT_PACKS,
        });
    }
    if manifest.format == MANIFEST_FORMAT
        && (!manifest.engines.is_empty() || !manifest.packs.is_empty())
    {
        return Err(BundleError::PacksNeedFormat2 {
            format: manifest.format,
        });
    }
    for engine in &manifest.engines {
        if engine.abi_version != rulebox_sdk::abi::PACK_ABI_VERSION {
            return Err(BundleError::EngineAbi {
                file: quote(&engine.file),
                found: engine.abi_version,
                expected: rulebox_sdk::abi::PACK_ABI_VERSION,
            });
        }
    }
    if manifest.abi_version != rulebox_sdk::abi::ABI_VERSION {
        return Err(BundleError::UnsupportedAbi {
            found: manifest.abi_version,
            expected: rulebox_sdk::abi::ABI_VERSION,
        });
    }
    if !manifest
        .schema_versions
        .contains(&rulebox_sdk::abi::SCHEMA_VERSION)
    {
        return Err(BundleError::UnsupportedSchema {
            offered: manifest.schema_versions.iter().take(16).copied().collect(),
            ours: rulebox_sdk::abi::SCHEMA_VERSION,
        });
    }
    let required =
        parse_version(&manifest.min_runtime).ok_or_else(|| BundleError::BadMinRuntime {
            value: quote(&manifest.min_runtime),
        })?;
    // Our own version always parses (a build-time constant in major.minor.patch form); if it ever did
    // not, refusing every release would be worse than comparing with 0.0.0, so fall back to that.
    let ours = parse_version(RUNTIME_VERSION).unwrap_or((0, 0, 0));
    if required > ours {
        return Err(BundleError::RuntimeTooOld {
            required: quote(&manifest.min_runtime),
            ours: RUNTIME_VERSION,
        });
    }
    Ok(())
}

/// Step 6: every entry, before any module is opened. Returns the listed files.
fn check_entries<'m>(
    manifest: &'m Manifest,
    limits: &BundleLimits,
) -> Result<BTreeSet<&'m str>, BundleError> {
    // Counts first: nothing below allocates or reads more than they allow.
    let too_many = |what: &str, count: usize, max: usize| {
        (count > max).then(|| BundleError::TooMany {
            what: what.to_owned(),
            count,
            max,
        })
    };
    let pack_rules = manifest
        .packs
        .iter()
        .fold(0usize, |n, p| n.saturating_add(p.rules.len()));
    if let Some(problem) = [
        too_many("engines", manifest.engines.len(), MAX_ENGINES),
        too_many("packs", manifest.packs.len(), MAX_PACKS),
        too_many(
            "rules",
            manifest.rules.len().saturating_add(pack_rules),
            MAX_MANIFEST_RULES,
        ),
    ]
    .into_iter()
    .flatten()
    .next()
    {
        return Err(problem);
    }
    let mut ids = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut total: u64 = 0;
    let mut add_size = |size: u64| {
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            Err(BundleError::BundleTooLarge {
                total,
                cap: limits.max_total_bytes,
            })
        } else {
            Ok(())
        }
    };
    for entry in &manifest.rules {
        let rule_id = quote(&entry.id);
        if entry.id.is_empty() {
            return Err(BundleError::InvalidEntry {
                rule_id,
                problem: "the rule id is empty".to_owned(),
            });
        }
        if !ids.insert(entry.id.as_str()) {
            return Err(BundleError::DuplicateRule { rule_id });
        }
        if let Some(l) = &entry.limits {
            l.validate().map_err(|e| BundleError::InvalidEntry {
                rule_id: rule_id.clone(),
                problem: format!("invalid limits: {e}"),
            })?;
        }
        check_module_file(rule_id, &entry.sha256, &entry.file, &mut files)?;
        if entry.size > limits.max_module_bytes {
            return Err(BundleError::ModuleTooLarge {
                file: entry.file.clone(),
                size: entry.size,
                cap: limits.max_module_bytes,
            });
        }
        add_size(entry.size)?;
    }
    for engine in &manifest.engines {
        check_module_file(
            "engine".to_owned(),
            &engine.sha256,
            &engine.file,
            &mut files,
        )?;
        if engine.size > limits.max_module_bytes {
            return Err(BundleError::ModuleTooLarge {
                file: engine.file.clone(),
                size: engine.size,
                cap: limits.max_module_bytes,
            });
        }
        add_size(engine.size)?;
    }
    for pack in &manifest.packs {
        check_pack(pack, limits)?;
        if !manifest.engines.iter().any(|e| e.sha256 == pack.engine) {
            return Err(BundleError::UnknownEngine {
                pack_id: quote(&pack.id),
                engine: quote(&pack.engine),
            });
        }
        if !files.insert(pack.file.as_str()) {
            return Err(BundleError::DuplicateModule {
                file: pack.file.clone(),
            });
        }
        for rule in &pack.rules {
            if !ids.insert(rule.id.as_str()) {
                return Err(BundleError::DuplicateRule {
                    rule_id: quote(&rule.id),
                });
            }
        }
        add_size(pack.size)?;
    }
    if let Some(unused) = manifest
        .engines
        .iter()
        .find(|e| !manifest.packs.iter().any(|p| p.engine == e.sha256))
    {
        return Err(BundleError::UnusedEngine {
            file: unused.file.clone(),
        });
    }
    Ok(files)
}

/// A module's or engine's hash text, its file name (exactly `modules/<sha256>.wasm`) and that no
/// other entry lists the file; `owner` (quoted) names the entry in errors.
fn check_module_file<'m>(
    owner: String,
    sha256: &str,
    file: &'m str,
    files: &mut BTreeSet<&'m str>,
) -> Result<(), BundleError> {
    if !is_sha256_hex(sha256) {
        return Err(BundleError::InvalidEntry {
            rule_id: owner,
            problem: format!("sha256 `{}` is not 64 lowercase hex digits", quote(sha256)),
        });
    }
    let expected = module_file_name(sha256);
    if file != expected {
        return Err(BundleError::BadFileName {
            rule_id: owner,
            file: quote(file),
            expected,
        });
    }
    if !files.insert(file) {
        return Err(BundleError::DuplicateModule {
            file: file.to_owned(),
        });
    }
    Ok(())
}

/// One pack entry on its own: identity, hash text, file name, data size, its rules and limits.
fn check_pack(pack: &PackEntry, limits: &BundleLimits) -> Result<(), BundleError> {
    let pack_id = quote(&pack.id);
    let invalid = |problem: String| BundleError::InvalidPack {
        pack_id: pack_id.clone(),
        problem,
    };
    if pack.id.is_empty() {
        return Err(invalid("the pack id is empty".to_owned()));
    }
    if pack.version.is_empty() {
        return Err(invalid("the pack version is empty".to_owned()));
    }
    for (what, hash) in [("sha256", &pack.sha256), ("engine", &pack.engine)] {
        if !is_sha256_hex(hash) {
            return Err(invalid(format!(
                "{what} `{}` is not 64 lowercase hex digits",
                quote(hash)
            )));
        }
    }
    let expected = data_file_name(&pack.sha256);
    if pack.file != expected {
        return Err(BundleError::BadFileName {
            rule_id: pack_id,
            file: quote(&pack.file),
            expected,
        });
    }
    if pack.size > limits.max_data_bytes {
        return Err(BundleError::DataTooLarge {
            pack_id,
            file: pack.file.clone(),
            size: pack.size,
            cap: limits.max_data_bytes,
        });
    }
    if pack.rules.is_empty() {
        return Err(invalid("the pack lists no rules".to_owned()));
    }
    if pack.rules.len() > crate::pack::MAX_PACK_RULES {
        return Err(BundleError::TooMany {
            what: format!("rules in pack `{pack_id}`"),
            count: pack.rules.len(),
            max: crate::pack::MAX_PACK_RULES,
        });
    }
    if let Some(l) = &pack.limits {
        l.validate()
            .map_err(|e| invalid(format!("invalid limits: {e}")))?;
    }
    for rule in &pack.rules {
        if rule.id.is_empty() || rule.version.is_empty() {
            return Err(invalid(format!(
                "a rule with an empty id or version (`{}` `{}`)",
                quote(&rule.id),
                quote(&rule.version)
            )));
        }
        if let Some(l) = &rule.limits {
            l.validate().map_err(|e| BundleError::InvalidEntry {
                rule_id: quote(&rule.id),
                problem: format!("invalid limits: {e}"),
            })?;
        }
    }
    Ok(())
}

/// Steps 1 and 2 of [`verify_bundle`]: reads `dir/manifest.json` (capped) and checks its signatures
/// against `root`. Returns the manifest and the file's bytes.
pub(crate) fn read_signed_manifest(
    dir: &Path,
    root: &Root,
    limits: &BundleLimits,
) -> Result<(Manifest, Vec<u8>), BundleError> {
    let (envelope, manifest_bytes) = read_manifest(dir, limits)?;

    // 2. Signatures.
    let keys = root.verifying_keys().map_err(BundleError::InvalidRoot)?;
    let message = signing_bytes(&envelope.signed).map_err(BundleError::Encode)?;
    check_threshold(&message, &envelope.signatures, &keys, root.threshold)?;
    Ok((envelope.signed, manifest_bytes))
}

/// Step 1: reads `dir/manifest.json` (a regular file, capped before reading) and parses it.
fn read_manifest(
    dir: &Path,
    limits: &BundleLimits,
) -> Result<(Signed<Manifest>, Vec<u8>), BundleError> {
    let manifest_path = dir.join("manifest.json");
    let manifest_bytes =
        read_capped(&manifest_path, limits.max_manifest_bytes).map_err(|e| match e {
            CappedReadError::NotAFile => BundleError::NotAFile {
                path: manifest_path.clone(),
            },
            CappedReadError::TooLarge { size } => BundleError::ManifestTooLarge {
                size,
                cap: limits.max_manifest_bytes,
            },
            CappedReadError::Io(error) => BundleError::Io {
                path: manifest_path.clone(),
                error,
            },
        })?;
    let envelope: Signed<Manifest> =
        serde_json::from_slice(&manifest_bytes).map_err(BundleError::ManifestParse)?;
    Ok((envelope, manifest_bytes))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |error| BundleError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The bundle folder holds `manifest.json`, `modules/`, `data/` and, in those folders, exactly the
/// listed files.
fn check_listing(dir: &Path, files: &BTreeSet<&str>) -> Result<(), BundleError> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        match name.to_str() {
            Some("manifest.json") => {}
            Some("modules") => folders.push("modules"),
            Some("data") => folders.push("data"),
            _ => {
                return Err(BundleError::ExtraFile {
                    path: quote(&name.to_string_lossy()),
                });
            }
        }
    }
    // A listed file whose folder is absent is missing.
    if let Some(file) = files.iter().find(|f| {
        !folders
            .iter()
            .any(|folder| f.strip_prefix(folder).is_some_and(|r| r.starts_with('/')))
    }) {
        return Err(BundleError::MissingModule {
            file: (*file).to_owned(),
        });
    }
    for folder in folders {
        let path = dir.join(folder);
        let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        if !meta.file_type().is_dir() {
            return Err(BundleError::NotAFile { path });
        }
        for entry in std::fs::read_dir(&path).map_err(io_error(&path))? {
            let entry = entry.map_err(io_error(&path))?;
            let name = entry.file_name();
            let listed = name
                .to_str()
                .is_some_and(|n| files.contains(format!("{folder}/{n}").as_str()));
            if !listed {
                return Err(BundleError::ExtraFile {
                    path: format!("{folder}/{}", quote(&name.to_string_lossy())),
                });
            }
        }
    }
    Ok(())
}

/// A rule entry as a listed file.
fn listed_rule(entry: &RuleEntry) -> ListedFile<'_> {
    ListedFile {
        file: &entry.file,
        sha256: &entry.sha256,
        size: entry.size,
        owner: &entry.id,
    }
}

/// Reads one listed file: it must exist, be a regular file, be exactly `file.size` bytes (the read
/// is capped at that size, checked before reading) and have the listed SHA-256.
fn read_listed(dir: &Path, file: &ListedFile<'_>) -> Result<Vec<u8>, BundleError> {
    // `file.file` was checked to be `modules/<64 hex>.wasm` or `data/<64 hex>.rules`: no
    // traversal is possible.
    let path = dir.join(file.file);
    let size_mismatch = |found: u64| BundleError::SizeMismatch {
        file: file.file.to_owned(),
        expected: file.size,
        found,
    };
    let bytes = match read_capped(&path, file.size) {
        Ok(bytes) => {
            let found = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if found != file.size {
                return Err(size_mismatch(found));
            }
            bytes
        }
        Err(CappedReadError::TooLarge { size }) => return Err(size_mismatch(size)),
        Err(CappedReadError::NotAFile) => return Err(BundleError::NotAFile { path }),
        Err(CappedReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::MissingModule {
                file: file.file.to_owned(),
            });
        }
        Err(CappedReadError::Io(e)) => return Err(io_error(&path)(e)),
    };
    let found = hex::encode(Sha256::digest(&bytes));
    if found != file.sha256 {
        return Err(BundleError::MixAndMatch {
            file: file.file.to_owned(),
            expected: file.sha256.to_owned(),
            found,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use ed25519_dalek::Signer;

    use super::*;
    use crate::content::format::{CONTEXT_ROOT, PackRuleEntry, Signable};
    use crate::content::testutil::*;

    fn verify(
        dir: &Path,
        root: &Root,
        highest: Option<u64>,
    ) -> Result<VerifiedBundle, BundleError> {
        verify_bundle(dir, root, highest, NOW, &BundleLimits::default())
    }

    /// A bundle of release 5 in a fresh folder, signed by key 1, under a root of keys 1 (threshold 1).
    fn setup() -> (tempfile::TempDir, Root, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let manifest = standard_bundle(dir.path(), 5, &[&key(1)]);
        (dir, root(1, &[&key(1)], 1), manifest)
    }

    fn rewrite(dir: &Path, manifest: &Manifest) {
        let envelope = sign(manifest, &[&key(1)]);
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_good_bundle_verifies_with_its_modules_and_hash() {
        let (dir, root, manifest) = setup();
        let bundle = verify(dir.path(), &root, Some(4)).unwrap();
        assert_eq!(bundle.manifest(), &manifest);
        assert_eq!(bundle.release(), 5);
        assert_eq!(
            bundle.manifest_hash(),
            crate::content::manifest_hash(&manifest).unwrap()
        );
        let expected = modules();
        assert_eq!(bundle.modules().len(), expected.len());
        for ((entry, bytes), (_, want)) in bundle.modules().iter().zip(&expected) {
            assert_eq!(bytes.as_slice(), *want);
            assert_eq!(entry.sha256, crate::content_hash(want));
        }
        assert!(!bundle.is_expired(NOW));
        assert!(bundle.is_expired(LATER));
        // No rollback check at all.
        verify(dir.path(), &root, None).unwrap();
    }

    #[test]
    fn the_structure_step_takes_an_unsigned_bundle_and_refuses_what_an_endpoint_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = standard_bundle(dir.path(), 5, &[]);
        let contents = check_bundle_structure(dir.path(), &BundleLimits::default()).unwrap();
        assert_eq!(contents.manifest(), &manifest);
        assert_eq!(contents.modules().len(), manifest.rules.len());
        // Unsigned: no endpoint runs it.
        assert!(matches!(
            verify(dir.path(), &root(1, &[&key(1)], 1), None),
            Err(BundleError::BelowThreshold { have: 0, .. })
        ));
        // A file the manifest does not list is refused, as on an endpoint.
        std::fs::write(dir.path().join("modules").join("extra.wasm"), b"\0asm").unwrap();
        assert!(matches!(
            check_bundle_structure(dir.path(), &BundleLimits::default()),
            Err(BundleError::ExtraFile { ref path }) if path == "modules/extra.wasm"
        ));
    }

    #[test]
    fn wrong_signature_is_refused() {
        let (dir, root, mut manifest) = setup();
        // Altered after signing: the signature no longer covers the content.
        let mut envelope = sign(&manifest, &[&key(1)]);
        envelope.signed.notes = "altered".to_owned();
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(err, BundleError::BadSignature { ref keyid } if *keyid == keyid_of(1)),
            "{err}"
        );
        assert!(err.to_string().contains("does not verify"), "{err}");

        // Signed by another key under key 1's id.
        manifest.notes = "x".to_owned();
        let message = signing_bytes(&manifest).unwrap();
        let envelope = Signed {
            signed: manifest.clone(),
            signatures: vec![Signature {
                keyid: keyid_of(1),
                sig: hex::encode(key(2).sign(&message).to_bytes()),
            }],
        };
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::BadSignature { .. })
        ));

        // Garbage signature text.
        let envelope = Signed {
            signed: manifest,
            signatures: vec![Signature {
                keyid: keyid_of(1),
                sig: "zz".to_owned(),
            }],
        };
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::BadSignature { .. })
        ));
    }

    fn keyid_of(seed: u8) -> String {
        keyid(&key(seed))
    }

    #[test]
    fn a_root_signature_is_never_a_manifest_signature() {
        let (dir, root, manifest) = setup();
        // Key 1 signs the manifest's JSON under the *root* context.
        let mut message = CONTEXT_ROOT.to_vec();
        message.extend(serde_json::to_vec(&manifest).unwrap());
        assert_ne!(Manifest::CONTEXT, CONTEXT_ROOT);
        let envelope = Signed {
            signed: manifest,
            signatures: vec![Signature {
                keyid: keyid_of(1),
                sig: hex::encode(key(1).sign(&message).to_bytes()),
            }],
        };
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&envelope).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_key_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        standard_bundle(dir.path(), 5, &[&key(7)]);
        let err = verify(dir.path(), &root(1, &[&key(1)], 1), None).unwrap_err();
        match &err {
            BundleError::UnknownKey { keyids } => assert_eq!(keyids, &vec![keyid_of(7)]),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("does not name"), "{err}");
        // Unsigned.
        standard_bundle(dir.path(), 5, &[]);
        assert!(matches!(
            verify(dir.path(), &root(1, &[&key(1)], 1), None),
            Err(BundleError::BelowThreshold { have: 0, need: 1 })
        ));
    }

    #[test]
    fn below_threshold_is_refused_and_duplicates_count_once() {
        let root = root(1, &[&key(1), &key(2), &key(3)], 2);
        let dir = tempfile::tempdir().unwrap();
        standard_bundle(dir.path(), 5, &[&key(1)]);
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(err, BundleError::BelowThreshold { have: 1, need: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("2 required"), "{err}");
        // The same key twice is one key.
        standard_bundle(dir.path(), 5, &[&key(1), &key(1)]);
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::BelowThreshold { have: 1, need: 2 })
        ));
        // Plus an unknown key: still one.
        standard_bundle(dir.path(), 5, &[&key(1), &key(9)]);
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::BelowThreshold { have: 1, need: 2 })
        ));
        // Two distinct known keys (and an unknown one, ignored) meet it.
        standard_bundle(dir.path(), 5, &[&key(9), &key(1), &key(3)]);
        verify(dir.path(), &root, None).unwrap();
    }

    #[test]
    fn rollback_and_same_version_are_refused() {
        let (dir, root, _) = setup();
        let err = verify(dir.path(), &root, Some(6)).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::Rollback {
                    release: 5,
                    highest: 6
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("older than release 6"), "{err}");
        let err = verify(dir.path(), &root, Some(5)).unwrap_err();
        assert!(err.is_already_installed(), "{err}");
    }

    #[test]
    fn an_expired_manifest_is_refused() {
        let (dir, root, _) = setup();
        let err =
            verify_bundle(dir.path(), &root, None, LATER, &BundleLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::Expired {
                    expires: LATER,
                    now: LATER
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn versions_the_runtime_does_not_support_are_refused() {
        let (dir, root, manifest) = setup();
        type Change = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|m| m.abi_version = 99), "ABI version 99"),
            (Box::new(|m| m.schema_versions = vec![7, 9]), "[7, 9]"),
            (
                Box::new(|m| m.min_runtime = "99.0.0".into()),
                "99.0.0 or later",
            ),
            (Box::new(|m| m.min_runtime = "latest".into()), "`latest`"),
            (Box::new(|m| m.format = 3), "format 3"),
        ];
        for (change, text) in cases {
            let mut m = manifest.clone();
            change(&mut m);
            rewrite(dir.path(), &m);
            let err = verify(dir.path(), &root, None).unwrap_err();
            assert!(err.to_string().contains(text), "{text}: {err}");
            match text {
                "ABI version 99" => {
                    assert!(matches!(err, BundleError::UnsupportedAbi { found: 99, .. }))
                }
                "[7, 9]" => assert!(matches!(err, BundleError::UnsupportedSchema { .. })),
                "99.0.0 or later" => assert!(matches!(err, BundleError::RuntimeTooOld { .. })),
                "`latest`" => assert!(matches!(err, BundleError::BadMinRuntime { .. })),
                _ => assert!(matches!(
                    err,
                    BundleError::UnsupportedFormat { found: 3, .. }
                )),
            }
        }
        // Our own version and older are fine.
        let mut m = manifest;
        m.min_runtime = RUNTIME_VERSION.to_owned();
        rewrite(dir.path(), &m);
        verify(dir.path(), &root, None).unwrap();
    }

    #[test]
    fn a_module_whose_hash_differs_is_refused() {
        let (dir, root, manifest) = setup();
        let entry = &manifest.rules[1];
        let path = dir.path().join(&entry.file);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        match &err {
            BundleError::MixAndMatch {
                file,
                expected,
                found,
            } => {
                assert_eq!(file, &entry.file);
                assert_eq!(expected, &entry.sha256);
                assert_eq!(found, &crate::content_hash(&bytes));
            }
            other => panic!("{other}"),
        }

        // Another release's module under this name (same manifest, swapped content).
        let other = modules()[0].1;
        std::fs::write(&path, other).unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::SizeMismatch { .. } | BundleError::MixAndMatch { .. })
        ));
    }

    #[test]
    fn a_truncated_module_is_a_size_mismatch() {
        let (dir, root, manifest) = setup();
        let entry = &manifest.rules[0];
        let path = dir.path().join(&entry.file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(&err, BundleError::SizeMismatch { file, expected, found }
                if *file == entry.file && *expected == entry.size && *found == entry.size / 2),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_manifest_is_refused_without_reading_it() {
        let (dir, root, _) = setup();
        let file = std::fs::File::create(dir.path().join("manifest.json")).unwrap();
        file.set_len(2 << 30).unwrap();
        let start = Instant::now();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(err, BundleError::ManifestTooLarge { size, cap } if size == 2 << 30 && cap == 1 << 20),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn an_oversized_module_is_refused_without_reading_it() {
        let (dir, root, mut manifest) = setup();
        // The file on disk is a sparse 2 GiB; the manifest says the real size.
        let path = dir.path().join(&manifest.rules[0].file);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let start = Instant::now();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(err, BundleError::SizeMismatch { found, .. } if found == 2 << 30),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));

        // The manifest itself claims 2 GiB: refused by the per-module cap before any read.
        manifest.rules[0].size = 2 << 30;
        rewrite(dir.path(), &manifest);
        let start = Instant::now();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(err, BundleError::ModuleTooLarge { size, cap, .. } if size == 2 << 30 && cap == 16 << 20),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));

        // The total cap.
        let (dir, root, _) = setup();
        let limits = BundleLimits {
            max_total_bytes: 1000,
            ..BundleLimits::default()
        };
        let err = verify_bundle(dir.path(), &root, None, NOW, &limits).unwrap_err();
        assert!(
            matches!(err, BundleError::BundleTooLarge { cap: 1000, .. }),
            "{err}"
        );
    }

    #[test]
    fn file_names_other_than_modules_sha_wasm_are_refused() {
        let (dir, root, manifest) = setup();
        let sha = manifest.rules[0].sha256.clone();
        for file in [
            format!("modules/../../{sha}.wasm"),
            format!("../modules/{sha}.wasm"),
            format!("/etc/{sha}.wasm"),
            "/etc/passwd".to_owned(),
            format!("modules/{sha}.WASM"),
            format!("modules/{}.wasm", manifest.rules[1].sha256),
            format!("modules\\{sha}.wasm"),
        ] {
            let mut m = manifest.clone();
            m.rules[0].file = file.clone();
            rewrite(dir.path(), &m);
            let err = verify(dir.path(), &root, None).unwrap_err();
            assert!(
                matches!(&err, BundleError::BadFileName { expected, .. } if *expected == format!("modules/{sha}.wasm")),
                "{file}: {err}"
            );
        }
        let mut m = manifest.clone();
        m.rules[0].sha256 = "../../etc/passwd".to_owned();
        m.rules[0].file = "modules/../../etc/passwd.wasm".to_owned();
        rewrite(dir.path(), &m);
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::InvalidEntry { .. })
        ));
    }

    #[test]
    fn entries_must_be_unique_and_files_exactly_the_listed_ones() {
        let (dir, root, manifest) = setup();
        let mut m = manifest.clone();
        m.rules[1].id = m.rules[0].id.clone();
        rewrite(dir.path(), &m);
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::DuplicateRule { .. })
        ));
        let mut m = manifest.clone();
        m.rules[1] = RuleEntry {
            id: "other".into(),
            ..m.rules[0].clone()
        };
        rewrite(dir.path(), &m);
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::DuplicateModule { .. } | BundleError::ExtraFile { .. })
        ));
        let mut m = manifest.clone();
        m.rules[0].limits = Some(crate::Limits {
            deadline_ms: 0,
            ..crate::Limits::default()
        });
        rewrite(dir.path(), &m);
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(err.to_string().contains("deadline_ms"), "{err}");

        // An unlisted module, an unlisted top-level file, a missing module.
        rewrite(dir.path(), &manifest);
        verify(dir.path(), &root, None).unwrap();
        let extra = dir
            .path()
            .join("modules")
            .join(format!("{}.wasm", "0".repeat(64)));
        std::fs::write(&extra, b"\0asm").unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(matches!(err, BundleError::ExtraFile { .. }), "{err}");
        std::fs::remove_file(&extra).unwrap();
        std::fs::write(dir.path().join("README"), b"hi").unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::ExtraFile { ref path }) if path == "README"
        ));
        std::fs::remove_file(dir.path().join("README")).unwrap();
        std::fs::remove_file(dir.path().join(&manifest.rules[2].file)).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(&err, BundleError::MissingModule { file } if *file == manifest.rules[2].file),
            "{err}"
        );
        // No manifest at all.
        std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::Io { .. })
        ));
    }

    const DATA: &[u8] = b"RBSG rule data of two rules";

    /// A format-2 bundle of release 5 with one pack, signed by key 1, under a root of key 1.
    fn pack_setup() -> (tempfile::TempDir, Root, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let manifest = pack_bundle(dir.path(), 5, DATA, &[&key(1)]);
        (dir, root(1, &[&key(1)], 1), manifest)
    }

    #[test]
    fn a_bundle_with_a_pack_verifies_with_its_engine_and_rule_data() {
        let (dir, root, manifest) = pack_setup();
        let bundle = verify(dir.path(), &root, Some(4)).unwrap();
        assert_eq!(bundle.manifest(), &manifest);
        assert_eq!(bundle.modules().len(), 3);
        assert_eq!(bundle.engines().len(), 1);
        assert_eq!(bundle.engines()[0].1, ENGINE);
        assert_eq!(bundle.packs().len(), 1);
        assert_eq!(&bundle.packs()[0].1[..], DATA);
        assert_eq!(bundle.engine(&manifest.packs[0].engine), Some(ENGINE));
        let files: Vec<&str> = bundle.files().map(|(f, _)| f).collect();
        assert_eq!(files.len(), 5);
        assert!(files.contains(&manifest.packs[0].file.as_str()));
        // The structure step reads it too (what the release gate uses).
        check_bundle_structure(dir.path(), &BundleLimits::default()).unwrap();
    }

    #[test]
    fn a_manifest_without_packs_keeps_its_format_1_canonical_bytes() {
        let m = manifest(5, &modules());
        let text = String::from_utf8(signing_bytes(&m).unwrap()).unwrap();
        assert!(
            !text.contains("engines") && !text.contains("packs"),
            "{text}"
        );
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_tampered_or_resized_data_file_an_extra_one_and_a_missing_one_are_refused_by_name() {
        let (dir, root, manifest) = pack_setup();
        let pack = &manifest.packs[0];
        let data_path = dir.path().join(&pack.file);

        // Tampered: the same size, other bytes.
        let mut tampered = DATA.to_vec();
        tampered[0] ^= 1;
        std::fs::write(&data_path, &tampered).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(&err, BundleError::MixAndMatch { file, .. } if *file == pack.file),
            "{err}"
        );
        assert!(err.to_string().contains(&pack.file), "{err}");

        // Truncated and padded.
        std::fs::write(&data_path, &DATA[..DATA.len() - 1]).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(&err, BundleError::SizeMismatch { file, found, .. }
                if *file == pack.file && *found == DATA.len() as u64 - 1),
            "{err}"
        );
        std::fs::write(&data_path, [DATA, b"x"].concat()).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(matches!(err, BundleError::SizeMismatch { .. }), "{err}");
        std::fs::write(&data_path, DATA).unwrap();
        verify(dir.path(), &root, None).unwrap();

        // An unlisted data file.
        let extra = dir.path().join(format!("data/{}.rules", "0".repeat(64)));
        std::fs::write(&extra, b"more rules").unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(&err, BundleError::ExtraFile { path } if path.starts_with("data/")),
            "{err}"
        );
        std::fs::remove_file(&extra).unwrap();

        // The data folder gone.
        std::fs::remove_dir_all(dir.path().join("data")).unwrap();
        let err = verify(dir.path(), &root, None).unwrap_err();
        assert!(
            matches!(&err, BundleError::MissingModule { file } if *file == pack.file),
            "{err}"
        );
    }

    #[test]
    fn pack_entries_are_checked_before_any_file_is_read() {
        let (dir, root, manifest) = pack_setup();
        let refused = |edit: &dyn Fn(&mut Manifest)| {
            let mut m = manifest.clone();
            edit(&mut m);
            rewrite(dir.path(), &m);
            verify(dir.path(), &root, None).unwrap_err()
        };
        // Data for an engine the manifest does not list.
        let err = refused(&|m| m.packs[0].engine = "e".repeat(64));
        assert!(
            matches!(&err, BundleError::UnknownEngine { pack_id, .. } if pack_id == "pack"),
            "{err}"
        );
        assert!(err.to_string().contains(&"e".repeat(64)), "{err}");
        // An engine no pack uses.
        let err = refused(&|m| {
            let mut other = m.engines[0].clone();
            other.sha256 = "f".repeat(64);
            other.file = module_file_name(&other.sha256);
            m.engines.push(other);
        });
        assert!(matches!(err, BundleError::UnusedEngine { .. }), "{err}");
        // Packs in a format-1 manifest.
        let err = refused(&|m| m.format = MANIFEST_FORMAT);
        assert!(
            matches!(err, BundleError::PacksNeedFormat2 { format: 1 }),
            "{err}"
        );
        let err = refused(&|m| m.format = 3);
        assert!(
            matches!(err, BundleError::UnsupportedFormat { found: 3, .. }),
            "{err}"
        );
        // An engine of another ABI.
        let err = refused(&|m| m.engines[0].abi_version = 2);
        assert!(
            matches!(err, BundleError::EngineAbi { found: 2, .. }),
            "{err}"
        );
        // A data file name that is not data/<sha256>.rules.
        let err = refused(&|m| m.packs[0].file = "../data.rules".into());
        assert!(matches!(err, BundleError::BadFileName { .. }), "{err}");
        // Over the data cap (the file on disk is small: the manifest's size is refused first).
        let err = refused(&|m| m.packs[0].size = (16 << 20) + 1);
        assert!(
            matches!(err, BundleError::DataTooLarge { size, .. } if size == (16 << 20) + 1),
            "{err}"
        );
        // A rule id in a pack that a module has, or that appears twice.
        let err = refused(&|m| m.packs[0].rules[0].id = m.rules[0].id.clone());
        assert!(matches!(err, BundleError::DuplicateRule { .. }), "{err}");
        let err = refused(&|m| m.packs[0].rules[1].id = "p1".into());
        assert!(matches!(err, BundleError::DuplicateRule { .. }), "{err}");
        // No rules, an empty version, invalid rule limits.
        let err = refused(&|m| m.packs[0].rules.clear());
        assert!(err.to_string().contains("lists no rules"), "{err}");
        let err = refused(&|m| m.packs[0].rules[0].version.clear());
        assert!(matches!(err, BundleError::InvalidPack { .. }), "{err}");
        let err = refused(&|m| {
            m.packs[0].rules[0].limits = Some(crate::Limits {
                deadline_ms: 0,
                ..crate::Limits::default()
            })
        });
        assert!(err.to_string().contains("deadline_ms"), "{err}");
        // Counts over their bounds.
        let err = refused(&|m| {
            let rule = m.packs[0].rules[0].clone();
            m.packs[0].rules = (0..=crate::pack::MAX_PACK_RULES)
                .map(|i| PackRuleEntry {
                    id: format!("r{i}"),
                    ..rule.clone()
                })
                .collect();
        });
        assert!(
            matches!(&err, BundleError::TooMany { count, .. } if *count == crate::pack::MAX_PACK_RULES + 1),
            "{err}"
        );
        // Two packs of one data file.
        let err = refused(&|m| {
            let mut again = m.packs[0].clone();
            again.id = "again".into();
            again.rules = vec![PackRuleEntry {
                id: "p3".into(),
                version: "1".into(),
                limits: None,
            }];
            m.packs.push(again);
        });
        assert!(matches!(err, BundleError::DuplicateModule { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn linked_modules_are_refused() {
        let (dir, root, manifest) = setup();
        let path = dir.path().join(&manifest.rules[0].file);
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::NotAFile { .. })
        ));
    }

    #[test]
    fn garbage_manifests_are_refused_with_the_parse_error() {
        let (dir, root, _) = setup();
        std::fs::write(dir.path().join("manifest.json"), b"{\"signed\":").unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::ManifestParse(_))
        ));
        std::fs::write(
            dir.path().join("manifest.json"),
            br#"{"signed":{},"signatures":[],"extra":1}"#,
        )
        .unwrap();
        assert!(matches!(
            verify(dir.path(), &root, None),
            Err(BundleError::ManifestParse(_))
        ));
    }

    // ---- roots ----

    #[test]
    fn trusted_roots_must_be_consistent_and_self_signed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.json");
        let r = root(1, &[&key(1), &key(2)], 2);
        std::fs::write(&path, root_bytes(&r, &[&key(1), &key(2)])).unwrap();
        assert_eq!(load_trusted_root(&path).unwrap(), r);

        std::fs::write(&path, root_bytes(&r, &[&key(1)])).unwrap();
        assert!(matches!(
            load_trusted_root(&path),
            Err(RootError::NotSelfSigned {
                version: 1,
                error: SignatureError::BelowThreshold { have: 1, need: 2 }
            })
        ));

        for (bad, text) in [
            (root(1, &[&key(1)], 2), "threshold 2"),
            (root(1, &[&key(1)], 0), "at least 1"),
            (root(0, &[&key(1)], 1), "version must be"),
        ] {
            std::fs::write(&path, root_bytes(&bad, &[&key(1)])).unwrap();
            let err = load_trusted_root(&path).unwrap_err();
            assert!(matches!(err, RootError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains(text), "{err}");
        }
        // A key filed under another key's id.
        let mut bad = root(1, &[&key(1), &key(2)], 1);
        let k2 = bad.keys.remove(&keyid_of(2)).unwrap();
        bad.keys.insert("ab".repeat(32), k2);
        std::fs::write(&path, root_bytes(&bad, &[&key(1)])).unwrap();
        let err = load_trusted_root(&path).unwrap_err();
        assert!(err.to_string().contains("has id"), "{err}");

        let file = std::fs::File::create(&path).unwrap();
        file.set_len(2 << 30).unwrap();
        assert!(matches!(
            load_trusted_root(&path),
            Err(RootError::TooLarge { .. })
        ));
        assert!(matches!(
            load_trusted_root(&dir.path().join("missing")),
            Err(RootError::Io { .. })
        ));
    }

    #[test]
    fn root_rotation_needs_both_thresholds_and_the_next_version() {
        let (k1, k2, k3, k4) = (key(1), key(2), key(3), key(4));
        let v1 = root(1, &[&k1, &k2, &k3], 2);
        let v2 = root(2, &[&k3, &k4], 1);

        // Signed by a threshold of the old (k1, k2) and of the new (k4): accepted.
        let accepted = update_root(&v1, &root_bytes(&v2, &[&k1, &k2, &k4])).unwrap();
        assert_eq!(accepted, v2);
        // k3 is in both: one old signature short of the old threshold.
        let err = update_root(&v1, &root_bytes(&v2, &[&k3])).unwrap_err();
        assert!(
            matches!(
                err,
                RootError::NotSignedByCurrent {
                    version: 2,
                    current: 1,
                    error: SignatureError::BelowThreshold { have: 1, need: 2 }
                }
            ),
            "{err}"
        );
        // Only by the old keys: refused (the new keys must accept their role).
        let err = update_root(&v1, &root_bytes(&v2, &[&k1, &k2])).unwrap_err();
        assert!(
            matches!(err, RootError::NotSelfSigned { version: 2, .. }),
            "{err}"
        );
        // Only by the new key: refused.
        let err = update_root(&v1, &root_bytes(&v2, &[&k4])).unwrap_err();
        assert!(matches!(err, RootError::NotSignedByCurrent { .. }), "{err}");
        assert!(
            err.to_string().contains("current root (version 1)"),
            "{err}"
        );

        // Skipping a version, or going back, is refused even if perfectly signed.
        let v3 = root(3, &[&k3, &k4], 1);
        let err = update_root(&v1, &root_bytes(&v3, &[&k1, &k2, &k3, &k4])).unwrap_err();
        assert!(
            matches!(err, RootError::VersionSkip { current: 1, new: 3 }),
            "{err}"
        );
        assert!(err.to_string().contains("skips a version"), "{err}");
        let err = update_root(&v2, &root_bytes(&v1, &[&k1, &k2, &k3, &k4])).unwrap_err();
        assert!(
            matches!(err, RootError::NotNewer { current: 2, new: 1 }),
            "{err}"
        );
        // And the chain goes on from the accepted root.
        update_root(&accepted, &root_bytes(&v3, &[&k3, &k4])).unwrap();
    }
}
