//! Signatures by an **online role** of the root ([`RoleKeys`]): a threshold of the role's own keys,
//! counted only while the role has not expired. Each document type names the one role that may
//! sign it (timestamp: [`RoleName::Timestamp`]; offer and revert: [`RoleName::Rollout`]), so a key
//! of one role is never accepted for another role's document, and no role key ever counts for a
//! manifest or a root (their keys are the root's own, which the root keeps distinct from every
//! role's).

use super::format::{RoleKeys, RoleName, Root, Signature};
use super::verify::{SignatureError, check_threshold};

/// Why a document was not accepted as signed by an online role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The trusted root declares no such role, so nothing it would sign is accepted.
    #[error("the trusted root declares no `{role}` role")]
    NotDeclared {
        /// The role.
        role: RoleName,
    },
    /// The role has expired: none of its keys counts any more (renew the root).
    #[error(
        "the root's `{role}` role expired at {expires_unix} (now {now_unix}): its keys no longer count"
    )]
    Expired {
        /// The role.
        role: RoleName,
        /// Its expiry.
        expires_unix: u64,
        /// The clock the check used.
        now_unix: u64,
    },
    /// The role's keys are unusable (not expected: the root is checked when it is loaded).
    #[error("the root's `{role}` role is invalid: {problem}")]
    Invalid {
        /// The role.
        role: RoleName,
        /// What is wrong.
        problem: String,
    },
    /// The signatures do not meet the role's threshold.
    #[error("not signed by the root's `{role}` role: {source}")]
    Signature {
        /// The role.
        role: RoleName,
        /// What failed (key ids and counts refer to the role's keys).
        source: SignatureError,
    },
}

/// Checks that a threshold of distinct, unexpired keys of `role` signed `message`; the count of
/// valid signatures on success. Signatures by any other key (the root's own, another role's) are
/// ignored, as unknown keys are.
pub(crate) fn check_role(
    message: &[u8],
    signatures: &[Signature],
    root: &Root,
    role: RoleName,
    now_unix: u64,
) -> Result<u32, RoleError> {
    let keys: &RoleKeys = root
        .roles
        .get(role)
        .ok_or(RoleError::NotDeclared { role })?;
    if now_unix >= keys.expires_unix {
        return Err(RoleError::Expired {
            role,
            expires_unix: keys.expires_unix,
            now_unix,
        });
    }
    let parsed = keys
        .verifying_keys()
        .map_err(|problem| RoleError::Invalid { role, problem })?;
    check_threshold(message, signatures, &parsed, keys.threshold)
        .map_err(|source| RoleError::Signature { role, source })
}

