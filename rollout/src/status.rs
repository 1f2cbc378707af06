//! A rollout's summary for people and scripts: where it is, and per ring what its hosts did.

use serde::{Deserialize, Serialize};

use crate::health::{CohortMetrics, Member, cohort_metrics};
use crate::state::{HostTrack, Phase, RolloutState};

/// One ring's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingStatus {
    /// Hosts in the ring.
    pub hosts: usize,
    /// Whether the ring has been opened (its hosts were offered the release).
    pub opened: bool,
    /// When it opened.
    pub opened_at: Option<u64>,
    /// Hosts that took the release.
    pub took: usize,
    /// Hosts that reported GOOD on it, still run it and report freshly.
    pub good: usize,
    /// Hosts that took it and went silent.
    pub silent: usize,
    /// Hosts that refused it (their owner's policy).
    pub refused: usize,
    /// Hosts that took it and now run another release (reverted, or their boot guard fell back).
    pub reverted: usize,
    /// Hosts that run it, report freshly, and have a quarantined rule.
    #[serde(default)]
    pub quarantined: usize,
    /// Hosts that have not taken it and reported failed fetches.
    pub fetch_failed: usize,
}

/// A point-in-time summary, for `rulebox rollout status` and the simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStatus {
    /// The release.
    pub release: u64,
    /// The release a revert goes back to.
    pub previous: Option<u64>,
    /// Where the rollout is.
    pub phase: Phase,
    /// Per ring.
    pub rings: Vec<RingStatus>,
    /// The new cohort's figures at the last tick.
    pub cohort: CohortMetrics,
    /// The baseline cohort's figures at the last evaluation.
    pub baseline: CohortMetrics,
    /// The last tick's time.
    pub last_tick: Option<u64>,
}

impl RolloutStatus {
    /// Hosts per ring.
    pub fn ring_sizes(&self) -> Vec<usize> {
        self.rings.iter().map(|r| r.hosts).collect()
    }
}

impl RolloutState {
    /// A summary of the rollout at its last tick.
    pub fn status(&self) -> RolloutStatus {
        let core = &self.core;
        let now = core.last_tick.unwrap_or(0);
        let release = Some(core.plan.release);
        let mut rings: Vec<RingStatus> = core
            .ring_sizes
            .iter()
            .enumerate()
            .map(|(i, &hosts)| RingStatus {
                hosts,
                opened: i < core.opened_at.len(),
                opened_at: core.opened_at.get(i).copied(),
                ..RingStatus::default()
            })
            .collect();
        let mut members: Vec<Vec<&HostTrack>> = vec![Vec::new(); rings.len()];
        for t in &self.hosts {
            let Some(ring) = rings.get_mut(t.ring) else {
                continue;
            };
            if t.took_at.is_some() {
                ring.took += 1;
                members[t.ring].push(t);
            } else if t.refused {
                ring.refused += 1;
            } else if t.fetch_failures > 0 {
                ring.fetch_failed += 1;
            }
        }
        for (ring, tracks) in rings.iter_mut().zip(&members) {
            let view: Vec<Member<'_>> = tracks
                .iter()
                .map(|t| Member {
                    took_at: t.took_at,
                    good_at: t.good_at,
                    last: t.last.as_ref(),
                })
                .collect();
            let m = cohort_metrics(&core.plan.gates, now, release, &view);
            ring.good = m.confirmed;
            ring.silent = m.silent;
            ring.reverted = m.reverted;
            ring.quarantined = m.quarantined;
        }
        RolloutStatus {
            release: core.plan.release,
            previous: core.plan.previous,
            phase: core.phase.clone(),
            rings,
            cohort: core.cohort,
            baseline: core.baseline,
            last_tick: core.last_tick,
        }
    }
}
