//! The boot guard: durable STARTING / GOOD records, fallback to last-known-good after repeated failed
//! starts, fallback to the built-in baseline when nothing else is usable, and manual rollback.
//!
//! The cycle, for the agent:
//!
//! 1. at start-up (and after installing a release), call [`ContentStore::begin_boot`]: it either
//!    records STARTING(V, attempt) durably and returns the verified content of V to activate, or
//!    decides a fallback;
//! 2. after the health window (all rules loaded, N events, T seconds), call
//!    [`ContentStore::mark_good`]: GOOD(V) clears the STARTING record and makes V last-known-good.
//!
//! Because GOOD clears STARTING, a STARTING record with `attempts >= K` means K starts of V in a row
//! never reached GOOD: V is marked bad, and the agent goes back to the last-known-good release
//! (re-verified first) or, if that too is unusable, to the baseline content built into the binary.
//!
//! Only starts that did not end cleanly count: an agent that stops cleanly (SIGTERM, a reboot)
//! before the health window passed calls [`ContentStore::record_clean_stop`], which takes its start
//! back. A release that reached GOOD on this host once is never marked bad by the boot guard: after
//! K failed starts the host falls back from it, and it stays installed for an operator to return to.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::now_unix_ms;
use super::store::{ContentStore, Report, ReportKind, StoreError};
use super::verify::VerifiedBundle;

/// The boot guard's durable records (inside `state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRecord {
    /// STARTING(release, attempts): starts of `release` since it last reached GOOD that did not
    /// end cleanly (cleared by GOOD; a clean stop takes its start back).
    pub starting: Option<Starting>,
    /// The last release that reached GOOD.
    pub good: Option<u64>,
    /// Every installed release that reached GOOD on this host at some point: the boot guard never
    /// marks one of these bad (left out of the JSON when empty).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub reached_good: BTreeSet<u64>,
}

/// A STARTING record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Starting {
    /// The release being started.
    pub release: u64,
    /// How many starts of it have not reached GOOD, this one included.
    pub attempts: u32,
}

/// Why the boot guard did not start the current release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum FallbackReason {
    /// The release started `attempts` times without reaching GOOD or stopping cleanly; it is now
    /// marked bad, unless it reached GOOD on this host before (`marked_bad` false: it stays
    /// installed and usable, the host just does not start it again by itself).
    CrashLoop {
        /// STARTING records without GOOD.
        attempts: u32,
        /// Whether the release is now marked bad.
        marked_bad: bool,
    },
    /// The release failed re-verification (damaged on disk, or no longer trusted). It is not marked
    /// bad: a damaged copy is a disk problem, not bad content.
    Unusable {
        /// What failed.
        error: String,
    },
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FallbackReason::CrashLoop {
                attempts,
                marked_bad: true,
            } => write!(
                f,
                "started {attempts} time(s) without reaching GOOD; marked bad"
            ),
            FallbackReason::CrashLoop {
                attempts,
                marked_bad: false,
            } => write!(
                f,
                "started {attempts} time(s) without reaching GOOD; not marked bad (it reached GOOD on this host before)"
            ),
            FallbackReason::Unusable { error } => write!(f, "unusable: {error}"),
        }
    }
}

/// What the agent runs, as [`ContentStore::begin_boot`] decided. Deliberately exhaustive: a caller
/// must handle every decision.
#[derive(Debug)]
pub enum BootDecision {
    /// Run `bundle` (release `release`); STARTING(release, attempt) is recorded. Call
    /// [`ContentStore::mark_good`] after the health window.
    Start {
        /// The release.
        release: u64,
        /// This start's number since the release last reached GOOD (1 for the first).
        attempt: u32,
        /// Its verified content.
        bundle: VerifiedBundle,
    },
    /// The current release `from` was abandoned; run `bundle` (release `to`: the last-known-good
    /// release, or else the newest other installed release that reached GOOD here; now current,
    /// re-verified, with STARTING(to, 1) recorded). A report was written, if the disk allowed.
    FellBack {
        /// The release abandoned.
        from: u64,
        /// The release now current.
        to: u64,
        /// Why `from` was abandoned.
        reason: FallbackReason,
        /// The report written to `reports/` (`None`: it could not be written).
        report: Option<PathBuf>,
        /// The verified content of `to`.
        bundle: VerifiedBundle,
    },
    /// Run the baseline content built into the agent. `from` is set when this is a fallback (no
    /// other installed release is usable), with the report if it could be written; `from` is `None`
    /// when no release is current (nothing installed yet, or after an earlier fallback to
    /// baseline).
    Baseline {
        /// The release abandoned, if any.
        from: Option<u64>,
        /// Why it was abandoned, if it was.
        reason: Option<FallbackReason>,
        /// The report written, if any.
        report: Option<PathBuf>,
    },
}

