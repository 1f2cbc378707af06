//! The repository's `timestamp.json`: the one short-lived file of the static content repository,
//! signed by the root's **timestamp role** ([`RoleName::Timestamp`]). It names what is current (the
//! root version, the hash and size of every published manifest and revert) and expires within
//! hours, so that no one between the repository and a host (a mirror, a CDN, a network attacker) can
//! keep a host on old data without the host noticing: a host refuses an expired timestamp and one
//! older than the last it accepted, and raises an alert when it has had no fresh one for too long.
//! Reverts it lists are fetched and applied even when no check-in delivered them.

use serde::{Deserialize, Serialize};

use super::format::{RoleName, Root, Signable, Signed, is_sha256_hex, signing_bytes};
use super::revert::MAX_REVERT_BYTES;
use super::role::{RoleError, check_role};
use super::verify::BundleLimits;

/// Domain-separation context prefixed to a timestamp's canonical bytes before signing.
pub const CONTEXT_TIMESTAMP: &[u8] = b"rulebox-timestamp-v1\0";
/// The timestamp format this runtime reads ([`Timestamp::format`]).
pub const TIMESTAMP_FORMAT: u32 = 1;
/// Largest `timestamp.json` accepted, in bytes.
pub const MAX_TIMESTAMP_BYTES: usize = 1 << 20;

/// What the repository holds now (the `signed` part of `timestamp.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    /// Format of this document; this runtime reads [`TIMESTAMP_FORMAT`].
    pub format: u32,
    /// Strictly increasing with every new timestamp: a host refuses one lower than the last it
    /// accepted (the same one again is accepted).
    pub version: u64,
    /// When it was signed, seconds since the Unix epoch (informational).
    pub issued_unix: u64,
    /// After this instant the timestamp is refused: a short validity (minutes to hours) is what
    /// makes a frozen or withheld repository visible.
    pub expires_unix: u64,
    /// The newest root version in the repository (`root/<N>.root.json`). A host whose root is older
    /// fetches and applies each newer root first.
    pub root_version: u64,
    /// Every published release whose manifest has not expired, by release number (ascending).
    pub releases: Vec<TimestampRelease>,
    /// Every published revert that has not expired, by release number (ascending).
    pub reverts: Vec<TimestampRevert>,
}

impl Signable for Timestamp {
    const CONTEXT: &'static [u8] = CONTEXT_TIMESTAMP;
}

/// A published release: `releases/<release>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampRelease {
    /// The release number.
    pub release: u64,
    /// Hex SHA-256 of the exact bytes of `manifest.json` as published.
    pub manifest_sha256: String,
    /// Its size in bytes: the cap a fetcher reads it with.
    pub size: u64,
}

/// A published revert: `reverts/<release>.revert.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampRevert {
    /// The withdrawn release.
    pub release: u64,
    /// Hex SHA-256 of the exact bytes of the revert file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why a timestamp was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// Larger than [`MAX_TIMESTAMP_BYTES`].
    #[error("timestamp is {size} bytes; the limit is {MAX_TIMESTAMP_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Does not parse as a signed timestamp.
    #[error("timestamp does not parse: {0}")]
    Parse(#[source] serde_json::Error),
    /// An unknown format.
    #[error("timestamp format {found} is not supported (this runtime reads {TIMESTAMP_FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// Not signed by a threshold of the timestamp role.
    #[error("timestamp version {version}: {source}")]
    Signature {
        /// The version it states.
        version: u64,
        /// What failed.
        source: RoleError,
    },
    /// Expired.
    #[error("timestamp version {version} expired at {expires_unix} (now {now_unix})")]
    Expired {
        /// Its version.
        version: u64,
        /// Its expiry.
        expires_unix: u64,
        /// The host's clock.
        now_unix: u64,
    },
    /// Older than the last timestamp accepted (a replay of old data).
    #[error("timestamp version {version} is older than version {last}, already accepted")]
    Rollback {
        /// Its version.
        version: u64,
        /// The last version accepted.
        last: u64,
    },
    /// Names a newer root than the host holds: fetch and apply `root/<N>.root.json` for each
    /// version up to `root_version`, then check the timestamp again.
    #[error(
        "timestamp version {version} names root version {root_version}; this host trusts root version {trusted}: update the root first"
    )]
    RootAhead {
        /// Its version.
        version: u64,
        /// The root version it names.
        root_version: u64,
        /// The host's root version.
        trusted: u64,
    },
    /// Names an older root than the host holds (signed before a rotation the host has seen).
    #[error(
        "timestamp version {version} names root version {root_version}, older than the trusted root version {trusted}"
    )]
    RootBehind {
        /// Its version.
        version: u64,
        /// The root version it names.
        root_version: u64,
        /// The host's root version.
        trusted: u64,
    },
    /// An entry is malformed (a hash that is not 64 lowercase hex digits, a size above what a host
    /// reads, a release listed twice or out of order).
    #[error("timestamp version {version}: {problem}")]
    Entry {
        /// Its version.
        version: u64,
        /// What is wrong.
        problem: String,
    },
}

