//! Customer policies, enforced on the endpoint: the host's owner decides when content lands (pin a
//! release, stay N releases behind, delay by hours, pause), signs the decision with **their own**
//! key, and the agent refuses a vendor push that breaks it. The vendor's keys cannot sign a policy:
//! the policy is verified against the **owner root** the owner installed on the host at enrolment,
//! not against the content root.
//!
//! ```text
//! STORE/
//!   owner-root.json     the owner's root of trust (same format as root.json; rotation by the same rule)
//!   policy.json         Signed<CustomerPolicy>, re-verified against owner-root.json at every use
//!   policy-state.json   {"newest_published": n}: the newest release whose signed manifest this host saw
//! ```
//!
//! [`ContentStore::install`] calls the check after the bundle's own verification and before anything
//! is written: a release the policy does not allow is refused with [`StoreError::Policy`]
//! ([`PolicyError::Refused`]), the store keeps its content, and the agent reports the refusal like any
//! other. Reverts and rollbacks go back to content the host already had and are never blocked by a
//! policy.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::format::{Manifest, Root, Signable, Signed, signing_bytes};
use super::fsutil::{CappedReadError, read_capped, write_atomic};
use super::layout::POLICY_STATE_FILE;
use super::store::{ContentStore, StoreError};
use super::verify::{RootError, SignatureError, check_threshold, parse_trusted_root, update_root};

/// Domain-separation context prefixed to a policy's canonical bytes before signing.
pub const CONTEXT_POLICY: &[u8] = b"rulebox-policy-v1\0";
/// The policy format this runtime reads ([`CustomerPolicy::format`]).
pub const POLICY_FORMAT: u32 = 1;
/// Largest policy or owner-root file read, in bytes.
const MAX_POLICY_BYTES: u64 = 64 << 10;

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
    /// A release may land only this many hours after it was built (its manifest's `created_unix`).
    pub delay_hours: u32,
    /// Notes for people.
    pub notes: String,
}

impl Signable for CustomerPolicy {
    const CONTEXT: &'static [u8] = CONTEXT_POLICY;
}

/// Which releases a policy lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum PolicyMode {
    /// Every release the vendor publishes (subject to `delay_hours`).
    Latest,
    /// Only this release.
    Pin {
        /// The pinned release.
        release: u64,
    },
    /// Stay `n` releases behind the newest published release: release `r` lands only once the host
    /// has seen a signed manifest of release `r + n` or later (the vendor numbers releases
    /// consecutively).
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
            PolicyMode::Pin { release } => write!(f, "pinned to release {release}"),
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
    /// The release is too new for an N-k policy.
    #[error(
        "release {release} refused: the owner's policy (version {policy}) is N-{n} and the newest published release is {newest}, so at most release {allowed} may land"
    )]
    TooNew {
        /// The release offered.
        release: u64,
        /// How many releases behind.
        n: u32,
        /// The newest release seen.
        newest: u64,
        /// The newest release allowed (`newest - n`; 0 if none).
        allowed: u64,
        /// The policy's version.
        policy: u64,
    },
    /// The release is younger than the policy's delay.
    #[error(
        "release {release} refused: the owner's policy (version {policy}) delays content by {delay_hours} h; it may land from {until_unix} (now {now_unix})"
    )]
    Delayed {
        /// The release offered.
        release: u64,
        /// The delay.
        delay_hours: u32,
        /// When it may land.
        until_unix: u64,
        /// The host's clock.
        now_unix: u64,
        /// The policy's version.
        policy: u64,
    },
}

