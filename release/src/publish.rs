//! The static content repository (`rulebox publish --repo DIR`): files any HTTP server or CDN can
//! serve, named so that everything but one file can be cached forever.
//!
//! ```text
//! DIR/root/<N>.root.json          the root chain, N = 1, 2, ... (exact signed bytes)
//! DIR/releases/<R>/manifest.json  the signed manifest (exact bytes)
//! DIR/modules/<sha256>.wasm       module and engine bytes; shared by releases, stored once
//! DIR/data/<sha256>.rules         a pack's rule data; shared by releases, stored once
//! DIR/reverts/<R>.revert.json     a signed revert of release R
//! DIR/timestamp.json              signed by the timestamp role; the only file that changes
//! ```
//!
//! Everything but `timestamp.json` is **immutable** once written: publishing the same bytes again
//! is a no-op, publishing other bytes under an existing name is refused ([`PublishError::Conflict`]).
//! Every file is written with the store's [`write_atomic`] (temp file, fsync, rename, fsync of the
//! folder), and every publication holds an exclusive lock on `DIR/.publish.lock`, so two publishers
//! (the vendor's `rulebox publish` and the controller) never interleave. What is published is
//! checked first as a host would check it: roots chain by the rotation rule, releases pass every
//! endpoint check against the newest root and load in the real runtime, reverts verify against it.
//! Nothing here is trusted by hosts: they verify every byte against keys they already hold.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rulebox_controlplane_proto::repo;
use rulebox_runtime::content::{
    self, BundleLimits, CappedReadError, MAX_REVERT_BYTES, MAX_ROOT_BYTES, MAX_TIMESTAMP_BYTES,
    Manifest, RoleName, Root, RootError, Signed, TIMESTAMP_FORMAT, Timestamp, TimestampRelease,
    TimestampRevert, write_atomic,
};
use sha2::{Digest, Sha256};

use crate::roles::{OnlineKey, OnlineKeyError, check_online_key};
use crate::{ReleaseError, add_signature};

/// The lock file every publication holds.
pub const LOCK_FILE: &str = ".publish.lock";

/// Why a publication failed. The repository is unchanged, or holds only complete files that were
/// already valid on their own (modules written before a manifest that then failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A file or folder of the repository cannot be read or written.
    #[error("repository `{}`: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file already published under this name has other bytes: published files never change.
    #[error(
        "`{}` is already published with other bytes; published files never change (publish under a new release number)",
        path.display()
    )]
    Conflict {
        /// The file.
        path: PathBuf,
    },
    /// Something in the repository is not what its name says (a file too large, unparsable, or a
    /// name that is not a number).
    #[error("repository file `{}`: {problem}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The repository holds no root yet: publish `root/1.root.json` first.
    #[error("the repository holds no root yet: publish root version 1 first")]
    NoRoot,
    /// A root does not chain: root N must be signed by a threshold of root N-1's keys (and its own),
    /// and versions go 1, 2, 3, ... without gaps.
    #[error("root version {version}: {source}")]
    Root {
        /// The version being published or read.
        version: u64,
        /// Why it does not chain.
        source: RootError,
    },
    /// A root would leave a gap in the chain.
    #[error("root version {version} cannot be published: the newest root is version {newest}")]
    RootGap {
        /// The version offered.
        version: u64,
        /// The newest published.
        newest: u64,
    },
    /// The release does not pass the endpoint's checks against the newest root, or a module does
    /// not load.
    #[error("release does not verify against root version {root_version}: {source}")]
    Release {
        /// The root version it was checked against.
        root_version: u64,
        /// Why.
        source: Box<ReleaseError>,
    },
    /// The revert does not verify against the newest root.
    #[error("revert does not verify against root version {root_version}: {source}")]
    Revert {
        /// The root version.
        root_version: u64,
        /// Why.
        source: content::RevertError,
    },
    /// A release is not in the repository.
    #[error("release {release} is not published in this repository")]
    NotPublished {
        /// The release.
        release: u64,
    },
    /// A timestamp key cannot sign for this root.
    #[error("timestamp key: {0}")]
    TimestampKey(#[from] OnlineKeyError),
    /// No timestamp key was given.
    #[error("signing timestamp.json needs at least one timestamp-role key")]
    NoTimestampKey,
    /// Signing or encoding failed.
    #[error(transparent)]
    Sign(#[from] ReleaseError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a publication did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The file, relative to the repository.
    pub file: String,
    /// `true`: written now; `false`: already there with the same bytes.
    pub written: bool,
}

/// What publishing a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePublication {
    /// The release.
    pub release: u64,
    /// Hex SHA-256 of the exact bytes of its `manifest.json`.
    pub manifest_sha256: String,
    /// Their size.
    pub size: u64,
    /// Every file, with whether it was written now.
    pub files: Vec<Publication>,
}