/// Verifies `timestamp.json` as a host must before using anything it says: size, parse, format, a
/// threshold of the root's timestamp role (unexpired), expiry, no rollback below `last_version`
/// (the version last accepted, if any), the root version it names against the trusted root's, and
/// well-formed entries (releases and reverts each strictly ascending, hashes 64 lowercase hex
/// digits, sizes within what a host reads: a manifest within [`BundleLimits::max_manifest_bytes`],
/// a revert within [`MAX_REVERT_BYTES`]).
pub fn verify_timestamp(
    bytes: &[u8],
    root: &Root,
    now_unix: u64,
    last_version: Option<u64>,
) -> Result<Timestamp, TimestampError> {
    if bytes.len() > MAX_TIMESTAMP_BYTES {
        return Err(TimestampError::TooLarge { size: bytes.len() });
    }
    let envelope: Signed<Timestamp> =
        serde_json::from_slice(bytes).map_err(TimestampError::Parse)?;
    let ts = envelope.signed;
    if ts.format != TIMESTAMP_FORMAT {
        return Err(TimestampError::Format { found: ts.format });
    }
    let version = ts.version;
    let message = signing_bytes(&ts).map_err(TimestampError::Parse)?;
    check_role(
        &message,
        &envelope.signatures,
        root,
        RoleName::Timestamp,
        now_unix,
    )
    .map_err(|source| TimestampError::Signature { version, source })?;
    if now_unix >= ts.expires_unix {
        return Err(TimestampError::Expired {
            version,
            expires_unix: ts.expires_unix,
            now_unix,
        });
    }
    if let Some(last) = last_version
        && version < last
    {
        return Err(TimestampError::Rollback { version, last });
    }
    if ts.root_version > root.version {
        return Err(TimestampError::RootAhead {
            version,
            root_version: ts.root_version,
            trusted: root.version,
        });
    }
    if ts.root_version < root.version {
        return Err(TimestampError::RootBehind {
            version,
            root_version: ts.root_version,
            trusted: root.version,
        });
    }
    check_entries(&ts).map_err(|problem| TimestampError::Entry { version, problem })?;
    Ok(ts)
}

fn check_entries(ts: &Timestamp) -> Result<(), String> {
    let max_manifest = BundleLimits::default().max_manifest_bytes;
    let mut previous = None;
    for e in &ts.releases {
        if previous.is_some_and(|p| e.release <= p) {
            return Err(format!(
                "release {} is listed out of order or twice",
                e.release
            ));
        }
        previous = Some(e.release);
        if !is_sha256_hex(&e.manifest_sha256) {
            return Err(format!(
                "release {}: the manifest hash is not 64 lowercase hex digits",
                e.release
            ));
        }
        if e.size == 0 || e.size > max_manifest {
            return Err(format!(
                "release {}: a manifest of {} bytes (a host reads 1 to {max_manifest})",
                e.release, e.size
            ));
        }
    }
    let max_revert = u64::try_from(MAX_REVERT_BYTES).unwrap_or(u64::MAX);
    let mut previous = None;
    for e in &ts.reverts {
        if previous.is_some_and(|p| e.release <= p) {
            return Err(format!(
                "the revert of release {} is listed out of order or twice",
                e.release
            ));
        }
        previous = Some(e.release);
        if !is_sha256_hex(&e.sha256) {
            return Err(format!(
                "the revert of release {}: the hash is not 64 lowercase hex digits",
                e.release
            ));
        }
        if e.size == 0 || e.size > max_revert {
            return Err(format!(
                "the revert of release {}: {} bytes (a host reads 1 to {max_revert})",
                e.release, e.size
            ));
        }
    }
    Ok(())
}

impl Timestamp {
    /// The entry of release `release`, if listed.
    pub fn release(&self, release: u64) -> Option<&TimestampRelease> {
        self.releases.iter().find(|e| e.release == release)
    }

