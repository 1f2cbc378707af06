//! One tick's gate evaluation as a table: per gate the new cohort's value, the baseline's, the
//! threshold it is held to, and the verdict (the thresholds are those of
//! [`rulebox_rollout::evaluate`], from the plan's [`GateConfig`]).

use rulebox_rollout::{CohortMetrics, Evaluation, GateConfig, GateFailure};

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateVerdict {
    /// Within its threshold.
    Pass,
    /// Failed: the rollout halts.
    Fail,
    /// A condition to advance that is not met yet (no data is never a pass).
    Waiting,
}

impl GateVerdict {
    /// The word shown.
    pub fn word(self) -> &'static str {
        match self {
            GateVerdict::Pass => "pass",
            GateVerdict::Fail => "FAIL",
            GateVerdict::Waiting => "waiting",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    /// What is measured.
    pub metric: &'static str,
    /// The new cohort's value.
    pub cohort: String,
    /// The baseline's.
    pub baseline: String,
    /// The threshold.
    pub threshold: String,
    /// The verdict.
    pub verdict: GateVerdict,
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn share_row(
    metric: &'static str,
    new: &CohortMetrics,
    count: usize,
    base: &CohortMetrics,
    base_count: usize,
    extra: f64,
    failed: bool,
) -> GateRow {
    GateRow {
        metric,
        cohort: format!("{} ({count} of {})", pct(new.share(count)), new.hosts),
        baseline: format!(
            "{} ({base_count} of {})",
            pct(base.share(base_count)),
            base.hosts
        ),
        threshold: format!("≤ baseline + {}", pct(extra)),
        verdict: if failed {
            GateVerdict::Fail
        } else {
            GateVerdict::Pass
        },
    }
}

/// The rows of `e` under `gates`.
pub fn rows(e: &Evaluation, gates: &GateConfig) -> Vec<GateRow> {
    let failed = |f: fn(&GateFailure) -> bool| e.failures.iter().any(f);
    let (new, base) = (&e.cohort, &e.baseline);
    let storm = (base.detections_per_event * gates.storm_ratio)
        .max(base.detections_per_event + gates.storm_floor);
    let latency = (base.mean_latency_us * gates.latency_ratio)
        .max(base.mean_latency_us + gates.latency_floor_us);
    vec![
        share_row(
            "silent after taking the release",
            new,
            new.silent,
            base,
            base.silent,
            gates.max_extra_silent,
            failed(|f| matches!(f, GateFailure::Silence { .. })),
        ),
        share_row(
            "quarantined a rule",
            new,
            new.quarantined,
            base,
            base.quarantined,
            gates.max_extra_quarantined,
            failed(|f| matches!(f, GateFailure::Quarantine { .. })),
        ),
        share_row(
            "fell back at boot (crash at boot)",
            new,
            new.reverted,
            base,
            base.reverted,
            gates.max_extra_reverted,
            failed(|f| matches!(f, GateFailure::BootGuardReverts { .. })),
        ),
        GateRow {
            metric: "detections per event",
            cohort: format!("{:.3}", new.detections_per_event),
            baseline: format!("{:.3}", base.detections_per_event),
            threshold: format!("≤ {storm:.3}"),
            verdict: if failed(|f| matches!(f, GateFailure::DetectionStorm { .. })) {
                GateVerdict::Fail
            } else {
                GateVerdict::Pass
            },
        },
        GateRow {
            metric: "mean latency per event",
            cohort: format!("{:.0} µs", new.mean_latency_us),
            baseline: format!("{:.0} µs", base.mean_latency_us),
            threshold: format!("≤ {latency:.0} µs"),
            verdict: if failed(|f| matches!(f, GateFailure::Latency { .. })) {
                GateVerdict::Fail
            } else {
                GateVerdict::Pass
            },
        },
        GateRow {
            metric: "reported GOOD, fresh (to advance)",
            cohort: format!("{} of {} offered", new.confirmed, e.eligible),
            baseline: "-".to_owned(),
            threshold: format!("≥ {}", e.needed),
            verdict: if new.confirmed >= e.needed {
                GateVerdict::Pass
            } else {
                GateVerdict::Waiting
            },
        },
    ]
}
