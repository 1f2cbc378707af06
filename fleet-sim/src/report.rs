//! What a simulation reports: per-ring figures over time, policy outcomes, the blast radius.

use serde::Serialize;

use crate::content::{NEW_RELEASE, PREVIOUS_RELEASE};
use crate::real::RealHostRun;
use crate::scenario::{PolicyKind, Scenario};

/// Per-ring figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingPoint {
    /// Hosts running the new release.
    pub on_new: usize,
    /// Hosts hurt by it: crash-looping, silent, or running a bad release.
    pub failing: usize,
    /// Hosts running it with a quarantined rule.
    pub quarantined: usize,
    /// Hosts that took it and crash-loop at boot or stopped reporting.
    pub silent: usize,
    /// Hosts that took it and now run another release (revert or boot-guard fallback).
    pub reverted: usize,
}

/// The fleet at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the rollout started.
    pub t: u64,
    /// Per ring.
    pub rings: Vec<RingPoint>,
}

/// What policy hosts ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyOutcome {
    /// The policy.
    pub kind: PolicyKind,
    /// Hosts with it.
    pub hosts: usize,
    /// Of those, on the new release at the end.
    pub on_new: usize,
    /// On the previous release at the end.
    pub on_previous: usize,
    /// The real policy host's refusal message at the start (the endpoint's own words).
    pub endpoint_refusal: Option<String>,
}

/// The simulation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The scenario.
    pub scenario: Scenario,
    /// Fleet size.
    pub hosts: usize,
    /// Hosts whose owner's policy allows the new release during the rollout.
    pub eligible: usize,
    /// Hosts per ring.
    pub ring_sizes: Vec<usize>,
    /// Seconds from the start to each opened ring's opening.
    pub ring_opened_after_secs: Vec<u64>,
    /// Hosts that installed the new release.
    pub received: usize,
    /// Of those, per ring.
    pub received_by_ring: Vec<usize>,
    /// Hosts outside the canary ring that installed it before the halt (the target is 0; 0 when the
    /// release was not halted).
    pub received_outside_canary_before_halt: usize,
    /// Hosts that quarantined a rule of the new release.
    pub quarantined_hosts: usize,
    /// Hosts that crash-looped at boot.
    pub crash_looped: usize,
    /// Hosts that went silent.
    pub went_silent: usize,
    /// Seconds from the start to the halt.
    pub halted_after_secs: Option<u64>,
    /// Why it halted.
    pub halt_reasons: Vec<String>,
    /// Seconds from the start to completion.
    pub completed_after_secs: Option<u64>,
    /// Hosts that received a bad release and are back on good content.
    pub back_on_good: usize,
    /// Hosts that need a person: still crash-looping, silent, or on a bad release at the end.
    pub manual_intervention: usize,
    /// Hosts on the new release at the end.
    pub on_new_at_end: usize,
    /// Policy hosts.
    pub policies: Vec<PolicyOutcome>,
    /// The real hosts' lives (the probe first).
    pub real_hosts: Vec<RealHostRun>,
    /// Virtual seconds simulated.
    pub virtual_secs: u64,
    /// The fleet over time: a point whenever a ring's figures change, and one at the end.
    pub timeline: Vec<TimelinePoint>,
}

fn fmt_duration(secs: u64) -> String {
    format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}

impl SimReport {
    /// The report for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!(
            "scenario {}: {} hosts, rings {:?}, {} eligible under their owners' policies",
            self.scenario.name(),
            self.hosts,
            self.ring_sizes,
            self.eligible
        ));
        line(format!(
            "  received the release      {:>6}  (per ring {:?})",
            self.received, self.received_by_ring
        ));
        line(format!(
            "  outside canary before halt{:>6}",
            self.received_outside_canary_before_halt
        ));
        line(format!(
            "  quarantined a rule        {:>6}",
            self.quarantined_hosts
        ));
        line(format!(
            "  crash-looped at boot      {:>6}",
            self.crash_looped
        ));
        line(format!(
            "  went silent               {:>6}",
            self.went_silent
        ));
        match self.halted_after_secs {
            Some(t) => line(format!(
                "  halted after              {}: {}",
                fmt_duration(t),
                self.halt_reasons.join("; ")
            )),
            None => line("  halted                    no".to_owned()),
        }
        if let Some(t) = self.completed_after_secs {
            line(format!("  completed after           {}", fmt_duration(t)));
        }
        line(format!(
            "  back on good content      {:>6}",
            self.back_on_good
        ));
        line(format!(
            "  on the new release at end {:>6}",
            self.on_new_at_end
        ));
        line(format!(
            "  NEEDING MANUAL INTERVENTION {:>4}",
            self.manual_intervention
        ));
        for p in &self.policies {
            line(format!(
                "  policy {:<8} {:>5} hosts: {} on release {NEW_RELEASE}, {} on release {PREVIOUS_RELEASE}{}",
                p.kind.name(),
                p.hosts,
                p.on_new,
                p.on_previous,
                p.endpoint_refusal
                    .as_ref()
                    .map(|r| format!(" (endpoint: {r})"))
                    .unwrap_or_default()
            ));
        }
        line(format!(
            "  real hosts (production store, boot guard and runtime): {}; the other {} modelled from the probe",
            self.real_hosts.len(),
            self.hosts.saturating_sub(self.real_hosts.len())
        ));
        line(format!(
            "  virtual time              {}",
            fmt_duration(self.virtual_secs)
        ));
        s
    }
}
