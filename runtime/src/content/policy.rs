//! Customer policies, enforced on the endpoint: the host's owner decides when content lands (pin a
//! release, stay N releases behind, delay by hours, pause), signs the decision with **their own**
//! key, and the agent refuses a vendor push that breaks it. The vendor's keys cannot sign a policy:
//! the policy is verified against the **owner root** the owner installed on the host at enrolment,
//! not against the content root, and an owner root that shares a key with the content root is
//! refused.
//!
//! ```text
//! STORE/
//!   owner-root.json     the owner's root of trust (same format as root.json; rotation by the same rule)
//!   policy.json         Signed<CustomerPolicy>, re-verified against owner-root.json at every use
//!   policy-state.json   {"seen": {"<release>": {"first_seen_unix", "manifest_hash"}}}: the releases
//!                       whose verified manifest this host saw, and when it first saw each
//! ```
//!
//! [`ContentStore::install`] calls the check after the bundle's own verification and before anything
//! is written: a release the policy does not allow is refused with [`StoreError::Policy`]
//! ([`PolicyError::Refused`]), the store keeps its content, and the agent reports the refusal like any
//! other. What the vendor controls cannot move the owner's decision:
//!
//! - a pin names the release **and its manifest hash**: another manifest under the pinned number
//!   does not land;
//! - N-k lets release `r` land only once this host has seen verified manifests of each of the `k`
//!   releases after it (`r + 1 ..= r + k`; the vendor numbers releases consecutively), so one
//!   manifest with a huge number makes at most the release just below it eligible, never every
//!   release for good;
//! - the delay runs from when this host **first saw** the release, not from the vendor-signed
//!   `created_unix`.
//!
//! Reverts and rollbacks go back to content the host already had and are never blocked by a policy
//! (a revert never marks the owner's pinned release bad: `docs/rollout.md`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::format::{Root, Signable, Signed, signing_bytes};
use super::fsutil::{CappedReadError, read_capped, write_atomic};
use super::layout::POLICY_STATE_FILE;
use super::store::{ContentStore, StoreError};
use super::verify::{
    RootError, SignatureError, VerifiedBundle, check_threshold, parse_trusted_root, update_root,
};

/// Domain-separation context prefixed to a policy's canonical bytes before signing.
pub const CONTEXT_POLICY: &[u8] = b"rulebox-policy-v1\0";
/// The policy format this runtime reads ([`CustomerPolicy::format`]).
pub const POLICY_FORMAT: u32 = 1;
/// Largest policy or owner-root file read, in bytes.
const MAX_POLICY_BYTES: u64 = 64 << 10;
/// Largest `policy-state.json` read, in bytes.
const MAX_POLICY_STATE_BYTES: u64 = 1 << 20;
/// Most releases `policy-state.json` remembers: the lowest numbers above the highest accepted
/// release are kept (a flood of far-off numbers is what goes).
pub const MAX_SEEN_RELEASES: usize = 1_024;

/// When content may land on this host, as its owner decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerPolicy {
    /// Format of this document; this runtime reads [`POLICY_FORMAT`].
    pub format: u32,
    /// Sequence number, strictly increasing per owner: an older policy (perhaps more permissive) is
    /// never accepted over a newer one.
    pub version: u64,
    /// When the owner signed it, seconds since the Unix epoch (informational).
    pub issued_unix: u64,
    /// Which releases may land.
    pub mode: PolicyMode,
    /// A release may land only this many hours after this host first saw its verified manifest.
    pub delay_hours: u32,
    /// Notes for people.
    pub notes: String,
}

impl Signable for CustomerPolicy {
    const CONTEXT: &'static [u8] = CONTEXT_POLICY;
}

/// Which releases a policy lets in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum PolicyMode {
    /// Every release the vendor publishes (subject to `delay_hours`).
    Latest,
    /// Only this release, with exactly this manifest.
    Pin {
        /// The pinned release.
        release: u64,
        /// The canonical hash of the pinned release's manifest (`rulebox store status` shows it).
        /// A pin without one (written before pins named their content) lets nothing land: sign
        /// the pin again with the hash.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest_hash: Option<String>,
    },
    /// Stay `n` releases behind: release `r` lands only once this host has seen verified manifests
    /// of every release from `r + 1` to `r + n` (the vendor numbers releases consecutively).
    NMinus {
        /// How many releases behind (1 for "N-1").
        n: u32,
    },
    /// Nothing new lands until the owner signs another policy.
    Paused,
}

