//! The rollout's timeline as a picture (SVG), drawn the same way for the controller's dashboard and
//! for `rulebox fleet simulate --svg`: one panel per ring, each with the share of the ring's hosts
//! **on the new release**, **quarantined** (a rule of the release was quarantined), **silent**
//! (took the release and stopped reporting) and **reverted** (took it and now run another release),
//! drawn as steps that change only when a count changes; time ticks under the panels; each ring's
//! opening, the halt and the completion marked; the legend inside the frame.
//!
//! Every text placed in the picture is escaped for XML.

use std::fmt::Write as _;

use crate::status::RingStatus;

/// Per-ring counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChartCounts {
    /// Hosts running the new release.
    pub on_new: usize,
    /// Hosts running it with a quarantined rule.
    pub quarantined: usize,
    /// Hosts that took it and stopped reporting (or crash-loop at boot).
    pub silent: usize,
    /// Hosts that took it and now run another release.
    pub reverted: usize,
}

impl ChartCounts {
    /// The counts of a ring's status as the controller computes it.
    pub fn of_ring(ring: &RingStatus) -> ChartCounts {
        ChartCounts {
            on_new: ring
                .took
                .saturating_sub(ring.reverted)
                .saturating_sub(ring.silent),
            quarantined: ring.quarantined,
            silent: ring.silent,
            reverted: ring.reverted,
        }
    }
}

/// The fleet at one moment: `t` seconds after the rollout started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSample {
    /// Seconds since the rollout started.
    pub t: u64,
    /// Per ring.
    pub rings: Vec<ChartCounts>,
}

/// What the picture shows. Times are seconds since the rollout started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chart {
    /// The heading (escaped when drawn).
    pub title: String,
    /// Hosts per ring.
    pub ring_sizes: Vec<usize>,
    /// When each opened ring opened.
    pub ring_opened: Vec<u64>,
    /// When the rollout halted.
    pub halted: Option<u64>,
    /// When it completed.
    pub completed: Option<u64>,
    /// Samples, in time order; each holds until the next.
    pub samples: Vec<ChartSample>,
    /// The end of the time axis (now, or the end of the simulation).
    pub end: u64,
}

/// One series: its name for operators, colour and dash pattern.
struct Series {
    name: &'static str,
    colour: &'static str,
    dash: &'static str,
    pick: fn(&ChartCounts) -> usize,
}

const SERIES: [Series; 4] = [
    Series {
        name: "on the new release",
        colour: "#1f77b4",
        dash: "",
        pick: |c| c.on_new,
    },
    Series {
        name: "quarantined a rule",
        colour: "#ff7f0e",
        dash: "6,3",
        pick: |c| c.quarantined,
    },
    Series {
        name: "silent",
        colour: "#555555",
        dash: "2,3",
        pick: |c| c.silent,
    },
    Series {
        name: "reverted",
        colour: "#d62728",
        dash: "8,3,2,3",
        pick: |c| c.reverted,
    },
];

/// Width of the picture.
pub const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 78.0;
const PANEL_H: f64 = 92.0;
const GAP: f64 = 26.0;
const BOTTOM: f64 = 56.0;

