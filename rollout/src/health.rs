//! The gates: a cohort's figures from its members' health reports, and the verdict that compares
//! the new release's cohort with the baseline cohort still on the previous release. The reports
//! themselves ([`HealthReport`], [`ReportKind`]) are the check-in protocol's
//! (`rulebox-controlplane-proto`), re-exported here.

pub use rulebox_controlplane_proto::{FetchFailureClass, HealthReport, ReportKind};
use serde::{Deserialize, Serialize};

use crate::plan::GateConfig;

/// The view of one host a gate needs. Every time in it is the controller's (reports are stamped
/// with the controller's receive time before they reach a gate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member<'a> {
    /// When the host took the release (for the new cohort; `None` for the baseline).
    pub took_at: Option<u64>,
    /// When it reported that its boot guard reached GOOD on the release (new cohort only).
    pub good_at: Option<u64>,
    /// Its last report, if any.
    pub last: Option<&'a HealthReport>,
}

/// A cohort's figures over the gate's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortMetrics {
    /// Hosts in the cohort.
    pub hosts: usize,
    /// Hosts that took the release and have reported on it since.
    pub reported: usize,
    /// Hosts of the new cohort whose boot guard reached GOOD on the release, that still run it and
    /// whose last report is fresh: the only hosts that count as success for a ring.
    #[serde(default)]
    pub confirmed: usize,
    /// Silent hosts.
    pub silent: usize,
    /// Hosts with a quarantined rule.
    pub quarantined: usize,
    /// Hosts that left the release on their own (their boot guard fell back).
    pub reverted: usize,
    /// Detections per event, over the hosts' last heartbeats.
    pub detections_per_event: f64,
    /// Mean per-event latency over the hosts' last heartbeats, microseconds.
    pub mean_latency_us: f64,
}

impl CohortMetrics {
    /// `count / hosts` (0 for an empty cohort).
    pub fn share(&self, count: usize) -> f64 {
        if self.hosts == 0 {
            0.0
        } else {
            count as f64 / self.hosts as f64
        }
    }
}

/// Computes a cohort's figures at `now`. For the new cohort (`release` is `Some`), a member that has
/// not reported on the release within `silence_secs` of taking it, or whose last report is older than
/// `silence_secs`, is silent; a member whose report shows another release than the one it took has
/// reverted; a member that reported GOOD on the release, still runs it and reported freshly is
/// confirmed. For the baseline (`release` is `None`), only the age of the last report counts.
pub fn cohort_metrics(
    gates: &GateConfig,
    now: u64,
    release: Option<u64>,
    members: &[Member<'_>],
) -> CohortMetrics {
    let mut m = CohortMetrics {
        hosts: members.len(),
        ..CohortMetrics::default()
    };
    let (mut events, mut detections, mut latency_sum, mut latency_n) = (0u64, 0u64, 0.0, 0u64);
    for member in members {
        let since = member.took_at.unwrap_or(0);
        let fresh = member
            .last
            .filter(|r| r.at_unix >= since && !matches!(r.kind, ReportKind::Installing { .. }));
        match fresh {
            None => {
                if now.saturating_sub(since) > gates.silence_secs || member.took_at.is_none() {
                    m.silent += 1;
                }
            }
            Some(r) => {
                if now.saturating_sub(r.at_unix) > gates.silence_secs {
                    m.silent += 1;
                    continue;
                }
                m.reported += 1;
                if release.is_some() && r.content_release != release {
                    m.reverted += 1;
                    continue;
                }
                if release.is_some() && member.good_at.is_some() {
                    m.confirmed += 1;
                }
                if r.quarantined_rules > 0 {
                    m.quarantined += 1;
                }
                events = events.saturating_add(r.events);
                detections = detections.saturating_add(r.detections);
                if r.events > 0 {
                    latency_sum += r.mean_latency_us;
                    latency_n += 1;
                }
            }
        }
    }
    if events > 0 {
        m.detections_per_event = detections as f64 / events as f64;
    }
    if latency_n > 0 {
        m.mean_latency_us = latency_sum / latency_n as f64;
    }
    m
}

/// A gate that failed, with the figures that failed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum GateFailure {
    /// Hosts stopped reporting after taking the release.
    Silence {
        /// Silent hosts of the new cohort.
        silent: usize,
        /// Its size.
        hosts: usize,
        /// The baseline's share of silent hosts.
        baseline_share: f64,
    },
    /// Rules were quarantined.
    Quarantine {
        /// Hosts with a quarantined rule.
        quarantined: usize,
        /// The cohort's size.
        hosts: usize,
        /// The baseline's share.
        baseline_share: f64,
    },
    /// Hosts went back on their own (crash loop at boot).
    BootGuardReverts {
        /// Hosts that reverted.
        reverted: usize,
        /// The cohort's size.
        hosts: usize,
    },
    /// A detection storm.
    DetectionStorm {
        /// New cohort's detections per event.
        rate: f64,
        /// Baseline's.
        baseline: f64,
    },
    /// Events take much longer.
    Latency {
        /// New cohort's mean per-event latency, microseconds.
        mean_us: f64,
        /// Baseline's.
        baseline_us: f64,
    },
}