/// What [`ContentStore::rollback`] did.
#[derive(Debug)]
pub struct RollbackOutcome {
    /// The release current before.
    pub from: Option<u64>,
    /// The release now current.
    pub to: u64,
    /// The report written.
    pub report: PathBuf,
    /// The verified content of `to`, ready to activate.
    pub bundle: VerifiedBundle,
}

impl ContentStore {
    /// Decides what content to run at start-up (see [`BootDecision`]); `k_max` is the number of
    /// STARTING records without GOOD that abandon a release (the agent's boot-attempts setting, default 3; 0 counts as 1).
    ///
    /// - No current release: [`BootDecision::Baseline`] without a report.
    /// - The current release V has `k_max` starts without GOOD: V is marked bad, and the
    ///   last-known-good release (if any, not V, not bad, and passing re-verification) becomes
    ///   current ([`BootDecision::FellBack`]); otherwise the baseline ([`BootDecision::Baseline`]
    ///   with a report).
    /// - V fails re-verification: the same fallback, without marking V bad.
    /// - Otherwise STARTING(V, attempt + 1) is written durably before this returns
    ///   [`BootDecision::Start`].
    pub fn begin_boot(&mut self, k_max: u32) -> Result<BootDecision, StoreError> {
        self.writable()?;
        let k = k_max.max(1);
        let Some(current) = self.state.current else {
            return Ok(BootDecision::Baseline {
                from: None,
                reason: None,
                report: None,
            });
        };
        if self.state.bad.contains(&current) {
            // Not reachable through this API (a bad release is never made current unless its mark
            // is cleared), but a hand-edited state must not start it.
            return self.fall_back(
                current,
                FallbackReason::Unusable {
                    error: format!("release {current} is marked bad"),
                },
            );
        }
        let previous_attempts = match self.state.boot.starting {
            Some(s) if s.release == current => s.attempts,
            _ => 0,
        };
        if previous_attempts >= k {
            return self.fall_back(
                current,
                FallbackReason::CrashLoop {
                    attempts: previous_attempts,
                    marked_bad: !self.state.boot.reached_good.contains(&current),
                },
            );
        }
        match self.load_release(current) {
            Ok(bundle) => {
                let attempt = previous_attempts.saturating_add(1);
                let mut state = self.state.clone();
                state.boot.starting = Some(Starting {
                    release: current,
                    attempts: attempt,
                });
                self.save_state(state)?;
                Ok(BootDecision::Start {
                    release: current,
                    attempt,
                    bundle,
                })
            }
            Err(e) => self.fall_back(
                current,
                FallbackReason::Unusable {
                    error: e.to_string(),
                },
            ),
        }
    }

