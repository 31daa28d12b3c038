//! `make overhead`'s figures: statistics over runs, ratios to the stock
//! kernel, `report.md`, `figure.svg` and the worst ratio
//! (`Documentation/vmfair/performance.rst`).

use crate::svg::{self, esc};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The configurations, in report order: the unpatched kernel, the patched
/// kernel without the module, the patched kernel with vmfair loaded.
pub const CONFIGS: [&str; 3] = ["stock", "off", "vmfair"];

/// One figure of a run (`Metric` of `selftests/vmfair-run/src/overhead.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRec {
    pub name: String,
    pub unit: String,
    /// `cost` (lower is better), `rate` (higher is better) or `info`.
    pub kind: String,
    pub value: f64,
}

/// One run: where it ran and what the guest reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRec {
    pub variant: String,
    pub config: String,
    pub round: u32,
    pub boot: String,
    pub valid: bool,
    pub problems: Vec<String>,
    pub attempts: u32,
    pub grouped: Option<bool>,
    /// Scheduler groups of the benchmark's VM threads, as the guest saw them.
    #[serde(default)]
    pub groups: Vec<String>,
    pub kernel: String,
    pub elapsed_s: f64,
    pub samples: u64,
    pub metrics: Vec<MetricRec>,
}

impl RunRec {
    /// A run from the guest's JSON line, checked against the configuration
    /// it ran in: the module must be loaded exactly under `vmfair`.
    pub fn from_guest(
        line: &str,
        variant: &str,
        bench: &str,
        config: &str,
        round: u32,
        boot: &str,
    ) -> RunRec {
        let mut r = RunRec {
            variant: variant.into(),
            config: config.into(),
            round,
            boot: boot.into(),
            valid: false,
            problems: vec![],
            attempts: 0,
            grouped: None,
            groups: vec![],
            kernel: String::new(),
            elapsed_s: 0.0,
            samples: 0,
            metrics: vec![],
        };
        let v: GuestLine = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                r.problems.push(format!("unreadable result line: {e}"));
                return r;
            }
        };
        r.valid = v.valid;
        r.problems = v.problems;
        r.attempts = v.attempts;
        r.grouped = v.grouped;
        r.groups = v.groups;
        r.kernel = v.kernel;
        r.elapsed_s = v.elapsed_s;
        r.samples = v.samples;
        // A figure the guest could not compute is written as null: then the
        // run has no figures (below), as the guest's problems say why.
        r.metrics = v
            .metrics
            .into_iter()
            .map(|m| {
                Some(MetricRec {
                    name: m.name,
                    unit: m.unit,
                    kind: m.kind,
                    value: m.value?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        if v.overhead != bench {
            r.problems
                .push(format!("result of {:?}, not {bench}", v.overhead));
        }
        if v.vmfair_loaded != (config == "vmfair") {
            r.problems.push(format!(
                "vmfair_loaded is {} under configuration {config}",
                v.vmfair_loaded
            ));
        }
        if r.metrics.is_empty() || r.metrics.iter().any(|m| !m.value.is_finite()) {
            r.problems.push("no figures".into());
        }
        r.valid = r.valid && r.problems.is_empty();
        r
    }
}

/// The guest's result line (`Output` of `selftests/vmfair-run/src/overhead.rs`), as far as
/// the report reads it; a line without one of these keys is unreadable.
#[derive(Deserialize)]
struct GuestLine {
    overhead: String,
    valid: bool,
    problems: Vec<String>,
    attempts: u32,
    vmfair_loaded: bool,
    grouped: Option<bool>,
    #[serde(default)]
    groups: Vec<String>,
    kernel: String,
    elapsed_s: f64,
    samples: u64,
    metrics: Vec<GuestMetric>,
}

/// A figure of a guest line: `value` is null when it was not a number.
#[derive(Deserialize)]
struct GuestMetric {
    name: String,
    unit: String,
    kind: String,
    value: Option<f64>,
}

/// A figure over the valid runs of one configuration.
pub use crate::stats::Quartiles as Stat;

/// `value` against `base` so that above 1 is worse: cost `value / base`,
/// rate `base / value`; none for context figures.
pub fn ratio(kind: &str, value: f64, base: f64) -> Option<f64> {
    if !(value > 0.0 && base > 0.0) {
        return None;
    }
    match kind {
        "cost" => Some(value / base),
        "rate" => Some(base / value),
        _ => None,
    }
}

/// One line of the report: a figure of a benchmark variant in every
/// configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub variant: String,
    pub metric: String,
    pub unit: String,
    pub kind: String,
    pub stats: BTreeMap<String, Stat>,
    /// The configuration ratios are taken against: `stock`, else `off`.
    pub baseline: Option<String>,
    pub off_ratio: Option<f64>,
    pub vmfair_ratio: Option<f64>,
    /// The module's own cost, paired: the median over rounds of a round's
    /// `vmfair` run against its `off` run (the two ran one after the other).
    pub paired: Option<f64>,
}

/// Rows for every (variant, figure), variants in `order`, figures in the
/// order the guest reported them.
pub fn rows(runs: &[RunRec], order: &[&str]) -> Vec<Row> {
    let mut out = Vec::new();
    for variant in order {
        let mine: Vec<&RunRec> = runs
            .iter()
            .filter(|r| r.valid && r.variant == *variant)
            .collect();
        let mut names: Vec<(String, String, String)> = Vec::new();
        for m in mine.iter().flat_map(|r| &r.metrics) {
            if !names.iter().any(|(n, _, _)| *n == m.name) {
                names.push((m.name.clone(), m.unit.clone(), m.kind.clone()));
            }
        }
        for (name, unit, kind) in names {
            let mut stats = BTreeMap::new();
            for c in CONFIGS {
                let xs: Vec<f64> = mine
                    .iter()
                    .filter(|r| r.config == c)
                    .flat_map(|r| r.metrics.iter().filter(|m| m.name == name))
                    .map(|m| m.value)
                    .collect();
                if let Some(s) = Stat::of(&xs) {
                    stats.insert(c.to_string(), s);
                }
            }
            let baseline = ["stock", "off"]
                .into_iter()
                .find(|c| stats.contains_key(*c))
                .map(str::to_string);
            let against = |c: &str| -> Option<f64> {
                let base = stats.get(baseline.as_deref()?)?.median;
                ratio(&kind, stats.get(c)?.median, base)
            };
            let off_ratio = against("off").filter(|_| baseline.as_deref() == Some("stock"));
            let vmfair_ratio = against("vmfair");
            let value = |c: &str, round: u32| {
                mine.iter()
                    .find(|r| r.config == c && r.round == round)
                    .and_then(|r| r.metrics.iter().find(|m| m.name == name))
                    .map(|m| m.value)
            };
            let mut rounds: Vec<u32> = mine.iter().map(|r| r.round).collect();
            rounds.sort();
            rounds.dedup();
            let pairs: Vec<f64> = rounds
                .into_iter()
                .filter_map(|n| ratio(&kind, value("vmfair", n)?, value("off", n)?))
                .collect();
            let paired = Stat::of(&pairs).map(|s| s.median);
            out.push(Row {
                variant: variant.to_string(),
                metric: name,
                unit,
                kind,
                stats,
                baseline,
                off_ratio,
                vmfair_ratio,
                paired,
            });
        }
    }
    out
}

/// The largest vmfair ratio of a compared figure: (ratio, "variant: figure");
/// the first in report order on a tie.
pub fn worst(rows: &[Row]) -> Option<(f64, String)> {
    let mut best: Option<(f64, &Row)> = None;
    for r in rows {
        if let Some(x) = r.vmfair_ratio {
            if best.is_none_or(|(b, _)| x > b) {
                best = Some((x, r));
            }
        }
    }
    best.map(|(x, r)| (x, format!("{}: {}", r.variant, r.metric)))
}

/// A number with about four significant digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn cell(s: Option<&Stat>) -> String {
    match s {
        Some(s) => format!(
            "{} ({}–{}, n={})",
            num(s.median),
            num(s.min),
            num(s.max),
            s.n
        ),
        None => "–".into(),
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into())
}