impl CustomerPolicy {
    /// Whether release `release`, built at `created_unix`, may land at `now_unix` when the newest
    /// release this host has seen a signed manifest of is `newest_published`. Pure: the endpoint's
    /// decision, shared by [`ContentStore::install`] and the fleet simulation.
    pub fn permits(
        &self,
        release: u64,
        created_unix: u64,
        newest_published: u64,
        now_unix: u64,
    ) -> Result<(), PolicyViolation> {
        let policy = self.version;
        match self.mode {
            PolicyMode::Latest => {}
            PolicyMode::Paused => return Err(PolicyViolation::Paused { release, policy }),
            PolicyMode::Pin { release: pinned } if pinned != release => {
                return Err(PolicyViolation::Pinned {
                    release,
                    pinned,
                    policy,
                });
            }
            PolicyMode::Pin { .. } => {}
            PolicyMode::NMinus { n } => {
                let newest = newest_published.max(release);
                let allowed = newest.saturating_sub(u64::from(n));
                if release > allowed {
                    return Err(PolicyViolation::TooNew {
                        release,
                        n,
                        newest,
                        allowed,
                        policy,
                    });
                }
            }
        }
        let until_unix = created_unix.saturating_add(u64::from(self.delay_hours) * 3600);
        if now_unix < until_unix {
            return Err(PolicyViolation::Delayed {
                release,
                delay_hours: self.delay_hours,
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
    OwnerRoot(#[source] RootError),
    /// The policy does not parse.
    #[error("policy does not parse: {0}")]
    Parse(#[source] serde_json::Error),
    /// An unknown format.
    #[error("policy format {found} is not supported (this runtime reads {POLICY_FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// The signatures do not meet the owner root's threshold (a vendor key is not an owner key).
    #[error("policy version {version} is not signed by the owner: {source}")]
    Signature {
        /// The policy's version.
        version: u64,
        /// What failed.
        source: SignatureError,
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

/// The persisted newest release seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyState {
    newest_published: u64,
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
        |source| PolicyError::Signature {
            version: policy.version,
            source,
        },
    )?;
    Ok(policy)
}

fn read_small(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match read_capped(path, MAX_POLICY_BYTES) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(CappedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(CappedReadError::Io(source)) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
        Err(CappedReadError::NotAFile) => Err(PolicyError::File {
            path: path.to_path_buf(),
            problem: "not a regular file".to_owned(),
        }
        .into()),
        Err(CappedReadError::TooLarge { size }) => Err(PolicyError::File {
            path: path.to_path_buf(),
            problem: format!("{size} bytes; the limit is {MAX_POLICY_BYTES}"),
        }
        .into()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic(path, bytes).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl ContentStore {
    /// The installed owner root, checked (valid and signed by a threshold of its own keys), if any.
    pub fn owner_root(&self) -> Result<Option<Root>, StoreError> {
        match read_small(&self.layout().owner_root())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(
                parse_trusted_root(&bytes).map_err(PolicyError::OwnerRoot)?,
            )),
        }
    }

    /// Installs the owner's root of trust. The first one is taken as given (enrolment: the owner
    /// installs it together with the agent) and must be signed by a threshold of its own keys; a
    /// later one must follow the root-rotation rule (exactly one version newer, signed by a threshold
    /// of the installed owner root's keys and of its own).
    pub fn set_owner_root(&mut self, envelope_bytes: &[u8]) -> Result<Root, StoreError> {
        self.writable()?;
        let root = match self.owner_root()? {
            None => parse_trusted_root(envelope_bytes),
            Some(current) => update_root(&current, envelope_bytes),
        }
        .map_err(PolicyError::OwnerRoot)?;
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
        let Some(bytes) = read_small(&self.layout().policy())? else {
            return Ok(None);
        };
        let owner = self.owner_root()?.ok_or(PolicyError::NoOwnerRoot)?;
        Ok(Some(verify_policy(&bytes, &owner)?))
    }

    /// The newest release whose verified manifest this host has seen (0 if none recorded).
    pub fn newest_published(&self) -> Result<u64, StoreError> {
        let path = self.layout().policy_state();
        match read_small(&path)? {
            None => Ok(0),
            Some(bytes) => serde_json::from_slice::<PolicyState>(&bytes)
                .map(|s| s.newest_published)
                .map_err(|e| StoreError::Corrupt {
                    path,
                    problem: e.to_string(),
                }),
        }
    }

    /// The install-time check: `manifest` has passed every signature and format check. With no
    /// policy installed, everything passes and nothing is written. With one, the newest published
    /// release seen is updated (an authenticated manifest proves the release exists) and the policy
    /// decides.
    pub(super) fn check_policy(
        &mut self,
        manifest: &Manifest,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        let Some(policy) = self.policy()? else {
            return Ok(());
        };
        let seen = self.newest_published()?;
        let newest = seen.max(manifest.release);
        if newest > seen {
            let bytes = serde_json::to_vec(&PolicyState {
                newest_published: newest,
            })
            .map_err(|source| StoreError::Encode {
                what: POLICY_STATE_FILE,
                source,
            })?;
            write_file(&self.layout().policy_state(), &bytes)?;
        }
        policy
            .permits(manifest.release, manifest.created_unix, newest, now_unix)
            .map_err(|v| PolicyError::Refused(v).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::store::tests::{install, new_store};
    use crate::content::testutil::{NOW, key, root, root_bytes, sign, standard_bundle};

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

    fn push(store: &mut ContentStore, release: u64) -> Result<InstallOk, StoreError> {
        let bundle = tempfile::tempdir().unwrap();
        standard_bundle(bundle.path(), release, &[&key(1)]);
        store
            .install(bundle.path(), NOW)
            .map(|o| InstallOk(o.release))
    }

    #[derive(Debug, PartialEq)]
    struct InstallOk(u64);

    #[test]
    fn the_policy_function_decides_each_mode() {
        let created = NOW - 60;
        let p = policy(1, PolicyMode::Latest, 0);
        assert_eq!(p.permits(5, created, 5, NOW), Ok(()));
        let p = policy(1, PolicyMode::Pin { release: 4 }, 0);
        assert_eq!(p.permits(4, created, 9, NOW), Ok(()));
        assert!(matches!(
            p.permits(5, created, 5, NOW),
            Err(PolicyViolation::Pinned { pinned: 4, .. })
        ));
        let p = policy(1, PolicyMode::NMinus { n: 1 }, 0);
        assert!(matches!(
            p.permits(5, created, 4, NOW),
            Err(PolicyViolation::TooNew {
                newest: 5,
                allowed: 4,
                ..
            })
        ));
        assert_eq!(p.permits(5, created, 6, NOW), Ok(()));
        let p = policy(1, PolicyMode::Paused, 0);
        assert!(matches!(
            p.permits(5, created, 5, NOW),
            Err(PolicyViolation::Paused { .. })
        ));
        let p = policy(1, PolicyMode::Latest, 2);
        let err = p.permits(5, created, 5, NOW).unwrap_err();
        assert!(err.to_string().contains("delays content by 2 h"), "{err}");
        assert_eq!(p.permits(5, created, 5, created + 2 * 3600), Ok(()));
    }

    #[test]
    fn a_vendor_push_that_breaks_the_signed_policy_is_refused_by_the_store() {
        let (_tmp, mut store) = owner_store();
        install(&mut store, 1);
        store
            .set_policy(&signed(&policy(1, PolicyMode::Pin { release: 1 }, 0), 7))
            .unwrap();
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
        assert_eq!(store.newest_published().unwrap(), 3);
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
                    source: SignatureError::UnknownKey { .. },
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
                    source: SignatureError::BadSignature { .. },
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