    fn fall_back(&mut self, from: u64, reason: FallbackReason) -> Result<BootDecision, StoreError> {
        let mut state = self.state.clone();
        let attempts = match reason {
            FallbackReason::CrashLoop {
                attempts,
                marked_bad,
            } => {
                if marked_bad {
                    state.mark_bad(from, super::store::BadReason::CrashLoop);
                }
                Some(attempts)
            }
            FallbackReason::Unusable { .. } => None,
        };
        if state
            .last_known_good
            .is_some_and(|lkg| state.bad.contains(&lkg))
        {
            state.last_known_good = None;
        }
        // The last-known-good release, then the newest other release that reached GOOD here.
        let mut candidates: Vec<u64> = state.last_known_good.into_iter().collect();
        candidates.extend(state.boot.reached_good.iter().rev().copied());
        candidates.retain(|&r| r != from && !state.bad.contains(&r));
        candidates.dedup();
        let mut why = format!("release {from}: {reason}");
        let mut chosen = None;
        for to in candidates {
            match self.load_release(to) {
                Ok(bundle) => {
                    chosen = Some((to, bundle));
                    break;
                }
                Err(e) => why = format!("{why}; release {to} is unusable too: {e}"),
            }
        }
        if let Some((to, bundle)) = chosen {
            state.current = Some(to);
            state.boot.starting = Some(super::Starting {
                release: to,
                attempts: 1,
            });
            let bad = state.bad.iter().copied().collect();
            self.save_state(state)?;
            let kind = if self.state.last_known_good == Some(to) {
                "last-known-good release"
            } else {
                "release"
            };
            let report = self.best_effort_report(Report {
                kind: ReportKind::Fallback,
                at_unix_ms: now_unix_ms(),
                from: Some(from),
                to: Some(to),
                reason: format!("{why}; reverted to {kind} {to}"),
                attempts,
                bad,
                source: None,
            });
            tracing::warn!(from, to, %reason, "content fell back to an earlier release");
            return Ok(BootDecision::FellBack {
                from,
                to,
                reason,
                report,
                bundle,
            });
        }
        if self.state.last_known_good.is_none() && self.state.boot.reached_good.is_empty() {
            why = format!("{why}; no last-known-good release to revert to");
        }
        state.current = None;
        state.boot.starting = None;
        let bad = state.bad.iter().copied().collect();
        self.save_state(state)?;
        let report = self.best_effort_report(Report {
            kind: ReportKind::Baseline,
            at_unix_ms: now_unix_ms(),
            from: Some(from),
            to: None,
            reason: format!("{why}; running the built-in baseline content"),
            attempts,
            bad,
            source: None,
        });
        tracing::error!(from, %reason, "content fell back to the built-in baseline");
        Ok(BootDecision::Baseline {
            from: Some(from),
            reason: Some(reason),
            report,
        })
    }

    /// Abandons the current release `release` as unusable on this host (the agent found that no
    /// rule of it loads): the same fallback as a release that fails re-verification (to the
    /// last-known-good release, else the newest other release that reached GOOD here, else the
    /// baseline), without marking it bad. Refused unless `release` is current.
    pub fn abandon_unusable(
        &mut self,
        release: u64,
        error: String,
    ) -> Result<BootDecision, StoreError> {
        self.writable()?;
        if self.state.current != Some(release) {
            return Err(StoreError::NotCurrent {
                release,
                current: self.state.current,
            });
        }
        self.fall_back(release, FallbackReason::Unusable { error })
    }

