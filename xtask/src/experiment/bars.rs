//! The small figures of `report.md` and `results.rst`: `sweep.svg` (the
//! target's index relative to solo against the number of dummies of the
//! first kind, one line per policy) and, per panel, `panel-<name>.svg`
//! (each VM's CPU as a bar per policy, its entitlement as a black mark
//! across the bars). A policy has the same
//! colour in every figure (its place among the experiment's `[[policy]]`
//! entries).

use super::panels::{PanelDef, PanelPoint};
use super::points::{Point, Stat};
use super::spec::Experiment;
use crate::svg::{self, esc, LineStyle, Mark, COLORS};
use std::fmt::Write as _;

/// The colour of a policy line.
pub fn policy_color(exp: &Experiment, policy: &str) -> &'static str {
    let i = exp
        .policy
        .iter()
        .position(|p| p.name == policy)
        .unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// A round top for a y axis that shows `max`: the next multiple of `step`
/// at or above it, at least `floor`.
pub fn axis_top(max: f64, step: f64, floor: f64) -> f64 {
    let m = max.max(floor);
    (m / step - 1e-9).ceil() * step
}

/// Horizontal grid lines with labels every `step` from 0 to `top`.
#[allow(clippy::too_many_arguments)]
fn grid(s: &mut String, l: f64, t: f64, pw: f64, ph: f64, top: f64, step: f64, prec: usize) {
    let n = (top / step).round() as usize;
    for k in 0..=n {
        let v = step * k as f64;
        let y = t + ph * (1.0 - v / top);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.p$}</text>"##,
            l + pw,
            l - 6.0,
            y + 4.0,
            p = prec
        );
    }
}

/// Legend entries in one row under the title.
fn legend(s: &mut String, exp: &Experiment, x0: f64, y: f64, policies: &[&str]) {
    let mut x = x0;
    for p in policies {
        let c = policy_color(exp, p);
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{c}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 10.0,
            x + 16.0,
            esc(p)
        );
        x += 26.0 + 7.5 * p.len() as f64;
    }
}

/// Width per VM group of a panel figure with many VMs (px).
const MIN_GROUP_W: f64 = 56.0;
/// About the width of a character of the 12 px labels (px).
const CHAR_W: f64 = 6.5;

/// A panel VM's label under its bars: its name, then its vCPUs, its weight
/// (where the panel has any other than the default), its reservation and
/// its limit.
fn vm_label(v: &super::panels::VmPoint, weighted: bool) -> (String, Vec<String>) {
    let mut details = vec![format!("{} vCPU", v.vcpus)];
    if weighted {
        details.push(format!("w {}", v.weight));
    }
    if v.reservation > 0.0 {
        details.push(format!("r {:.2}", v.reservation));
    }
    if v.limit > 0.0 {
        details.push(format!("l {:.2}", v.limit));
    }
    (v.label.clone(), details)
}

