//! The rollout controller: offers a validated release ring by ring, watches the gates, halts and
//! publishes a signed revert when one fails.
//!
//! The controller is a state machine driven by [`Controller::report`] (health reports as they arrive)
//! and [`Controller::tick`] (the clock). It owns no transport: what it publishes (which hosts may take
//! the release, the signed revert) is read with [`Controller::is_offered`] and
//! [`Controller::revert`], and a deployment serves those as static files (`docs/rollout.md`).

use std::path::Path;

use rulebox_release::{KeyFile, ReleaseError, add_signature};
use rulebox_runtime::content::{REVERT_FORMAT, Revert, Signed};
use serde::Serialize;

use crate::fleet::{HostInfo, assign_rings};
use crate::health::{
    CohortMetrics, GateFailure, HealthReport, Member, ReportKind, cohort_metrics, evaluate,
};
use crate::plan::{PlanError, RolloutPlan};

/// Most hosts of the baseline cohort compared at each tick (the first ones, in host order, of the
/// hosts not yet offered the release).
pub const BASELINE_SAMPLE: usize = 1_000;
/// How long a signed revert stays valid, in seconds (a week).
pub const REVERT_VALIDITY_SECS: u64 = 7 * 86_400;

/// Why the controller refused to start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// The plan is invalid.
    #[error("invalid rollout plan: {0}")]
    Plan(#[from] PlanError),
    /// The release did not pass validation, or a revert could not be signed.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The validation is for another release than the plan's.
    #[error("the plan rolls out release {plan} but the validation is of release {validated}")]
    WrongRelease {
        /// The plan's release.
        plan: u64,
        /// The validated release.
        validated: u64,
    },
    /// No key to sign reverts with.
    #[error("the controller needs at least one content-root key to sign reverts")]
    NoRevertKey,
    /// The fleet is empty.
    #[error("the fleet has no hosts")]
    NoHosts,
    /// A report names a host the controller does not know.
    #[error("host index {index} is outside the fleet of {hosts}")]
    UnknownHost {
        /// The index.
        index: usize,
        /// The fleet's size.
        hosts: usize,
    },
}

/// Proof that a release passed validation: every endpoint check on its bundle, and every module
/// loaded in the real runtime and reporting the id and version its manifest states
/// ([`rulebox_release::verify_release`]). Only [`validate_release`] makes one, so no rollout, not
/// even an emergency, starts without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    release: u64,
    manifest_hash: String,
}

impl Validated {
    /// The validated release.
    pub fn release(&self) -> u64 {
        self.release
    }

    /// Its manifest's canonical hash.
    pub fn manifest_hash(&self) -> &str {
        &self.manifest_hash
    }
}

/// Validates the bundle in `bundle_dir` against the root at `root_path` (see [`Validated`]).
pub fn validate_release(
    bundle_dir: &Path,
    root_path: &Path,
    now_unix: u64,
) -> Result<Validated, RolloutError> {
    let bundle = rulebox_release::verify_release(bundle_dir, root_path, None, now_unix)?;
    Ok(Validated {
        release: bundle.release(),
        manifest_hash: bundle.manifest_hash().to_owned(),
    })
}

/// Where the rollout is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Phase {
    /// Ring `ring` (and every ring before it) is offered the release since `since`.
    Rolling {
        /// The ring.
        ring: usize,
        /// When it started.
        since: u64,
    },
    /// A gate failed at `at`: no new host gets the release, and the signed revert is published.
    Halted {
        /// When.
        at: u64,
        /// The ring being baked.
        ring: usize,
        /// What failed.
        failures: Vec<String>,
    },
    /// Every ring passed.
    Complete {
        /// When.
        at: u64,
    },
}

/// What a tick changed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// A ring was opened: its hosts may take the release.
    StartRing {
        /// The ring.
        ring: usize,
        /// Hosts in it.
        hosts: usize,
    },
    /// A gate failed: the release is halted and the signed revert published.
    Halt {
        /// What failed.
        failures: Vec<GateFailure>,
    },
    /// The rollout is complete.
    Complete,
}

#[derive(Debug, Clone, Default)]
struct Track {
    took_at: Option<u64>,
    refused: bool,
    last: Option<HealthReport>,
}