impl std::fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyMode::Latest => write!(f, "latest"),
            PolicyMode::Pin {
                release,
                manifest_hash: Some(hash),
            } => write!(
                f,
                "pinned to release {release} (manifest {})",
                crate::text::Escaped(hash.get(..16).unwrap_or(hash))
            ),
            PolicyMode::Pin {
                release,
                manifest_hash: None,
            } => write!(f, "pinned to release {release} (no manifest hash)"),
            PolicyMode::NMinus { n } => write!(f, "N-{n}"),
            PolicyMode::Paused => write!(f, "paused"),
        }
    }
}

/// Why a policy does not let a release in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// The owner paused updates.
    #[error(
        "release {release} refused: the owner's policy (version {policy}) pauses content updates"
    )]
    Paused {
        /// The release offered.
        release: u64,
        /// The policy's version.
        policy: u64,
    },
    /// The owner pinned another release.
    #[error(
        "release {release} refused: the owner's policy (version {policy}) pins release {pinned}"
    )]
    Pinned {
        /// The release offered.
        release: u64,
        /// The pinned release.
        pinned: u64,
        /// The policy's version.
        policy: u64,
    },
    /// The release has the pinned number but not the pinned manifest (or the pin names none).
    #[error(
        "release {release} refused: the owner's policy (version {policy}) pins release {release} with manifest {}, and this manifest is {offered}",
        pinned_hash.as_deref().map(crate::text::Escaped).map_or_else(|| "(none named: sign the pin again with the hash)".to_owned(), |h| h.to_string())
    )]
    PinnedOtherContent {
        /// The release offered.
        release: u64,
        /// The manifest hash the pin names, if any.
        pinned_hash: Option<String>,
        /// The offered manifest's hash.
        offered: String,
        /// The policy's version.
        policy: u64,
    },
    /// The release is too new for an N-k policy: not all of the `n` releases after it were seen.
    #[error(
        "release {release} refused: the owner's policy (version {policy}) is N-{n}, and this host has not seen release {missing} yet (releases {release}+1 to {release}+{n} must have been published)"
    )]
    TooNew {
        /// The release offered.
        release: u64,
        /// How many releases behind.
        n: u32,
        /// The first release after it that this host has not seen.
        missing: u64,
        /// The policy's version.
        policy: u64,
    },
    /// The release is younger than the policy's delay, counted from when this host first saw it.
    #[error(
        "release {release} refused: the owner's policy (version {policy}) delays content by {delay_hours} h from when this host first saw it ({first_seen_unix}); it may land from {until_unix} (now {now_unix})"
    )]
    Delayed {
        /// The release offered.
        release: u64,
        /// The delay.
        delay_hours: u32,
        /// When this host first saw the release.
        first_seen_unix: u64,
        /// When it may land.
        until_unix: u64,
        /// The host's clock.
        now_unix: u64,
        /// The policy's version.
        policy: u64,
    },
}

/// One release whose verified manifest this host saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenRelease {
    /// When this host first saw it, seconds since the Unix epoch.
    pub first_seen_unix: u64,
    /// The canonical hash of the manifest first seen under that number.
    pub manifest_hash: String,
}

/// The releases whose verified manifest this host saw (`policy-state.json`): what N-k and the delay
/// are decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenReleases {
    /// By release number.
    #[serde(default)]
    pub seen: BTreeMap<u64, SeenRelease>,
    /// The newest release seen, as an earlier version of this file recorded it (read, never
    /// written; it proves nothing about the releases before it).
    #[serde(default, skip_serializing)]
    pub newest_published: Option<u64>,
}