/// What the report says about the set-up, above the table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub kernels: BTreeMap<String, String>,
    pub runs_per_config: u32,
    pub guest_cpus: u32,
    pub tcg: String,
    pub rseq_migrations: u32,
    pub seconds: f64,
    /// Variant name to what one run of it is.
    pub variants: Vec<(String, String)>,
    /// Boot name to the kernel warnings in its log.
    pub warnings: BTreeMap<String, Vec<String>>,
    /// Planned runs that never reported (a guest that died, twice).
    pub missing: Vec<String>,
}

/// `report.md`.
pub fn report_md(meta: &Meta, rows: &[Row], runs: &[RunRec]) -> String {
    let mut s = String::from("# vmfair overhead\n\n");
    let _ = writeln!(
        s,
        "What vmfair costs a host: each benchmark run alternately with the module \
         not loaded (`off`) and loaded (`vmfair`) in one boot of the test kernel, \
         {} runs each (ABAB…), and in two boots of the same kernel without the patch \
         series (`stock`), one before and one after it. {} guest CPUs, QEMU TCG {}; the whole run took {:.0} s. \
         See `Documentation/vmfair/performance.rst`.\n",
        meta.runs_per_config, meta.guest_cpus, meta.tcg, meta.seconds
    );
    for (c, k) in &meta.kernels {
        let _ = writeln!(s, "- `{c}`: kernel {k}");
    }
    let _ = writeln!(
        s,
        "- `rseq`: the kernel's `rseq_test` built with `NR_TASK_MIGRATIONS` {} \
         (100000 upstream) and run with `-u`\n",
        meta.rseq_migrations
    );
    s.push_str(
        "Cells: median of the valid runs (min–max, number of runs). Ratios: against \
         `stock`, or against `off` where marked †; cost figures `config / baseline`, \
         rates `baseline / config`, so above 1 is always worse. `vmfair/off paired`: the \
         median over rounds of each round's vmfair run against the off run just before \
         it, the module's own cost with the least drift. `info` figures are not \
         compared.\n\n",
    );
    s.push_str(
        "| benchmark | figure | unit | kind | stock | off | vmfair | off/stock | vmfair/stock \
         | vmfair/off paired |\n",
    );
    s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in rows {
        let dagger = if r.baseline.as_deref() == Some("off") {
            " †"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}{dagger} | {} |",
            r.variant,
            r.metric,
            r.unit,
            r.kind,
            cell(r.stats.get("stock")),
            cell(r.stats.get("off")),
            cell(r.stats.get("vmfair")),
            ratio_cell(r.off_ratio),
            ratio_cell(r.vmfair_ratio),
            ratio_cell(r.paired)
        );
    }
    s.push_str("\n![ratios to stock](figure.svg)\n\n## Benchmarks\n\n");
    for (v, what) in &meta.variants {
        let _ = writeln!(s, "- `{v}`: {what}");
    }
    s.push_str(
        "\n## Grouping and placement\n\n\
         Under `vmfair`, a run's VMs count as grouped when their \
         `/proc/sys/kernel/vmfair/vm/<pid>` directory appeared; `pipe-vm` and `rseq*` also \
         read the scheduler group of every thread of the VM's process (debugfs \
         `sched/debug`).\n\n",
    );
    for (v, _) in &meta.variants {
        let mut parts = Vec::new();
        for c in CONFIGS {
            let mine: Vec<&RunRec> = runs
                .iter()
                .filter(|r| r.valid && r.variant == *v && r.config == c)
                .collect();
            let known = mine.iter().filter(|r| r.grouped.is_some()).count();
            if known > 0 {
                let grouped = mine.iter().filter(|r| r.grouped == Some(true)).count();
                parts.push(format!(
                    "{c}: VMs grouped in {grouped} of {} runs",
                    mine.len()
                ));
            }
            let mut groups: Vec<String> = mine
                .iter()
                .flat_map(|r| &r.groups)
                .map(|g| generic_group(g))
                .collect();
            groups.sort();
            groups.dedup();
            if !groups.is_empty() {
                parts.push(format!("{c}: threads in `{}`", groups.join("`, `")));
            }
        }
        if !parts.is_empty() {
            let _ = writeln!(s, "- `{v}`: {}", parts.join("; "));
        }
    }
    s.push_str("\n## Runs\n\n");
    let valid = runs.iter().filter(|r| r.valid).count();
    let retried = runs.iter().filter(|r| r.attempts > 1).count();
    let _ = writeln!(
        s,
        "{valid} valid of {} runs; {retried} needed more than one attempt \
         (an invalid attempt is repeated in the guest, up to three times).\n",
        runs.len()
    );
    for r in runs.iter().filter(|r| !r.valid || r.attempts > 1) {
        let _ = writeln!(
            s,
            "- {} `{}` run {} ({}): {} after {} attempt(s){}",
            r.config,
            r.variant,
            r.round,
            r.boot,
            if r.valid { "valid" } else { "INVALID" },
            r.attempts,
            if r.problems.is_empty() {
                String::new()
            } else {
                format!(": {}", r.problems.join("; "))
            }
        );
    }
    for m in &meta.missing {
        let _ = writeln!(s, "- missing: {m}");
    }
    s.push_str("\n## Kernel warnings\n\n");
    for (boot, w) in &meta.warnings {
        if w.is_empty() {
            let _ = writeln!(s, "- {boot}: none");
        } else {
            let _ = writeln!(s, "- {boot}: {} line(s), first: `{}`", w.len(), w[0]);
        }
    }
    if let Some((x, what)) = worst(rows) {
        let _ = writeln!(s, "\n**worst ratio: {x:.3} ({what})**");
    }
    s
}

