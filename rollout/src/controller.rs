//! The rollout controller in one process: a [`RolloutState`] driven by [`Controller::report`]
//! (health reports as they arrive) and [`Controller::tick`] (the clock), which signs the reverts
//! its ticks ask for with the root's **rollout role** key, the only key it holds. The controller
//! service (`rulebox-controller`) runs the same state and transitions from its database; the fleet
//! simulation runs them through this type.

use std::path::Path;

use rulebox_release::{OnlineKey, OnlineKeyError, ReleaseError, add_signature};
use rulebox_runtime::content::{Revert, RoleName, Signed};

use crate::fleet::HostInfo;
use crate::health::HealthReport;
use crate::plan::{PlanError, RolloutPlan};
use crate::state::{Effect, Evaluation, Phase, RolloutState, StartOptions};
use crate::status::RolloutStatus;

/// Why the controller refused to start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// The plan is invalid, or bakes below the controller's floor.
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
    /// The key given to sign reverts is not a rollout-role key.
    #[error("the controller signs reverts with a rollout-role key: {0}")]
    RevertKey(#[from] OnlineKeyError),
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
    /// An operation that the rollout's phase does not allow.
    #[error("cannot {action}: the rollout is {phase}")]
    Transition {
        /// The operation.
        action: &'static str,
        /// The phase it is in.
        phase: &'static str,
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
    expires_unix: u64,
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

    /// When its manifest expires (a revert of it stays valid at least until then).
    pub fn expires_unix(&self) -> u64 {
        self.expires_unix
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
        expires_unix: bundle.manifest().expires_unix,
    })
}

