//! The rollout as data: a serializable [`RolloutState`] and the pure transitions on it
//! ([`RolloutState::start`], [`RolloutState::tick`], [`RolloutState::halt`],
//! [`RolloutState::resume`]). A transition reads nothing but its arguments (no clock, no I/O, no
//! randomness), changes the state, and returns what must happen outside as [`Effect`]s: open a
//! ring, publish a revert. The controller service runs each transition in one database transaction
//! and carries the effects out afterwards through its outbox; `rulebox fleet simulate` runs the very
//! same transitions in memory.

use std::collections::BTreeSet;

use rulebox_runtime::content::{REVERT_FORMAT, Revert};
use serde::{Deserialize, Serialize};

use crate::controller::RolloutError;
use crate::fleet::{HostInfo, assign_rings};
use crate::health::{
    CohortMetrics, GateFailure, HealthReport, Member, ReportKind, cohort_metrics, evaluate,
};
use crate::plan::RolloutPlan;

/// Most hosts of the baseline cohort compared at each tick (the first ones, in host order, of the
/// hosts not yet offered the release).
pub const BASELINE_SAMPLE: usize = 1_000;
/// Shortest validity of a signed revert, in seconds (a week); a revert is also valid at least as
/// long as the withdrawn release's manifest ([`StartOptions::revert_valid_until`]), since a host can
/// install the release until then.
pub const REVERT_VALIDITY_SECS: u64 = 7 * 86_400;
/// Who acts when a gate fails: the controller itself.
pub const CONTROLLER_ACTOR: &str = "controller";

/// Where the rollout is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Phase {
    /// Ring `ring` (and every ring before it) is offered the release since `since`.
    Rolling {
        /// The ring.
        ring: usize,
        /// When it opened (or the rollout resumed).
        since: u64,
    },
    /// No host is offered the release: a gate failed, or an operator halted it.
    Halted {
        /// When.
        at: u64,
        /// The ring being baked.
        ring: usize,
        /// The failed gates, for a gate halt.
        failures: Vec<String>,
        /// Who halted it ([`CONTROLLER_ACTOR`] for a gate).
        by: String,
        /// Why, for people.
        reason: String,
        /// Whether a signed revert was issued (then the release is withdrawn for good and the
        /// rollout cannot resume: roll out a new release number).
        reverted: bool,
    },
    /// Every ring passed.
    Complete {
        /// When.
        at: u64,
    },
}

impl Phase {
    /// A short name: `rolling`, `halted` or `complete`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Rolling { .. } => "rolling",
            Phase::Halted { .. } => "halted",
            Phase::Complete { .. } => "complete",
        }
    }
}

/// What must happen outside the state after a transition.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Effect {
    /// A ring was opened: its hosts may take the release.
    OpenRing {
        /// The ring.
        ring: usize,
        /// Hosts in it.
        hosts: usize,
    },
    /// The release is halted: no host is offered it any more.
    Halt {
        /// The failed gates (empty for an operator's halt).
        failures: Vec<GateFailure>,
    },
    /// Sign this revert with the rollout role and publish it (repository and check-ins).
    PublishRevert(Revert),
    /// A halted rollout goes on with ring `ring`, whose bake starts again.
    Resume {
        /// The ring.
        ring: usize,
    },
    /// The rollout is complete.
    Complete,
}

/// What one host did with the release, folded from its reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTrack {
    /// The host's id.
    pub id: String,
    /// Its ring.
    pub ring: usize,
    /// When it reported installing the release (controller time).
    pub took_at: Option<u64>,
    /// When it reported GOOD on the release.
    pub good_at: Option<u64>,
    /// It refused the release (its owner's policy) and has not taken it since.
    pub refused: bool,
    /// Fetches of the release that failed.
    pub fetch_failures: u32,
    /// Its last report, stamped with the controller's receive time.
    pub last: Option<HealthReport>,
}

impl HostTrack {
    fn fold(&mut self, report: &HealthReport, release: u64) {
        match &report.kind {
            ReportKind::Installing { release: r } if *r == release => {
                self.took_at.get_or_insert(report.at_unix);
                self.refused = false;
            }
            ReportKind::Good { release: r } if *r == release => {
                // A GOOD whose `installing` was lost (dropped from a full spool) still means the
                // host took the release.
                self.took_at.get_or_insert(report.at_unix);
                self.good_at.get_or_insert(report.at_unix);
                self.refused = false;
            }
            ReportKind::Refused { release: r, .. } if *r == release && self.took_at.is_none() => {
                self.refused = true;
            }
            ReportKind::FetchFailed { release: r, .. } if *r == release => {
                self.fetch_failures = self.fetch_failures.saturating_add(1);
            }
            _ => {}
        }
        self.last = Some(report.clone());
    }