/// A point-in-time summary, for `rulebox rollout status` and the simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStatus {
    /// The release.
    pub release: u64,
    /// Where the rollout is.
    pub phase: Phase,
    /// Hosts per ring.
    pub ring_sizes: Vec<usize>,
    /// Hosts that took the release, per ring.
    pub took: Vec<usize>,
    /// Hosts that refused it (their owner's policy), per ring.
    pub refused: Vec<usize>,
    /// The new cohort's figures at the last tick.
    pub cohort: CohortMetrics,
    /// The baseline cohort's figures at the last tick.
    pub baseline: CohortMetrics,
}

/// The rollout controller (see the module docs).
#[derive(Debug)]
pub struct Controller {
    plan: RolloutPlan,
    rings: Vec<usize>,
    ring_sizes: Vec<usize>,
    tracks: Vec<Track>,
    phase: Phase,
    keys: Vec<KeyFile>,
    revert: Option<Vec<u8>>,
    baseline: CohortMetrics,
    cohort: CohortMetrics,
}

impl Controller {
    /// Starts the rollout of `plan` over `hosts` at `now`: checks the plan, that `validated` is the
    /// plan's release, and that there is a key to sign reverts with (the content root's keys: the
    /// hosts verify reverts against the same root as manifests); opens the first ring.
    pub fn start(
        plan: RolloutPlan,
        hosts: &[HostInfo],
        validated: &Validated,
        revert_keys: Vec<KeyFile>,
        now: u64,
    ) -> Result<Controller, RolloutError> {
        plan.validate()?;
        if validated.release != plan.release {
            return Err(RolloutError::WrongRelease {
                plan: plan.release,
                validated: validated.release,
            });
        }
        if revert_keys.is_empty() {
            return Err(RolloutError::NoRevertKey);
        }
        if hosts.is_empty() {
            return Err(RolloutError::NoHosts);
        }
        let rings = assign_rings(&plan, hosts);
        let mut ring_sizes = vec![0; plan.rings.len()];
        for &r in &rings {
            ring_sizes[r] += 1;
        }
        Ok(Controller {
            tracks: vec![Track::default(); hosts.len()],
            plan,
            rings,
            ring_sizes,
            phase: Phase::Rolling {
                ring: 0,
                since: now,
            },
            keys: revert_keys,
            revert: None,
            baseline: CohortMetrics::default(),
            cohort: CohortMetrics::default(),
        })
    }

    /// The plan.
    pub fn plan(&self) -> &RolloutPlan {
        &self.plan
    }

    /// Where the rollout is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Host `host`'s ring.
    pub fn ring_of(&self, host: usize) -> Option<usize> {
        self.rings.get(host).copied()
    }

    /// Whether host `host` may take the release now (its ring is open and the release is not halted).
    pub fn is_offered(&self, host: usize) -> bool {
        let open = match self.phase {
            Phase::Rolling { ring, .. } => ring,
            Phase::Complete { .. } => self.plan.rings.len(),
            Phase::Halted { .. } => return false,
        };
        self.rings.get(host).is_some_and(|&r| r <= open)
    }

    /// The signed revert envelope (JSON), once the release is halted.
    pub fn revert(&self) -> Option<&[u8]> {
        self.revert.as_deref()
    }

    /// Takes a health report from host `host`.
    pub fn report(&mut self, host: usize, report: HealthReport) -> Result<(), RolloutError> {
        let hosts = self.tracks.len();
        let track = self
            .tracks
            .get_mut(host)
            .ok_or(RolloutError::UnknownHost { index: host, hosts })?;
        match &report.kind {
            ReportKind::Installing { release } if *release == self.plan.release => {
                track.took_at.get_or_insert(report.at_unix);
                track.refused = false;
            }
            ReportKind::Refused { release, .. }
                if *release == self.plan.release && track.took_at.is_none() =>
            {
                track.refused = true;
            }
            _ => {}
        }
        track.last = Some(report);
        Ok(())
    }

