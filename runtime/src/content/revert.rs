//! Signed revert instructions: the vendor's rollout controller halts a release and tells every host
//! that took it to go back. The instruction is signed by a threshold of the **content root's** keys
//! (the same keys that sign manifests, under its own domain-separation context
//! [`CONTEXT_REVERT`]) or of the root's online **rollout role** (what the controller holds), and the
//! host verifies it before it changes anything: a forged revert could otherwise turn detection off
//! fleet-wide. An instruction is valid for at most [`MAX_REVERT_VALIDITY_SECS`]: one that never
//! expires is refused.
//!
//! Applying a revert ([`ContentStore::apply_revert`]) marks the release **bad** (so it is never
//! installed or activated again on this host, even if it arrives later) and, if it is current, makes
//! another installed release current (re-verified first): the instruction's target, else the
//! last-known-good release, else the newest installed release that reached GOOD here, else the
//! newest other installed release that is not bad, else the built-in baseline. A revert only ever
//! moves a host to content it already had, so it is accepted whatever the customer's policy says,
//! with one limit: **a revert never marks the release the owner's policy pins bad**. If the withdrawn
//! release is the pinned one (number and manifest hash), the host still stops running it (the
//! vendor says it is bad content), but it stays installed and unmarked, and the owner decides when
//! to return to it (`rulebox store rollback --to N`) or what to pin next.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::format::{Signable, Signed, signing_bytes};
use super::policy::PolicyMode;
use super::role::{RoleError, check_role, names_role_key};
use super::store::{BadReason, ContentStore, Report, ReportKind, StoreError};
use super::verify::{SignatureError, VerifiedBundle, check_threshold};
use super::{RoleName, Root, now_unix_ms};

/// Domain-separation context prefixed to a revert's canonical bytes before signing.
pub const CONTEXT_REVERT: &[u8] = b"rulebox-revert-v1\0";
/// The revert format this runtime reads ([`Revert::format`]).
pub const REVERT_FORMAT: u32 = 1;
/// Largest revert envelope accepted, in bytes.
pub const MAX_REVERT_BYTES: usize = 64 << 10;
/// Longest a revert may be valid (`expires_unix - issued_unix`), in seconds: 90 days.
pub const MAX_REVERT_VALIDITY_SECS: u64 = 90 * 86_400;

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
    /// After this instant the instruction is refused (a stale instruction cannot be replayed
    /// forever); at most [`MAX_REVERT_VALIDITY_SECS`] after `issued_unix`.
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
    Parse(serde_json::Error),
    /// An unknown format.
    #[error(
        "revert instruction format {found} is not supported (this runtime reads {REVERT_FORMAT})"
    )]
    Format {
        /// The format found.
        found: u32,
    },
    /// The signatures do not meet the content root's threshold.
    #[error("revert instruction for release {release}: {error}")]
    Signature {
        /// The release it names.
        release: u64,
        /// What failed.
        error: SignatureError,
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
    /// The instruction is valid for longer than [`MAX_REVERT_VALIDITY_SECS`] (or expires before it
    /// was issued).
    #[error(
        "revert instruction for release {release} is valid from {issued_unix} to {expires_unix}; at most {MAX_REVERT_VALIDITY_SECS} seconds is accepted"
    )]
    Validity {
        /// The release it names.
        release: u64,
        /// When it was issued.
        issued_unix: u64,
        /// Its expiry.
        expires_unix: u64,
    },
    /// Its target is the withdrawn release itself.
    #[error("revert instruction for release {release} names the same release as its target")]
    SelfTarget {
        /// The release.
        release: u64,
    },
    /// Signed with keys of the root's rollout role that do not meet its threshold, or after the
    /// role expired.
    #[error("revert instruction for release {release}: {error}")]
    Role {
        /// The release it names.
        release: u64,
        /// What failed.
        error: RoleError,
    },
    /// The content root is unusable (not expected: the store checks it at open).
    #[error("the content root is unusable: {0}")]
    Root(String),
}