/// `panel-<name>.svg`: per VM a group of bars, one per policy (mean CPU,
/// a thin line from the lowest to the highest repetition), and the VM's
/// entitlement as a black mark across its group. Under each group the VM's
/// label, on one line where the labels fit, else a line per part (a panel
/// of many VMs; the figure also widens with them).
pub fn panel_svg(exp: &Experiment, def: &PanelDef, pts: &[&PanelPoint]) -> String {
    let labels: Vec<((String, Vec<String>), f64)> = pts
        .iter()
        .find(|p| !p.vms.is_empty())
        .map(|p| {
            // Weights are named where the panel has any other than the default.
            let weighted = p.vms.iter().any(|v| v.weight != 100);
            p.vms
                .iter()
                .map(|v| (vm_label(v, weighted), v.entitled))
                .collect()
        })
        .unwrap_or_default();
    let groups = labels.len().max(1) as f64;
    let (l, t, ph) = (50.0, 52.0, 170.0);
    let pw = (MIN_GROUP_W * groups).max(390.0);
    let gw = pw / groups;
    let one_line: Vec<String> = labels
        .iter()
        .map(|((name, d), _)| format!("{name} ({})", d.join(", ")))
        .collect();
    let stacked = one_line
        .iter()
        .any(|x| CHAR_W * x.chars().count() as f64 > gw - 6.0);
    let lines = if stacked {
        labels
            .iter()
            .map(|((_, d), _)| 1 + d.len())
            .max()
            .unwrap_or(1)
    } else {
        1
    };
    let (w, h) = (l + pw + 20.0, 270.0 + 13.0 * (lines - 1) as f64);
    let mut s = String::new();
    svg::start(&mut s, w, h, 12, true);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="18" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        esc(&def.title)
    );
    let pols: Vec<&str> = pts.iter().map(|p| p.policy.as_str()).collect();
    legend(&mut s, exp, l, 38.0, &pols);
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="34" x2="{:.1}" y2="34" stroke="black" stroke-width="3"/><text x="{:.1}" y="38">entitled</text>"#,
        l + pw - 70.0,
        l + pw - 52.0,
        l + pw - 48.0
    );
    let vmax = pts
        .iter()
        .flat_map(|p| p.vms.iter())
        .flat_map(|v| [v.cpu.map_or(0.0, |c| c.max), v.entitled])
        .fold(0.0, f64::max);
    let top = axis_top(vmax, 0.5, 1.0);
    grid(&mut s, l, t, pw, ph, top, 0.5, 1);
    let y = |v: f64| t + ph * (1.0 - v / top);
    let nb = pols.len().max(1) as f64;
    let bw = (gw * 0.7 / nb).min(40.0);
    for (k, ((name, details), ent)) in labels.iter().enumerate() {
        let gx = l + gw * k as f64 + (gw - bw * nb) / 2.0;
        for (b, p) in pts.iter().enumerate() {
            let Some(st) = p.vms.get(k).and_then(|v| v.cpu) else {
                continue;
            };
            let c = policy_color(exp, &p.policy);
            let x = gx + bw * b as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{c}"/>"#,
                y(st.mean),
                bw - 2.0,
                (y(0.0) - y(st.mean)).max(0.0)
            );
            if st.n > 1 {
                let xm = x + (bw - 2.0) / 2.0;
                let _ = writeln!(
                    s,
                    r##"<line x1="{xm:.1}" y1="{:.1}" x2="{xm:.1}" y2="{:.1}" stroke="#333"/>"##,
                    y(st.min),
                    y(st.max)
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-width="3"/>"#,
            gx - 4.0,
            y(*ent),
            gx + bw * nb + 2.0,
            y(*ent)
        );
        let x = l + gw * (k as f64 + 0.5);
        if stacked {
            let parts = std::iter::once(name).chain(details);
            for (i, part) in parts.enumerate() {
                let _ = writeln!(
                    s,
                    r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                    t + ph + 16.0 + 13.0 * i as f64,
                    esc(part)
                );
            }
        } else {
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                t + ph + 16.0,
                esc(&one_line[k])
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#000"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">CPU</text>"#,
        t + ph / 2.0
    );
    s.push_str("</svg>\n");
    s
}

/// `sweep.svg`: the target's index relative to its solo run against the
/// number of dummies of the first dummy kind, one line per policy, capped
/// bars from the lowest to the highest repetition.
pub fn sweep_svg(exp: &Experiment, points: &[Point]) -> String {
    let (w, h) = (460.0, 290.0);
    let (l, t, pw, ph) = (50.0, 52.0, 390.0, 180.0);
    let mut s = String::new();
    svg::start(&mut s, w, h, 12, true);
    let kind = exp.dummy_kinds.first().map_or("", String::as_str);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="18" text-anchor="middle" font-size="14">Target's benchmark index / solo, beside {} dummies</text>"#,
        w / 2.0,
        esc(kind)
    );
    let pols: Vec<&str> = exp.policy.iter().map(|p| p.name.as_str()).collect();
    legend(&mut s, exp, l, 38.0, &pols);
    let sel = |p: &Point| p.relative;
    let vmax = points
        .iter()
        .filter_map(|p| sel(p).map(|s| s.max))
        .fold(0.0, f64::max);
    let top = axis_top(vmax, 0.2, 1.2);
    grid(&mut s, l, t, pw, ph, top, 0.2, 1);
    let xmax = exp.dummies.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x = |d: f64| l + 10.0 + (pw - 20.0) * d / xmax;
    let y = |v: f64| t + ph * (1.0 - v / top);
    for &d in &exp.dummies {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{d}</text>"#,
            x(d as f64),
            t + ph + 16.0
        );
    }
    for (i, pol) in pols.iter().enumerate() {
        let c = policy_color(exp, pol);
        let mut line: Vec<(f64, Stat)> = points
            .iter()
            .filter(|p| &p.policy == pol && (p.dummies == 0 || p.kind == kind))
            .filter_map(|p| Some((p.dummies as f64, sel(p)?)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let off = svg::spread(i, pols.len(), 4.0);
        let marks: Vec<Mark> = line
            .iter()
            .map(|(d, st)| Mark {
                x: x(*d) + off,
                y: y(st.mean),
                bar: (st.n > 1).then(|| (y(st.min), y(st.max))),
            })
            .collect();
        let style = LineStyle {
            color: c,
            dash: "",
            dot_r: 3.0,
            cap: 3.0,
        };
        svg::line_with_bars(&mut s, &marks, &style);
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#000"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">dummy VMs beside the target</text>"#,
        l + pw / 2.0,
        t + ph + 34.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">index / solo</text>"#,
        t + ph / 2.0
    );
    s.push_str("</svg>\n");
    s
}