impl SeenReleases {
    /// Records that a verified manifest of `release` with `manifest_hash` was seen at `now_unix`
    /// (the first sighting of a number is the one kept), forgetting releases at or below `floor`
    /// (the highest accepted release) and, beyond [`MAX_SEEN_RELEASES`], the highest numbers.
    /// Returns whether anything changed.
    pub fn record(
        &mut self,
        release: u64,
        manifest_hash: &str,
        now_unix: u64,
        floor: Option<u64>,
    ) -> bool {
        let mut changed = false;
        if let std::collections::btree_map::Entry::Vacant(slot) = self.seen.entry(release) {
            slot.insert(SeenRelease {
                first_seen_unix: now_unix,
                manifest_hash: manifest_hash.to_owned(),
            });
            changed = true;
        }
        if let Some(floor) = floor {
            // Releases below the floor never install again; the ones the floor is made of still
            // count as published for N-k.
            let below: Vec<u64> = self.seen.range(..floor).map(|(r, _)| *r).collect();
            for r in below {
                self.seen.remove(&r);
                changed = true;
            }
        }
        while self.seen.len() > MAX_SEEN_RELEASES {
            self.seen.pop_last();
            changed = true;
        }
        changed
    }

    /// When this host first saw `release` (`None`: never).
    pub fn first_seen(&self, release: u64) -> Option<u64> {
        self.seen.get(&release).map(|s| s.first_seen_unix)
    }

    /// The first of `release + 1 ..= release + n` not seen, if any.
    pub fn missing_after(&self, release: u64, n: u32) -> Option<u64> {
        (1..=u64::from(n))
            .map(|k| release.saturating_add(k))
            .find(|r| !self.seen.contains_key(r))
    }
}

impl CustomerPolicy {
    /// Whether release `release`, whose manifest hash is `manifest_hash`, may land at `now_unix`
    /// given what this host has `seen` (the release itself included: it is recorded before the
    /// decision). Pure: the endpoint's decision, shared by [`ContentStore::install`] and the fleet
    /// simulation.
    pub fn permits(
        &self,
        release: u64,
        manifest_hash: &str,
        seen: &SeenReleases,
        now_unix: u64,
    ) -> Result<(), PolicyViolation> {
        let policy = self.version;
        match &self.mode {
            PolicyMode::Latest => {}
            PolicyMode::Paused => return Err(PolicyViolation::Paused { release, policy }),
            PolicyMode::Pin {
                release: pinned, ..
            } if *pinned != release => {
                return Err(PolicyViolation::Pinned {
                    release,
                    pinned: *pinned,
                    policy,
                });
            }
            PolicyMode::Pin {
                manifest_hash: pinned_hash,
                ..
            } => {
                if pinned_hash.as_deref() != Some(manifest_hash) {
                    return Err(PolicyViolation::PinnedOtherContent {
                        release,
                        pinned_hash: pinned_hash.clone(),
                        offered: manifest_hash.to_owned(),
                        policy,
                    });
                }
            }
            PolicyMode::NMinus { n } => {
                if let Some(missing) = seen.missing_after(release, *n) {
                    return Err(PolicyViolation::TooNew {
                        release,
                        n: *n,
                        missing,
                        policy,
                    });
                }
            }
        }
        let first_seen_unix = seen.first_seen(release).unwrap_or(now_unix);
        let until_unix = first_seen_unix.saturating_add(u64::from(self.delay_hours) * 3600);
        if now_unix < until_unix {
            return Err(PolicyViolation::Delayed {
                release,
                delay_hours: self.delay_hours,
                first_seen_unix,
                until_unix,
                now_unix,
                policy,
            });
        }
        Ok(())
    }
}

/// Why a policy operation failed, or a release was refused by the policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The owner's policy does not let the release in.
    #[error(transparent)]
    Refused(#[from] PolicyViolation),
    /// A policy was given but no owner root is installed to verify it.
    #[error("no owner root is installed in this store; install the owner's root before a policy")]
    NoOwnerRoot,
    /// The owner root is invalid, or a new one was refused.
    #[error("owner root: {0}")]
    OwnerRoot(RootError),
    /// The owner root and the content root share a signing key: the vendor could sign the owner's
    /// policy. Refused whichever of the two is installed second.
    #[error(
        "the owner root and the content root share the signing key `{}`: the owner's policy must be signed by keys the vendor does not hold",
        crate::text::Escaped(keyid)
    )]
    SharedKey {
        /// The key id in both roots.
        keyid: String,
    },
    /// The policy does not parse.
    #[error("policy does not parse: {0}")]
    Parse(serde_json::Error),
    /// An unknown format.
    #[error("policy format {found} is not supported (this runtime reads {POLICY_FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// The signatures do not meet the owner root's threshold (a vendor key is not an owner key).
    #[error("policy version {version} is not signed by the owner: {error}")]
    Signature {
        /// The policy's version.
        version: u64,
        /// What failed.
        error: SignatureError,
    },
    /// A policy not newer than the installed one.
    #[error("policy version {found} is not newer than the installed policy version {installed}")]
    NotNewer {
        /// The version offered.
        found: u64,
        /// The version installed.
        installed: u64,
    },
    /// A policy file is larger than accepted or not a regular file.
    #[error("`{}`: {problem}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Refuses an owner root that shares a signing key with the content root.
