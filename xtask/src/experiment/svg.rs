//! `figure.svg`.

use super::points::{Point, Stat};
use super::spec::Experiment;
use crate::svg::{self, esc, LineStyle, Mark, COLORS};
use std::fmt::Write as _;

/// `figure.svg`: two panels against the number of dummies, one line per
/// (policy, dummy kind), solid for the first kind and dashed for others,
/// error bars from min to max of the repetitions. Top: the target's index
/// relative to its solo run (the study's figure). Bottom: the target's CPU
/// time per second of window, what the scheduler gave it.
pub fn figure_svg(exp: &Experiment, points: &[Point]) -> String {
    let (w, h) = (820.0, 760.0);
    let mut s = String::new();
    svg::start(&mut s, w, h, 13, true);
    panel(
        &mut s,
        exp,
        points,
        40.0,
        300.0,
        &format!(
            "Target VM's bench index relative to its solo run ({} guest CPUs)",
            exp.guest_cpus
        ),
        "index / solo index",
        |p| p.relative,
        true,
    );
    if exp.tcg_mode() == "single" {
        model_line(&mut s, exp, points, 40.0, 300.0);
    }
    panel(
        &mut s,
        exp,
        points,
        420.0,
        280.0,
        "Target VM's CPU (CPU-seconds per second; it can use at most 1)",
        "target CPU",
        |p| p.target_cpu,
        false,
    );
    s.push_str("</svg>\n");
    s
}

/// The speed single-threaded TCG alone predicts (mean of the policy lines
/// for the first dummy kind), as a grey dashed line in the top panel: what
/// the index would show if the scheduler took nothing from the target.
fn model_line(s: &mut String, exp: &Experiment, points: &[Point], t: f64, ph: f64) {
    let (l, pw) = (70.0, 520.0);
    let xmax = exp.dummies.iter().copied().max().unwrap_or(1).max(1) as f64;
    let ytop = points
        .iter()
        .filter_map(|p| p.relative.map(|s| s.max))
        .fold(1.2f64, f64::max);
    let ytop = (ytop * 5.0).ceil() / 5.0;
    let Some(kind) = exp.dummy_kinds.first() else {
        return;
    };
    let mut pts = Vec::new();
    for &d in &exp.dummies {
        let xs: Vec<f64> = points
            .iter()
            .filter(|p| p.dummies == d && (d == 0 || &p.kind == kind))
            .filter_map(|p| p.tcg_model.map(|m| m.mean))
            .collect();
        if let Some(m) = Stat::of(&xs) {
            pts.push(format!(
                "{:.1},{:.1}",
                l + pw * d as f64 / xmax,
                t + ph * (1.0 - m.mean / ytop)
            ));
        }
    }
    if pts.len() < 2 {
        return;
    }
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#777" stroke-width="3" stroke-dasharray="8,5" opacity="0.7"/>"##,
        pts.join(" ")
    );
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#777" stroke-width="3" stroke-dasharray="8,5" opacity="0.7"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">emulation alone</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">(TCG model, {kind})</text>"##,
        l + pw + 15.0,
        t + ph - 30.0,
        l + pw + 43.0,
        t + ph - 30.0,
        l + pw + 49.0,
        t + ph - 26.0,
        l + pw + 49.0,
        t + ph - 12.0
    );
}

#[allow(clippy::too_many_arguments)]
fn panel(
    s: &mut String,
    exp: &Experiment,
    points: &[Point],
    t: f64,
    ph: f64,
    title: &str,
    ylabel: &str,
    sel: fn(&Point) -> Option<Stat>,
    legend_on: bool,
) {
    let (l, pw) = (70.0, 520.0);
    let xmax = exp.dummies.iter().copied().max().unwrap_or(1).max(1) as f64;
    let ytop = points
        .iter()
        .filter_map(|p| sel(p).map(|s| s.max))
        .fold(1.2f64, f64::max);
    let ytop = (ytop * 5.0).ceil() / 5.0;
    let x = |d: f64| l + pw * d / xmax;
    let y = |v: f64| t + ph * (1.0 - v / ytop);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{:.1}" text-anchor="middle" font-size="15">{}</text>"#,
        l + pw / 2.0,
        t - 14.0,
        esc(title)
    );
    let mut v = 0.0;
    while v <= ytop + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            l + pw,
            l - 8.0,
            yy + 4.0
        );
        v += 0.2;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2,3"/>"##,
        y(1.0),
        l + pw,
        y(1.0)
    );
    for &d in &exp.dummies {
        let xx = x(d as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#000"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{d}</text>"##,
            t + ph,
            t + ph + 5.0,
            t + ph + 20.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#000"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">dummy VMs beside the target</text>"#,
        l + pw / 2.0,
        t + ph + 40.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        t + ph / 2.0,
        esc(ylabel)
    );
    let mut legend = 0;
    for (pi, pol) in exp.policy.iter().enumerate() {
        let color = COLORS[pi % COLORS.len()];
        for (ki, kind) in exp.dummy_kinds.iter().enumerate() {
            let dash = if ki == 0 {
                ""
            } else if ki == 1 {
                r#" stroke-dasharray="6,4""#
            } else {
                r#" stroke-dasharray="2,3""#
            };
            let mut pts: Vec<(f64, Stat)> = points
                .iter()
                .filter(|p| p.policy == pol.name && (p.dummies == 0 || &p.kind == kind))
                .filter_map(|p| Some((p.dummies as f64, sel(p)?)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.is_empty() {
                continue;
            }
            // Spread the lines a little so their error bars do not hide
            // each other.
            let off = svg::spread(
                pi * exp.dummy_kinds.len() + ki,
                exp.policy.len() * exp.dummy_kinds.len(),
                2.5,
            );
            let marks: Vec<Mark> = pts
                .iter()
                .map(|(d, st)| Mark {
                    x: x(*d) + off,
                    y: y(st.mean),
                    bar: (st.n > 1).then(|| (y(st.min), y(st.max))),
                })
                .collect();
            let style = LineStyle {
                color,
                dash,
                dot_r: 3.5,
                cap: 4.0,
            };
            svg::line_with_bars(s, &marks, &style);
            if legend_on {
                let ly = t + 10.0 + 20.0 * legend as f64;
                let lx = l + pw + 15.0;
                let label = if exp.dummy_kinds.len() > 1 {
                    format!("{} ({kind})", pol.name)
                } else {
                    pol.name.clone()
                };
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                    lx + 28.0,
                    lx + 34.0,
                    ly + 4.0,
                    esc(&label)
                );
            }
            legend += 1;
        }
    }
    if legend_on {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">bars: min–max of repetitions</text>"##,
            l + pw + 15.0,
            t + 20.0 + 20.0 * legend as f64
        );
    }
}