    /// Writes `report` after the decision it describes is recorded: a report that cannot be written
    /// (a full disk) is logged and never undoes or blocks the decision.
    pub(super) fn best_effort_report(&self, report: Report) -> Option<PathBuf> {
        match self.write_report(&report) {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::warn!(error = %e, kind = %report.kind, "cannot write a report");
                None
            }
        }
    }

    /// Records that the agent stopped cleanly (SIGTERM, a reboot, an embedder's `stop`) while the
    /// current release's health window had not passed: the start is taken back from its STARTING
    /// record, so clean restarts never add up to a fallback. Only a start that did not end cleanly
    /// counts. Does nothing when no start is pending.
    pub fn record_clean_stop(&mut self) -> Result<(), StoreError> {
        self.writable()?;
        let Some(starting) = self.state.boot.starting else {
            return Ok(());
        };
        if self.state.current != Some(starting.release) {
            return Ok(());
        }
        let mut state = self.state.clone();
        let attempts = starting.attempts.saturating_sub(1);
        state.boot.starting = (attempts > 0).then_some(Starting {
            release: starting.release,
            attempts,
        });
        self.save_state(state)
    }

    /// Records GOOD(`release`) after its health window: it becomes last-known-good and its STARTING
    /// record is cleared. Refused unless `release` is current.
    pub fn mark_good(&mut self, release: u64) -> Result<(), StoreError> {
        self.writable()?;
        if self.state.current != Some(release) {
            return Err(StoreError::NotCurrent {
                release,
                current: self.state.current,
            });
        }
        let mut state = self.state.clone();
        state.boot.good = Some(release);
        state.boot.starting = None;
        state.boot.reached_good.insert(release);
        state.last_known_good = Some(release);
        self.save_state(state)?;
        // The previous last-known-good release may no longer be kept.
        if let Err(e) = self.prune_releases() {
            tracing::warn!(error = %e, "could not remove old release folders");
        }
        Ok(())
    }

    /// Manual revert: makes `to` (default: the last-known-good release) current, after re-verifying
    /// it. The target must be installed; a release marked bad is refused unless `force`, which also
    /// clears its bad mark. The highest accepted release does not change (newer releases stay
    /// installed but are not reinstalled). Writes state and a `rollback` report. The caller restarts
    /// or hot-swaps to the returned content (and runs the usual boot cycle for it).
    pub fn rollback(
        &mut self,
        to: Option<u64>,
        force: bool,
    ) -> Result<RollbackOutcome, StoreError> {
        self.writable()?;
        let target = match to.or(self.state.last_known_good) {
            Some(t) => t,
            None => return Err(StoreError::NoLastKnownGood),
        };
        if !self.state.installed.contains_key(&target) {
            return Err(StoreError::NotInstalled { release: target });
        }
        if self.state.bad.contains(&target) && !force {
            return Err(self.state.bad_release(target));
        }
        let bundle = self.load_release(target)?;
        let from = self.state.current;
        let mut state = self.state.clone();
        let unmarked = state.unmark_bad(target);
        state.current = Some(target);
        state.boot.starting = None;
        let report = self.write_report(&Report {
            kind: ReportKind::Rollback,
            at_unix_ms: now_unix_ms(),
            from,
            to: Some(target),
            reason: if unmarked {
                format!("manual rollback to release {target} (forced: its bad mark was cleared)")
            } else {
                format!("manual rollback to release {target}")
            },
            attempts: None,
            bad: state.bad.iter().copied().collect(),
            source: None,
        })?;
        self.save_state(state)?;
        tracing::warn!(?from, to = target, "manual content rollback");
        Ok(RollbackOutcome {
            from,
            to: target,
            report,
            bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::store::tests::{install, new_store};

    const K: u32 = 3;

    fn reopen(store: ContentStore) -> ContentStore {
        let dir = store.dir().to_path_buf();
        drop(store);
        ContentStore::open(&dir).unwrap()
    }

    fn corrupt_a_module(store: &ContentStore, release: u64) {
        let bundle = store.load_release(release).unwrap();
        let path = store
            .release_dir(release)
            .join(&bundle.manifest().rules[0].file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }

    fn read_report(path: &std::path::Path) -> Report {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn no_current_release_means_baseline() {
        let (_tmp, mut store) = new_store();
        assert!(matches!(
            store.begin_boot(K).unwrap(),
            BootDecision::Baseline {
                from: None,
                report: None,
                ..
            }
        ));
    }

    #[test]
    fn k_failed_starts_fall_back_to_last_known_good_with_a_report() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        match store.begin_boot(K).unwrap() {
            BootDecision::Start {
                release: 1,
                attempt: 1,
                bundle,
            } => assert_eq!(bundle.release(), 1),
            other => panic!("{other:?}"),
        }
        store.mark_good(1).unwrap();
        assert_eq!(store.state().last_known_good, Some(1));
        assert_eq!(store.state().boot.starting, None);

        install(&mut store, 2);
        // Three starts that never reach GOOD (each in a "new process").
        for attempt in 1..=K {
            store = reopen(store);
            match store.begin_boot(K).unwrap() {
                BootDecision::Start {
                    release: 2,
                    attempt: a,
                    ..
                } => assert_eq!(a, attempt),
                other => panic!("{other:?}"),
            }
            // Durable before begin_boot returned.
            assert_eq!(
                store.state().boot.starting,
                Some(Starting {
                    release: 2,
                    attempts: attempt
                })
            );
        }
        store = reopen(store);
        let report = match store.begin_boot(K).unwrap() {
            BootDecision::FellBack {
                from: 2,
                to: 1,
                reason:
                    FallbackReason::CrashLoop {
                        attempts: K,
                        marked_bad: true,
                    },
                report: Some(report),
                bundle,
            } => {
                assert_eq!(bundle.release(), 1);
                report
            }
            other => panic!("{other:?}"),
        };
        let written = read_report(&report);
        assert_eq!(written.kind, ReportKind::Fallback);
        assert_eq!((written.from, written.to), (Some(2), Some(1)));
        assert_eq!(written.attempts, Some(K));
        assert_eq!(written.bad, vec![2]);
        assert!(report.starts_with(store.reports_dir()));
        assert_eq!(store.state().current, Some(1));
        assert!(store.state().bad.contains(&2));

        // Release 1 is being started (attempt 1 was recorded by the fallback).
        store = reopen(store);
        assert!(matches!(
            store.begin_boot(K).unwrap(),
            BootDecision::Start {
                release: 1,
                attempt: 2,
                ..
            }
        ));
        store.mark_good(1).unwrap();

        // The bad release is never installed again.
        let bundle = tempfile::tempdir().unwrap();
        crate::content::testutil::standard_bundle(
            bundle.path(),
            2,
            &[&crate::content::testutil::key(1)],
        );
        let err = store
            .install(bundle.path(), crate::content::testutil::NOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BadRelease {
                    release: 2,
                    why: Some(crate::content::BadReason::CrashLoop)
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("marked bad"), "{err}");
        let status = store.status_at(crate::content::testutil::NOW);
        assert_eq!(status.bad, vec![2]);
        assert!(status.installed.iter().any(|r| r.release == 2 && r.bad));
    }

    #[test]
    fn a_good_start_resets_the_count() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        for _ in 0..5 {
            assert!(matches!(
                store.begin_boot(K).unwrap(),
                BootDecision::Start { attempt: 1, .. }
            ));
            store.mark_good(1).unwrap();
        }
        assert!(matches!(
            store.mark_good(7),
            Err(StoreError::NotCurrent { release: 7, .. })
        ));
    }

    #[test]
    fn an_unusable_last_known_good_means_baseline_with_a_report() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(K).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        for _ in 0..K {
            store.begin_boot(K).unwrap();
        }
        corrupt_a_module(&store, 1);
        let report = match store.begin_boot(K).unwrap() {
            BootDecision::Baseline {
                from: Some(2),
                reason: Some(FallbackReason::CrashLoop { .. }),
                report: Some(report),
            } => report,
            other => panic!("{other:?}"),
        };
        let written = read_report(&report);
        assert_eq!(written.kind, ReportKind::Baseline);
        assert!(
            written.reason.contains("release 1 is unusable"),
            "{}",
            written.reason
        );
        assert_eq!(store.state().current, None);
        assert!(store.state().bad.contains(&2));
        // Next start: baseline, quietly, never a loop.
        store = reopen(store);
        assert!(matches!(
            store.begin_boot(K).unwrap(),
            BootDecision::Baseline { from: None, .. }
        ));
    }

    #[test]
    fn a_damaged_current_release_falls_back_without_being_marked_bad() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(K).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        corrupt_a_module(&store, 2);
        match store.begin_boot(K).unwrap() {
            BootDecision::FellBack {
                from: 2,
                to: 1,
                reason: FallbackReason::Unusable { error },
                ..
            } => assert!(error.contains("SHA-256"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(store.state().bad.is_empty());
        // Without a last-known-good release: baseline.
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        corrupt_a_module(&store, 1);
        assert!(matches!(
            store.begin_boot(K).unwrap(),
            BootDecision::Baseline {
                from: Some(1),
                report: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_release_that_reached_good_here_is_never_marked_bad_by_the_boot_guard() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(K).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        store.begin_boot(K).unwrap();
        store.mark_good(2).unwrap();
        // Release 2, GOOD here, now fails K starts in a row (crashes, not clean stops).
        for _ in 0..K {
            store = reopen(store);
            store.begin_boot(K).unwrap();
        }
        store = reopen(store);
        match store.begin_boot(K).unwrap() {
            BootDecision::FellBack {
                from: 2,
                to: 1,
                reason:
                    FallbackReason::CrashLoop {
                        attempts: K,
                        marked_bad: false,
                    },
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(store.state().bad.is_empty(), "{:?}", store.state().bad);
        assert!(store.state().boot.reached_good.contains(&2));
        // It stays installed and usable: an operator can go back to it without forcing.
        store.rollback(Some(2), false).unwrap();

        // With no other release that reached GOOD: the baseline, still not marked bad, and the
        // last-known-good pointer kept for `store rollback`.
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(K).unwrap();
        store.mark_good(1).unwrap();
        for _ in 0..K {
            store.begin_boot(K).unwrap();
        }
        assert!(matches!(
            store.begin_boot(K).unwrap(),
            BootDecision::Baseline { from: Some(1), .. }
        ));
        assert!(store.state().bad.is_empty());
        assert_eq!(store.state().last_known_good, Some(1));
        assert_eq!(store.state().current, None);
        assert_eq!(store.rollback(None, false).unwrap().to, 1);
    }

    #[test]
    fn clean_stops_never_add_up_to_a_fallback() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        // Ten starts, each ended by a clean stop (SIGTERM, a reboot) inside the health window.
        for _ in 0..10 {
            store = reopen(store);
            assert!(matches!(
                store.begin_boot(K).unwrap(),
                BootDecision::Start {
                    release: 1,
                    attempt: 1,
                    ..
                }
            ));
            store.record_clean_stop().unwrap();
            assert_eq!(store.state().boot.starting, None);
        }
        assert_eq!(store.state().current, Some(1));
        assert!(store.state().bad.is_empty());
        // A start that did not end cleanly still counts; a clean stop takes back only its own.
        store.begin_boot(K).unwrap();
        store = reopen(store);
        store.begin_boot(K).unwrap();
        store.record_clean_stop().unwrap();
        assert_eq!(
            store.state().boot.starting,
            Some(Starting {
                release: 1,
                attempts: 1
            })
        );
        // Nothing pending: a clean stop changes nothing.
        store.mark_good(1).unwrap();
        let before = store.state().clone();
        store.record_clean_stop().unwrap();
        assert_eq!(store.state(), &before);
    }

    #[test]
    fn an_unusable_release_is_abandoned_without_being_marked_bad() {
        let (_tmp, mut store) = new_store();
        install(&mut store, 1);
        store.begin_boot(K).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        store.begin_boot(K).unwrap();
        assert!(matches!(
            store.abandon_unusable(1, "x".into()),
            Err(StoreError::NotCurrent { release: 1, .. })
        ));
        match store
            .abandon_unusable(2, "no rule of it loaded".into())
            .unwrap()
        {
            BootDecision::FellBack {
                from: 2,
                to: 1,
                reason: FallbackReason::Unusable { error },
                ..
            } => assert!(error.contains("no rule"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(store.state().bad.is_empty());
        assert_eq!(store.state().last_known_good, Some(1));
    }

    #[test]
    fn manual_rollback() {
        let (_tmp, mut store) = new_store();
        assert!(matches!(
            store.rollback(None, false),
            Err(StoreError::NoLastKnownGood)
        ));
        install(&mut store, 1);
        store.begin_boot(K).unwrap();
        store.mark_good(1).unwrap();
        install(&mut store, 2);
        install(&mut store, 3);

        let out = store.rollback(None, false).unwrap();
        assert_eq!((out.from, out.to), (Some(3), 1));
        assert_eq!(out.bundle.release(), 1);
        assert_eq!(read_report(&out.report).kind, ReportKind::Rollback);
        assert_eq!(store.state().current, Some(1));
        assert_eq!(store.state().highest_release, Some(3));

        let out = store.rollback(Some(2), false).unwrap();
        assert_eq!((out.from, out.to), (Some(1), 2));
        assert!(matches!(
            store.rollback(Some(9), false),
            Err(StoreError::NotInstalled { release: 9 })
        ));

        // Release 2 crash-loops and is marked bad: rolling back to it needs force.
        for _ in 0..=K {
            store.begin_boot(K).unwrap();
        }
        assert!(store.state().bad.contains(&2));
        assert_eq!(store.state().current, Some(1));
        assert!(matches!(
            store.rollback(Some(2), false),
            Err(StoreError::BadRelease { release: 2, .. })
        ));
        let out = store.rollback(Some(2), true).unwrap();
        assert_eq!(out.to, 2);
        assert!(store.state().bad.is_empty());
        assert!(read_report(&out.report).reason.contains("forced"));

        // A damaged target is refused.
        corrupt_a_module(&store, 3);
        assert!(matches!(
            store.rollback(Some(3), false),
            Err(StoreError::ReleaseUnusable { release: 3, .. })
        ));
        assert_eq!(store.state().current, Some(2));
    }
}
