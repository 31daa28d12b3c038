//! `Documentation/vmfair/results.rst`, generated: the template
//! `results.rst.in` (method, test-bed facts, analysis: the static part)
//! with the figures of a finished experiment filled in (`cargo xtask
//! report`). A placeholder is a line of its own, `@NAME@`; the template
//! must use every placeholder the command fills and no other, so that a
//! renamed one fails instead of leaving a hole.

use super::panels::{amount_columns, fmt_amount, PanelPoint};
use super::points::{Point, Stat};
use super::spec::Experiment;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The placeholders `cargo xtask report` fills (`run::results_doc`).
pub const PLACEHOLDERS: [&str; 4] = ["RUN", "SUMMARY", "SWEEP", "PANELS"];

/// When and how long an experiment ran (`summary.json`'s `meta`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// UTC date the run finished, `YYYY-MM-DD`.
    pub recorded: String,
    /// Seconds spent building (kernel, module, guest programs) before the
    /// first boot.
    pub build_s: f64,
    /// Seconds from the first boot to the end.
    pub run_s: f64,
    /// Boots the run took.
    pub boots: usize,
}

/// `YYYY-MM-DD` of a Unix time (proleptic Gregorian, UTC).
pub fn utc_date(secs: u64) -> String {
    // Days to civil date, after H. Hinnant's `civil_from_days`.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `text` wrapped at spaces to lines of at most `width` characters (a
/// longer word stays whole), the first line after `first`, the others
/// after `rest`.
pub fn wrap(text: &str, width: usize, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from(rest);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Markdown's inline code and bold as reST.
pub fn md_to_rst(line: &str) -> String {
    // `x` -> ``x``; ** stays.
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i > 0 {
            out.push_str("``");
        }
        out.push_str(part);
    }
    out
}

fn cell(s: Option<Stat>, prec: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => format!("{:.p$}", s.mean, p = prec),
        Some(s) => format!("{:.p$} ({:.p$}–{:.p$})", s.mean, s.min, s.max, p = prec),
    }
}

/// A reST list-table with a header row.
pub fn list_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::from(".. list-table::\n   :header-rows: 1\n\n");
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        for (k, c) in row.iter().enumerate() {
            let lead = if k == 0 { "   * - " } else { "     - " };
            let _ = writeln!(s, "{lead}{c}");
        }
    }
    s
}

/// The sweep's table: per policy and dummy count, the index relative to
/// solo, the target's CPU and the dummies' CPU.
pub fn sweep_table(exp: &Experiment, points: &[Point]) -> String {
    let kind = exp.dummy_kinds.first().map_or("", String::as_str);
    let counts: Vec<u32> = exp.dummies.iter().copied().filter(|d| *d > 0).collect();
    let mut header = vec!["policy".to_string()];
    for d in &counts {
        header.push(format!("{d} {kind}: index / solo"));
        header.push(format!("{d}: target CPU"));
        header.push(format!("{d}: dummies' CPU"));
    }
    let rows: Vec<Vec<String>> = exp
        .policy
        .iter()
        .map(|p| {
            let mut row = vec![format!("``{}``", p.name)];
            for d in &counts {
                let pt = points
                    .iter()
                    .find(|x| x.policy == p.name && x.dummies == *d && x.kind == kind);
                row.push(cell(pt.and_then(|x| x.relative), 2));
                row.push(cell(pt.and_then(|x| x.target_cpu), 2));
                row.push(cell(pt.and_then(|x| x.dummies_cpu), 2));
            }
            row
        })
        .collect();
    list_table(&header, &rows)
}