/// `true` when one of `signatures` names a key of `role` (to tell which authority a document meant
/// to be signed by when neither accepts it).
pub(crate) fn names_role_key(signatures: &[Signature], root: &Root, role: RoleName) -> bool {
    root.roles
        .get(role)
        .is_some_and(|keys| signatures.iter().any(|s| keys.keys.contains_key(&s.keyid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::format::signing_bytes;
    use crate::content::testutil::{NOW, key, role_keys, root, root_with_roles, sign};

    fn with_roles() -> Root {
        let mut r = root_with_roles();
        r.roles.rollout = Some(role_keys(&[&key(30), &key(31)], 2, NOW + 100));
        r.verifying_keys().unwrap();
        r
    }

    #[test]
    fn a_role_accepts_only_a_threshold_of_its_own_unexpired_keys() {
        let root = with_roles();
        let doc = root.clone();
        let message = signing_bytes(&doc).unwrap();
        let two = sign(&doc, &[&key(30), &key(31)]).signatures;
        assert_eq!(
            check_role(&message, &two, &root, RoleName::Rollout, NOW),
            Ok(2)
        );
        // One key of a threshold-2 role is not enough.
        let one = sign(&doc, &[&key(30)]).signatures;
        assert!(matches!(
            check_role(&message, &one, &root, RoleName::Rollout, NOW),
            Err(RoleError::Signature {
                source: SignatureError::BelowThreshold { have: 1, need: 2 },
                ..
            })
        ));
        // The root's own key and the other role's key do not count for the rollout role.
        let others = sign(&doc, &[&key(1), &key(20)]).signatures;
        assert!(matches!(
            check_role(&message, &others, &root, RoleName::Rollout, NOW),
            Err(RoleError::Signature {
                source: SignatureError::UnknownKey { .. },
                ..
            })
        ));
        // Expired: no key counts.
        let err = check_role(&message, &two, &root, RoleName::Rollout, NOW + 100).unwrap_err();
        assert!(matches!(err, RoleError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("expired"), "{err}");
        // A root without the role accepts nothing for it.
        let plain = crate::content::testutil::root(1, &[&key(1)], 1);
        assert_eq!(
            check_role(&message, &two, &plain, RoleName::Rollout, NOW),
            Err(RoleError::NotDeclared {
                role: RoleName::Rollout
            })
        );
        assert!(names_role_key(&two, &root, RoleName::Rollout));
        assert!(!names_role_key(&others, &root, RoleName::Rollout));
    }

    #[test]
    fn a_root_whose_role_reuses_a_key_is_invalid() {
        let mut r = root(1, &[&key(1)], 1);
        r.roles.rollout = Some(role_keys(&[&key(1)], 1, NOW));
        let err = r.verifying_keys().unwrap_err();
        assert!(err.contains("also a key of the root itself"), "{err}");
        let mut r = root(1, &[&key(1)], 1);
        r.roles.rollout = Some(role_keys(&[&key(5)], 1, NOW));
        r.roles.timestamp = Some(role_keys(&[&key(5)], 1, NOW));
        let err = r.verifying_keys().unwrap_err();
        assert!(err.contains("role `timestamp`"), "{err}");
        let mut r = root(1, &[&key(1)], 1);
        r.roles.rollout = Some(role_keys(&[&key(5)], 2, NOW));
        let err = r.verifying_keys().unwrap_err();
        assert!(err.starts_with("role `rollout`: threshold 2"), "{err}");
    }

    #[test]
    fn a_revert_is_accepted_from_the_root_or_the_rollout_role_and_from_no_other_role() {
        use crate::content::revert::{REVERT_FORMAT, Revert, RevertError, verify_revert};
        let root = root_with_roles();
        let revert = Revert {
            format: REVERT_FORMAT,
            release: 42,
            to: Some(41),
            issued_unix: NOW,
            expires_unix: NOW + 600,
            reason: "gate".to_owned(),
        };
        let signed = |keys: &[u8]| {
            let keys: Vec<_> = keys.iter().map(|k| key(*k)).collect();
            let refs: Vec<_> = keys.iter().collect();
            serde_json::to_vec(&sign(&revert, &refs)).unwrap()
        };
        verify_revert(&signed(&[1]), &root, NOW).unwrap();
        verify_revert(&signed(&[30, 31]), &root, NOW).unwrap();
        // One rollout key of a threshold of two: refused, naming the role.
        let err = verify_revert(&signed(&[30]), &root, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                RevertError::Role {
                    error: RoleError::Signature {
                        role: RoleName::Rollout,
                        ..
                    },
                    ..
                }
            ),
            "{err}"
        );
        // The timestamp role may not sign a revert.
        let err = verify_revert(&signed(&[20]), &root, NOW).unwrap_err();
        assert!(matches!(err, RevertError::Signature { .. }), "{err}");
        // Past the role's expiry, its keys no longer count (the root's still do).
        let mut expired = root.clone();
        if let Some(r) = expired.roles.rollout.as_mut() {
            r.expires_unix = NOW;
        }
        let err = verify_revert(&signed(&[30, 31]), &expired, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                RevertError::Role {
                    error: RoleError::Expired { .. },
                    ..
                }
            ),
            "{err}"
        );
        verify_revert(&signed(&[1]), &expired, NOW).unwrap();
    }
}