impl std::fmt::Display for GateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateFailure::Silence {
                silent,
                hosts,
                baseline_share,
            } => write!(
                f,
                "silence: {silent} of {hosts} hosts stopped reporting after taking the release (baseline {:.1}%)",
                baseline_share * 100.0
            ),
            GateFailure::Quarantine {
                quarantined,
                hosts,
                baseline_share,
            } => write!(
                f,
                "quarantine: {quarantined} of {hosts} hosts quarantined a rule (baseline {:.1}%)",
                baseline_share * 100.0
            ),
            GateFailure::BootGuardReverts { reverted, hosts } => write!(
                f,
                "crash at boot: {reverted} of {hosts} hosts fell back to last-known-good content"
            ),
            GateFailure::DetectionStorm { rate, baseline } => write!(
                f,
                "detection storm: {rate:.2} detections per event against {baseline:.2} on the previous release"
            ),
            GateFailure::Latency {
                mean_us,
                baseline_us,
            } => write!(
                f,
                "latency: {mean_us:.0} µs per event against {baseline_us:.0} µs on the previous release"
            ),
        }
    }
}

/// The gate's verdict on the new cohort against the baseline cohort.
pub fn evaluate(
    gates: &GateConfig,
    new: &CohortMetrics,
    baseline: &CohortMetrics,
) -> Vec<GateFailure> {
    let mut failures = Vec::new();
    let base_silent = baseline.share(baseline.silent);
    if new.silent > 0 && new.share(new.silent) > base_silent + gates.max_extra_silent {
        failures.push(GateFailure::Silence {
            silent: new.silent,
            hosts: new.hosts,
            baseline_share: base_silent,
        });
    }
    let base_q = baseline.share(baseline.quarantined);
    if new.quarantined > 0 && new.share(new.quarantined) > base_q + gates.max_extra_quarantined {
        failures.push(GateFailure::Quarantine {
            quarantined: new.quarantined,
            hosts: new.hosts,
            baseline_share: base_q,
        });
    }
    if new.reverted > 0
        && new.share(new.reverted) > baseline.share(baseline.reverted) + gates.max_extra_reverted
    {
        failures.push(GateFailure::BootGuardReverts {
            reverted: new.reverted,
            hosts: new.hosts,
        });
    }
    let rate = new.detections_per_event;
    let base_rate = baseline.detections_per_event;
    if rate > base_rate * gates.storm_ratio && rate > base_rate + gates.storm_floor {
        failures.push(GateFailure::DetectionStorm {
            rate,
            baseline: base_rate,
        });
    }
    let lat = new.mean_latency_us;
    let base_lat = baseline.mean_latency_us;
    if lat > base_lat * gates.latency_ratio && lat > base_lat + gates.latency_floor_us {
        failures.push(GateFailure::Latency {
            mean_us: lat,
            baseline_us: base_lat,
        });
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(at: u64, release: u64, quarantined: u32, detections: u64) -> HealthReport {
        HealthReport {
            at_unix: at,
            kind: ReportKind::Heartbeat,
            content_release: Some(release),
            quarantined_rules: quarantined,
            boot_guard_reverts: 0,
            events: 100,
            detections,
            mean_latency_us: 50.0,
        }
    }

    #[test]
    fn silence_counts_against_the_release() {
        let g = GateConfig::default();
        let ok = report(1000, 2, 0, 10);
        let members = [
            Member {
                took_at: Some(900),
                good_at: Some(950),
                last: Some(&ok),
            },
            // Took the release and never reported again.
            Member {
                took_at: Some(900),
                good_at: None,
                last: None,
            },
        ];
        let early = cohort_metrics(&g, 1000, Some(2), &members);
        assert_eq!(early.silent, 0, "not silent before the timeout");
        assert_eq!(early.confirmed, 1, "only the host that reported GOOD");
        let late = cohort_metrics(&g, 900 + g.silence_secs + 1, Some(2), &members);
        assert_eq!(late.silent, 1);
        let base = CohortMetrics {
            hosts: 10,
            ..CohortMetrics::default()
        };
        let failures = evaluate(&g, &late, &base);
        assert!(matches!(
            failures[..],
            [GateFailure::Silence { silent: 1, .. }]
        ));
    }

    #[test]
    fn quarantine_storm_and_reverts_fail_and_a_healthy_cohort_passes() {
        let g = GateConfig::default();
        let base_reports: Vec<_> = (0..10).map(|_| report(1000, 1, 0, 10)).collect();
        let base_members: Vec<_> = base_reports
            .iter()
            .map(|r| Member {
                took_at: None,
                good_at: None,
                last: Some(r),
            })
            .collect();
        let base = cohort_metrics(&g, 1000, None, &base_members);
        assert_eq!(base.silent, 0);
        assert!((base.detections_per_event - 0.1).abs() < 1e-9);

        let healthy: Vec<_> = (0..10).map(|_| report(1000, 2, 0, 11)).collect();
        let cohort = |reports: &[HealthReport]| {
            let members: Vec<_> = reports
                .iter()
                .map(|r| Member {
                    took_at: Some(950),
                    good_at: Some(960),
                    last: Some(r),
                })
                .collect();
            cohort_metrics(&g, 1000, Some(2), &members)
        };
        assert!(evaluate(&g, &cohort(&healthy), &base).is_empty());

        let trapped: Vec<_> = (0..10).map(|_| report(1000, 2, 2, 10)).collect();
        assert!(matches!(
            evaluate(&g, &cohort(&trapped), &base)[..],
            [GateFailure::Quarantine {
                quarantined: 10,
                ..
            }]
        ));
        let storm: Vec<_> = (0..10).map(|_| report(1000, 2, 0, 110)).collect();
        assert!(matches!(
            evaluate(&g, &cohort(&storm), &base)[..],
            [GateFailure::DetectionStorm { .. }]
        ));
        let mut reverted = healthy.clone();
        reverted[3].content_release = Some(1);
        reverted[3].boot_guard_reverts = 1;
        let failures = evaluate(&g, &cohort(&reverted), &base);
        assert!(matches!(
            failures[..],
            [GateFailure::BootGuardReverts { reverted: 1, .. }]
        ));
        assert!(failures[0].to_string().contains("fell back"));
    }
}