    fn member(&self) -> Member<'_> {
        Member {
            took_at: self.took_at,
            good_at: self.good_at,
            last: self.last.as_ref(),
        }
    }
}

/// How a rollout starts, beyond its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// The floor on every ring's bake, seconds ([`RolloutPlan::check_bake_floor`]).
    pub bake_floor_secs: u64,
    /// A revert of this release stays valid at least until this instant (the manifest's expiry).
    pub revert_valid_until: u64,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            bake_floor_secs: crate::plan::DEFAULT_BAKE_FLOOR_SECS,
            revert_valid_until: 0,
        }
    }
}

/// Everything of a rollout but the per-host tracks (small: what the service stores in one row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutCore {
    /// The plan.
    pub plan: RolloutPlan,
    /// Hosts per ring.
    pub ring_sizes: Vec<usize>,
    /// Where the rollout is.
    pub phase: Phase,
    /// When each ring opened, in ring order (as many entries as rings opened so far): a ring
    /// never opens twice.
    pub opened_at: Vec<u64>,
    /// The new cohort's figures at the last tick.
    pub cohort: CohortMetrics,
    /// The baseline cohort's figures at the last evaluation that had one.
    pub baseline: CohortMetrics,
    /// The last tick's time.
    pub last_tick: Option<u64>,
    /// A revert stays valid at least until then ([`StartOptions::revert_valid_until`]).
    pub revert_valid_until: u64,
}

/// A rollout: its core and one track per host of the fleet it started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutState {
    /// Plan, phase, figures.
    pub core: RolloutCore,
    /// One track per host, in the order the fleet was given at the start.
    pub hosts: Vec<HostTrack>,
}

/// Why a tick is holding the current ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum HoldReason {
    /// The ring has not baked long enough.
    Baking {
        /// Seconds of bake left.
        remaining_secs: u64,
    },
    /// Hosts took the release and have not reported on it since.
    Unsettled {
        /// How many.
        waiting: usize,
    },
    /// Too few hosts ran the release through GOOD and report freshly.
    TooFewConfirmed {
        /// Hosts confirmed.
        confirmed: usize,
        /// Hosts needed.
        needed: usize,
    },
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::Baking { remaining_secs } => write!(f, "baking: {remaining_secs} s left"),
            HoldReason::Unsettled { waiting } => write!(
                f,
                "{waiting} host(s) took the release and have not reported on it since"
            ),
            HoldReason::TooFewConfirmed { confirmed, needed } => write!(
                f,
                "{confirmed} host(s) reported GOOD with fresh reports; {needed} needed"
            ),
        }
    }
}

/// A tick's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Verdict {
    /// A gate failed: halted.
    Halt,
    /// Ring `ring` opened.
    Advance {
        /// The ring.
        ring: usize,
    },
    /// The last ring passed.
    Complete,
    /// The ring stays as it is.
    Hold {
        /// Why.
        reasons: Vec<HoldReason>,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Halt => f.write_str("a gate failed: halted"),
            Verdict::Advance { ring } => write!(f, "ring {} passed: ring {ring} opened", ring - 1),
            Verdict::Complete => f.write_str("the last ring passed: complete"),
            Verdict::Hold { reasons } => {
                f.write_str("holding: ")?;
                for (i, r) in reasons.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

/// One gate evaluation, as the audit records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// When.
    pub at: u64,
    /// The ring baking.
    pub ring: usize,
    /// The new cohort's figures.
    pub cohort: CohortMetrics,
    /// The baseline's.
    pub baseline: CohortMetrics,
    /// Failed gates.
    pub failures: Vec<GateFailure>,
    /// Hosts of the open rings that did not refuse the release.
    pub eligible: usize,
    /// Confirmed hosts needed to advance.
    pub needed: usize,
    /// The decision.
    pub verdict: Verdict,
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq)]
pub struct TickOutcome {
    /// What must happen outside.
    pub effects: Vec<Effect>,
    /// The gate evaluation, when the rollout was rolling.
    pub evaluation: Option<Evaluation>,
    /// Indices of the hosts whose track changed (they sent reports), ascending.
    pub changed: Vec<usize>,
}