/// A group path with the number of a VM group or autogroup left out.
pub fn generic_group(g: &str) -> String {
    for prefix in ["/vmgroup-", "/autogroup-"] {
        if let Some(rest) = g.strip_prefix(prefix) {
            if rest.chars().all(|c| c.is_ascii_digit()) {
                return format!("{prefix}N");
            }
        }
    }
    g.to_string()
}

/// `figure.svg`: for every compared figure, the median ratio to the baseline
/// of `off` and `vmfair` as bars, whiskers from the runs' min and max, a line
/// at 1.
pub fn figure_svg(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.vmfair_ratio.is_some()).collect();
    let (left, plot_w, row_h, top) = (230.0, 480.0, 30.0, 50.0);
    let (w, h) = (left + plot_w + 40.0, top + row_h * rows.len() as f64 + 50.0);
    let spread = |r: &Row, c: &str| -> Option<(f64, f64, f64)> {
        let base = r.stats.get(r.baseline.as_deref()?)?.median;
        let s = r.stats.get(c)?;
        let a = ratio(&r.kind, s.min, base)?;
        let b = ratio(&r.kind, s.max, base)?;
        Some((ratio(&r.kind, s.median, base)?, a.min(b), a.max(b)))
    };
    let mut hi: f64 = 1.2;
    for r in &rows {
        for c in ["off", "vmfair"] {
            if let Some((_, _, b)) = spread(r, c) {
                hi = hi.max(b.min(5.0) * 1.05);
            }
        }
    }
    let x = |v: f64| left + plot_w * (v.clamp(0.0, hi) / hi);
    let mut s = String::new();
    svg::start(&mut s, w, h, 12, true);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">Cost relative to the baseline (above 1 is worse)</text>"#
    );
    let legend = [("off", "#8aa9d6"), ("vmfair", "#d9534f")];
    for (i, (name, color)) in legend.iter().enumerate() {
        let lx = left + 330.0 + 70.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="29" width="12" height="10" fill="{color}"/><text x="{}" y="38">{name}</text>"#,
            lx + 16.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + row_h * 0.6,
            esc(&format!("{}: {}", r.variant, r.metric))
        );
        for (k, (c, color)) in legend.iter().enumerate() {
            let Some((m, a, b)) = spread(r, c) else {
                continue;
            };
            let (by, bh) = (y + 4.0 + 11.0 * k as f64, 10.0);
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{by}" width="{:.1}" height="{bh}" fill="{color}"/>"#,
                x(m) - left
            );
            let wy = by + bh / 2.0;
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{wy}" x2="{:.1}" y2="{wy}" stroke="black"/>"#,
                x(a),
                x(b)
            );
        }
    }
    let bottom = top + row_h * rows.len() as f64;
    let _ = writeln!(
        s,
        r#"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="black" stroke-dasharray="4 3"/>"#,
        x(1.0)
    );
    let mut t = 0.0;
    while t <= hi + 1e-9 {
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{bottom}" x2="{0:.1}" y2="{1}" stroke="black"/><text x="{0:.1}" y="{2}" text-anchor="middle">{t:.1}</text>"#,
            x(t),
            bottom + 4.0,
            bottom + 18.0
        );
        t += if hi > 2.5 { 0.5 } else { 0.2 };
    }
    s.push_str("</svg>\n");
    s
}

