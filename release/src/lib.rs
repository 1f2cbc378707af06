//! # rulebox-release: the vendor side of content releases
//!
//! What the `rulebox keygen`, `rulebox bundle build`, `rulebox bundle sign` and `rulebox bundle
//! verify` commands call. Signing keys never reach an endpoint; this crate is not linked into the
//! agent's library (`rulebox-runtime`), which only verifies.
//!
//! The flow (formats and checks in `docs/content.md`):
//!
//! ```no_run
//! use rulebox_release::*;
//! # fn main() -> Result<(), ReleaseError> {
//! // Once: keys and the root of trust the endpoints install.
//! let key = generate_key()?;
//! write_key_file("release-key.json".as_ref(), &key)?;
//! let mut root = build_root(1, 1_900_000_000, &[key.public.as_str()], 1)?;
//! sign_root(&mut root, &key)?;
//! write_root("root.json".as_ref(), &root)?;
//!
//! // Each release: build (every module is loaded in the real runtime first), sign, verify.
//! let options = BundleOptions::new(42, 1_800_000_000, "weekly content");
//! let modules = [ModuleSource::Path("office-shell.wasm".into())];
//! build_bundle("bundle-42".as_ref(), &modules, &options)?;
//! // The release gate: validate in the production runtime; signing requires the passing report,
//! // signed by a gate key the signer trusts (here the signer's own key).
//! let (report, _path) = validate_for_release("bundle-42".as_ref(), &Default::default(), &key)?;
//! assert!(report.passed);
//! sign_manifest("bundle-42".as_ref(), &key)?;
//! verify_release("bundle-42".as_ref(), "root.json".as_ref(), None, rulebox_runtime::content::now_unix())?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use rulebox_runtime::content::{
    self, BundleError, BundleLimits, KeyEntry, MANIFEST_FORMAT, MANIFEST_FORMAT_PACKS, Manifest,
    RUNTIME_VERSION, Root, RootError, RuleEntry, Signable, Signature, Signed, VerifiedBundle,
    key_id, module_file_name, signing_bytes, write_atomic,
};
use rulebox_runtime::{ConfigError, Limits, LoadError, LoadedRule, Runtime, RuntimeConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest key file read, in bytes.
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Why a release operation failed. Each message names the file or rule concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A file cannot be read or written.
    #[error("`{}`: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("cannot generate a key: the system random number generator failed: {0}")]
    Random(String),
    /// A key file is not a valid key.
    #[error("key file `{}`: {problem}", path.display())]
    KeyFile {
        /// The file (empty for an in-memory key).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A file is larger than accepted.
    #[error("`{}` is {size} bytes; the limit is {cap}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// A JSON file does not parse.
    #[error("`{}` is not valid: {error}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        error: serde_json::Error,
    },
    /// A value cannot be encoded (not expected to happen).
    #[error("cannot encode: {0}")]
    Encode(serde_json::Error),
    /// The output folder of a bundle exists and is not empty.
    #[error("output folder `{}` exists and is not empty", path.display())]
    OutputNotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// A module does not load in the runtime (so it would be refused on every endpoint).
    #[error("module `{name}` does not load: {error}")]
    ModuleRefused {
        /// The module's path or name.
        name: String,
        /// Why the runtime refused it.
        error: LoadError,
    },
    /// Two modules have the same rule id.
    #[error("modules `{first}` and `{second}` both have the rule id `{rule_id}`")]
    DuplicateRule {
        /// The rule id.
        rule_id: String,
        /// The first module.
        first: String,
        /// The second module.
        second: String,
    },
    /// Limits were given for a rule id that no module has (a typo would otherwise be silent).
    #[error("limits are given for rule `{rule_id}`, which no module of the bundle has")]
    UnknownRuleLimits {
        /// The rule id.
        rule_id: String,
    },
    /// The bundle options are unusable.
    #[error("invalid bundle options: {0}")]
    Options(String),
    /// The runtime configuration (per-rule limits) is invalid.
    #[error("invalid limits: {0}")]
    Config(ConfigError),
    /// The root is invalid or its signatures do not verify.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The bundle fails the endpoint's checks.
    #[error("the bundle fails verification: {0}")]
    Bundle(BundleError),
    /// Validation could not run.
    #[error("validation: {0}")]
    Validate(rulebox_validate::ValidateError),
    /// The signing gate refused: no passing validation report bound to the bundle's hash and
    /// signed by a trusted gate key.
    #[error("refusing to sign: {0}")]
    NotValidated(rulebox_validate::GateError),
    /// A module's own metadata differs from what the manifest says about it.
    #[error(
        "manifest entry `{rule_id}` {version}: the module `{file}` reports rule `{found_id}` {found_version}"
    )]
    ManifestMismatch {
        /// The entry's rule id.
        rule_id: String,
        /// The entry's version.
        version: String,
        /// The module file.
        file: String,
        /// The module's rule id.
        found_id: String,
        /// The module's version.
        found_version: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ReleaseError + '_ {
    move |error| ReleaseError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl From<ConfigError> for ReleaseError {
    fn from(e: ConfigError) -> Self {
        ReleaseError::Config(e)
    }
}

impl From<BundleError> for ReleaseError {
    fn from(e: BundleError) -> Self {
        ReleaseError::Bundle(e)
    }
}

impl From<rulebox_validate::ValidateError> for ReleaseError {
    fn from(e: rulebox_validate::ValidateError) -> Self {
        ReleaseError::Validate(e)
    }
}

impl From<rulebox_validate::GateError> for ReleaseError {
    fn from(e: rulebox_validate::GateError) -> Self {
        ReleaseError::NotValidated(e)
    }
}

/// A signing key as stored in a key file: `{"keyid", "public", "secret"}`, all hex. Key files are
/// created with mode 0600 (owner read/write only) by [`write_key_file`]; keep them offline. `Debug`
/// never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Hex SHA-256 of the public key: the id signatures and roots refer to.
    pub keyid: String,
    /// The 32-byte ed25519 public key, hex: what goes into the root.
    pub public: String,
    /// The 32-byte ed25519 secret seed, hex.
    pub secret: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("keyid", &self.keyid)
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl KeyFile {
    /// The key file of `key`.
    pub fn from_signing_key(key: &SigningKey) -> KeyFile {
        let public = key.verifying_key().to_bytes();
        KeyFile {
            keyid: key_id(&public),
            public: hex::encode(public),
            secret: hex::encode(key.to_bytes()),
        }
    }

    /// The signing key, after checking that the public key and the key id belong to the secret.
    pub fn signing_key(&self) -> Result<SigningKey, ReleaseError> {
        let problem = |p: &str| ReleaseError::KeyFile {
            path: PathBuf::new(),
            problem: p.to_owned(),
        };
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&self.secret, &mut seed)
            .map_err(|_| problem("`secret` is not 32 bytes of hex"))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        let public = key.verifying_key().to_bytes();
        if hex::encode(public) != self.public.to_ascii_lowercase() {
            return Err(problem("`public` is not the public key of `secret`"));
        }
        if key_id(&public) != self.keyid {
            return Err(problem("`keyid` is not the hex SHA-256 of the public key"));
        }
        Ok(key)
    }

    /// The root entry for this key's public half.
    pub fn key_entry(&self) -> KeyEntry {
        KeyEntry {
            public: self.public.to_ascii_lowercase(),
        }
    }
}