impl RolloutState {
    /// Starts the rollout of `plan` over `hosts` at `now`: checks the plan and the bake floor,
    /// assigns every host its ring, opens the first ring. The caller has checked that the release
    /// is validated ([`Validated`](crate::Validated)).
    pub fn start(
        plan: RolloutPlan,
        hosts: &[HostInfo],
        now: u64,
        options: &StartOptions,
    ) -> Result<(RolloutState, Vec<Effect>), RolloutError> {
        plan.validate()?;
        plan.check_bake_floor(options.bake_floor_secs)?;
        if hosts.is_empty() {
            return Err(RolloutError::NoHosts);
        }
        let rings = assign_rings(&plan, hosts);
        let mut ring_sizes = vec![0; plan.rings.len()];
        for &r in &rings {
            ring_sizes[r] += 1;
        }
        let tracks = hosts
            .iter()
            .zip(&rings)
            .map(|(h, &ring)| HostTrack {
                id: h.id.clone(),
                ring,
                took_at: None,
                good_at: None,
                refused: false,
                fetch_failures: 0,
                last: None,
            })
            .collect();
        let first = ring_sizes[0];
        let state = RolloutState {
            core: RolloutCore {
                plan,
                ring_sizes,
                phase: Phase::Rolling {
                    ring: 0,
                    since: now,
                },
                opened_at: vec![now],
                cohort: CohortMetrics::default(),
                baseline: CohortMetrics::default(),
                last_tick: None,
                revert_valid_until: options.revert_valid_until,
            },
            hosts: tracks,
        };
        Ok((
            state,
            vec![Effect::OpenRing {
                ring: 0,
                hosts: first,
            }],
        ))
    }

    /// The plan.
    pub fn plan(&self) -> &RolloutPlan {
        &self.core.plan
    }

    /// The release rolled out.
    pub fn release(&self) -> u64 {
        self.core.plan.release
    }

    /// Where the rollout is.
    pub fn phase(&self) -> &Phase {
        &self.core.phase
    }

    /// The highest ring open to the release now (`None` when halted).
    pub fn open_ring(&self) -> Option<usize> {
        match self.core.phase {
            Phase::Rolling { ring, .. } => Some(ring),
            Phase::Complete { .. } => Some(self.core.plan.rings.len().saturating_sub(1)),
            Phase::Halted { .. } => None,
        }
    }

    /// Whether host `host` may take the release now (its ring is open and the release not halted).
    pub fn is_offered(&self, host: usize) -> bool {
        match (self.open_ring(), self.hosts.get(host)) {
            (Some(open), Some(t)) => t.ring <= open,
            _ => false,
        }
    }