    /// Advances the clock to `now`: evaluates the gates on the cohort that took the release against
    /// the baseline cohort; halts on a failure; opens the next ring (or completes) once the current
    /// ring has baked, passed, and every host that took the release has reported on it.
    pub fn tick(&mut self, now: u64) -> Result<Vec<Action>, RolloutError> {
        let Phase::Rolling { ring, since } = self.phase else {
            return Ok(Vec::new());
        };
        let gates = &self.plan.gates;
        let cohort: Vec<Member<'_>> = self
            .tracks
            .iter()
            .filter(|t| t.took_at.is_some())
            .map(|t| Member {
                took_at: t.took_at,
                last: t.last.as_ref(),
            })
            .collect();
        let cohort = cohort_metrics(gates, now, Some(self.plan.release), &cohort);
        let baseline: Vec<Member<'_>> = self
            .tracks
            .iter()
            .zip(&self.rings)
            .filter(|(t, r)| **r > ring && t.took_at.is_none() && !t.refused && t.last.is_some())
            .take(BASELINE_SAMPLE)
            .map(|(t, _)| Member {
                took_at: None,
                last: t.last.as_ref(),
            })
            .collect();
        if !baseline.is_empty() {
            // With every ring open there is no one left to compare with: keep the last baseline.
            self.baseline = cohort_metrics(gates, now, None, &baseline);
        }
        self.cohort = cohort;
        let failures = evaluate(gates, &cohort, &self.baseline);
        if !failures.is_empty() {
            self.halt(now, ring, &failures)?;
            return Ok(vec![Action::Halt { failures }]);
        }
        let baked = now.saturating_sub(since) >= self.plan.rings[ring].bake_secs;
        let settled = cohort.reported == cohort.hosts;
        if !(baked && settled) {
            return Ok(Vec::new());
        }
        if ring + 1 < self.plan.rings.len() {
            self.phase = Phase::Rolling {
                ring: ring + 1,
                since: now,
            };
            Ok(vec![Action::StartRing {
                ring: ring + 1,
                hosts: self.ring_sizes[ring + 1],
            }])
        } else {
            self.phase = Phase::Complete { at: now };
            Ok(vec![Action::Complete])
        }
    }

    fn halt(
        &mut self,
        now: u64,
        ring: usize,
        failures: &[GateFailure],
    ) -> Result<(), RolloutError> {
        let reason = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let mut envelope = Signed {
            signed: Revert {
                format: REVERT_FORMAT,
                release: self.plan.release,
                to: self.plan.previous,
                issued_unix: now,
                expires_unix: now.saturating_add(REVERT_VALIDITY_SECS),
                reason: reason.clone(),
            },
            signatures: Vec::new(),
        };
        for key in &self.keys {
            add_signature(&mut envelope, key)?;
        }
        let bytes = serde_json::to_vec_pretty(&envelope).map_err(ReleaseError::Encode)?;
        self.revert = Some(bytes);
        self.phase = Phase::Halted {
            at: now,
            ring,
            failures: failures.iter().map(ToString::to_string).collect(),
        };
        Ok(())
    }

