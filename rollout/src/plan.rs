//! A rollout plan: the rings a release goes through, how long each bakes, and the gates that decide
//! whether it goes on.

use serde::{Deserialize, Serialize};

/// Largest first ring allowed: the canary is small, whatever the plan says.
pub const MAX_CANARY_PERCENT: f64 = 5.0;
/// The controller service's default floor on every ring's bake, in seconds (20 minutes): a plan
/// file cannot bake a ring for less, whatever its own gates say.
pub const DEFAULT_BAKE_FLOOR_SECS: u64 = 1_200;
/// The lowest bake floor a controller can be configured with, in seconds (10 minutes: the default
/// silence timeout, so a host that crashes at boot is always noticed before its ring passes).
pub const HARD_MIN_BAKE_SECS: u64 = 600;

fn default_min_confirmed_share() -> f64 {
    0.8
}

/// One ring: the cumulative share of the fleet that has been offered the release once this ring
/// starts, and how long it bakes before the next ring may start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingPlan {
    /// Cumulative percentage of the fleet, `(0, 100]`, strictly increasing from ring to ring; the last
    /// ring is 100.
    pub percent: f64,
    /// Seconds the ring bakes (gates watched) before the next ring may start; for the last ring,
    /// before the rollout is declared complete.
    pub bake_secs: u64,
}

/// The gates: what a cohort on the new release may do compared with the baseline cohort still on
/// the previous release, over the same period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// How often agents report, in seconds.
    pub heartbeat_secs: u64,
    /// A host that took the release and has not reported for this long is **silent**, and counts as a
    /// failure (a host that crashes at boot reports nothing).
    pub silence_secs: u64,
    /// Most extra share of silent hosts (new cohort minus baseline) tolerated.
    pub max_extra_silent: f64,
    /// Most extra share of hosts with a quarantined rule tolerated.
    pub max_extra_quarantined: f64,
    /// Most extra share of hosts that left the release on their own (boot guard fell back) tolerated.
    pub max_extra_reverted: f64,
    /// A detection storm: the new cohort's detections per event above this multiple of the
    /// baseline's...
    pub storm_ratio: f64,
    /// ...and above the baseline by at least this many detections per event.
    pub storm_floor: f64,
    /// Per-event latency: the new cohort's mean above this multiple of the baseline's...
    pub latency_ratio: f64,
    /// ...and above the baseline by at least this many microseconds.
    pub latency_floor_us: f64,
    /// Shortest bake any ring may have, emergencies included: long enough for silence to show.
    pub min_bake_secs: u64,
    /// A ring advances only once at least this share of the hosts offered the release (those of
    /// the open rings that did not refuse it) reported GOOD on it and report freshly: no data is
    /// never a pass (default 0.8).
    #[serde(default = "default_min_confirmed_share")]
    pub min_confirmed_share: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            heartbeat_secs: 60,
            silence_secs: 600,
            max_extra_silent: 0.02,
            max_extra_quarantined: 0.01,
            max_extra_reverted: 0.01,
            storm_ratio: 3.0,
            storm_floor: 0.25,
            latency_ratio: 4.0,
            latency_floor_us: 2_000.0,
            min_bake_secs: 1_200,
            min_confirmed_share: default_min_confirmed_share(),
        }
    }
}

/// A release plus how it rolls out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// The release being rolled out.
    pub release: u64,
    /// The release hosts run before it (what a revert goes back to); `None`: the baseline content.
    pub previous: Option<u64>,
    /// The rings, in order.
    pub rings: Vec<RingPlan>,
    /// The gates.
    pub gates: GateConfig,
    /// An emergency release: shorter bakes (never below [`GateConfig::min_bake_secs`]), still canary
    /// first, still validated.
    pub emergency: bool,
    /// Regions in the order they receive the release within a criticality tier (`[]`: all at once).
    pub region_order: Vec<String>,
}