    /// Takes `reports` (host index, report stamped with the controller's receive time) and advances
    /// the clock to `now`: folds the reports into the hosts' tracks, then, while rolling, evaluates
    /// the gates on the cohort that took the release against the baseline cohort; halts (and asks
    /// for a revert) on a failure; opens the next ring (or completes) once the current ring has
    /// baked, passed, every host that took the release has reported on it since, and enough hosts
    /// confirmed GOOD ([`GateConfig::min_confirmed_share`](crate::GateConfig)). A report naming a
    /// host outside the fleet changes nothing and is an error.
    pub fn tick(
        &mut self,
        now: u64,
        reports: &[(usize, HealthReport)],
    ) -> Result<TickOutcome, RolloutError> {
        let hosts = self.hosts.len();
        if let Some((index, _)) = reports.iter().find(|(i, _)| *i >= hosts) {
            return Err(RolloutError::UnknownHost {
                index: *index,
                hosts,
            });
        }
        let release = self.release();
        let mut changed = BTreeSet::new();
        for (i, report) in reports {
            self.hosts[*i].fold(report, release);
            changed.insert(*i);
        }
        let changed: Vec<usize> = changed.into_iter().collect();
        self.core.last_tick = Some(now);
        let gates = &self.core.plan.gates;
        let members: Vec<Member<'_>> = self
            .hosts
            .iter()
            .filter(|t| t.took_at.is_some())
            .map(HostTrack::member)
            .collect();
        let cohort = cohort_metrics(gates, now, Some(release), &members);
        self.core.cohort = cohort;
        let Phase::Rolling { ring, since } = self.core.phase else {
            return Ok(TickOutcome {
                effects: Vec::new(),
                evaluation: None,
                changed,
            });
        };
        let baseline: Vec<Member<'_>> = self
            .hosts
            .iter()
            .filter(|t| t.ring > ring && t.took_at.is_none() && !t.refused && t.last.is_some())
            .take(BASELINE_SAMPLE)
            .map(|t| Member {
                took_at: None,
                good_at: None,
                last: t.last.as_ref(),
            })
            .collect();
        if !baseline.is_empty() {
            // With every ring open there is no one left to compare with: keep the last baseline.
            self.core.baseline = cohort_metrics(gates, now, None, &baseline);
        }
        let failures = evaluate(gates, &cohort, &self.core.baseline);
        let eligible = self
            .hosts
            .iter()
            .filter(|t| t.ring <= ring && !t.refused)
            .count();
        let needed = confirmed_needed(gates.min_confirmed_share, eligible);
        let mut evaluation = Evaluation {
            at: now,
            ring,
            cohort,
            baseline: self.core.baseline,
            failures: failures.clone(),
            eligible,
            needed,
            verdict: Verdict::Halt,
        };
        if !failures.is_empty() {
            let reason = failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let mut effects = vec![Effect::Halt {
                failures: failures.clone(),
            }];
            effects.push(Effect::PublishRevert(self.core.revert(now, &reason)));
            self.core.phase = Phase::Halted {
                at: now,
                ring,
                failures: failures.iter().map(ToString::to_string).collect(),
                by: CONTROLLER_ACTOR.to_owned(),
                reason,
                reverted: true,
            };
            return Ok(TickOutcome {
                effects,
                evaluation: Some(evaluation),
                changed,
            });
        }
        let bake = self.core.plan.rings[ring].bake_secs;
        let baked_for = now.saturating_sub(since);
        let mut reasons = Vec::new();
        if baked_for < bake {
            reasons.push(HoldReason::Baking {
                remaining_secs: bake - baked_for,
            });
        }
        if cohort.reported < cohort.hosts {
            reasons.push(HoldReason::Unsettled {
                waiting: cohort.hosts - cohort.reported,
            });
        }
        if cohort.confirmed < needed {
            reasons.push(HoldReason::TooFewConfirmed {
                confirmed: cohort.confirmed,
                needed,
            });
        }
        if !reasons.is_empty() {
            evaluation.verdict = Verdict::Hold { reasons };
            return Ok(TickOutcome {
                effects: Vec::new(),
                evaluation: Some(evaluation),
                changed,
            });
        }
        let effects = if ring + 1 < self.core.plan.rings.len() {
            self.core.phase = Phase::Rolling {
                ring: ring + 1,
                since: now,
            };
            self.core.opened_at.push(now);
            evaluation.verdict = Verdict::Advance { ring: ring + 1 };
            vec![Effect::OpenRing {
                ring: ring + 1,
                hosts: self.core.ring_sizes[ring + 1],
            }]
        } else {
            self.core.phase = Phase::Complete { at: now };
            evaluation.verdict = Verdict::Complete;
            vec![Effect::Complete]
        };
        Ok(TickOutcome {
            effects,
            evaluation: Some(evaluation),
            changed,
        })
    }

    /// An operator's halt ([`RolloutCore::halt`]).
    pub fn halt(
        &mut self,
        now: u64,
        by: &str,
        reason: &str,
        revert: bool,
    ) -> Result<Vec<Effect>, RolloutError> {
        self.core.halt(now, by, reason, revert)
    }

    /// An operator's resume ([`RolloutCore::resume`]).
    pub fn resume(&mut self, now: u64) -> Result<Vec<Effect>, RolloutError> {
        self.core.resume(now)
    }
}

impl RolloutCore {
    fn revert(&self, now: u64, reason: &str) -> Revert {
        Revert {
            format: REVERT_FORMAT,
            release: self.plan.release,
            to: self.plan.previous,
            issued_unix: now,
            expires_unix: now
                .saturating_add(REVERT_VALIDITY_SECS)
                .max(self.revert_valid_until),
            reason: reason.to_owned(),
        }
    }