/// Verifies a revert envelope against the content root: size, parse, format, a threshold of the
/// root's keys or of its rollout role's (unexpired) over [`CONTEXT_REVERT`] + the canonical bytes,
/// a validity of at most [`MAX_REVERT_VALIDITY_SECS`], expiry, and a target other than the withdrawn release.
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
    if let Err(error) = check_threshold(&message, &envelope.signatures, &keys, root.threshold) {
        if !names_role_key(&envelope.signatures, root, RoleName::Rollout) {
            return Err(RevertError::Signature {
                release: revert.release,
                error,
            });
        }
        check_role(
            &message,
            &envelope.signatures,
            root,
            RoleName::Rollout,
            now_unix,
        )
        .map_err(|error| RevertError::Role {
            release: revert.release,
            error,
        })?;
    }
    let validity = revert.expires_unix.checked_sub(revert.issued_unix);
    if validity.is_none_or(|v| v > MAX_REVERT_VALIDITY_SECS) {
        return Err(RevertError::Validity {
            release: revert.release,
            issued_unix: revert.issued_unix,
            expires_unix: revert.expires_unix,
        });
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
    /// Whether the withdrawn release is the one the owner's policy pins: it was not marked bad.
    pub pinned: bool,
    /// The release now current (`None`: the built-in baseline).
    pub current: Option<u64>,
    /// The report written to `reports/` (`None`: it could not be written).
    pub report: Option<PathBuf>,
    /// The content to activate now, if the current release changed to an installed one.
    pub bundle: Option<VerifiedBundle>,
}

impl ContentStore {
    /// Verifies a signed revert instruction ([`verify_revert`] against the trusted root) and applies
    /// it: the withdrawn release is marked bad (never installed or activated again here), unless it
    /// is the release the owner's policy pins (same number and manifest hash; see the module docs);
    /// if it is current, another installed release becomes current (see the module docs for the
    /// order; each re-verified first), else the built-in baseline (`current = None`). A
    /// last-known-good pointer at the withdrawn release is moved to the new current release. Writes
    /// `state.json`, then a `revert` report (if the disk allows). Applying the same instruction
    /// twice changes nothing more. A refused instruction leaves the store unchanged.
    pub fn apply_revert(
        &mut self,
        envelope_bytes: &[u8],
        now_unix: u64,
    ) -> Result<RevertOutcome, StoreError> {
        self.writable()?;
        let revert = verify_revert(envelope_bytes, &self.root, now_unix)?;
        let release = revert.release;
        let was_current = self.state.current == Some(release);
        let pinned = self.pins(release);
        let mut state = self.state.clone();
        if !pinned {
            state.mark_bad(release, BadReason::Withdrawn);
        }
        let mut bundle = None;
        if was_current {
            let mut candidates: Vec<u64> = revert.to.into_iter().collect();
            candidates.extend(state.last_known_good);
            candidates.extend(state.boot.reached_good.iter().rev().copied());
            candidates.extend(state.installed.keys().rev().copied());
            let chosen = candidates
                .into_iter()
                .filter(|&r| r != release && !state.bad.contains(&r))
                .filter(|r| state.installed.contains_key(r))
                .find_map(|r| self.load_release(r).ok().map(|b| (r, b)));
            state.current = chosen.as_ref().map(|(t, _)| *t);
            state.boot.starting = None;
            bundle = chosen.map(|(_, b)| b);
        }
        if state.last_known_good == Some(release) {
            state.last_known_good = if was_current { state.current } else { None };
        }
        let current = state.current;
        let bad = state.bad.iter().copied().collect();
        self.save_state(state)?;
        let mut reason = format!(
            "signed revert of release {release} issued at {}: {}",
            revert.issued_unix, revert.reason
        );
        if pinned {
            reason.push_str(&format!(
                "; release {release} is the one the owner's policy pins: not marked bad"
            ));
        }
        let report = self.best_effort_report(Report {
            kind: ReportKind::Revert,
            at_unix_ms: now_unix_ms(),
            from: Some(release),
            to: current,
            reason,
            attempts: None,
            bad,
            source: None,
        });
        tracing::warn!(release, ?current, pinned, "applied a signed revert");
        Ok(RevertOutcome {
            revert,
            was_current,
            pinned,
            current,
            report,
            bundle,
        })
    }