/// `overhead.json`: the set-up, every run and every row.
pub fn json(meta: &Meta, rows: &[Row], runs: &[RunRec]) -> Result<String> {
    let worst = worst(rows).map(|(x, what)| serde_json::json!({"ratio": x, "figure": what}));
    let v = serde_json::json!({"meta": meta, "rows": rows, "runs": runs, "worst": worst});
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// What `--report` reads back from an `overhead.json` (written by [`json`]).
#[derive(Debug, Deserialize)]
pub struct Saved {
    pub meta: Meta,
    pub runs: Vec<RunRec>,
}

/// The set-up and runs of an `overhead.json`, to redraw the report.
pub fn read_saved(text: &str) -> Result<Saved> {
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bench: &str, loaded: bool, value: f64) -> String {
        serde_json::json!({
            "overhead": bench, "valid": true, "problems": [], "attempts": 1,
            "vmfair_loaded": loaded, "grouped": null, "kernel": "7.3.4", "elapsed_s": 2.0,
            "samples": 10,
            "metrics": [
                {"name": "t", "unit": "us", "kind": "cost", "value": value},
                {"name": "r", "unit": "1/s", "kind": "rate", "value": 1000.0 / value},
                {"name": "n", "unit": "", "kind": "info", "value": 3.0}
            ]
        })
        .to_string()
    }

    fn run(variant: &str, config: &str, value: f64) -> RunRec {
        RunRec::from_guest(
            &line("pipe", config == "vmfair", value),
            variant,
            "pipe",
            config,
            1,
            "b",
        )
    }

    #[test]
    fn stats_and_ratios() {
        let s = Stat::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (5, 3.0, 1.0, 5.0));
        assert_eq!((s.q1, s.q3), (2.0, 4.0));
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[1.0, 2.0]).unwrap().median, 1.5);
        assert_eq!(ratio("cost", 12.0, 10.0), Some(1.2));
        assert_eq!(ratio("rate", 8.0, 10.0), Some(1.25));
        assert_eq!(ratio("info", 8.0, 10.0), None);
        assert_eq!(ratio("cost", 0.0, 10.0), None);
    }

    #[test]
    fn guest_lines_are_checked_against_the_configuration() {
        assert!(run("pipe", "off", 10.0).valid);
        let wrong = RunRec::from_guest(&line("pipe", true, 1.0), "pipe", "pipe", "off", 1, "b");
        assert!(!wrong.valid && wrong.problems[0].contains("vmfair_loaded"));
        let other = RunRec::from_guest(&line("fork", false, 1.0), "pipe", "pipe", "off", 1, "b");
        assert!(!other.valid);
        let junk = RunRec::from_guest("{not json", "pipe", "pipe", "off", 1, "b");
        assert!(!junk.valid && junk.problems[0].contains("unreadable"));
        let invalid = line("pipe", false, 1.0).replace("\"valid\":true", "\"valid\":false");
        assert!(!RunRec::from_guest(&invalid, "pipe", "pipe", "off", 1, "b").valid);
        // A line without a key the report needs is unreadable, not a run of zeros.
        let no_kernel = line("pipe", false, 1.0).replace("\"kernel\":\"7.3.4\",", "");
        assert_ne!(no_kernel, line("pipe", false, 1.0));
        let r = RunRec::from_guest(&no_kernel, "pipe", "pipe", "off", 1, "b");
        assert!(!r.valid && r.problems[0].contains("unreadable"), "{r:?}");
        // A figure the guest wrote as null: no figures, the guest's own problem kept.
        let null = line("pipe", false, 1.0)
            .replace("\"value\":1.0}", "\"value\":null}")
            .replace("\"problems\":[]", "\"problems\":[\"t is not a number\"]");
        assert!(null.contains("\"value\":null"), "{null}");
        let r = RunRec::from_guest(&null, "pipe", "pipe", "off", 1, "b");
        assert!(r.metrics.is_empty(), "{r:?}");
        assert_eq!(r.problems, ["t is not a number", "no figures"]);
    }

    #[test]
    fn rows_compare_medians_with_stock_else_off() {
        let mut runs = vec![];
        for v in [10.0, 11.0, 9.0] {
            runs.push(run("a", "stock", v));
            runs.push(run("a", "off", v * 1.1));
            runs.push(run("a", "vmfair", v * 1.5));
            runs.push(run("b", "off", v));
            runs.push(run("b", "vmfair", v * 2.0));
        }
        let mut bad = run("a", "vmfair", 1000.0);
        bad.valid = false;
        runs.push(bad);
        let rows = rows(&runs, &["a", "b"]);
        assert_eq!(rows.len(), 6, "two variants, three figures each");
        let t = &rows[0];
        assert_eq!((t.variant.as_str(), t.metric.as_str()), ("a", "t"));
        assert_eq!(t.baseline.as_deref(), Some("stock"));
        assert!(
            (t.vmfair_ratio.unwrap() - 1.5).abs() < 1e-9,
            "invalid runs left out"
        );
        assert!((t.off_ratio.unwrap() - 1.1).abs() < 1e-9);
        assert!(
            (rows[1].vmfair_ratio.unwrap() - 1.5).abs() < 1e-9,
            "rate inverted"
        );
        assert_eq!(rows[2].vmfair_ratio, None, "info not compared");
        assert_eq!(rows[3].baseline.as_deref(), Some("off"));
        assert_eq!(rows[3].off_ratio, None);
        let (x, what) = worst(&rows).unwrap();
        assert!((x - 2.0).abs() < 1e-9);
        assert_eq!(what, "b: t");
    }

    #[test]
    fn paired_ratio_is_per_round() {
        let mut runs = vec![];
        for (round, off, vmfair) in [(1, 10.0, 80.0), (2, 100.0, 110.0), (3, 50.0, 60.0)] {
            for (c, v) in [("off", off), ("vmfair", vmfair)] {
                let mut r = run("a", c, v);
                r.round = round;
                runs.push(r);
            }
        }
        let t = &rows(&runs, &["a"])[0];
        assert!(
            (t.vmfair_ratio.unwrap() - 1.6).abs() < 1e-9,
            "medians 80 / 50"
        );
        assert!(
            (t.paired.unwrap() - 1.2).abs() < 1e-9,
            "median of 8, 1.1, 1.2"
        );
    }

    #[test]
    fn report_figure_and_json() {
        let runs = vec![run("a", "off", 10.0), run("a", "vmfair", 12.0)];
        let rows = rows(&runs, &["a"]);
        let meta = Meta {
            runs_per_config: 1,
            variants: vec![("a".into(), "a thing".into())],
            ..Meta::default()
        };
        let md = report_md(&meta, &rows, &runs);
        assert!(md.contains("| a | t | us | cost |"), "{md}");
        assert!(md.contains("1.200 †"));
        assert!(md.contains("worst ratio: 1.200 (a: "));
        let svg = figure_svg(&rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a: t") && !svg.contains("a: n"));
        let j = json(&meta, &rows, &runs).unwrap();
        assert_eq!(read_saved(&j).unwrap().runs, runs);
        assert!(read_saved("{}").is_err());
        // The set-up is read back too; a file without it is an error.
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert!(read_saved(&serde_json::json!({"runs": v["runs"]}).to_string()).is_err());
        assert_eq!(num(1234.5), "1234");
        assert_eq!(generic_group("/vmgroup-12"), "/vmgroup-N");
        assert_eq!(generic_group("/autogroup-3"), "/autogroup-N");
        assert_eq!(generic_group("/vmfair-overhead"), "/vmfair-overhead");
        assert_eq!(generic_group("/vmgroup-x"), "/vmgroup-x");
        assert_eq!(num(0.12345), "0.123");
    }
}