    /// An operator halts the rollout at `now`: no host is offered the release any more. With
    /// `revert`, a signed revert is also issued (hosts that took the release go back, and the
    /// release can never resume). Allowed while rolling, once complete (to withdraw a release
    /// everywhere), and on a halt without revert (to add the revert); refused on a reverted halt.
    pub fn halt(
        &mut self,
        now: u64,
        by: &str,
        reason: &str,
        revert: bool,
    ) -> Result<Vec<Effect>, RolloutError> {
        let ring = match &self.phase {
            Phase::Rolling { ring, .. } => *ring,
            Phase::Complete { .. } => self.plan.rings.len().saturating_sub(1),
            Phase::Halted {
                reverted: false,
                ring,
                ..
            } if revert => *ring,
            phase => {
                return Err(RolloutError::Transition {
                    action: if revert { "halt with revert" } else { "halt" },
                    phase: phase.name(),
                });
            }
        };
        let mut effects = Vec::new();
        if !matches!(self.phase, Phase::Halted { .. }) {
            effects.push(Effect::Halt {
                failures: Vec::new(),
            });
        }
        let failures = match &self.phase {
            Phase::Halted { failures, .. } => failures.clone(),
            _ => Vec::new(),
        };
        if revert {
            effects.push(Effect::PublishRevert(self.revert(now, reason)));
        }
        self.phase = Phase::Halted {
            at: now,
            ring,
            failures,
            by: by.to_owned(),
            reason: reason.to_owned(),
            reverted: revert,
        };
        Ok(effects)
    }

    /// An operator resumes a rollout halted without a revert: the ring it was baking opens again
    /// and bakes in full from `now`. Refused when the release was reverted (roll out a new release
    /// number instead) or the rollout is not halted.
    pub fn resume(&mut self, now: u64) -> Result<Vec<Effect>, RolloutError> {
        match self.phase {
            Phase::Halted {
                ring,
                reverted: false,
                ..
            } => {
                self.phase = Phase::Rolling { ring, since: now };
                Ok(vec![Effect::Resume { ring }])
            }
            Phase::Halted { reverted: true, .. } => Err(RolloutError::Transition {
                action: "resume (the release was reverted; roll out a new release)",
                phase: "halted",
            }),
            ref phase => Err(RolloutError::Transition {
                action: "resume",
                phase: phase.name(),
            }),
        }
    }
}