pub(crate) fn check_roots_apart(content: &Root, owner: &Root) -> Result<(), PolicyError> {
    match owner.keys.keys().find(|id| content.keys.contains_key(*id)) {
        Some(keyid) => Err(PolicyError::SharedKey {
            keyid: keyid.clone(),
        }),
        None => Ok(()),
    }
}

/// Verifies a policy envelope against an owner root.
pub fn verify_policy(bytes: &[u8], owner_root: &Root) -> Result<CustomerPolicy, PolicyError> {
    let envelope: Signed<CustomerPolicy> =
        serde_json::from_slice(bytes).map_err(PolicyError::Parse)?;
    let policy = envelope.signed;
    if policy.format != POLICY_FORMAT {
        return Err(PolicyError::Format {
            found: policy.format,
        });
    }
    let keys = owner_root.verifying_keys().map_err(|problem| {
        PolicyError::OwnerRoot(RootError::Invalid {
            version: owner_root.version,
            problem,
        })
    })?;
    let message = signing_bytes(&policy).map_err(PolicyError::Parse)?;
    check_threshold(&message, &envelope.signatures, &keys, owner_root.threshold).map_err(
        |error| PolicyError::Signature {
            version: policy.version,
            error,
        },
    )?;
    Ok(policy)
}

fn read_small(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, StoreError> {
    match read_capped(path, cap) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(CappedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(CappedReadError::Io(error)) => Err(StoreError::Io {
            path: path.to_path_buf(),
            error,
        }),
        Err(CappedReadError::NotAFile) => Err(PolicyError::File {
            path: path.to_path_buf(),
            problem: "not a regular file".to_owned(),
        }
        .into()),
        Err(CappedReadError::TooLarge { size }) => Err(PolicyError::File {
            path: path.to_path_buf(),
            problem: format!("{size} bytes; the limit is {cap}"),
        }
        .into()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic(path, bytes).map_err(|error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    })
}

impl ContentStore {
    /// The installed owner root, checked (valid, signed by a threshold of its own keys, and sharing
    /// no key with the content root), if any.
    pub fn owner_root(&self) -> Result<Option<Root>, StoreError> {
        match read_small(&self.layout().owner_root(), MAX_POLICY_BYTES)? {
            None => Ok(None),
            Some(bytes) => {
                let owner = parse_trusted_root(&bytes).map_err(PolicyError::OwnerRoot)?;
                check_roots_apart(&self.root, &owner)?;
                Ok(Some(owner))
            }
        }
    }

    /// Installs the owner's root of trust. The first one is taken as given (enrolment: the owner
    /// installs it together with the agent) and must be signed by a threshold of its own keys; a
    /// later one must follow the root-rotation rule (exactly one version newer, signed by a threshold
    /// of the installed owner root's keys and of its own). A root that shares a key with the content
    /// root (the content root itself, say) is refused with [`PolicyError::SharedKey`].
    pub fn set_owner_root(&mut self, envelope_bytes: &[u8]) -> Result<Root, StoreError> {
        self.writable()?;
        let root = match self.owner_root()? {
            None => parse_trusted_root(envelope_bytes),
            Some(current) => update_root(&current, envelope_bytes),
        }
        .map_err(PolicyError::OwnerRoot)?;
        check_roots_apart(&self.root, &root)?;
        write_file(&self.layout().owner_root(), envelope_bytes)?;
        Ok(root)
    }

    /// Installs a policy signed by the owner: verified against the owner root, and only if its
    /// version is above the installed policy's.
    pub fn set_policy(&mut self, envelope_bytes: &[u8]) -> Result<CustomerPolicy, StoreError> {
        self.writable()?;
        let owner = self.owner_root()?.ok_or(PolicyError::NoOwnerRoot)?;
        let policy = verify_policy(envelope_bytes, &owner)?;
        if let Some(installed) = self.policy()?
            && policy.version <= installed.version
        {
            return Err(PolicyError::NotNewer {
                found: policy.version,
                installed: installed.version,
            }
            .into());
        }
        write_file(&self.layout().policy(), envelope_bytes)?;
        tracing::info!(version = policy.version, mode = %policy.mode, "installed the owner's policy");
        Ok(policy)
    }

    /// The installed policy, re-verified against the owner root; `None` if there is none. A policy
    /// file without an owner root, or one that no longer verifies, is an error (never ignored: a
    /// host whose policy cannot be read refuses new content rather than take it against the owner's
    /// wishes).
    pub fn policy(&self) -> Result<Option<CustomerPolicy>, StoreError> {
        let Some(bytes) = read_small(&self.layout().policy(), MAX_POLICY_BYTES)? else {
            return Ok(None);
        };
        let owner = self.owner_root()?.ok_or(PolicyError::NoOwnerRoot)?;
        Ok(Some(verify_policy(&bytes, &owner)?))
    }

    /// The releases whose verified manifest this host saw (`policy-state.json`; empty if none is
    /// recorded). The newest release an earlier version of the file recorded counts as seen long
    /// ago (it proves that release exists, nothing about the ones before it).
    pub fn seen_releases(&self) -> Result<SeenReleases, StoreError> {
        let path = self.layout().policy_state();
        let Some(bytes) = read_small(&path, MAX_POLICY_STATE_BYTES)? else {
            return Ok(SeenReleases::default());
        };
        let mut seen: SeenReleases =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path,
                problem: e.to_string(),
            })?;
        if let Some(newest) = seen.newest_published.take() {
            seen.seen.entry(newest).or_insert(SeenRelease {
                first_seen_unix: 0,
                manifest_hash: String::new(),
            });
        }
        Ok(seen)
    }

    /// The install-time check: `bundle` has passed every signature and format check. With no
    /// policy installed, everything passes and nothing is written. With one, the release is recorded
    /// as seen (an authenticated manifest proves the release exists; the first sighting is when its
    /// delay starts) and the policy decides.
    pub(super) fn check_policy(
        &mut self,
        bundle: &VerifiedBundle,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        let Some(policy) = self.policy()? else {
            return Ok(());
        };
        let mut seen = self.seen_releases()?;
        let release = bundle.release();
        if seen.record(
            release,
            bundle.manifest_hash(),
            now_unix,
            self.state.highest_release,
        ) {
            let bytes = serde_json::to_vec(&seen).map_err(|error| StoreError::Encode {
                what: POLICY_STATE_FILE,
                error,
            })?;
            write_file(&self.layout().policy_state(), &bytes)?;
        }
        policy
            .permits(release, bundle.manifest_hash(), &seen, now_unix)
            .map_err(|v| PolicyError::Refused(v).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::store::tests::{install, new_store};
    use crate::content::testutil::{
        NOW, key, manifest, modules, root, root_bytes, sign, standard_bundle, write_bundle,
    };

    const HOUR: u64 = 3600;

    /// The owner's key is 7; the vendor's (content root) key is 1.
    fn owner_store() -> (tempfile::TempDir, ContentStore) {
        let (tmp, mut store) = new_store();
        store
            .set_owner_root(&root_bytes(&root(1, &[&key(7)], 1), &[&key(7)]))
            .unwrap();
        (tmp, store)
    }

    fn policy(version: u64, mode: PolicyMode, delay_hours: u32) -> CustomerPolicy {
        CustomerPolicy {
            format: POLICY_FORMAT,
            version,
            issued_unix: NOW,
            mode,
            delay_hours,
            notes: String::new(),
        }
    }

    fn signed(p: &CustomerPolicy, signer: u8) -> Vec<u8> {
        serde_json::to_vec(&sign(p, &[&key(signer)])).unwrap()
    }

    /// A standard release `release` (notes `notes`, built `created_unix`), signed by the vendor.
    fn bundle(release: u64, notes: &str, created_unix: u64) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let mods = modules();
        let mut m = manifest(release, &mods);
        m.notes = notes.to_owned();
        m.created_unix = created_unix;
        let bytes: Vec<&[u8]> = mods.iter().map(|(_, b)| *b).collect();
        write_bundle(dir.path(), &m, &[&key(1)], &bytes);
        let hash = crate::content::manifest_hash(&m).unwrap();
        (dir, hash)
    }

    fn push_at(store: &mut ContentStore, release: u64, now: u64) -> Result<InstallOk, StoreError> {
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), release, &[&key(1)]);
        store
            .install(bundle.path(), now)
            .map(|o| InstallOk(o.release))
    }

    fn push(store: &mut ContentStore, release: u64) -> Result<InstallOk, StoreError> {
        push_at(store, release, NOW)
    }

    #[derive(Debug, PartialEq)]
    struct InstallOk(u64);

    fn seen(releases: &[u64]) -> SeenReleases {
        let mut seen = SeenReleases::default();
        for &r in releases {
            seen.record(r, "h", NOW - HOUR, None);
        }
        seen
    }

    #[test]
    fn the_policy_function_decides_each_mode() {
        let p = policy(1, PolicyMode::Latest, 0);
        assert_eq!(p.permits(5, "h", &seen(&[5]), NOW), Ok(()));
        let pin = |hash: Option<&str>| PolicyMode::Pin {
            release: 4,
            manifest_hash: hash.map(str::to_owned),
        };
        let p = policy(1, pin(Some("h4")), 0);
        assert_eq!(p.permits(4, "h4", &seen(&[4, 9]), NOW), Ok(()));
        assert!(matches!(
            p.permits(5, "h5", &seen(&[5]), NOW),
            Err(PolicyViolation::Pinned { pinned: 4, .. })
        ));
        assert!(matches!(
            p.permits(4, "other", &seen(&[4]), NOW),
            Err(PolicyViolation::PinnedOtherContent { release: 4, .. })
        ));
        // A pin written before pins named content lets nothing land.
        let p = policy(1, pin(None), 0);
        let err = p.permits(4, "h4", &seen(&[4]), NOW).unwrap_err();
        assert!(err.to_string().contains("sign the pin again"), "{err}");
        let p = policy(1, PolicyMode::NMinus { n: 1 }, 0);
        assert!(matches!(
            p.permits(5, "h", &seen(&[5]), NOW),
            Err(PolicyViolation::TooNew { missing: 6, .. })
        ));
        assert_eq!(p.permits(5, "h", &seen(&[5, 6]), NOW), Ok(()));
        let p = policy(1, PolicyMode::NMinus { n: 2 }, 0);
        assert!(matches!(
            p.permits(5, "h", &seen(&[5, 7]), NOW),
            Err(PolicyViolation::TooNew { missing: 6, .. })
        ));
        let p = policy(1, PolicyMode::Paused, 0);
        assert!(matches!(
            p.permits(5, "h", &seen(&[5]), NOW),
            Err(PolicyViolation::Paused { .. })
        ));
        let p = policy(1, PolicyMode::Latest, 2);
        let first = NOW - HOUR;
        let err = p.permits(5, "h", &seen(&[5]), NOW).unwrap_err();
        assert!(err.to_string().contains("delays content by 2 h"), "{err}");
        assert_eq!(p.permits(5, "h", &seen(&[5]), first + 2 * HOUR), Ok(()));
    }

    #[test]
    fn a_vendor_push_that_breaks_the_signed_policy_is_refused_by_the_store() {
        let (_tmp, mut store) = owner_store();
        let one = install(&mut store, 1);
        let pin = PolicyMode::Pin {
            release: 1,
            manifest_hash: Some(one.bundle.manifest_hash().to_owned()),
        };
        store.set_policy(&signed(&policy(1, pin, 0), 7)).unwrap();
        let err = push(&mut store, 2).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Policy(PolicyError::Refused(PolicyViolation::Pinned {
                    release: 2,
                    pinned: 1,
                    ..
                }))
            ),
            "{err}"
        );
        assert!(err.to_string().contains("pins release 1"), "{err}");
        assert_eq!(store.state().current, Some(1));
        assert_eq!(store.state().highest_release, Some(1));

        // N-1: release 3 is refused while it is the newest, but it makes release 2 acceptable.
        store
            .set_policy(&signed(&policy(2, PolicyMode::NMinus { n: 1 }, 0), 7))
            .unwrap();
        assert!(matches!(
            push(&mut store, 3),
            Err(StoreError::Policy(PolicyError::Refused(
                PolicyViolation::TooNew { release: 3, .. }
            )))
        ));
        assert!(store.seen_releases().unwrap().seen.contains_key(&3));
        assert_eq!(push(&mut store, 2).unwrap(), InstallOk(2));

        // Paused: nothing lands.
        store
            .set_policy(&signed(&policy(3, PolicyMode::Paused, 0), 7))
            .unwrap();
        assert!(matches!(
            push(&mut store, 4),
            Err(StoreError::Policy(PolicyError::Refused(
                PolicyViolation::Paused { .. }
            )))
        ));
        assert_eq!(store.state().current, Some(2));
    }

    #[test]
    fn n_minus_1_is_not_defeated_by_one_manifest_with_a_huge_release_number() {
        let (_tmp, mut store) = owner_store();
        install(&mut store, 1);
        store
            .set_policy(&signed(&policy(1, PolicyMode::NMinus { n: 1 }, 0), 7))
            .unwrap();
        // The attack: one signed manifest numbered far ahead, refused by the policy ...
        assert!(matches!(
            push(&mut store, 900_000),
            Err(StoreError::Policy(PolicyError::Refused(
                PolicyViolation::TooNew { .. }
            )))
        ));
        // ... must not make every release below it eligible for good: 2 is still the newest
        // release this host knows of.
        assert!(matches!(
            push(&mut store, 2),
            Err(StoreError::Policy(PolicyError::Refused(
                PolicyViolation::TooNew {
                    release: 2,
                    missing: 3,
                    ..
                }
            )))
        ));
        // A number past the step bound is refused before the policy even records it.
        assert!(matches!(
            push(&mut store, u64::MAX),
            Err(StoreError::Bundle(
                crate::content::BundleError::TooFarAhead { .. }
            ))
        ));
        assert!(!store.seen_releases().unwrap().seen.contains_key(&u64::MAX));
        // The vendor publishes 3: now 2 lands, and N-1 goes on as before.
        assert!(push(&mut store, 3).is_err());
        assert_eq!(push(&mut store, 2).unwrap(), InstallOk(2));
        assert_eq!(store.state().current, Some(2));
    }

    #[test]
    fn a_policy_state_of_an_earlier_version_counts_only_its_newest_release_as_seen() {
        let (_tmp, mut store) = owner_store();
        install(&mut store, 1);
        store
            .set_policy(&signed(&policy(1, PolicyMode::NMinus { n: 1 }, 0), 7))
            .unwrap();
        std::fs::write(
            store.layout().policy_state(),
            br#"{"newest_published":900000}"#,
        )
        .unwrap();
        let seen = store.seen_releases().unwrap();
        assert_eq!(seen.first_seen(900_000), Some(0));
        assert_eq!(seen.seen.len(), 1);
        // Release 2 is still refused: only 900000 is known to exist.
        assert!(matches!(
            push(&mut store, 2),
            Err(StoreError::Policy(PolicyError::Refused(
                PolicyViolation::TooNew { missing: 3, .. }
            )))
        ));
        // Written back in the new form.
        let text = std::fs::read_to_string(store.layout().policy_state()).unwrap();
        assert!(!text.contains("newest_published"), "{text}");
    }

    #[test]
    fn the_delay_runs_from_when_this_host_first_saw_the_release() {
        let (_tmp, mut store) = owner_store();
        install(&mut store, 1);
        store
            .set_policy(&signed(&policy(1, PolicyMode::Latest, 2), 7))
            .unwrap();
        // The vendor signs a build time ten days ago: the delay must not be over already.
        let (old, _) = bundle(2, "backdated", NOW - 10 * 24 * HOUR);
        assert!(matches!(
            store.install(old.path(), NOW),
            Err(StoreError::Policy(PolicyError::Refused(
                PolicyViolation::Delayed {
                    first_seen_unix: NOW,
                    ..
                }
            )))
        ));
        // Seen again an hour later: still the first sighting that counts.
        assert!(store.install(old.path(), NOW + HOUR).is_err());
        assert_eq!(
            store.seen_releases().unwrap().first_seen(2),
            Some(NOW),
            "the first sighting is kept"
        );
        // Two hours after this host first saw it, it lands.
        assert_eq!(
            store.install(old.path(), NOW + 2 * HOUR).unwrap().release,
            2
        );
    }

    #[test]
    fn a_pin_names_the_manifest_not_just_the_release_number() {
        let (_tmp, mut store) = owner_store();
        install(&mut store, 1);
        let (wanted, hash) = bundle(2, "the one the owner reviewed", NOW - 60);
        let (impostor, other) = bundle(2, "another manifest under the same number", NOW - 60);
        assert_ne!(hash, other);
        let pin = PolicyMode::Pin {
            release: 2,
            manifest_hash: Some(hash.clone()),
        };
        store.set_policy(&signed(&policy(1, pin, 0), 7)).unwrap();
        let err = store.install(impostor.path(), NOW).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Policy(PolicyError::Refused(PolicyViolation::PinnedOtherContent {
                    release: 2,
                    offered,
                    ..
                })) if *offered == other
            ),
            "{err}"
        );
        assert_eq!(store.state().current, Some(1));
        assert_eq!(store.install(wanted.path(), NOW).unwrap().release, 2);
        assert_eq!(store.state().installed[&2], hash);
    }

    #[test]
    fn the_content_root_is_never_accepted_as_the_owner_root() {
        let (_tmp, mut store) = new_store();
        // The vendor's own root (key 1) offered as the owner's: refused.
        let content_root = root_bytes(&root(1, &[&key(1)], 1), &[&key(1)]);
        let err = store.set_owner_root(&content_root).unwrap_err();
        assert!(
            matches!(err, StoreError::Policy(PolicyError::SharedKey { .. })),
            "{err}"
        );
        // Sharing one key is enough to be refused.
        let mixed = root_bytes(&root(1, &[&key(1), &key(7)], 1), &[&key(7)]);
        assert!(matches!(
            store.set_owner_root(&mixed),
            Err(StoreError::Policy(PolicyError::SharedKey { .. }))
        ));
        assert_eq!(store.owner_root().unwrap(), None);
        // An owner root put in place by other means is refused when read, so no policy it signs
        // is obeyed.
        std::fs::write(store.layout().owner_root(), &content_root).unwrap();
        assert!(matches!(
            store.owner_root(),
            Err(StoreError::Policy(PolicyError::SharedKey { .. }))
        ));
        std::fs::remove_file(store.layout().owner_root()).unwrap();
        // And the content root cannot rotate into the owner's keys.
        store
            .set_owner_root(&root_bytes(&root(1, &[&key(7)], 1), &[&key(7)]))
            .unwrap();
        let v2 = root(2, &[&key(1), &key(7)], 1);
        let err = store
            .update_root(&root_bytes(&v2, &[&key(1), &key(7)]))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Policy(PolicyError::SharedKey { .. })),
            "{err}"
        );
        assert_eq!(store.root().version, 1);
    }

    #[test]
    fn only_the_owner_can_sign_and_an_older_policy_never_replaces_a_newer_one() {
        let (_tmp, mut store) = new_store();
        // No owner root: a policy cannot be installed.
        let err = store
            .set_policy(&signed(&policy(1, PolicyMode::Latest, 0), 7))
            .unwrap_err();
        assert!(matches!(err, StoreError::Policy(PolicyError::NoOwnerRoot)));
        let (_tmp, mut store) = owner_store();
        // Signed by the vendor's key: refused.
        let err = store
            .set_policy(&signed(&policy(1, PolicyMode::Latest, 0), 1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Policy(PolicyError::Signature {
                    error: SignatureError::UnknownKey { .. },
                    ..
                })
            ),
            "{err}"
        );
        // Tampered after signing.
        let mut envelope = sign(&policy(1, PolicyMode::Paused, 0), &[&key(7)]);
        envelope.signed.mode = PolicyMode::Latest;
        let err = store
            .set_policy(&serde_json::to_vec(&envelope).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Policy(PolicyError::Signature {
                    error: SignatureError::BadSignature { .. },
                    ..
                })
            ),
            "{err}"
        );
        store
            .set_policy(&signed(&policy(5, PolicyMode::Paused, 0), 7))
            .unwrap();
        let err = store
            .set_policy(&signed(&policy(4, PolicyMode::Latest, 0), 7))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Policy(PolicyError::NotNewer {
                    found: 4,
                    installed: 5
                })
            ),
            "{err}"
        );
        // A policy file altered on disk is not obeyed silently: installs are refused.
        let path = store.layout().policy();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"paused\"", "\"latest\"")).unwrap();
        assert!(matches!(
            push(&mut store, 1),
            Err(StoreError::Policy(PolicyError::Signature { .. }))
        ));
        assert_eq!(store.state().current, None);
    }
}