    /// A summary of the rollout now.
    pub fn status(&self) -> RolloutStatus {
        let n = self.plan.rings.len();
        let mut took = vec![0; n];
        let mut refused = vec![0; n];
        for (t, &r) in self.tracks.iter().zip(&self.rings) {
            if t.took_at.is_some() {
                took[r] += 1;
            } else if t.refused {
                refused[r] += 1;
            }
        }
        RolloutStatus {
            release: self.plan.release,
            phase: self.phase.clone(),
            ring_sizes: self.ring_sizes.clone(),
            took,
            refused,
            cohort: self.cohort,
            baseline: self.baseline,
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use rulebox_runtime::content::{RevertError, parse_trusted_root, verify_revert};

    use super::*;
    use crate::fleet::Criticality;

    fn key(seed: u8) -> KeyFile {
        KeyFile::from_signing_key(&SigningKey::from_bytes(&[seed; 32]))
    }

    fn hosts(n: usize) -> Vec<HostInfo> {
        (0..n)
            .map(|i| HostInfo {
                id: format!("h{i}"),
                vendor_internal: false,
                criticality: Criticality::Low,
                region: "eu".into(),
            })
            .collect()
    }

    fn heartbeat(at: u64, release: u64, quarantined: u32) -> HealthReport {
        HealthReport {
            at_unix: at,
            kind: ReportKind::Heartbeat,
            content_release: Some(release),
            quarantined_rules: quarantined,
            boot_guard_reverts: 0,
            events: 100,
            detections: 5,
            mean_latency_us: 40.0,
        }
    }

    fn validated(release: u64) -> Validated {
        Validated {
            release,
            manifest_hash: "0".repeat(64),
        }
    }

    #[test]
    fn no_rollout_without_validation_of_that_release_or_a_revert_key() {
        let plan = RolloutPlan::standard(42, Some(41));
        let err = Controller::start(plan.clone(), &hosts(10), &validated(41), vec![key(1)], 0)
            .unwrap_err();
        assert!(matches!(
            err,
            RolloutError::WrongRelease {
                plan: 42,
                validated: 41
            }
        ));
        assert!(matches!(
            Controller::start(plan, &hosts(10), &validated(42), Vec::new(), 0),
            Err(RolloutError::NoRevertKey)
        ));
    }

    #[test]
    fn a_failed_gate_halts_and_publishes_a_revert_the_hosts_can_verify() {
        let fleet = hosts(200);
        let mut c = Controller::start(
            RolloutPlan::standard(42, Some(41)),
            &fleet,
            &validated(42),
            vec![key(1)],
            1_000,
        )
        .unwrap();
        let canary: Vec<usize> = (0..fleet.len()).filter(|&i| c.is_offered(i)).collect();
        assert_eq!(canary.len(), 2);
        for i in 0..fleet.len() {
            c.report(i, heartbeat(1_000, 41, 0)).unwrap();
        }
        for &i in &canary {
            let mut installing = heartbeat(1_060, 41, 0);
            installing.kind = ReportKind::Installing { release: 42 };
            c.report(i, installing).unwrap();
            c.report(i, heartbeat(1_060, 42, 1)).unwrap();
        }
        let actions = c.tick(1_060).unwrap();
        assert!(matches!(actions[..], [Action::Halt { .. }]), "{actions:?}");
        assert!(matches!(c.phase(), Phase::Halted { ring: 0, .. }));
        assert!((0..fleet.len()).all(|i| !c.is_offered(i)));
        assert!(c.tick(9_999).unwrap().is_empty());

        // The hosts verify the revert against the content root.
        let signer = key(1);
        let mut root =
            rulebox_release::build_root(1, u64::MAX, &[signer.public.as_str()], 1).unwrap();
        rulebox_release::sign_root(&mut root, &signer).unwrap();
        let root = parse_trusted_root(&serde_json::to_vec(&root).unwrap()).unwrap();
        let bytes = c.revert().unwrap();
        let revert = verify_revert(bytes, &root, 1_100).unwrap();
        assert_eq!((revert.release, revert.to), (42, Some(41)));
        assert!(revert.reason.contains("quarantine"), "{}", revert.reason);
        // Tampered: the target changed after signing.
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let tampered = text.replace("\"to\": 41", "\"to\": 40");
        assert_ne!(tampered, text);
        assert!(matches!(
            verify_revert(tampered.as_bytes(), &root, 1_100),
            Err(RevertError::Signature { .. })
        ));
    }

    #[test]
    fn a_healthy_ring_opens_the_next_only_after_its_bake() {
        let fleet = hosts(100);
        let mut c = Controller::start(
            RolloutPlan::standard(42, Some(41)),
            &fleet,
            &validated(42),
            vec![key(1)],
            0,
        )
        .unwrap();
        let canary: Vec<usize> = (0..fleet.len()).filter(|&i| c.is_offered(i)).collect();
        for t in (0..=3_600).step_by(60) {
            for i in 0..fleet.len() {
                let on = if canary.contains(&i) { 42 } else { 41 };
                if t == 0 && on == 42 {
                    let mut installing = heartbeat(t, 41, 0);
                    installing.kind = ReportKind::Installing { release: 42 };
                    c.report(i, installing).unwrap();
                }
                c.report(i, heartbeat(t, on, 0)).unwrap();
            }
            let actions = c.tick(t).unwrap();
            if t < 3_600 {
                assert!(actions.is_empty(), "at {t}: {actions:?}");
            } else {
                assert!(matches!(actions[..], [Action::StartRing { ring: 1, .. }]));
            }
        }
        let status = c.status();
        assert_eq!(status.took[0], canary.len());
        assert_eq!(status.cohort.hosts, canary.len());
    }
}