/// Why a plan is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No rings.
    #[error("a plan needs at least one ring")]
    NoRings,
    /// A ring's percentage is out of range or not above the previous ring's.
    #[error(
        "ring {index}: {percent}% must be above the previous ring's {previous}% and at most 100"
    )]
    RingOrder {
        /// The ring.
        index: usize,
        /// Its percentage.
        percent: f64,
        /// The previous ring's.
        previous: f64,
    },
    /// The last ring does not reach the whole fleet.
    #[error("the last ring is {percent}%; it must be 100")]
    NotWholeFleet {
        /// The last ring's percentage.
        percent: f64,
    },
    /// The first ring is too large to be a canary.
    #[error("the first ring is {percent}%; a canary ring is at most {MAX_CANARY_PERCENT}%")]
    CanaryTooLarge {
        /// The first ring's percentage.
        percent: f64,
    },
    /// A bake is shorter than silence needs to show.
    #[error(
        "ring {index} bakes {bake_secs} s; every ring bakes at least {min} s (silence must have time to show)"
    )]
    BakeTooShort {
        /// The ring.
        index: usize,
        /// Its bake.
        bake_secs: u64,
        /// The minimum.
        min: u64,
    },
    /// A bake is shorter than the controller's floor (the service's own, whatever the plan says).
    #[error(
        "ring {index} bakes {bake_secs} s; this controller bakes every ring at least {floor} s"
    )]
    BakeBelowFloor {
        /// The ring.
        index: usize,
        /// Its bake.
        bake_secs: u64,
        /// The controller's floor.
        floor: u64,
    },
    /// A gate setting is out of range.
    #[error("gate `{name}`: {problem}")]
    Gate {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl RolloutPlan {
    /// The standard plan: 1% → 10% → 50% → 100%, baking 1 h, 2 h, 4 h and 4 h.
    pub fn standard(release: u64, previous: Option<u64>) -> RolloutPlan {
        let ring = |percent, hours: u64| RingPlan {
            percent,
            bake_secs: hours * 3600,
        };
        RolloutPlan {
            release,
            previous,
            rings: vec![ring(1.0, 1), ring(10.0, 2), ring(50.0, 4), ring(100.0, 4)],
            gates: GateConfig::default(),
            emergency: false,
            region_order: Vec::new(),
        }
    }

    /// The same rings with every bake divided by 4, but never below [`GateConfig::min_bake_secs`]: an
    /// emergency goes faster, and still starts with the canary ring and still needs validation.
    pub fn emergency(release: u64, previous: Option<u64>) -> RolloutPlan {
        let mut plan = RolloutPlan::standard(release, previous);
        plan.emergency = true;
        let min = plan.gates.min_bake_secs;
        for ring in &mut plan.rings {
            ring.bake_secs = (ring.bake_secs / 4).max(min);
        }
        plan
    }

    /// Checks the plan: rings strictly increasing up to 100%, a first ring of at most
    /// [`MAX_CANARY_PERCENT`], every bake at least [`GateConfig::min_bake_secs`] and at least the
    /// silence timeout, sane gates.
    pub fn validate(&self) -> Result<(), PlanError> {
        let g = &self.gates;
        let gate = |name, problem: &str| PlanError::Gate {
            name,
            problem: problem.to_owned(),
        };
        if g.heartbeat_secs == 0 {
            return Err(gate("heartbeat_secs", "must be at least 1"));
        }
        if g.silence_secs < 2 * g.heartbeat_secs {
            return Err(gate(
                "silence_secs",
                "must be at least two heartbeats (one late report is not silence)",
            ));
        }
        for (name, v) in [
            ("max_extra_silent", g.max_extra_silent),
            ("max_extra_quarantined", g.max_extra_quarantined),
            ("max_extra_reverted", g.max_extra_reverted),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(gate(name, "must be in [0, 1)"));
            }
        }
        if !(g.min_confirmed_share > 0.0 && g.min_confirmed_share <= 1.0) {
            return Err(gate(
                "min_confirmed_share",
                "must be in (0, 1]: a ring needs hosts that ran the release",
            ));
        }
        for (name, v) in [
            ("storm_ratio", g.storm_ratio),
            ("latency_ratio", g.latency_ratio),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return Err(gate(name, "must be a finite number of at least 1"));
            }
        }
        for (name, v) in [
            ("storm_floor", g.storm_floor),
            ("latency_floor_us", g.latency_floor_us),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(gate(name, "must be a finite number of at least 0"));
            }
        }
        let first = self.rings.first().ok_or(PlanError::NoRings)?;
        if first.percent > MAX_CANARY_PERCENT {
            return Err(PlanError::CanaryTooLarge {
                percent: first.percent,
            });
        }
        let min = g.min_bake_secs.max(g.silence_secs);
        let mut previous = 0.0;
        for (index, ring) in self.rings.iter().enumerate() {
            if !(ring.percent > previous && ring.percent <= 100.0) {
                return Err(PlanError::RingOrder {
                    index,
                    percent: ring.percent,
                    previous,
                });
            }
            if ring.bake_secs < min {
                return Err(PlanError::BakeTooShort {
                    index,
                    bake_secs: ring.bake_secs,
                    min,
                });
            }
            previous = ring.percent;
        }
        if previous != 100.0 {
            return Err(PlanError::NotWholeFleet { percent: previous });
        }
        Ok(())
    }

    /// Checks every ring's bake against a controller's floor (`floor`, raised to at least
    /// [`HARD_MIN_BAKE_SECS`]), independently of the plan's own `min_bake_secs`.
    pub fn check_bake_floor(&self, floor: u64) -> Result<(), PlanError> {
        let floor = floor.max(HARD_MIN_BAKE_SECS);
        for (index, ring) in self.rings.iter().enumerate() {
            if ring.bake_secs < floor {
                return Err(PlanError::BakeBelowFloor {
                    index,
                    bake_secs: ring.bake_secs,
                    floor,
                });
            }
        }
        Ok(())
    }

    /// Total bake time of all rings, in seconds: the shortest a healthy rollout can take.
    pub fn total_bake_secs(&self) -> u64 {
        self.rings.iter().map(|r| r.bake_secs).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_and_emergency_plans_are_valid_and_start_with_the_canary() {
        let plan = RolloutPlan::standard(2, Some(1));
        plan.validate().unwrap();
        let emergency = RolloutPlan::emergency(2, Some(1));
        emergency.validate().unwrap();
        assert_eq!(emergency.rings[0].percent, 1.0);
        assert!(emergency.total_bake_secs() < plan.total_bake_secs());
        assert!(
            emergency
                .rings
                .iter()
                .all(|r| r.bake_secs >= emergency.gates.min_bake_secs)
        );
    }

    #[test]
    fn plans_that_skip_the_canary_or_bake_too_little_are_refused() {
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.rings.remove(0);
        assert!(matches!(
            plan.validate(),
            Err(PlanError::CanaryTooLarge { .. })
        ));
        let mut plan = RolloutPlan::emergency(2, Some(1));
        plan.rings[0].bake_secs = 60;
        let err = plan.validate().unwrap_err();
        assert!(err.to_string().contains("silence must have time"), "{err}");
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.rings.pop();
        assert!(matches!(
            plan.validate(),
            Err(PlanError::NotWholeFleet { .. })
        ));
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.rings.swap(1, 2);
        assert!(matches!(plan.validate(), Err(PlanError::RingOrder { .. })));
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.rings.clear();
        assert_eq!(plan.validate(), Err(PlanError::NoRings));
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.gates.storm_ratio = f64::NAN;
        assert!(matches!(plan.validate(), Err(PlanError::Gate { .. })));
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.gates.min_confirmed_share = 0.0;
        assert!(matches!(plan.validate(), Err(PlanError::Gate { .. })));
    }

    #[test]
    fn a_plan_that_lowers_its_own_minimum_still_meets_the_controllers_floor() {
        // The plan file lowers its own minimum and bakes the canary for two seconds.
        let mut plan = RolloutPlan::standard(2, Some(1));
        plan.gates.min_bake_secs = 1;
        plan.gates.heartbeat_secs = 1;
        plan.gates.silence_secs = 2;
        plan.rings[0].bake_secs = 2;
        plan.validate().unwrap();
        assert_eq!(
            plan.check_bake_floor(DEFAULT_BAKE_FLOOR_SECS),
            Err(PlanError::BakeBelowFloor {
                index: 0,
                bake_secs: 2,
                floor: DEFAULT_BAKE_FLOOR_SECS
            })
        );
        // A floor configured below the hard minimum is raised to it.
        assert!(matches!(
            plan.check_bake_floor(0),
            Err(PlanError::BakeBelowFloor {
                floor: HARD_MIN_BAKE_SECS,
                ..
            })
        ));
        RolloutPlan::standard(2, Some(1))
            .check_bake_floor(DEFAULT_BAKE_FLOOR_SECS)
            .unwrap();
        // An older plan file without the newer gate setting still reads, with its default.
        let mut json = serde_json::to_value(RolloutPlan::standard(2, Some(1))).unwrap();
        json["gates"]
            .as_object_mut()
            .unwrap()
            .remove("min_confirmed_share");
        let read: RolloutPlan = serde_json::from_value(json).unwrap();
        assert_eq!(read.gates.min_confirmed_share, 0.8);
    }
}