/// Per panel: its table (a row per VM, a column per policy, the
/// entitlement) and its figure `results-<exp>-<panel>.svg`.
pub fn panels_rst(exp: &Experiment, pts: &[PanelPoint]) -> String {
    let mut s = String::new();
    for p in &exp.panel {
        let mine: Vec<&PanelPoint> = pts.iter().filter(|x| x.panel == p.name).collect();
        let _ = writeln!(s, "{}\n{}\n", p.title, "~".repeat(p.title.chars().count()));
        let Some(first) = mine.iter().find(|x| x.runs > 0) else {
            let _ = writeln!(s, "No run of this panel was kept.\n");
            continue;
        };
        let cols = amount_columns(&first.vms);
        let mut header: Vec<String> = ["VM", "vCPUs", "weight"].map(String::from).into();
        header.extend(cols.iter().map(|(c, _)| c.to_string()));
        header.extend(mine.iter().map(|x| format!("``{}``", x.policy)));
        header.push("entitled".into());
        let rows: Vec<Vec<String>> = first
            .vms
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let mut row = vec![v.label.clone(), v.vcpus.to_string(), v.weight.to_string()];
                row.extend(cols.iter().map(|(_, f)| fmt_amount(f(v))));
                row.extend(
                    mine.iter()
                        .map(|x| cell(x.vms.get(k).and_then(|v| v.cpu), 3)),
                );
                row.push(format!("{:.3}", v.entitled));
                row
            })
            .collect();
        s.push_str(&list_table(&header, &rows));
        let runs: Vec<String> = mine
            .iter()
            .map(|x| format!("{} {}/{}", x.policy, x.valid, x.runs))
            .collect();
        let caption = format!(
            "{}: CPU per VM, a bar per policy (valid/runs: {}); black: the entitlement.",
            p.title,
            runs.join(", ")
        );
        let _ = writeln!(
            s,
            "\n.. figure:: results-{}-{}.svg\n   :alt: CPU per VM under each policy against \
             its entitlement\n\n{}",
            exp.name,
            p.name,
            wrap(&caption, 76, "   ", "   ")
        );
    }
    s
}

/// The paragraph that says what was run, when, and how long it took.
pub fn run_rst(
    exp: &Experiment,
    kernel: &str,
    meta: &RunMeta,
    kept: (usize, usize, usize),
) -> String {
    let (runs, valid, invalid) = kept;
    let text = format!(
        "Recorded on {} with kernel ``{kernel}``, {} guest CPUs, {}-threaded TCG, \
         {} s windows after {} s of warm-up, {} repetitions of the sweep, by {} \
         (``qemu-test/experiments/{}.toml``): {} boots took {:.0} s after {:.0} s of build; \
         {runs} runs kept, {valid} valid, {invalid} invalid \
         attempt(s) run again or dropped. Cells give the mean of the valid repetitions and, \
         with more than one, the lowest and highest in brackets; CPU figures are \
         CPU-seconds per second of window.",
        if meta.recorded.is_empty() {
            "?"
        } else {
            &meta.recorded
        },
        exp.guest_cpus,
        exp.tcg_mode(),
        exp.duration_s,
        exp.warmup_s,
        exp.repetitions,
        if exp.name == "demo" {
            "``make demo``"
        } else {
            "``cargo xtask bench``"
        },
        exp.name,
        meta.boots,
        meta.run_s,
        meta.build_s,
    );
    wrap(&text, 76, "", "")
}

/// Fills the template: each line that is exactly `@NAME@` becomes
/// `fills[NAME]`. Fails on a placeholder without a fill and on a fill the
/// template does not use.
pub fn render(template: &str, fills: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::new();
    let mut used = Vec::new();
    for line in template.lines() {
        let t = line.trim();
        if t.len() > 2 && t.starts_with('@') && t.ends_with('@') {
            let key = &t[1..t.len() - 1];
            let Some(text) = fills.get(key) else {
                bail!("template placeholder @{key}@ has no value");
            };
            out.push_str(text.trim_end());
            out.push('\n');
            used.push(key);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for k in fills.keys() {
        if !used.contains(k) {
            bail!("the template does not use @{k}@");
        }
    }
    Ok(out)
}
