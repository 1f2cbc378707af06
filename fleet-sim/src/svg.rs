//! A hand-written SVG of the simulation: per ring, the share of its hosts running the new release
//! (solid) and the share hurt by it (dashed), over virtual time, with the halt marked.

use std::fmt::Write as _;

use crate::report::{RingPoint, SimReport};

const W: f64 = 900.0;
const H: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 6] = [
    "#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b",
];

/// The SVG document for `report`.
pub fn render(report: &SimReport) -> String {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let t_max = report.virtual_secs.max(1) as f64;
    let x = |t: u64| LEFT + t as f64 / t_max * plot_w;
    let y = |share: f64| TOP + (1.0 - share) * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">rulebox fleet simulate: scenario {}, {} hosts ({} manual interventions)</text>"#,
        report.scenario.name(),
        report.hosts,
        report.manual_intervention
    );
    // Axes and grid.
    for k in 0..=4 {
        let share = f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y0:.1}" x2="{x1:.1}" y2="{y0:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{p}%</text>"##,
            y0 = y(share),
            x1 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = y(share) + 4.0,
            p = k * 25
        );
    }
    let hours = (t_max / 3600.0).ceil().max(1.0);
    let tick_every = if hours > 12.0 { 2.0 } else { 1.0 };
    let mut hour = 0.0;
    while hour <= hours {
        let t = hour * 3600.0;
        if t <= t_max {
            let xx = LEFT + t / t_max * plot_w;
            let _ = writeln!(
                s,
                r#"<text x="{xx:.1}" y="{ty:.1}" text-anchor="middle">{hour}h</text>"#,
                ty = TOP + plot_h + 18.0
            );
        }
        hour += tick_every;
    }
    let _ = writeln!(
        s,
        r#"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle">virtual time since the rollout started</text>"#,
        cx = LEFT + plot_w / 2.0,
        ty = H - 10.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    if let Some(h) = report.halted_after_secs {
        let _ = writeln!(
            s,
            r##"<line x1="{hx:.1}" y1="{TOP}" x2="{hx:.1}" y2="{yb:.1}" stroke="#000" stroke-dasharray="2,3"/><text x="{tx:.1}" y="{ty:.1}">halt</text>"##,
            hx = x(h),
            yb = TOP + plot_h,
            tx = x(h) + 4.0,
            ty = TOP + 14.0
        );
    }
    // One solid (adoption) and one dashed (failing) line per ring.
    for (ring, size) in report.ring_sizes.iter().enumerate() {
        let colour = COLOURS[ring % COLOURS.len()];
        let size = (*size).max(1) as f64;
        for (dash, pick) in [
            ("", (|p: &RingPoint| p.on_new) as fn(&RingPoint) -> usize),
            (r#" stroke-dasharray="6,4""#, |p: &RingPoint| p.failing),
        ] {
            let points: Vec<String> = report
                .timeline
                .iter()
                .filter_map(|tp| {
                    tp.rings
                        .get(ring)
                        .map(|p| format!("{:.1},{:.1}", x(tp.t), y(pick(p) as f64 / size)))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
                points.join(" ")
            );
        }
        let ly = TOP + 16.0 + ring as f64 * 36.0;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{lx2:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{tx:.1}" y="{ty:.1}">ring {ring} ({n} hosts)</text>"#,
            lx2 = lx + 22.0,
            tx = lx + 28.0,
            ty = ly + 4.0,
            n = report.ring_sizes[ring]
        );
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly2:.1}" x2="{lx2:.1}" y2="{ly2:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="6,4"/><text x="{tx:.1}" y="{ty2:.1}">failing</text>"#,
            ly2 = ly + 14.0,
            lx2 = lx + 22.0,
            tx = lx + 28.0,
            ty2 = ly + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{lx:.1}" y="{ty:.1}">solid: on the new release</text>"#,
        lx = LEFT + plot_w + 12.0,
        ty = TOP + plot_h - 4.0
    );
    s.push_str("</svg>\n");
    s
}