/// Generates a new ed25519 signing key from 32 bytes of the operating system's random number
/// generator.
pub fn generate_key() -> Result<KeyFile, ReleaseError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ReleaseError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(KeyFile::from_signing_key(&key))
}

/// Writes `key` to a new file at `path` (refused if it exists), readable and writable by the owner
/// only (mode 0600 on Unix; on other systems the folder's permissions apply), fsynced.
pub fn write_key_file(path: &Path, key: &KeyFile) -> Result<(), ReleaseError> {
    let bytes = serde_json::to_vec_pretty(key).map_err(ReleaseError::Encode)?;
    let mut options = std::fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_at(path))?;
    file.write_all(&bytes).map_err(io_at(path))?;
    file.write_all(b"\n").map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

/// Reads and checks a key file.
pub fn read_key_file(path: &Path) -> Result<KeyFile, ReleaseError> {
    let bytes = read_capped(path, MAX_KEY_FILE_BYTES)?;
    let key: KeyFile = serde_json::from_slice(&bytes).map_err(|error| ReleaseError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    key.signing_key().map_err(|e| match e {
        ReleaseError::KeyFile { problem, .. } => ReleaseError::KeyFile {
            path: path.to_path_buf(),
            problem,
        },
        other => other,
    })?;
    Ok(key)
}

/// Reads the public half of a key file: a key file made by [`write_key_file`], or the same JSON
/// without its `secret` (what a signer is given of a gate key). Checks that `keyid` is the SHA-256
/// of `public` and that `public` is a valid ed25519 key.
pub fn read_public_key_file(path: &Path) -> Result<KeyEntry, ReleaseError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PublicKeyFile {
        keyid: String,
        public: String,
        #[serde(default)]
        #[allow(
            dead_code,
            reason = "accepted so that a whole key file can be named; never used"
        )]
        secret: Option<String>,
    }
    let bytes = read_capped(path, MAX_KEY_FILE_BYTES)?;
    let file: PublicKeyFile =
        serde_json::from_slice(&bytes).map_err(|error| ReleaseError::Json {
            path: path.to_path_buf(),
            error,
        })?;
    let problem = |p: &str| ReleaseError::KeyFile {
        path: path.to_path_buf(),
        problem: p.to_owned(),
    };
    let mut public = [0u8; 32];
    hex::decode_to_slice(&file.public, &mut public)
        .map_err(|_| problem("`public` is not 32 bytes of hex"))?;
    if ed25519_dalek::VerifyingKey::from_bytes(&public).is_err() {
        return Err(problem("`public` is not a valid ed25519 public key"));
    }
    if key_id(&public) != file.keyid {
        return Err(problem("`keyid` is not the hex SHA-256 of the public key"));
    }
    Ok(KeyEntry {
        public: hex::encode(public),
    })
}

