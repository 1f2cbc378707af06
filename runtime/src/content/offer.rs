//! Offers: the controller's signed statement "host `host_id` may take release `release`, whose
//! manifest has this hash and size", signed by the root's **rollout role**
//! ([`RoleName::Rollout`]). An offer decides only *when* and *to whom*: what the host then installs
//! is still the manifest signed by the root's own keys, fetched by the hash and size the offer
//! names and verified in full by the store, so a forged or replayed offer can at worst bring a
//! host a release that the root signed, the host's policy permits, and no revert has withdrawn.

use serde::{Deserialize, Serialize};

use super::format::{RoleName, Root, Signable, Signed, is_sha256_hex, signing_bytes};
use super::role::{RoleError, check_role};
use super::verify::BundleLimits;

/// Domain-separation context prefixed to an offer's canonical bytes before signing.
pub const CONTEXT_OFFER: &[u8] = b"rulebox-offer-v1\0";
/// The offer format this runtime reads ([`Offer::format`]).
pub const OFFER_FORMAT: u32 = 1;
/// Largest offer envelope accepted, in bytes.
pub const MAX_OFFER_BYTES: usize = 16 << 10;
/// Longest host id an offer may name, in bytes.
pub const MAX_HOST_ID_BYTES: usize = 128;

/// An offer of a release to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Format of this document; this runtime reads [`OFFER_FORMAT`].
    pub format: u32,
    /// The host it is for: the id the controller gave the host at enrolment.
    pub host_id: String,
    /// The release offered.
    pub release: u64,
    /// Hex SHA-256 of the exact bytes of `releases/<release>/manifest.json`.
    pub manifest_sha256: String,
    /// The manifest file's size in bytes: the cap the host reads it with.
    pub size: u64,
    /// When the controller issued it, seconds since the Unix epoch.
    pub issued_unix: u64,
    /// After this instant the offer is refused (the host asks again at its next check-in).
    pub expires_unix: u64,
}

impl Signable for Offer {
    const CONTEXT: &'static [u8] = CONTEXT_OFFER;
}

/// Why an offer was refused. Nothing is fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// Larger than [`MAX_OFFER_BYTES`].
    #[error("offer is {size} bytes; the limit is {MAX_OFFER_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Does not parse as a signed offer.
    #[error("offer does not parse: {0}")]
    Parse(#[source] serde_json::Error),
    /// An unknown format.
    #[error("offer format {found} is not supported (this runtime reads {OFFER_FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// For another host (replayed from another host's check-in).
    #[error("the offer of release {release} is for another host")]
    OtherHost {
        /// The release it names.
        release: u64,
    },
    /// Not signed by a threshold of the rollout role.
    #[error("offer of release {release}: {source}")]
    Signature {
        /// The release it names.
        release: u64,
        /// What failed.
        source: RoleError,
    },
    /// Expired.
    #[error("the offer of release {release} expired at {expires_unix} (now {now_unix})")]
    Expired {
        /// The release it names.
        release: u64,
        /// Its expiry.
        expires_unix: u64,
        /// The host's clock.
        now_unix: u64,
    },
    /// The manifest hash or size it names is unusable.
    #[error("the offer of release {release}: {problem}")]
    Manifest {
        /// The release it names.
        release: u64,
        /// What is wrong.
        problem: String,
    },
}

/// Verifies a signed offer (JSON bytes) for the host `host_id`: size, parse, then as
/// [`verify_offer_envelope`].
pub fn verify_offer(
    bytes: &[u8],
    root: &Root,
    host_id: &str,
    now_unix: u64,
) -> Result<Offer, OfferError> {
    if bytes.len() > MAX_OFFER_BYTES {
        return Err(OfferError::TooLarge { size: bytes.len() });
    }
    let envelope: Signed<Offer> = serde_json::from_slice(bytes).map_err(OfferError::Parse)?;
    verify_offer_envelope(&envelope, root, host_id, now_unix)
}