/// What [`Repository::write_timestamp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampOutcome {
    /// The timestamp now in the repository.
    pub timestamp: Timestamp,
    /// `false` when the existing one already said the same and had at least half its validity
    /// left (so publishing the same thing twice leaves every byte as it was).
    pub written: bool,
}

/// A static content repository in a folder.
#[derive(Debug, Clone)]
pub struct Repository {
    dir: PathBuf,
}

/// The exclusive publication lock, released when dropped.
#[derive(Debug)]
pub struct PublishLock {
    _file: File,
}

impl Repository {
    /// Opens (creating if needed) the repository folder `dir` and its sub-folders.
    pub fn open(dir: &Path) -> Result<Repository, PublishError> {
        for sub in ["", "root", "releases", "modules", "data", "reverts"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io_at(&path))?;
        }
        Ok(Repository {
            dir: dir.to_path_buf(),
        })
    }

    /// The repository's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `file` (a name from [`repo`]) in the repository.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Takes the exclusive publication lock (waits for another publisher to finish).
    pub fn lock(&self) -> Result<PublishLock, PublishError> {
        let path = self.dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        file.lock().map_err(io_at(&path))?;
        Ok(PublishLock { _file: file })
    }

    fn read(&self, file: &str, cap: u64) -> Result<Option<Vec<u8>>, PublishError> {
        let path = self.path(file);
        match content::read_capped(&path, cap) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(CappedReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(CappedReadError::TooLarge { size }) => Err(PublishError::Damaged {
                path,
                problem: format!("{size} bytes, over the {cap}-byte cap"),
            }),
            Err(e) => Err(PublishError::Damaged {
                path,
                problem: e.to_string(),
            }),
        }
    }

    /// Writes `bytes` as `file` unless it exists: the same bytes are a no-op, other bytes are a
    /// conflict. The caller holds the lock.
    fn put_immutable(&self, file: &str, bytes: &[u8]) -> Result<Publication, PublishError> {
        let cap = u64::try_from(bytes.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let path = self.path(file);
        match content::read_capped(&path, cap) {
            Ok(existing) if existing == bytes => {
                return Ok(Publication {
                    file: file.to_owned(),
                    written: false,
                });
            }
            Ok(_) | Err(CappedReadError::TooLarge { .. }) => {
                return Err(PublishError::Conflict { path });
            }
            Err(CappedReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(PublishError::Damaged {
                    path,
                    problem: e.to_string(),
                });
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        write_atomic(&path, bytes).map_err(io_at(&path))?;
        Ok(Publication {
            file: file.to_owned(),
            written: true,
        })
    }

    /// The numbers found in `folder` for file names `<prefix><number><suffix>`, ascending; other
    /// names (temporary files of an interrupted write) are skipped.
    fn numbered(&self, folder: &str, suffix: &str) -> Result<Vec<u64>, PublishError> {
        let path = self.dir.join(folder);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(io_at(&path))? {
            let entry = entry.map_err(io_at(&path))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(number) = name.strip_suffix(suffix) else {
                continue;
            };
            if !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
                && let Ok(n) = number.parse::<u64>()
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every root version published, ascending.
    pub fn root_versions(&self) -> Result<Vec<u64>, PublishError> {
        self.numbered("root", ".root.json")
    }

    /// Every release published (a `releases/<R>/manifest.json` exists), ascending.
    pub fn releases(&self) -> Result<Vec<u64>, PublishError> {
        let mut out = Vec::new();
        for r in self.numbered("releases", "")? {
            if self.path(&repo::manifest_file(r)).is_file() {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every release with a published revert, ascending.
    pub fn reverts(&self) -> Result<Vec<u64>, PublishError> {
        self.numbered("reverts", ".revert.json")
    }

    /// The newest root, reached by walking the chain from `root/1.root.json` by the rotation rule
    /// (each root signed by a threshold of the one before it and of its own keys).
    pub fn newest_root(&self) -> Result<Root, PublishError> {
        let versions = self.root_versions()?;
        let mut current: Option<Root> = None;
        for (i, v) in versions.iter().enumerate() {
            let expected = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
            if *v != expected {
                return Err(PublishError::Damaged {
                    path: self.path(&repo::root_file(*v)),
                    problem: format!("the chain has a gap: version {expected} is missing"),
                });
            }
            let bytes = self
                .read(&repo::root_file(*v), MAX_ROOT_BYTES)?
                .ok_or(PublishError::NoRoot)?;
            let next = match &current {
                None => content::parse_trusted_root(&bytes),
                Some(prev) => content::update_root(prev, &bytes),
            }
            .map_err(|source| PublishError::Root {
                version: *v,
                source,
            })?;
            current = Some(next);
        }
        current.ok_or(PublishError::NoRoot)
    }

    /// Publishes a root (its exact signed bytes): version 1 must be signed by a threshold of its own
    /// keys; version N + 1 must follow the newest root N by the rotation rule.
    pub fn publish_root(&self, bytes: &[u8]) -> Result<Publication, PublishError> {
        let _lock = self.lock()?;
        let parsed = content::parse_trusted_root(bytes)
            .map_err(|source| PublishError::Root { version: 0, source })?;
        let version = parsed.version;
        let newest = self.root_versions()?.last().copied().unwrap_or(0);
        if version <= newest {
            // Already there: the same bytes are a no-op, others a conflict.
            return self.put_immutable(&repo::root_file(version), bytes);
        }
        if version != newest + 1 {
            return Err(PublishError::RootGap { version, newest });
        }
        if version > 1 {
            let prev = self.newest_root()?;
            content::update_root(&prev, bytes)
                .map_err(|source| PublishError::Root { version, source })?;
        }
        self.put_immutable(&repo::root_file(version), bytes)
    }

    /// Publishes the signed bundle in `bundle_dir`: it must pass every endpoint check against the
    /// newest root at `now_unix` and every module must load in the real runtime
    /// ([`verify_release`](crate::verify_release)); then its modules, engines and rule data are
    /// written (each once, content-addressed, shared with other releases) and last its manifest,
    /// with the exact bytes of the bundle's files.
    pub fn publish_release(
        &self,
        bundle_dir: &Path,
        now_unix: u64,
    ) -> Result<ReleasePublication, PublishError> {
        let _lock = self.lock()?;
        let root = self.newest_root()?;
        let root_path = self.path(&repo::root_file(root.version));
        let verified =
            crate::verify_release(bundle_dir, &root_path, None, now_unix).map_err(|source| {
                PublishError::Release {
                    root_version: root.version,
                    source: Box::new(source),
                }
            })?;
        let mut files = Vec::new();
        // Each file's path was checked to be `modules/<sha256>.wasm` or `data/<sha256>.rules`:
        // the repository's own names ([`repo::module_file`], [`repo::data_file`]).
        for (file, bytes) in verified.files() {
            files.push(self.put_immutable(file, bytes)?);
        }
        let manifest = verified.manifest_bytes();
        let release = verified.release();
        files.push(self.put_immutable(&repo::manifest_file(release), manifest)?);
        Ok(ReleasePublication {
            release,
            manifest_sha256: hex::encode(Sha256::digest(manifest)),
            size: u64::try_from(manifest.len()).unwrap_or(u64::MAX),
            files,
        })
    }

    /// Publishes a signed revert: it must verify against the newest root at `now_unix` (a threshold
    /// of the root's keys or of its rollout role). A release has at most one revert file.
    pub fn publish_revert(&self, bytes: &[u8], now_unix: u64) -> Result<Publication, PublishError> {
        let _lock = self.lock()?;
        let root = self.newest_root()?;
        let revert = content::verify_revert(bytes, &root, now_unix).map_err(|source| {
            PublishError::Revert {
                root_version: root.version,
                source,
            }
        })?;
        self.put_immutable(&repo::revert_file(revert.release), bytes)
    }

    /// The exact bytes of release `release`'s published manifest, with their hex SHA-256.
    pub fn manifest(&self, release: u64) -> Result<(Vec<u8>, String), PublishError> {
        let bytes = self
            .read(
                &repo::manifest_file(release),
                BundleLimits::default().max_manifest_bytes,
            )?
            .ok_or(PublishError::NotPublished { release })?;
        let hash = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, hash))
    }

    /// The published revert of `release`, if any (exact bytes).
    pub fn revert(&self, release: u64) -> Result<Option<Vec<u8>>, PublishError> {
        self.read(
            &repo::revert_file(release),
            u64::try_from(MAX_REVERT_BYTES).unwrap_or(u64::MAX),
        )
    }

    /// Copies release `release` out of the repository into `out_dir` as a bundle folder
    /// (`manifest.json` + the modules and rule data it names), the way a fetcher assembles what it
    /// downloaded, so
    /// it can be verified like any bundle. The manifest is parsed only to learn the module names;
    /// nothing is trusted before the bundle's own verification.
    pub fn assemble_bundle(&self, release: u64, out_dir: &Path) -> Result<(), PublishError> {
        let (bytes, _) = self.manifest(release)?;
        let path = self.path(&repo::manifest_file(release));
        let envelope: Signed<Manifest> =
            serde_json::from_slice(&bytes).map_err(|e| PublishError::Damaged {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        let modules = out_dir.join("modules");
        std::fs::create_dir_all(&modules).map_err(io_at(&modules))?;
        let limits = BundleLimits::default();
        if !envelope.signed.packs.is_empty() {
            let data = out_dir.join("data");
            std::fs::create_dir_all(&data).map_err(io_at(&data))?;
        }
        // `files()` lists the modules, then the engines, then the packs' data.
        let modules = envelope.signed.rules.len() + envelope.signed.engines.len();
        for (i, entry) in envelope.signed.files().enumerate() {
            let is_data = i >= modules;
            let (name, cap) = if is_data {
                (repo::data_file(entry.sha256), limits.max_data_bytes)
            } else {
                (repo::module_file(entry.sha256), limits.max_module_bytes)
            };
            if entry.size > cap || entry.file != name {
                return Err(PublishError::Damaged {
                    path,
                    problem: format!(
                        "entry `{}` names an unusable file",
                        entry.owner.escape_debug()
                    ),
                });
            }
            let bytes =
                self.read(entry.file, entry.size)?
                    .ok_or_else(|| PublishError::Damaged {
                        path: self.path(entry.file),
                        problem: format!("missing (named by release {release})"),
                    })?;
            let dest = out_dir.join(entry.file);
            write_atomic(&dest, &bytes).map_err(io_at(&dest))?;
        }
        let dest = out_dir.join("manifest.json");
        write_atomic(&dest, &bytes).map_err(io_at(&dest))
    }

    /// The timestamp in the repository now, parsed but not verified (`None` if there is none or it
    /// does not parse).
    pub fn current_timestamp(&self) -> Option<Timestamp> {
        let bytes = self
            .read(
                repo::TIMESTAMP_FILE,
                u64::try_from(MAX_TIMESTAMP_BYTES).unwrap_or(u64::MAX),
            )
            .ok()??;
        serde_json::from_slice::<Signed<Timestamp>>(&bytes)
            .ok()
            .map(|e| e.signed)
    }

    /// What a timestamp signed at `now_unix` would list: the newest root version, every release
    /// whose manifest has not expired and every revert that has not expired, each with the hash and
    /// size of its exact bytes.
    pub fn timestamp_contents(
        &self,
        now_unix: u64,
    ) -> Result<(u64, Vec<TimestampRelease>, Vec<TimestampRevert>), PublishError> {
        let root = self.newest_root()?;
        let mut releases = Vec::new();
        for release in self.releases()? {
            let (bytes, hash) = self.manifest(release)?;
            let path = self.path(&repo::manifest_file(release));
            let envelope: Signed<Manifest> =
                serde_json::from_slice(&bytes).map_err(|e| PublishError::Damaged {
                    path,
                    problem: e.to_string(),
                })?;
            if envelope.signed.expires_unix <= now_unix {
                continue;
            }
            releases.push(TimestampRelease {
                release,
                manifest_sha256: hash,
                size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            });
        }
        let mut reverts = Vec::new();
        for release in self.reverts()? {
            let Some(bytes) = self.revert(release)? else {
                continue;
            };
            let path = self.path(&repo::revert_file(release));
            let envelope: Signed<content::Revert> =
                serde_json::from_slice(&bytes).map_err(|e| PublishError::Damaged {
                    path,
                    problem: e.to_string(),
                })?;
            if envelope.signed.expires_unix <= now_unix {
                continue;
            }
            reverts.push(TimestampRevert {
                release,
                sha256: hex::encode(Sha256::digest(&bytes)),
                size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            });
        }
        Ok((root.version, releases, reverts))
    }

    /// Signs and writes `timestamp.json` for what the repository holds at `now_unix`, valid for
    /// `validity_secs`, with `keys` (timestamp-role keys of the newest root; a threshold of them).
    /// Its version is above the current one's (and at least `now_unix`, so a lost file never makes
    /// versions go back). When the current timestamp already lists the same contents and has at
    /// least half its validity left, nothing is written (unless `force`): republishing is a no-op.
    pub fn write_timestamp(
        &self,
        keys: &[OnlineKey],
        now_unix: u64,
        validity_secs: u64,
        force: bool,
    ) -> Result<TimestampOutcome, PublishError> {
        if keys.is_empty() {
            return Err(PublishError::NoTimestampKey);
        }
        let _lock = self.lock()?;
        let root = self.newest_root()?;
        for key in keys {
            check_online_key(&root, key, RoleName::Timestamp, now_unix)?;
        }
        let (root_version, releases, reverts) = self.timestamp_contents(now_unix)?;
        let current = self.current_timestamp();
        if let Some(ts) = &current
            && !force
            && ts.root_version == root_version
            && ts.releases == releases
            && ts.reverts == reverts
            && ts.expires_unix > now_unix
            && ts.expires_unix - now_unix >= validity_secs / 2
        {
            return Ok(TimestampOutcome {
                timestamp: ts.clone(),
                written: false,
            });
        }
        let version = current
            .as_ref()
            .map_or(1, |t| t.version.saturating_add(1))
            .max(now_unix);
        let mut envelope = Signed {
            signed: Timestamp {
                format: TIMESTAMP_FORMAT,
                version,
                issued_unix: now_unix,
                expires_unix: now_unix.saturating_add(validity_secs),
                root_version,
                releases,
                reverts,
            },
            signatures: Vec::new(),
        };
        for key in keys {
            add_signature(&mut envelope, &key.key)?;
        }
        let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(ReleaseError::Encode)?;
        bytes.push(b'\n');
        let path = self.path(repo::TIMESTAMP_FILE);
        write_atomic(&path, &bytes).map_err(io_at(&path))?;
        Ok(TimestampOutcome {
            timestamp: envelope.signed,
            written: true,
        })
    }
}

#[cfg(test)]
mod tests;
