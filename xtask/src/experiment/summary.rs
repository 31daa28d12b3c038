//! The few lines at the top of `report.md`: what each part of the
//! experiment shows, computed from its points.

use super::panels::{panel_summary, PanelPoint};
use super::points::Point;
use super::spec::Experiment;

/// The sweep's line: at the largest dummy count of the first kind, each
/// policy's index relative to solo and the target's CPU, and what the
/// dummies used.
pub fn sweep_summary(exp: &Experiment, points: &[Point]) -> Option<String> {
    let kind = exp.dummy_kinds.first()?;
    let n = exp.dummies.iter().copied().max().filter(|n| *n > 0)?;
    let at: Vec<&Point> = exp
        .policy
        .iter()
        .filter_map(|p| {
            points
                .iter()
                .find(|x| x.policy == p.name && x.dummies == n && &x.kind == kind)
        })
        .collect();
    let rel: Vec<String> = at
        .iter()
        .filter_map(|p| Some(format!("{} {:.2}", p.policy, p.relative?.mean)))
        .collect();
    if rel.is_empty() {
        return None;
    }
    let cpu: Vec<String> = at
        .iter()
        .filter_map(|p| Some(format!("{} {:.2}", p.policy, p.target_cpu?.mean)))
        .collect();
    let dummies: Vec<f64> = at
        .iter()
        .filter_map(|p| p.dummies_cpu.map(|s| s.mean))
        .collect();
    let (lo, hi) = dummies
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    let used = if dummies.is_empty() {
        String::new()
    } else if hi - lo < 0.005 {
        format!("; the dummies used {lo:.2} CPU together")
    } else {
        format!("; the dummies used {lo:.2}–{hi:.2} CPU together")
    };
    Some(format!(
        "**Target beside {n} {kind} dummies**: benchmark index relative to solo: {}; \
         the target's CPU (of {}): {}{used}.",
        rel.join(", "),
        exp.target.vcpus,
        cpu.join(", ")
    ))
}

/// The summary's lines: one for the sweep, one per panel.
pub fn summary_lines(exp: &Experiment, points: &[Point], panels: &[PanelPoint]) -> Vec<String> {
    let mut lines = Vec::new();
    lines.extend(sweep_summary(exp, points));
    for p in &exp.panel {
        let mine: Vec<&PanelPoint> = panels.iter().filter(|x| x.panel == p.name).collect();
        lines.extend(panel_summary(&p.title, &mine));
    }
    lines
}

/// The summary section of `report.md`.
pub fn summary_md(exp: &Experiment, points: &[Point], panels: &[PanelPoint]) -> String {
    let lines = summary_lines(exp, points, panels);
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("## Summary\n\n");
    for l in lines {
        s.push_str("- ");
        s.push_str(&l);
        s.push('\n');
    }
    s.push('\n');
    s
}