    /// The revert of release `release`, if listed.
    pub fn revert(&self, release: u64) -> Option<&TimestampRevert> {
        self.reverts.iter().find(|e| e.release == release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::testutil::{LATER, NOW, key, root_with_roles, sign};

    fn ts(version: u64) -> Timestamp {
        Timestamp {
            format: TIMESTAMP_FORMAT,
            version,
            issued_unix: NOW,
            expires_unix: NOW + 3600,
            root_version: 1,
            releases: vec![TimestampRelease {
                release: 42,
                manifest_sha256: "a".repeat(64),
                size: 1234,
            }],
            reverts: vec![TimestampRevert {
                release: 41,
                sha256: "b".repeat(64),
                size: 600,
            }],
        }
    }

    fn bytes(t: &Timestamp, signer: u8) -> Vec<u8> {
        serde_json::to_vec(&sign(t, &[&key(signer)])).unwrap()
    }

    #[test]
    fn a_timestamp_signed_by_the_timestamp_role_verifies() {
        let root = root_with_roles();
        let t = verify_timestamp(&bytes(&ts(5), 20), &root, NOW, Some(5)).unwrap();
        assert_eq!(t.version, 5);
        assert_eq!(t.release(42).map(|e| e.size), Some(1234));
        assert_eq!(t.revert(41).map(|e| e.size), Some(600));
    }

    #[test]
    fn a_timestamp_signed_by_another_role_or_the_root_is_refused() {
        let root = root_with_roles();
        for signer in [1, 30, 9] {
            let err = verify_timestamp(&bytes(&ts(5), signer), &root, NOW, None).unwrap_err();
            assert!(
                matches!(err, TimestampError::Signature { .. }),
                "key {signer}: {err}"
            );
        }
        // A root without the role accepts no timestamp at all.
        let plain = crate::content::testutil::root(1, &[&key(1)], 1);
        let err = verify_timestamp(&bytes(&ts(5), 20), &plain, NOW, None).unwrap_err();
        assert!(err.to_string().contains("no `timestamp` role"), "{err}");
    }

    #[test]
    fn an_expired_or_older_timestamp_is_refused() {
        let root = root_with_roles();
        let err = verify_timestamp(&bytes(&ts(5), 20), &root, NOW + 3600, None).unwrap_err();
        assert!(matches!(err, TimestampError::Expired { .. }), "{err}");
        let err = verify_timestamp(&bytes(&ts(5), 20), &root, NOW, Some(6)).unwrap_err();
        assert!(
            matches!(
                err,
                TimestampError::Rollback {
                    version: 5,
                    last: 6
                }
            ),
            "{err}"
        );
        // The role itself expires: past it, even an unexpired timestamp is refused.
        let mut long = ts(5);
        long.expires_unix = LATER + 10;
        let err = verify_timestamp(&bytes(&long, 20), &root, LATER, None).unwrap_err();
        assert!(
            matches!(
                err,
                TimestampError::Signature {
                    source: RoleError::Expired { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_tampered_timestamp_is_refused() {
        let root = root_with_roles();
        let mut envelope = sign(&ts(5), &[&key(20)]);
        envelope.signed.reverts.clear();
        let err = verify_timestamp(&serde_json::to_vec(&envelope).unwrap(), &root, NOW, None)
            .unwrap_err();
        assert!(matches!(err, TimestampError::Signature { .. }), "{err}");
    }

    #[test]
    fn a_timestamp_naming_another_root_version_is_refused_with_what_to_do() {
        let root = root_with_roles();
        let mut t = ts(5);
        t.root_version = 2;
        let err = verify_timestamp(&bytes(&t, 20), &root, NOW, None).unwrap_err();
        assert!(
            matches!(
                err,
                TimestampError::RootAhead {
                    root_version: 2,
                    trusted: 1,
                    ..
                }
            ),
            "{err}"
        );
        t.root_version = 0;
        let err = verify_timestamp(&bytes(&t, 20), &root, NOW, None).unwrap_err();
        assert!(matches!(err, TimestampError::RootBehind { .. }), "{err}");
    }

    #[test]
    fn malformed_entries_are_refused() {
        let root = root_with_roles();
        let mut t = ts(5);
        t.releases[0].manifest_sha256 = "A".repeat(64);
        assert!(matches!(
            verify_timestamp(&bytes(&t, 20), &root, NOW, None),
            Err(TimestampError::Entry { .. })
        ));
        let mut t = ts(5);
        t.releases.push(t.releases[0].clone());
        let err = verify_timestamp(&bytes(&t, 20), &root, NOW, None).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let mut t = ts(5);
        t.reverts[0].size = 1 << 20;
        assert!(matches!(
            verify_timestamp(&bytes(&t, 20), &root, NOW, None),
            Err(TimestampError::Entry { .. })
        ));
        let big = vec![b' '; MAX_TIMESTAMP_BYTES + 1];
        assert!(matches!(
            verify_timestamp(&big, &root, NOW, None),
            Err(TimestampError::TooLarge { .. })
        ));
    }
}