    /// Whether the owner's policy pins `release`: the pin names its number, and the release this
    /// host installed under that number (if any) has the pinned manifest hash. A revert names a
    /// number, not content: a pinned release not installed yet is never marked bad by one.
    fn pins(&self, release: u64) -> bool {
        let Ok(Some(policy)) = self.policy() else {
            return false;
        };
        let PolicyMode::Pin {
            release: pinned,
            manifest_hash,
        } = policy.mode
        else {
            return false;
        };
        let installed = self.state.installed.get(&release);
        pinned == release
            && (installed.is_none()
                || manifest_hash.is_none()
                || manifest_hash.as_ref() == installed)
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
        let report = out.report.as_ref().unwrap();
        let written: Report = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
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
        let err = store.install(bundle.path(), NOW).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BadRelease {
                    release: 2,
                    why: Some(BadReason::Withdrawn)
                }
            ),
            "{err}"
        );
        // A withdrawn release is not reported as one that failed to start.
        let text = err.to_string();
        assert!(text.contains("withdrew it with a signed revert"), "{text}");
        assert!(!text.contains("failed to start"), "{text}");
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
                    error: SignatureError::UnknownKey { .. },
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
                    error: SignatureError::BadSignature { .. },
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

    #[test]
    fn a_revert_to_a_release_never_installed_goes_to_the_newest_good_installed_release() {
        let (_tmp, mut store) = new_store();
        for r in 1..=3 {
            install(&mut store, r);
            store.begin_boot(3).unwrap();
            if r < 3 {
                store.mark_good(r).unwrap();
            }
        }
        // Release 3 runs; the vendor's revert names release 7, which this host never installed.
        let out = store
            .apply_revert(&bytes(&revert(3, Some(7)), 1), NOW)
            .unwrap();
        assert!(out.was_current);
        assert_eq!(
            out.current,
            Some(2),
            "the newest installed good release, not the baseline"
        );
        assert_eq!(out.bundle.as_ref().map(|b| b.release()), Some(2));
        // Without a last-known-good pointer, the newest release that reached GOOD here.
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(3).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        store.begin_boot(3).unwrap();
        store.mark_good(2).unwrap();
        install(&mut store, 3);
        let mut state = store.state().clone();
        state.last_known_good = None;
        store.save_state(state).unwrap();
        let out = store
            .apply_revert(&bytes(&revert(3, None), 1), NOW)
            .unwrap();
        assert_eq!(out.current, Some(2));
    }

    #[test]
    fn a_revert_never_marks_the_owners_pinned_release_bad() {
        use crate::content::policy::{CustomerPolicy, POLICY_FORMAT, PolicyMode};
        use crate::content::testutil::{root, root_bytes};
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(3).unwrap();
        store.mark_good(1).unwrap();
        let two = install(&mut store, 2);
        store.begin_boot(3).unwrap();
        store.mark_good(2).unwrap();
        store
            .set_owner_root(&root_bytes(&root(1, &[&key(7)], 1), &[&key(7)]))
            .unwrap();
        let pinned = CustomerPolicy {
            format: POLICY_FORMAT,
            version: 1,
            issued_unix: NOW,
            mode: PolicyMode::Pin {
                release: 2,
                manifest_hash: Some(two.bundle.manifest_hash().to_owned()),
            },
            delay_hours: 0,
            notes: String::new(),
        };
        store
            .set_policy(&serde_json::to_vec(&sign(&pinned, &[&key(7)])).unwrap())
            .unwrap();
        // The vendor withdraws the release the owner pinned: the host stops running it ...
        let out = store
            .apply_revert(&bytes(&revert(2, Some(1)), 1), NOW)
            .unwrap();
        assert!(out.pinned && out.was_current);
        assert_eq!(store.state().current, Some(1));
        // ... but it is not marked bad: the owner decides when to go back to it.
        assert!(!store.state().bad.contains(&2));
        let report: Report =
            serde_json::from_slice(&std::fs::read(out.report.unwrap()).unwrap()).unwrap();
        assert!(report.reason.contains("pins"), "{}", report.reason);
        assert_eq!(store.rollback(Some(2), false).unwrap().to, 2);
        // A pinned release not installed yet is not marked bad by a revert either.
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store
            .set_owner_root(&root_bytes(&root(1, &[&key(7)], 1), &[&key(7)]))
            .unwrap();
        let mut later = pinned.clone();
        later.mode = PolicyMode::Pin {
            release: 5,
            manifest_hash: Some("ab".repeat(32)),
        };
        store
            .set_policy(&serde_json::to_vec(&sign(&later, &[&key(7)])).unwrap())
            .unwrap();
        assert!(
            store
                .apply_revert(&bytes(&revert(5, None), 1), NOW)
                .unwrap()
                .pinned
        );
        assert!(store.state().bad.is_empty());
        // Any other release is marked bad as usual.
        assert!(
            !store
                .apply_revert(&bytes(&revert(6, None), 1), NOW)
                .unwrap()
                .pinned
        );
        assert_eq!(
            store.state().bad_reasons.get(&6),
            Some(&BadReason::Withdrawn)
        );
    }

    #[test]
    fn a_revert_that_never_expires_is_refused() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        let before = store.state().clone();
        for expires_unix in [u64::MAX, NOW + MAX_REVERT_VALIDITY_SECS + 1, NOW - 1] {
            let r = Revert {
                expires_unix,
                ..revert(1, None)
            };
            let err = store.apply_revert(&bytes(&r, 1), NOW).unwrap_err();
            assert!(
                matches!(err, StoreError::Revert(RevertError::Validity { .. })),
                "{expires_unix}: {err}"
            );
        }
        assert_eq!(store.state(), &before);
        let r = Revert {
            expires_unix: NOW + MAX_REVERT_VALIDITY_SECS,
            ..revert(1, None)
        };
        store.apply_revert(&bytes(&r, 1), NOW).unwrap();
    }
}