/// Writes the public half of `key` (`{"keyid", "public"}`) to a new file at `path` (refused if it
/// exists): what a signer is given to trust a gate key ([`read_public_key_file`]).
pub fn write_public_key_file(path: &Path, key: &KeyFile) -> Result<(), ReleaseError> {
    #[derive(Serialize)]
    struct PublicKeyFile<'a> {
        keyid: &'a str,
        public: &'a str,
    }
    let mut bytes = serde_json::to_vec_pretty(&PublicKeyFile {
        keyid: &key.keyid,
        public: &key.public,
    })
    .map_err(ReleaseError::Encode)?;
    bytes.push(b'\n');
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_at(path))?;
    file.write_all(&bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReleaseError> {
    use rulebox_runtime::content::CappedReadError;
    rulebox_runtime::content::read_capped_following_links(path, cap).map_err(|e| match e {
        CappedReadError::TooLarge { size } => ReleaseError::TooLarge {
            path: path.to_path_buf(),
            size,
            cap,
        },
        CappedReadError::NotAFile => io_at(path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )),
        CappedReadError::Io(error) => io_at(path)(error),
        other => io_at(path)(io::Error::other(other.to_string())),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, cap: u64) -> Result<T, ReleaseError> {
    let bytes = read_capped(path, cap)?;
    serde_json::from_slice(&bytes).map_err(|error| ReleaseError::Json {
        path: path.to_path_buf(),
        error,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ReleaseError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(ReleaseError::Encode)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(io_at(path))
}

/// Adds `key`'s signature over `envelope.signed`, replacing an earlier signature by the same key
/// (signing twice with one key changes nothing).
pub fn add_signature<T: Signable>(
    envelope: &mut Signed<T>,
    key: &KeyFile,
) -> Result<(), ReleaseError> {
    let signing = key.signing_key()?;
    let message = signing_bytes(&envelope.signed).map_err(ReleaseError::Encode)?;
    let sig = hex::encode(signing.sign(&message).to_bytes());
    envelope.signatures.retain(|s| s.keyid != key.keyid);
    envelope.signatures.push(Signature {
        keyid: key.keyid.clone(),
        sig,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Roots
// ---------------------------------------------------------------------------------------------

/// An unsigned root: `version`, `expires_unix`, the public keys (hex), `threshold`. Refused if the
/// threshold is 0 or more than the distinct keys, or a key is not a valid ed25519 public key. Sign it
/// with [`sign_root`]: a first root with a threshold of its own keys; root `N + 1` additionally with
/// a threshold of root `N`'s keys.
pub fn build_root(
    version: u64,
    expires_unix: u64,
    public_keys: &[&str],
    threshold: u32,
) -> Result<Signed<Root>, ReleaseError> {
    let mut keys = BTreeMap::new();
    for public in public_keys {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(public, &mut bytes).map_err(|_| {
            ReleaseError::Options(format!("public key `{public}` is not 32 bytes of hex"))
        })?;
        keys.insert(
            key_id(&bytes),
            KeyEntry {
                public: hex::encode(bytes),
            },
        );
    }
    let root = Root {
        version,
        expires_unix,
        keys,
        threshold,
        release_counter: None,
        roles: Default::default(),
    };
    root.verifying_keys()
        .map_err(|problem| ReleaseError::Root(RootError::Invalid { version, problem }))?;
    Ok(Signed {
        signed: root,
        signatures: Vec::new(),
    })
}

/// Adds `key`'s signature to a root (idempotent per key).
pub fn sign_root(root: &mut Signed<Root>, key: &KeyFile) -> Result<(), ReleaseError> {
    add_signature(root, key)
}

/// Writes a root envelope to `path` (atomically).
pub fn write_root(path: &Path, root: &Signed<Root>) -> Result<(), ReleaseError> {
    write_json(path, root)
}

/// Reads a root envelope from `path` without checking its signatures (it may still be being signed).
pub fn read_root(path: &Path) -> Result<Signed<Root>, ReleaseError> {
    read_json(path, content::MAX_ROOT_BYTES)
}

/// Adds `key`'s signature to the root file at `path` (idempotent per key) and returns the envelope.
pub fn sign_root_file(path: &Path, key: &KeyFile) -> Result<Signed<Root>, ReleaseError> {
    let mut root = read_root(path)?;
    sign_root(&mut root, key)?;
    write_root(path, &root)?;
    Ok(root)
}

// ---------------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------------

/// A module to put in a bundle.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// A `.wasm` file.
    Path(PathBuf),
    /// Module bytes already in memory, with a name for messages.
    Bytes {
        /// A name for messages (e.g. the file it came from).
        name: String,
        /// The module.
        bytes: Vec<u8>,
    },
}

/// What goes into a manifest besides the modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOptions {
    /// The release number: must be above every release the endpoints accepted.
    pub release: u64,
    /// Expiry of the manifest, in seconds since the Unix epoch: endpoints refuse to install it after.
    pub expires_unix: u64,
    /// Build time, in seconds since the Unix epoch (`None`: now).
    pub created_unix: Option<u64>,
    /// Release notes.
    pub notes: String,
    /// Oldest runtime that may run the release (`None`: this runtime's version).
    pub min_runtime: Option<String>,
    /// Limits for particular rules, by rule id (others run under the endpoint's defaults).
    pub limits: BTreeMap<String, Limits>,
}

impl BundleOptions {
    /// Options with no per-rule limits, built now, for this runtime version or later.
    pub fn new(release: u64, expires_unix: u64, notes: &str) -> BundleOptions {
        BundleOptions {
            release,
            expires_unix,
            created_unix: None,
            notes: notes.to_owned(),
            min_runtime: None,
            limits: BTreeMap::new(),
        }
    }
}

/// The id and version a module reports, read by loading it in the real runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleIdentity {
    /// The rule id.
    pub id: String,
    /// The rule version.
    pub version: String,
}

/// Loads each module in the real runtime (compile, instantiate, start routine, metadata and every
/// ABI check, under `config`'s limits) on a sandbox thread and returns what each reports.
pub fn identify_modules(
    config: RuntimeConfig,
    modules: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, Vec<u8>, ModuleIdentity)>, ReleaseError> {
    let runtime = Runtime::new(config)?;
    let rt = runtime.clone();
    let results = runtime.run_sandboxed(move |thread| {
        modules
            .into_iter()
            .map(|(name, bytes)| {
                let loaded = rt
                    .compile(&bytes, &name)
                    .and_then(|compiled| LoadedRule::load(&rt, thread, &compiled));
                match loaded {
                    Ok(rule) => {
                        let info = rule.info();
                        let identity = ModuleIdentity {
                            id: info.id.clone(),
                            version: info.version.clone(),
                        };
                        Ok((name, bytes, identity))
                    }
                    Err(error) => Err((name, error)),
                }
            })
            .collect::<Vec<_>>()
    });
    results
        .into_iter()
        .map(|r| r.map_err(|(name, error)| ReleaseError::ModuleRefused { name, error }))
        .collect()
}

/// Builds an unsigned bundle in `out_dir` (created; refused if it exists and is not empty): each
/// module is read (at most 16 MiB), loaded in the real runtime to learn its rule id and version
/// (a module that does not load is refused, since every endpoint would refuse it too), and written
/// as `modules/<sha256>.wasm`; `manifest.json` is written with no signatures. Returns the manifest.
/// Nothing is compiled from source. Sign the result with [`sign_manifest`].
pub fn build_bundle(
    out_dir: &Path,
    modules: &[ModuleSource],
    options: &BundleOptions,
) -> Result<Manifest, ReleaseError> {
    build_bundle_with_packs(out_dir, modules, &[], options)
}

/// [`build_bundle`] with rule packs besides the modules: each engine (at most 16 MiB) is compiled
/// once and loaded with each of its data files (each at most 16 MiB) in the real runtime, to learn
/// the pack's id, version and rules; the engine is written as `modules/<sha256>.wasm`, each data
/// file as `data/<sha256>.rules`, and the manifest (format 2 when there are packs) lists them.
/// `options.limits` may name a pack id (the pack's own limits) as well as rule ids.
pub fn build_bundle_with_packs(
    out_dir: &Path,
    modules: &[ModuleSource],
    packs: &[PackSource],
    options: &BundleOptions,
) -> Result<Manifest, ReleaseError> {
    let created_unix = options.created_unix.unwrap_or_else(content::now_unix);
    if options.expires_unix <= created_unix {
        return Err(ReleaseError::Options(format!(
            "expires_unix {} is not after created_unix {created_unix}",
            options.expires_unix
        )));
    }
    let min_runtime = options
        .min_runtime
        .clone()
        .unwrap_or_else(|| RUNTIME_VERSION.to_owned());
    match std::fs::read_dir(out_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ReleaseError::OutputNotEmpty {
                    path: out_dir.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(out_dir)(e)),
    }

    let cap = BundleLimits::default().max_module_bytes;
    let inputs = modules
        .iter()
        .map(|source| packs::read_source(source, cap))
        .collect::<Result<Vec<_>, _>>()?;
    let config = RuntimeConfig {
        rules: options.limits.clone(),
        ..RuntimeConfig::default()
    };
    let identified = identify_modules(config.clone(), inputs)?;
    let read = packs::read_packs(packs)?;
    let pack_identities = identify_packs(config, read.clone(), options.limits.clone())?;

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut rules = Vec::with_capacity(identified.len());
    for (name, bytes, identity) in &identified {
        if let Some(first) = seen.insert(identity.id.clone(), name.clone()) {
            return Err(ReleaseError::DuplicateRule {
                rule_id: identity.id.clone(),
                first,
                second: name.clone(),
            });
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        rules.push(RuleEntry {
            id: identity.id.clone(),
            version: identity.version.clone(),
            file: module_file_name(&sha256),
            sha256,
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            limits: options.limits.get(&identity.id).cloned(),
        });
    }
    for (pack, identities) in read.iter().zip(&pack_identities) {
        for ((name, _), identity) in pack.data.iter().zip(identities) {
            for (id, _) in &identity.rules {
                if let Some(first) = seen.insert(id.clone(), name.clone()) {
                    return Err(ReleaseError::DuplicateRule {
                        rule_id: id.clone(),
                        first,
                        second: name.clone(),
                    });
                }
            }
        }
    }
    let pack_ids: Vec<&str> = pack_identities
        .iter()
        .flatten()
        .map(|p| p.id.as_str())
        .collect();
    if let Some(rule_id) = options
        .limits
        .keys()
        .find(|id| !seen.contains_key(*id) && !pack_ids.contains(&id.as_str()))
    {
        return Err(ReleaseError::UnknownRuleLimits {
            rule_id: rule_id.clone(),
        });
    }
    let (engines, pack_entries) = packs::pack_entries(&read, &pack_identities, &options.limits);
    let manifest = Manifest {
        format: if pack_entries.is_empty() {
            MANIFEST_FORMAT
        } else {
            MANIFEST_FORMAT_PACKS
        },
        release: options.release,
        created_unix,
        expires_unix: options.expires_unix,
        min_runtime,
        abi_version: rulebox_runtime::sdk::abi::ABI_VERSION,
        schema_versions: vec![rulebox_runtime::sdk::abi::SCHEMA_VERSION],
        rules,
        engines,
        packs: pack_entries,
        notes: options.notes.clone(),
    };

    let modules_dir = out_dir.join("modules");
    std::fs::create_dir_all(&modules_dir).map_err(io_at(&modules_dir))?;
    for ((_, bytes, _), entry) in identified.iter().zip(&manifest.rules) {
        let path = out_dir.join(&entry.file);
        write_atomic(&path, bytes).map_err(io_at(&path))?;
    }
    if !manifest.packs.is_empty() {
        let data_dir = out_dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(io_at(&data_dir))?;
    }
    for pack in &read {
        let sha = rulebox_runtime::content_hash(&pack.engine.1);
        let path = out_dir.join(module_file_name(&sha));
        write_atomic(&path, &pack.engine.1).map_err(io_at(&path))?;
        for (_, data) in &pack.data {
            let path = out_dir.join(content::data_file_name(&rulebox_runtime::content_hash(
                data,
            )));
            write_atomic(&path, data).map_err(io_at(&path))?;
        }
    }
    write_json(
        &out_dir.join("manifest.json"),
        &Signed {
            signed: manifest.clone(),
            signatures: Vec::new(),
        },
    )?;
    Ok(manifest)
}

/// Adds `key`'s signature to the bundle's `manifest.json` (idempotent per key: signing twice with
/// one key leaves one signature) and returns the envelope. The manifest must parse; its content is
/// not changed.
///
/// **The release gate**: nothing is signed unless a passing validation report bound to this
/// manifest's hash, made by this runtime version and **signed by a gate key the signer trusts**
/// lies beside the bundle ([`rulebox_validate::check_gate`]; write one with
/// [`validate_for_release`] or `rulebox validate --gate-key`). This function trusts reports signed
/// by `key` itself (the signer validated the bundle); [`sign_manifest_trusting`] names other gate
/// keys (a validation service's). There is no way around it in this function, in any build.
pub fn sign_manifest(bundle_dir: &Path, key: &KeyFile) -> Result<Signed<Manifest>, ReleaseError> {
    sign_manifest_trusting(bundle_dir, key, &[])
}

/// [`sign_manifest`], trusting validation reports signed by any of `gate_keys` as well as by `key`.
pub fn sign_manifest_trusting(
    bundle_dir: &Path,
    key: &KeyFile,
    gate_keys: &[KeyEntry],
) -> Result<Signed<Manifest>, ReleaseError> {
    let path = bundle_dir.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        read_json(&path, BundleLimits::default().max_manifest_bytes)?;
    let mut trusted = vec![key.key_entry()];
    trusted.extend(gate_keys.iter().cloned());
    rulebox_validate::check_gate(bundle_dir, &envelope.signed, &trusted)?;
    add_signature(&mut envelope, key)?;
    write_json(&path, &envelope)?;
    Ok(envelope)
}

/// Validates the bundle in `bundle_dir` in the production runtime ([`rulebox_validate::validate_bundle`]
/// with `options`), signs the report with `gate_key` (over its canonical bytes, under
/// [`rulebox_validate::CONTEXT_VALIDATION`]) and writes it where [`sign_manifest`] looks for it
/// ([`rulebox_validate::report_path`]), passed or not. Returns the report and its path.
pub fn validate_for_release(
    bundle_dir: &Path,
    options: &rulebox_validate::Options,
    gate_key: &KeyFile,
) -> Result<(rulebox_validate::Report, PathBuf), ReleaseError> {
    let report = rulebox_validate::validate_bundle(bundle_dir, options, &mut |_| {})?;
    let path = rulebox_validate::report_path(
        bundle_dir,
        report.target.manifest_hash.as_deref().unwrap_or_default(),
    )?;
    let mut attested = Signed {
        signed: report,
        signatures: Vec::new(),
    };
    add_signature(&mut attested, gate_key)?;
    rulebox_validate::write_attested_report(&path, &attested)?;
    Ok((attested.signed, path))
}

/// Everything an endpoint checks ([`content::verify_bundle`] against the root file at `root_path`,
/// with `highest_accepted` and `now_unix`), plus what only the vendor side checks: every module
/// loads in the real runtime and reports the rule id and version its manifest entry states.
pub fn verify_release(
    bundle_dir: &Path,
    root_path: &Path,
    highest_accepted: Option<u64>,
    now_unix: u64,
) -> Result<VerifiedBundle, ReleaseError> {
    let root = content::load_trusted_root(root_path)?;
    let bundle = content::verify_bundle(
        bundle_dir,
        &root,
        highest_accepted,
        now_unix,
        &BundleLimits::default(),
    )?;
    let config = RuntimeConfig {
        rules: bundle
            .modules()
            .iter()
            .filter_map(|(e, _)| e.limits.clone().map(|l| (e.id.clone(), l)))
            .collect(),
        ..RuntimeConfig::default()
    };
    let inputs = bundle
        .modules()
        .iter()
        .map(|(e, bytes)| (e.file.clone(), bytes.clone()))
        .collect();
    let identified = identify_modules(config, inputs)?;
    for ((entry, _), (_, _, found)) in bundle.modules().iter().zip(&identified) {
        if found.id != entry.id || found.version != entry.version {
            return Err(ReleaseError::ManifestMismatch {
                rule_id: entry.id.clone(),
                version: entry.version.clone(),
                file: entry.file.clone(),
                found_id: found.id.clone(),
                found_version: found.version.clone(),
            });
        }
    }
    check_packs_report(&bundle)?;
    Ok(bundle)
}

/// The vendor-side check of a verified bundle's packs: each engine loaded with each of its data
/// files reports the pack id, version and rules (in order) its entry states.
fn check_packs_report(bundle: &VerifiedBundle) -> Result<(), ReleaseError> {
    if bundle.packs().is_empty() {
        return Ok(());
    }
    let config = RuntimeConfig {
        rules: bundle
            .packs()
            .iter()
            .flat_map(|(p, _)| &p.rules)
            .filter_map(|r| r.limits.clone().map(|l| (r.id.clone(), l)))
            .collect(),
        ..RuntimeConfig::default()
    };
    let pack_limits = bundle
        .packs()
        .iter()
        .filter_map(|(p, _)| p.limits.clone().map(|l| (p.id.clone(), l)))
        .collect();
    // One input per pack (each engine is compiled again per pack here: a vendor-side check).
    let inputs = bundle
        .packs()
        .iter()
        .map(|(p, data)| {
            let engine = bundle.engine(&p.engine).unwrap_or_default().to_vec();
            ReadPack {
                engine: (p.engine.clone(), engine),
                data: vec![(p.file.clone(), data.to_vec())],
            }
        })
        .collect();
    let found = identify_packs(config, inputs, pack_limits)?;
    for ((entry, _), found) in bundle.packs().iter().zip(found.iter().flatten()) {
        let declared: Vec<(String, String)> = entry
            .rules
            .iter()
            .map(|r| (r.id.clone(), r.version.clone()))
            .collect();
        if found.id != entry.id || found.version != entry.version || found.rules != declared {
            let differs = declared
                .iter()
                .zip(&found.rules)
                .find(|(d, f)| d != f)
                .map(|(d, f)| (d.clone(), f.clone()));
            let ((rule_id, version), (found_id, found_version)) = match differs {
                Some(pair) if found.id == entry.id && found.version == entry.version => pair,
                _ => (
                    (entry.id.clone(), entry.version.clone()),
                    (found.id.clone(), found.version.clone()),
                ),
            };
            return Err(ReleaseError::ManifestMismatch {
                rule_id,
                version,
                file: entry.file.clone(),
                found_id,
                found_version,
            });
        }
    }
    Ok(())
}

mod packs;
mod publish;
mod roles;
pub use packs::{
    PackIdentity, PackSource, ReadPack, identify_packs, is_index_data_of, is_rule_data_of,
    pack_sources_in,
};
pub use publish::{
    LOCK_FILE, Publication, PublishError, PublishLock, ReleasePublication, Repository,
    TimestampOutcome,
};
pub use roles::{
    OnlineKey, OnlineKeyError, check_online_key, declare_role, generate_online_key,
    read_online_key, write_online_key,
};

#[cfg(test)]
mod tests;