/// Verifies a parsed offer for the host `host_id`: format, a threshold of the root's rollout role
/// (unexpired) over [`CONTEXT_OFFER`] + the canonical bytes, the host id (compared after the
/// signature, so a foreign offer is told apart from a forged one), expiry, and a manifest hash of
/// 64 lowercase hex digits with a size of 1 byte to [`BundleLimits::max_manifest_bytes`].
pub fn verify_offer_envelope(
    envelope: &Signed<Offer>,
    root: &Root,
    host_id: &str,
    now_unix: u64,
) -> Result<Offer, OfferError> {
    let offer = &envelope.signed;
    let release = offer.release;
    if offer.format != OFFER_FORMAT {
        return Err(OfferError::Format {
            found: offer.format,
        });
    }
    let message = signing_bytes(offer).map_err(OfferError::Parse)?;
    check_role(
        &message,
        &envelope.signatures,
        root,
        RoleName::Rollout,
        now_unix,
    )
    .map_err(|source| OfferError::Signature { release, source })?;
    if offer.host_id != host_id {
        return Err(OfferError::OtherHost { release });
    }
    if now_unix >= offer.expires_unix {
        return Err(OfferError::Expired {
            release,
            expires_unix: offer.expires_unix,
            now_unix,
        });
    }
    if !is_sha256_hex(&offer.manifest_sha256) {
        return Err(OfferError::Manifest {
            release,
            problem: "the manifest hash is not 64 lowercase hex digits".to_owned(),
        });
    }
    let max = BundleLimits::default().max_manifest_bytes;
    if offer.size == 0 || offer.size > max {
        return Err(OfferError::Manifest {
            release,
            problem: format!(
                "a manifest of {} bytes (a host reads 1 to {max})",
                offer.size
            ),
        });
    }
    Ok(offer.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::testutil::{NOW, key, root_with_roles, sign};

    fn offer(host: &str) -> Offer {
        Offer {
            format: OFFER_FORMAT,
            host_id: host.to_owned(),
            release: 42,
            manifest_sha256: "c".repeat(64),
            size: 2048,
            issued_unix: NOW,
            expires_unix: NOW + 900,
        }
    }

    fn bytes(o: &Offer, signers: &[u8]) -> Vec<u8> {
        let keys: Vec<_> = signers.iter().map(|s| key(*s)).collect();
        let refs: Vec<_> = keys.iter().collect();
        serde_json::to_vec(&sign(o, &refs)).unwrap()
    }

    #[test]
    fn an_offer_signed_by_the_rollout_role_verifies_for_its_host_only() {
        let root = root_with_roles();
        let good = bytes(&offer("h1"), &[30, 31]);
        assert_eq!(verify_offer(&good, &root, "h1", NOW).unwrap().release, 42);
        let err = verify_offer(&good, &root, "h2", NOW).unwrap_err();
        assert!(
            matches!(err, OfferError::OtherHost { release: 42 }),
            "{err}"
        );
        let err = verify_offer(&good, &root, "h1", NOW + 900).unwrap_err();
        assert!(matches!(err, OfferError::Expired { .. }), "{err}");
    }

    #[test]
    fn an_offer_signed_by_the_root_the_timestamp_role_or_too_few_rollout_keys_is_refused() {
        let root = root_with_roles();
        for signers in [&[1u8][..], &[20], &[30], &[9, 30]] {
            let err = verify_offer(&bytes(&offer("h1"), signers), &root, "h1", NOW).unwrap_err();
            assert!(
                matches!(err, OfferError::Signature { .. }),
                "{signers:?}: {err}"
            );
        }
        let plain = crate::content::testutil::root(1, &[&key(1)], 1);
        assert!(matches!(
            verify_offer(&bytes(&offer("h1"), &[30, 31]), &plain, "h1", NOW),
            Err(OfferError::Signature {
                source: RoleError::NotDeclared { .. },
                ..
            })
        ));
    }

    #[test]
    fn an_offer_with_an_unusable_manifest_size_or_hash_is_refused() {
        let root = root_with_roles();
        let mut o = offer("h1");
        o.size = 1 << 30;
        let err = verify_offer(&bytes(&o, &[30, 31]), &root, "h1", NOW).unwrap_err();
        assert!(matches!(err, OfferError::Manifest { .. }), "{err}");
        let mut o = offer("h1");
        o.manifest_sha256 = "../../etc/passwd".to_owned();
        let err = verify_offer(&bytes(&o, &[30, 31]), &root, "h1", NOW).unwrap_err();
        assert!(matches!(err, OfferError::Manifest { .. }), "{err}");
        let mut tampered = sign(&offer("h1"), &[&key(30), &key(31)]);
        tampered.signed.release = 43;
        let err =
            verify_offer(&serde_json::to_vec(&tampered).unwrap(), &root, "h1", NOW).unwrap_err();
        assert!(matches!(err, OfferError::Signature { .. }), "{err}");
        assert!(matches!(
            verify_offer(&vec![b' '; MAX_OFFER_BYTES + 1], &root, "h1", NOW),
            Err(OfferError::TooLarge { .. })
        ));
    }
}
