//! Signed revert instructions: the vendor's rollout controller halts a release and tells every host
//! that took it to go back. The instruction is signed by a threshold of the **content root's** keys
//! (the same keys that sign manifests, under its own domain-separation context
//! [`CONTEXT_REVERT`]) or of the root's online **rollout role** (what the controller holds), and the
//! host verifies it before it changes anything: a forged revert could otherwise turn detection off
//! fleet-wide.
//!
//! Applying a revert ([`ContentStore::apply_revert`]) marks the release **bad** (so it is never
//! installed or activated again on this host, even if it arrives later) and, if it is current, makes
//! the instruction's target current (re-verified first), else the last-known-good release, else the
//! built-in baseline. A revert only ever moves a host to content it already had, so it is accepted
//! whatever the customer's policy says.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::format::{Signable, Signed, signing_bytes};
use super::role::{RoleError, check_role, names_role_key};
use super::store::{ContentStore, Report, ReportKind, StoreError};
use super::verify::{SignatureError, VerifiedBundle, check_threshold};
use super::{RoleName, Root, now_unix_ms};

/// Domain-separation context prefixed to a revert's canonical bytes before signing.
pub const CONTEXT_REVERT: &[u8] = b"rulebox-revert-v1\0";
/// The revert format this runtime reads ([`Revert::format`]).
pub const REVERT_FORMAT: u32 = 1;
/// Largest revert envelope accepted, in bytes.
pub const MAX_REVERT_BYTES: usize = 64 << 10;

/// A revert instruction: "release `release` is withdrawn; go back to `to`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revert {
    /// Format of this document; this runtime reads [`REVERT_FORMAT`].
    pub format: u32,
    /// The withdrawn release.
    pub release: u64,
    /// The release to go back to (the one the rollout replaced); `None`: the host's last-known-good.
    pub to: Option<u64>,
    /// When the controller issued it, seconds since the Unix epoch.
    pub issued_unix: u64,
    /// After this instant the instruction is refused (a stale instruction cannot be replayed forever).
    pub expires_unix: u64,
    /// Why, for people (the failed gate).
    pub reason: String,
}

impl Signable for Revert {
    const CONTEXT: &'static [u8] = CONTEXT_REVERT;
}

/// Why a revert instruction was refused. The store is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevertError {
    /// The envelope is larger than [`MAX_REVERT_BYTES`].
    #[error("revert instruction is {size} bytes; the limit is {MAX_REVERT_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The envelope does not parse.
    #[error("revert instruction does not parse: {0}")]
    Parse(#[source] serde_json::Error),
    /// An unknown format.
    #[error(
        "revert instruction format {found} is not supported (this runtime reads {REVERT_FORMAT})"
    )]
    Format {
        /// The format found.
        found: u32,
    },
    /// The signatures do not meet the content root's threshold.
    #[error("revert instruction for release {release}: {source}")]
    Signature {
        /// The release it names.
        release: u64,
        /// What failed.
        source: SignatureError,
    },
    /// The instruction has expired.
    #[error("revert instruction for release {release} expired at {expires_unix} (now {now_unix})")]
    Expired {
        /// The release it names.
        release: u64,
        /// Its expiry.
        expires_unix: u64,
        /// The host's clock.
        now_unix: u64,
    },
    /// Its target is the withdrawn release itself.
    #[error("revert instruction for release {release} names the same release as its target")]
    SelfTarget {
        /// The release.
        release: u64,
    },
    /// Signed with keys of the root's rollout role that do not meet its threshold, or after the
    /// role expired.
    #[error("revert instruction for release {release}: {source}")]
    Role {
        /// The release it names.
        release: u64,
        /// What failed.
        source: RoleError,
    },
    /// The content root is unusable (not expected: the store checks it at open).
    #[error("the content root is unusable: {0}")]
    Root(String),
}

