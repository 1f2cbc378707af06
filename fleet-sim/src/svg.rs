//! The simulation's picture: the rollout timeline drawn by [`rulebox_rollout::chart`], the same
//! drawing the controller's dashboard shows live.

use rulebox_rollout::chart::{self, Chart, ChartCounts, ChartSample};

use crate::report::SimReport;

/// The chart of `report`: per ring, the hosts on the new release, quarantined, silent and
/// reverted, with each ring's opening, the halt and the completion.
pub fn chart(report: &SimReport) -> Chart {
    Chart {
        title: format!(
            "rulebox fleet simulate: scenario {}, {} hosts, {} needing manual intervention",
            report.scenario.name(),
            report.hosts,
            report.manual_intervention
        ),
        ring_sizes: report.ring_sizes.clone(),
        ring_opened: report.ring_opened_after_secs.clone(),
        halted: report.halted_after_secs,
        completed: report.completed_after_secs,
        samples: report
            .timeline
            .iter()
            .map(|p| ChartSample {
                t: p.t,
                rings: p
                    .rings
                    .iter()
                    .map(|r| ChartCounts {
                        on_new: r.on_new,
                        quarantined: r.quarantined,
                        silent: r.silent,
                        reverted: r.reverted,
                    })
                    .collect(),
            })
            .collect(),
        end: report.virtual_secs,
    }
}

/// The SVG document for `report`.
pub fn render(report: &SimReport) -> String {
    chart::render(&chart(report))
}