/// Confirmed hosts needed out of `eligible`: `ceil(share × eligible)`, and at least one.
fn confirmed_needed(share: f64, eligible: usize) -> usize {
    let exact = share.clamp(0.0, 1.0) * eligible as f64;
    // `exact` is in [0, eligible]; the conversion saturates and the `min` keeps it in range.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative value at most `eligible`, rounded up"
    )]
    let needed = exact.ceil() as usize;
    needed.clamp(1, eligible.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Criticality;

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

    fn report(at: u64, kind: ReportKind, release: u64, quarantined: u32) -> HealthReport {
        HealthReport {
            at_unix: at,
            kind,
            content_release: Some(release),
            quarantined_rules: quarantined,
            boot_guard_reverts: 0,
            events: 100,
            detections: 5,
            mean_latency_us: 40.0,
        }
    }

    fn start(n: usize) -> RolloutState {
        let (state, effects) = RolloutState::start(
            RolloutPlan::standard(42, Some(41)),
            &hosts(n),
            0,
            &StartOptions::default(),
        )
        .unwrap();
        assert!(matches!(effects[..], [Effect::OpenRing { ring: 0, .. }]));
        state
    }

    /// One heartbeat step: every host reports; canary hosts install, then report GOOD.
    fn step(state: &mut RolloutState, t: u64, good: bool) -> TickOutcome {
        let mut reports = Vec::new();
        for i in 0..state.hosts.len() {
            if state.is_offered(i) && state.hosts[i].took_at.is_none() {
                reports.push((i, report(t, ReportKind::Installing { release: 42 }, 41, 0)));
            }
            let on = if state.hosts[i].took_at.is_some() || state.is_offered(i) {
                42
            } else {
                41
            };
            let kind = if on == 42 && good && state.hosts[i].good_at.is_none() {
                ReportKind::Good { release: 42 }
            } else {
                ReportKind::Heartbeat
            };
            reports.push((i, report(t, kind, on, 0)));
        }
        state.tick(t, &reports).unwrap()
    }

    #[test]
    fn the_state_survives_a_round_trip_through_json_and_ticks_the_same() {
        let mut a = start(200);
        for t in (0..1_800).step_by(60) {
            step(&mut a, t, true);
        }
        let mut b: RolloutState =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(a, b);
        for t in (1_800..7_200).step_by(60) {
            assert_eq!(step(&mut a, t, true), step(&mut b, t, true));
        }
        assert_eq!(a, b);
    }

    #[test]
    fn a_ring_without_good_reports_does_not_advance_however_long_it_bakes() {
        let mut state = start(200);
        let mut last = None;
        for t in (0..=4 * 3_600).step_by(60) {
            last = step(&mut state, t, false).evaluation;
        }
        assert_eq!(state.core.opened_at.len(), 1, "still only ring 0 open");
        let Some(Evaluation {
            verdict: Verdict::Hold { reasons },
            ..
        }) = last
        else {
            panic!("{last:?}")
        };
        assert!(
            matches!(
                reasons[..],
                [HoldReason::TooFewConfirmed { confirmed: 0, .. }]
            ),
            "{reasons:?}"
        );
        // Once they report GOOD, it advances.
        let out = step(&mut state, 4 * 3_600 + 60, true);
        assert!(matches!(
            out.effects[..],
            [Effect::OpenRing { ring: 1, .. }]
        ));
    }

    #[test]
    fn a_gate_failure_halts_once_and_asks_for_one_revert_valid_as_long_as_the_manifest() {
        let (mut state, _) = RolloutState::start(
            RolloutPlan::standard(42, Some(41)),
            &hosts(100),
            0,
            &StartOptions {
                revert_valid_until: 90 * 86_400,
                ..StartOptions::default()
            },
        )
        .unwrap();
        let canary = (0..100).find(|&i| state.is_offered(i)).unwrap();
        let reports = [
            (
                canary,
                report(60, ReportKind::Installing { release: 42 }, 41, 0),
            ),
            (canary, report(120, ReportKind::Good { release: 42 }, 42, 3)),
        ];
        let out = state.tick(120, &reports).unwrap();
        let [Effect::Halt { failures }, Effect::PublishRevert(revert)] = &out.effects[..] else {
            panic!("{:?}", out.effects)
        };
        assert!(matches!(failures[..], [GateFailure::Quarantine { .. }]));
        assert_eq!((revert.release, revert.to), (42, Some(41)));
        assert_eq!(revert.expires_unix, 90 * 86_400);
        assert!(!state.is_offered(canary));
        // Later ticks change nothing more, and a reverted halt cannot resume.
        assert!(state.tick(180, &[]).unwrap().effects.is_empty());
        assert!(matches!(
            state.resume(200),
            Err(RolloutError::Transition { .. })
        ));
    }

    #[test]
    fn an_operator_halt_without_revert_resumes_and_rebakes_its_ring() {
        let mut state = start(200);
        for t in (0..1_200).step_by(60) {
            step(&mut state, t, true);
        }
        let effects = state.halt(1_200, "alice", "looks odd", false).unwrap();
        assert!(matches!(effects[..], [Effect::Halt { .. }]));
        assert!(!state.is_offered(0) && state.open_ring().is_none());
        assert!(matches!(
            state.halt(1_210, "alice", "again", false),
            Err(RolloutError::Transition { .. })
        ));
        assert!(matches!(
            state.resume(1_800).unwrap()[..],
            [Effect::Resume { ring: 0 }]
        ));
        // The bake starts again from the resume: ring 1 opens an hour after it, not before.
        let mut opened = None;
        for t in (1_860..=5_400 + 60).step_by(60) {
            if let [Effect::OpenRing { ring: 1, .. }] = step(&mut state, t, true).effects[..] {
                opened = Some(t);
                break;
            }
        }
        assert_eq!(opened, Some(1_800 + 3_600));
        // Halting with a revert after the fact is allowed, and final.
        let effects = state.halt(6_000, "bob", "withdraw", true).unwrap();
        assert!(matches!(
            effects[..],
            [Effect::Halt { .. }, Effect::PublishRevert(_)]
        ));
        assert!(state.halt(6_010, "bob", "again", true).is_err());
    }

    #[test]
    fn a_report_from_outside_the_fleet_changes_nothing() {
        let mut state = start(10);
        let before = state.clone();
        let err = state
            .tick(
                5,
                &[
                    (0, report(5, ReportKind::Heartbeat, 41, 0)),
                    (10, report(5, ReportKind::Heartbeat, 41, 0)),
                ],
            )
            .unwrap_err();
        assert!(matches!(
            err,
            RolloutError::UnknownHost {
                index: 10,
                hosts: 10
            }
        ));
        assert_eq!(state, before);
    }

    #[test]
    fn the_confirmed_quorum_rounds_up_and_needs_at_least_one_host() {
        assert_eq!(confirmed_needed(0.8, 10), 8);
        assert_eq!(confirmed_needed(0.8, 11), 9);
        assert_eq!(confirmed_needed(0.8, 1), 1);
        assert_eq!(confirmed_needed(0.8, 0), 1);
        assert_eq!(confirmed_needed(1.0, 7), 7);
    }
}