/// Verifies a revert envelope against the content root: size, parse, format, a threshold of the
/// root's keys or of its rollout role's (unexpired) over [`CONTEXT_REVERT`] + the canonical bytes,
/// expiry, and a target other than the withdrawn release.
pub fn verify_revert(bytes: &[u8], root: &Root, now_unix: u64) -> Result<Revert, RevertError> {
    if bytes.len() > MAX_REVERT_BYTES {
        return Err(RevertError::TooLarge { size: bytes.len() });
    }
    let envelope: Signed<Revert> = serde_json::from_slice(bytes).map_err(RevertError::Parse)?;
    let revert = envelope.signed;
    if revert.format != REVERT_FORMAT {
        return Err(RevertError::Format {
            found: revert.format,
        });
    }
    let keys = root.verifying_keys().map_err(RevertError::Root)?;
    let message = signing_bytes(&revert).map_err(RevertError::Parse)?;
    if let Err(source) = check_threshold(&message, &envelope.signatures, &keys, root.threshold) {
        if !names_role_key(&envelope.signatures, root, RoleName::Rollout) {
            return Err(RevertError::Signature {
                release: revert.release,
                source,
            });
        }
        check_role(
            &message,
            &envelope.signatures,
            root,
            RoleName::Rollout,
            now_unix,
        )
        .map_err(|source| RevertError::Role {
            release: revert.release,
            source,
        })?;
    }
    if now_unix >= revert.expires_unix {
        return Err(RevertError::Expired {
            release: revert.release,
            expires_unix: revert.expires_unix,
            now_unix,
        });
    }
    if revert.to == Some(revert.release) {
        return Err(RevertError::SelfTarget {
            release: revert.release,
        });
    }
    Ok(revert)
}

/// What [`ContentStore::apply_revert`] did.
#[derive(Debug)]
pub struct RevertOutcome {
    /// The verified instruction.
    pub revert: Revert,
    /// Whether the withdrawn release was current (otherwise only its bad mark was recorded).
    pub was_current: bool,
    /// The release now current (`None`: the built-in baseline).
    pub current: Option<u64>,
    /// The report written to `reports/`.
    pub report: PathBuf,
    /// The content to activate now, if the current release changed to an installed one.
    pub bundle: Option<VerifiedBundle>,
}