/// Signs `revert` with each of `keys` (rollout-role keys; a threshold of the role) and returns the
/// envelope as the JSON bytes hosts verify. ed25519 signatures are deterministic, so the same revert
/// and keys always give the same bytes.
pub fn sign_revert(revert: Revert, keys: &[OnlineKey]) -> Result<Vec<u8>, RolloutError> {
    let mut envelope = Signed {
        signed: revert,
        signatures: Vec::new(),
    };
    for key in keys {
        if key.role != RoleName::Rollout {
            return Err(RolloutError::RevertKey(OnlineKeyError::WrongRole {
                keyid: key.key.keyid.clone(),
                found: key.role,
                needed: RoleName::Rollout,
            }));
        }
        add_signature(&mut envelope, &key.key)?;
    }
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(ReleaseError::Encode)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The rollout controller in one process (see the module docs).
#[derive(Debug)]
pub struct Controller {
    state: RolloutState,
    pending: Vec<(usize, HealthReport)>,
    key: OnlineKey,
    revert: Option<Vec<u8>>,
    evaluation: Option<Evaluation>,
}

impl Controller {
    /// Starts the rollout of `plan` over `hosts` at `now` with the default [`StartOptions`] (the
    /// default bake floor; reverts valid at least as long as the validated manifest): checks the
    /// plan, that `validated` is the plan's release, and that `rollout_key` is a rollout-role key
    /// (hosts verify reverts against their root's rollout role); opens the first ring.
    pub fn start(
        plan: RolloutPlan,
        hosts: &[HostInfo],
        validated: &Validated,
        rollout_key: OnlineKey,
        now: u64,
    ) -> Result<Controller, RolloutError> {
        if validated.release != plan.release {
            return Err(RolloutError::WrongRelease {
                plan: plan.release,
                validated: validated.release,
            });
        }
        if rollout_key.role != RoleName::Rollout {
            return Err(RolloutError::RevertKey(OnlineKeyError::WrongRole {
                keyid: rollout_key.key.keyid.clone(),
                found: rollout_key.role,
                needed: RoleName::Rollout,
            }));
        }
        let options = StartOptions {
            revert_valid_until: validated.expires_unix,
            ..StartOptions::default()
        };
        let (state, _) = RolloutState::start(plan, hosts, now, &options)?;
        Ok(Controller {
            state,
            pending: Vec::new(),
            key: rollout_key,
            revert: None,
            evaluation: None,
        })
    }

    /// The rollout's state.
    pub fn state(&self) -> &RolloutState {
        &self.state
    }

    /// The plan.
    pub fn plan(&self) -> &RolloutPlan {
        self.state.plan()
    }

    /// Where the rollout is.
    pub fn phase(&self) -> &Phase {
        self.state.phase()
    }

    /// Host `host`'s ring.
    pub fn ring_of(&self, host: usize) -> Option<usize> {
        self.state.hosts.get(host).map(|t| t.ring)
    }

    /// Whether host `host` may take the release now (its ring is open and the release is not halted).
    pub fn is_offered(&self, host: usize) -> bool {
        self.state.is_offered(host)
    }

    /// The signed revert envelope (JSON), once one was issued.
    pub fn revert(&self) -> Option<&[u8]> {
        self.revert.as_deref()
    }

    /// The last gate evaluation.
    pub fn last_evaluation(&self) -> Option<&Evaluation> {
        self.evaluation.as_ref()
    }

    /// Takes a health report from host `host` (stamped with the controller's clock); the next
    /// [`Controller::tick`] folds it in.
    pub fn report(&mut self, host: usize, report: HealthReport) -> Result<(), RolloutError> {
        let hosts = self.state.hosts.len();
        if host >= hosts {
            return Err(RolloutError::UnknownHost { index: host, hosts });
        }
        self.pending.push((host, report));
        Ok(())
    }

    /// Advances the clock to `now` ([`RolloutState::tick`] with the reports taken since the last
    /// tick), signs any revert it asks for, and returns its effects.
    pub fn tick(&mut self, now: u64) -> Result<Vec<Effect>, RolloutError> {
        let reports = std::mem::take(&mut self.pending);
        let outcome = self.state.tick(now, &reports)?;
        if outcome.evaluation.is_some() {
            self.evaluation = outcome.evaluation;
        }
        self.carry_out(&outcome.effects)?;
        Ok(outcome.effects)
    }

    /// An operator's halt ([`RolloutState::halt`]).
    pub fn halt(
        &mut self,
        now: u64,
        by: &str,
        reason: &str,
        revert: bool,
    ) -> Result<Vec<Effect>, RolloutError> {
        let effects = self.state.halt(now, by, reason, revert)?;
        self.carry_out(&effects)?;
        Ok(effects)
    }

    /// An operator's resume ([`RolloutState::resume`]).
    pub fn resume(&mut self, now: u64) -> Result<Vec<Effect>, RolloutError> {
        self.state.resume(now)
    }

    fn carry_out(&mut self, effects: &[Effect]) -> Result<(), RolloutError> {
        for effect in effects {
            if let Effect::PublishRevert(revert) = effect {
                self.revert = Some(sign_revert(
                    revert.clone(),
                    std::slice::from_ref(&self.key),
                )?);
            }
        }
        Ok(())
    }

    /// A summary of the rollout at its last tick.
    pub fn status(&self) -> RolloutStatus {
        self.state.status()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use rulebox_release::KeyFile;
    use rulebox_runtime::content::{RevertError, parse_trusted_root, verify_revert};

    use super::*;
    use crate::fleet::Criticality;
    use crate::health::ReportKind;

    fn key(seed: u8, role: RoleName) -> OnlineKey {
        OnlineKey {
            role,
            key: KeyFile::from_signing_key(&SigningKey::from_bytes(&[seed; 32])),
        }
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
            expires_unix: 0,
        }
    }

    #[test]
    fn no_rollout_without_validation_of_that_release_or_with_a_key_of_another_role() {
        let plan = RolloutPlan::standard(42, Some(41));
        let err = Controller::start(
            plan.clone(),
            &hosts(10),
            &validated(41),
            key(1, RoleName::Rollout),
            0,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            RolloutError::WrongRelease {
                plan: 42,
                validated: 41
            }
        ));
        assert!(matches!(
            Controller::start(
                plan,
                &hosts(10),
                &validated(42),
                key(1, RoleName::Timestamp),
                0
            ),
            Err(RolloutError::RevertKey(_))
        ));
    }

    #[test]
    fn a_quarantine_in_the_canary_halts_with_a_revert_signed_by_the_rollout_role() {
        let fleet = hosts(100);
        let rollout = key(7, RoleName::Rollout);
        let mut c = Controller::start(
            RolloutPlan::standard(42, Some(41)),
            &fleet,
            &validated(42),
            rollout.clone(),
            1_000,
        )
        .unwrap();
        let canary = (0..fleet.len()).find(|&i| c.is_offered(i)).unwrap();
        let mut installing = heartbeat(1_010, 41, 0);
        installing.kind = ReportKind::Installing { release: 42 };
        c.report(canary, installing).unwrap();
        c.report(canary, heartbeat(1_060, 42, 2)).unwrap();
        for i in (0..fleet.len()).filter(|&i| i != canary) {
            c.report(i, heartbeat(1_060, 41, 0)).unwrap();
        }
        let effects = c.tick(1_060).unwrap();
        assert!(
            matches!(effects[..], [Effect::Halt { .. }, Effect::PublishRevert(_)]),
            "{effects:?}"
        );
        assert!(
            !c.is_offered(canary),
            "halted: nobody is offered the release"
        );
        assert!(matches!(c.phase(), Phase::Halted { reverted: true, .. }));

        // Hosts verify the revert against a root whose rollout role holds the controller's key.
        let signer = KeyFile::from_signing_key(&SigningKey::from_bytes(&[1; 32]));
        let mut root =
            rulebox_release::build_root(1, u64::MAX, &[signer.public.as_str()], 1).unwrap();
        rulebox_release::declare_role(
            &mut root,
            RoleName::Rollout,
            &[rollout.key.public.as_str()],
            1,
            u64::MAX,
        )
        .unwrap();
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
            Err(RevertError::Role { .. })
        ));
    }

    #[test]
    fn a_healthy_ring_opens_the_next_only_after_its_bake() {
        let fleet = hosts(100);
        let mut c = Controller::start(
            RolloutPlan::standard(42, Some(41)),
            &fleet,
            &validated(42),
            key(1, RoleName::Rollout),
            0,
        )
        .unwrap();
        let canary: Vec<usize> = (0..fleet.len()).filter(|&i| c.is_offered(i)).collect();
        for t in (0..=3_600).step_by(60) {
            for i in 0..fleet.len() {
                let on = if canary.contains(&i) { 42 } else { 41 };
                let mut report = heartbeat(t, on, 0);
                if t == 0 && on == 42 {
                    let mut installing = heartbeat(t, 41, 0);
                    installing.kind = ReportKind::Installing { release: 42 };
                    c.report(i, installing).unwrap();
                    report.kind = ReportKind::Good { release: 42 };
                }
                c.report(i, report).unwrap();
            }
            let effects = c.tick(t).unwrap();
            if t < 3_600 {
                assert!(effects.is_empty(), "at {t}: {effects:?}");
            } else {
                assert!(matches!(effects[..], [Effect::OpenRing { ring: 1, .. }]));
            }
        }
        let status = c.status();
        assert_eq!(status.rings[0].took, canary.len());
        assert_eq!(status.rings[0].good, canary.len());
        assert!(status.rings[1].opened);
        assert_eq!(status.cohort.hosts, canary.len());
    }
}