/// Escapes `text` for XML text and quoted attributes.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A time for people: `0`, `45s`, `10m`, `2h`, `1h30m`, `3d`.
pub fn duration_label(secs: u64) -> String {
    match secs {
        0 => "0".to_owned(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s => format!("{}d{}h", s / 86_400, s / 3600 % 24),
    }
}

/// The tick spacing: the smallest "round" step giving at most 8 intervals over `span`.
fn tick_step(span: u64) -> u64 {
    const STEPS: [u64; 16] = [
        10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800,
        604_800,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or(span.div_ceil(8).max(1))
}

/// The picture's height for `rings` panels.
pub fn height(rings: usize) -> f64 {
    TOP + rings.max(1) as f64 * (PANEL_H + GAP) - GAP + BOTTOM
}

/// The SVG document for `chart`.
pub fn render(chart: &Chart) -> String {
    let rings = chart.ring_sizes.len();
    let h = height(rings);
    let plot_w = WIDTH - LEFT - RIGHT;
    let span = chart
        .end
        .max(chart.samples.last().map_or(0, |s| s.t))
        .max(60);
    let x = |t: u64| LEFT + t.min(span) as f64 / span as f64 * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" font-family="sans-serif" font-size="12" role="img">"#
    );
    let _ = writeln!(
        s,
        r##"<rect class="frame" x="0.5" y="0.5" width="{}" height="{}" fill="white" stroke="#999"/>"##,
        WIDTH - 1.0,
        h - 1.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15">{}</text>"#,
        xml_escape(&chart.title)
    );
    // The legend, inside the frame, above the panels.
    let mut lx = LEFT;
    let ly = 48.0;
    let legend_w = plot_w;
    let _ = writeln!(
        s,
        r##"<g class="legend"><rect x="{bx}" y="{by}" width="{legend_w}" height="22" fill="#f7f7f7" stroke="#ccc"/>"##,
        bx = LEFT,
        by = ly - 14.0
    );
    for series in &SERIES {
        let _ = writeln!(
            s,
            r#"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{c}" stroke-width="2.5" stroke-dasharray="{d}"/><text x="{tx}" y="{ty}">{name}</text>"#,
            x1 = lx + 8.0,
            x2 = lx + 36.0,
            y = ly - 3.0,
            c = series.colour,
            d = series.dash,
            tx = lx + 42.0,
            ty = ly + 1.0,
            name = series.name
        );
        lx += 42.0 + series.name.len() as f64 * 6.6 + 22.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{tx}" y="{ty}" text-anchor="end">share of each ring's hosts</text></g>"#,
        tx = LEFT + legend_w - 8.0,
        ty = ly + 1.0
    );
    let step = tick_step(span);
    for (ring, &size) in chart.ring_sizes.iter().enumerate() {
        let top = TOP + ring as f64 * (PANEL_H + GAP);
        let y = |count: usize| top + PANEL_H - count as f64 / size.max(1) as f64 * PANEL_H;
        let _ = writeln!(
            s,
            r##"<g class="ring" data-ring="{ring}"><text x="{LEFT}" y="{ty}" font-weight="bold">ring {ring}: {size} host{plural}</text><rect class="panel" x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#333"/>"##,
            ty = top - 6.0,
            plural = if size == 1 { "" } else { "s" }
        );
        for pct in [0usize, 50, 100] {
            let yy = top + PANEL_H - pct as f64 / 100.0 * PANEL_H;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{x2:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{pct}%</text>"##,
                x2 = LEFT + plot_w,
                tx = LEFT - 6.0,
                ty = yy + 4.0
            );
        }
        let mut t = step;
        while t < span {
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{yb}" stroke="#f0f0f0"/>"##,
                xx = x(t),
                yb = top + PANEL_H
            );
            t += step;
        }
        if let Some(&opened) = chart.ring_opened.get(ring) {
            let _ = writeln!(
                s,
                r##"<line class="mark-open" x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{yb}" stroke="#2ca02c" stroke-width="1.5"/><text x="{tx:.1}" y="{ty}" fill="#2ca02c">opens at {when}</text>"##,
                xx = x(opened),
                yb = top + PANEL_H,
                tx = x(opened) + 4.0,
                ty = top + 13.0,
                when = duration_label(opened)
            );
        }
        for series in &SERIES {
            // A series that stays at zero in this ring would only hide the axis: not drawn.
            if chart
                .samples
                .iter()
                .all(|sample| sample.rings.get(ring).map_or(0, series.pick) == 0)
            {
                continue;
            }
            let mut d = String::new();
            let mut last: Option<f64> = None;
            for sample in &chart.samples {
                let count = sample.rings.get(ring).map_or(0, series.pick);
                let yy = y(count);
                match last {
                    None => {
                        let _ = write!(d, "M{:.1},{yy:.1}", x(sample.t));
                    }
                    Some(prev) if (prev - yy).abs() > f64::EPSILON => {
                        let _ = write!(d, " H{:.1} V{yy:.1}", x(sample.t));
                    }
                    Some(_) => {}
                }
                last = Some(yy);
            }
            if last.is_some() {
                let _ = write!(d, " H{:.1}", x(span));
                let _ = writeln!(
                    s,
                    r#"<path class="series" data-series="{name}" d="{d}" fill="none" stroke="{c}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                    name = series.name,
                    c = series.colour,
                    dash = series.dash
                );
            }
        }
        s.push_str("</g>\n");
    }
    let bottom = TOP + rings.max(1) as f64 * (PANEL_H + GAP) - GAP;
    for (class, at, colour, label) in [
        ("mark-halt", chart.halted, "#d62728", "halted"),
        ("mark-complete", chart.completed, "#2ca02c", "complete"),
    ] {
        if let Some(at) = at {
            let _ = writeln!(
                s,
                r#"<line class="{class}" x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{bottom}" stroke="{colour}" stroke-width="2" stroke-dasharray="5,3"/><text x="{tx:.1}" y="{ty}" fill="{colour}" font-weight="bold">{label} at {when}</text>"#,
                xx = x(at),
                tx = (x(at) + 4.0).min(WIDTH - RIGHT - 90.0),
                ty = TOP + 28.0,
                when = duration_label(at)
            );
        }
    }
    let mut t = 0;
    while t <= span {
        let _ = writeln!(
            s,
            r#"<text class="tick" x="{xx:.1}" y="{ty}" text-anchor="middle">{label}</text>"#,
            xx = x(t),
            ty = bottom + 18.0,
            label = duration_label(t)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{cx:.1}" y="{ty}" text-anchor="middle">time since the rollout started</text>"#,
        cx = LEFT + plot_w / 2.0,
        ty = h - 12.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(on_new: usize, silent: usize) -> ChartCounts {
        ChartCounts {
            on_new,
            silent,
            ..ChartCounts::default()
        }
    }

    fn chart() -> Chart {
        Chart {
            title: "release 42 <script>&".to_owned(),
            ring_sizes: vec![10, 90],
            ring_opened: vec![0, 1_800],
            halted: Some(5_400),
            completed: None,
            samples: vec![
                ChartSample {
                    t: 0,
                    rings: vec![counts(0, 0), counts(0, 0)],
                },
                ChartSample {
                    t: 600,
                    rings: vec![counts(4, 0), counts(0, 0)],
                },
                ChartSample {
                    t: 900,
                    rings: vec![counts(10, 0), counts(0, 0)],
                },
                ChartSample {
                    t: 2_400,
                    rings: vec![counts(8, 2), counts(30, 0)],
                },
            ],
            end: 7_200,
        }
    }

    #[test]
    fn shares_are_steps_and_text_is_escaped() {
        let svg = render(&chart());
        assert!(svg.contains("release 42 &lt;script&gt;&amp;"));
        assert!(!svg.contains("<script"));
        // Ring 0 on the new release: 0 → 4 → 10 → 8 hosts of 10, as horizontal then vertical moves.
        let line = svg
            .lines()
            .find(|l| l.contains(r#"data-series="on the new release""#))
            .unwrap();
        assert!(line.contains(" H"), "{line}");
        assert!(line.contains(" V"), "{line}");
        assert!(!line.contains(" L"), "{line}");
    }

    #[test]
    fn time_ticks_are_round_and_several() {
        assert_eq!(tick_step(7_200), 900);
        assert_eq!(duration_label(5_400), "1h30m");
        assert_eq!(duration_label(86_400 * 2), "2d");
        let svg = render(&chart());
        assert!(svg.matches(r#"class="tick""#).count() > 4);
    }
}