impl ContentStore {
    /// Verifies a signed revert instruction ([`verify_revert`] against the trusted root) and applies
    /// it: the withdrawn release is marked bad (never installed or activated again here); if it is
    /// current, the instruction's target becomes current if it is installed, not bad and
    /// re-verifies, else the last-known-good release under the same conditions, else the built-in
    /// baseline (`current = None`). A last-known-good pointer at the withdrawn release is moved to
    /// the new current release. Writes a `revert` report. Applying the same instruction twice changes
    /// nothing more. A refused instruction leaves the store unchanged.
    pub fn apply_revert(
        &mut self,
        envelope_bytes: &[u8],
        now_unix: u64,
    ) -> Result<RevertOutcome, StoreError> {
        self.writable()?;
        let revert = verify_revert(envelope_bytes, &self.root, now_unix)?;
        let release = revert.release;
        let was_current = self.state.current == Some(release);
        let mut state = self.state.clone();
        state.bad.insert(release);
        let mut bundle = None;
        if was_current {
            let usable = |r: u64| -> Option<VerifiedBundle> {
                if r == release || state.bad.contains(&r) || !self.state.installed.contains_key(&r)
                {
                    return None;
                }
                self.load_release(r).ok()
            };
            let chosen = revert
                .to
                .and_then(|t| usable(t).map(|b| (t, b)))
                .or_else(|| {
                    self.state
                        .last_known_good
                        .and_then(|t| usable(t).map(|b| (t, b)))
                });
            state.current = chosen.as_ref().map(|(t, _)| *t);
            state.boot.starting = None;
            bundle = chosen.map(|(_, b)| b);
        }
        if state.last_known_good == Some(release) {
            state.last_known_good = if was_current { state.current } else { None };
        }
        let report = self.write_report(&Report {
            kind: ReportKind::Revert,
            at_unix_ms: now_unix_ms(),
            from: Some(release),
            to: state.current,
            reason: format!(
                "signed revert of release {release} issued at {}: {}",
                revert.issued_unix, revert.reason
            ),
            attempts: None,
            bad: state.bad.iter().copied().collect(),
            source: None,
        })?;
        let current = state.current;
        self.save_state(state)?;
        tracing::warn!(release, ?current, "applied a signed revert");
        Ok(RevertOutcome {
            revert,
            was_current,
            current,
            report,
            bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::store::tests::{install, new_store};
    use crate::content::testutil::{NOW, key, sign};

    fn revert(release: u64, to: Option<u64>) -> Revert {
        Revert {
            format: REVERT_FORMAT,
            release,
            to,
            issued_unix: NOW,
            expires_unix: NOW + 3600,
            reason: "gate failed".to_owned(),
        }
    }

    fn bytes(r: &Revert, signer: u8) -> Vec<u8> {
        serde_json::to_vec(&sign(r, &[&key(signer)])).unwrap()
    }

    #[test]
    fn a_signed_revert_goes_back_and_the_release_never_returns() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(3).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        store.begin_boot(3).unwrap();
        // The bad release ran long enough to reach GOOD (a detection storm does not crash).
        store.mark_good(2).unwrap();
        let out = store
            .apply_revert(&bytes(&revert(2, Some(1)), 1), NOW)
            .unwrap();
        assert!(out.was_current);
        assert_eq!(out.current, Some(1));
        assert_eq!(out.bundle.as_ref().map(|b| b.release()), Some(1));
        assert_eq!(store.state().current, Some(1));
        assert_eq!(store.state().last_known_good, Some(1));
        assert!(store.state().bad.contains(&2));
        let written: Report = serde_json::from_slice(&std::fs::read(&out.report).unwrap()).unwrap();
        assert_eq!(written.kind, ReportKind::Revert);
        // Again: nothing more changes.
        let again = store
            .apply_revert(&bytes(&revert(2, Some(1)), 1), NOW)
            .unwrap();
        assert!(!again.was_current);
        assert_eq!(store.state().current, Some(1));
    }

    #[test]
    fn a_revert_before_the_release_arrives_keeps_it_out() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store
            .apply_revert(&bytes(&revert(2, Some(1)), 1), NOW)
            .unwrap();
        assert_eq!(store.state().current, Some(1));
        let bundle = tempfile::tempdir().unwrap();
        crate::content::testutil::standard_bundle(bundle.path(), 2, &[&key(1)]);
        assert!(matches!(
            store.install(bundle.path(), NOW),
            Err(StoreError::BadRelease { release: 2 })
        ));
    }

    #[test]
    fn without_a_usable_target_the_host_runs_the_baseline() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        let out = store
            .apply_revert(&bytes(&revert(1, None), 1), NOW)
            .unwrap();
        assert_eq!(out.current, None);
        assert!(out.bundle.is_none());
    }

    #[test]
    fn forged_tampered_expired_and_self_targeted_reverts_are_refused() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        install(&mut store, 2);
        let before = store.state().clone();

        // Signed by a key the root does not name.
        let err = store
            .apply_revert(&bytes(&revert(2, Some(1)), 9), NOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Revert(RevertError::Signature {
                    source: SignatureError::UnknownKey { .. },
                    ..
                })
            ),
            "{err}"
        );
        // Tampered after signing: the target changed.
        let mut envelope = sign(&revert(2, Some(1)), &[&key(1)]);
        envelope.signed.release = 1;
        envelope.signed.to = None;
        let err = store
            .apply_revert(&serde_json::to_vec(&envelope).unwrap(), NOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Revert(RevertError::Signature {
                    source: SignatureError::BadSignature { .. },
                    ..
                })
            ),
            "{err}"
        );
        // Expired.
        let err = store
            .apply_revert(&bytes(&revert(2, Some(1)), 1), NOW + 3600)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Revert(RevertError::Expired { .. })),
            "{err}"
        );
        let err = store
            .apply_revert(&bytes(&revert(2, Some(2)), 1), NOW)
            .unwrap_err();
        assert!(err.to_string().contains("same release"), "{err}");
        let err = store.apply_revert(b"{", NOW).unwrap_err();
        assert!(err.to_string().contains("does not parse"), "{err}");
        assert_eq!(store.state(), &before);
    }
}
