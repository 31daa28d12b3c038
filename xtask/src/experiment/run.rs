//! The boots of an experiment and its outputs; what becomes of each attempt
//! (kept, or run again) is `attempts`.

use super::attempts::Attempts;
use super::bars::{panel_svg, sweep_svg};
use super::budget::{self, Budget};
use super::figures::{figures, RunFigures};
use super::panels::{panel_points, panel_run, PanelJob, PanelRun};
use super::points::{points, Point};
use super::report::{print_points, report_md};
use super::rst::{self, RunMeta};
use super::spec::{Experiment, Job};
use super::svg::figure_svg;
use crate::scenario::{self, Meta};
use crate::util::{self, info, phase, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vmfair_scenario::ScenarioResult;

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn pending_names(pending: &[(String, u32)]) -> Vec<String> {
    pending.iter().map(|(n, _)| n.clone()).collect()
}

/// What `--report` reads back from `summary.json` (written by
/// [`write_outputs`]).
#[derive(Deserialize)]
struct Summary {
    kernel: String,
    runs: BTreeMap<String, RunFigures>,
    #[serde(default)]
    panel_runs: BTreeMap<String, PanelRun>,
    #[serde(default)]
    meta: RunMeta,
    /// The invalid attempts and the scenarios not run, as the run saw
    /// them (absent from older summaries: then read from the
    /// `*.invalid-*.json` files and the runs kept).
    #[serde(default)]
    invalid: Option<Vec<(String, Vec<String>)>>,
    #[serde(default)]
    missing: Option<Vec<String>>,
}

impl Summary {
    fn read(path: &Path) -> Result<Summary> {
        serde_json::from_str(&util::read(path)?).with_context(|| path.display().to_string())
    }
}

/// What a sweep has measured so far: the figures of the sweep's runs and
/// of the panels' runs.
#[derive(Default)]
struct Measured {
    runs: BTreeMap<String, RunFigures>,
    panel_runs: BTreeMap<String, PanelRun>,
    meta: RunMeta,
}

/// Writes summary.json, report.md, figure.svg, sweep.svg and one
/// panel-<name>.svg per panel; returns the points.
fn write_outputs(
    exp: &Experiment,
    out: &Path,
    jobs: &[Job],
    m: &Measured,
    invalid: &[(String, Vec<String>)],
    kernel: &str,
    missing: &[String],
) -> Result<Vec<Point>> {
    let pts = points(jobs, &m.runs);
    let ppts = panel_points(exp, &m.panel_runs)?;
    util::write(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "experiment": exp.name,
            "kernel": kernel,
            "points": pts,
            "runs": m.runs,
            "panel_points": ppts,
            "panel_runs": m.panel_runs,
            "meta": m.meta,
            "invalid": invalid,
            "missing": missing,
        }))? + "\n",
    )?;
    let md = report_md(exp, &pts, &ppts, &m.runs, invalid, kernel, missing);
    util::write(&out.join("report.md"), &md)?;
    util::write(&out.join("figure.svg"), figure_svg(exp, &pts))?;
    util::write(&out.join("sweep.svg"), sweep_svg(exp, &pts))?;
    for def in &exp.panel {
        let mine: Vec<_> = ppts.iter().filter(|p| p.panel == def.name).collect();
        util::write(
            &out.join(format!("panel-{}.svg", def.name)),
            panel_svg(exp, def, &mine),
        )?;
    }
    Ok(pts)
}

/// Scenario names in the order they run: repetition by repetition, each
/// repetition's panels before its sweep, so that a sweep cut short has
/// every point once and each boot compares the policies side by side.
fn run_order(jobs: &[Job], panel_jobs: &[PanelJob]) -> Vec<String> {
    let reps = jobs
        .iter()
        .map(|j| j.rep)
        .chain(panel_jobs.iter().map(|j| j.rep))
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for rep in 1..=reps {
        out.extend(
            panel_jobs
                .iter()
                .filter(|j| j.rep == rep)
                .map(|j| j.name.clone()),
        );
        out.extend(jobs.iter().filter(|j| j.rep == rep).map(|j| j.name.clone()));
    }
    out
}

/// Rewrites report.md and the figures of a finished (or cut short) sweep
/// from its summary.json and its `*.invalid-*.json` files, without running
/// anything.
pub fn report_only(ctx: &Ctx, path: &Path) -> Result<PathBuf> {
    let exp = Experiment::load(path)?;
    let out = ctx.results().join(&exp.name);
    reread(&exp, &out)?;
    Ok(out)
}

/// What [`reread`] gives back for results.rst.
struct Reread {
    kernel: String,
    points: Vec<Point>,
    panels: Vec<super::panels::PanelPoint>,
    meta: RunMeta,
    /// Runs kept, valid runs, invalid attempts.
    kept: (usize, usize, usize),
}

/// The invalid attempts of a run as its `*.invalid-*.json` files tell them
/// (only those that left a JSON file, with the result's own problems).
fn invalid_files(out: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let mut invalid = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| file_name(p).contains(".invalid-"))
        .collect();
    files.sort();
    for f in files {
        let name = file_name(&f);
        let (scn, k) = name
            .trim_end_matches(".json")
            .split_once(".invalid-")
            .unwrap_or((&name, "?"));
        // An attempt that is not a result at all is an invalid attempt too: say so.
        let problems = match ScenarioResult::from_json_str(&util::read(&f)?) {
            Ok(r) => r.problems,
            Err(e) => vec![format!("{}: {e}", f.display())],
        };
        invalid.push((format!("{scn} (attempt {k})"), problems));
    }
    Ok(invalid)
}

fn reread(exp: &Experiment, out: &Path) -> Result<Reread> {
    let Summary {
        kernel,
        runs,
        panel_runs,
        meta,
        invalid,
        missing,
    } = Summary::read(&out.join("summary.json"))?;
    let invalid = match invalid {
        Some(i) => i,
        None => invalid_files(out)?,
    };
    let jobs = exp.jobs();
    let m = Measured {
        runs,
        panel_runs,
        meta,
    };
    // Older summaries: every scenario without figures, dropped ones too.
    let missing = missing.unwrap_or_else(|| {
        run_order(&jobs, &exp.panel_jobs())
            .into_iter()
            .filter(|n| !m.runs.contains_key(n) && !m.panel_runs.contains_key(n))
            .collect()
    });
    let pts = write_outputs(exp, out, &jobs, &m, &invalid, &kernel, &missing)?;
    print_points(&pts);
    info(&format!(
        "rewrote {}/report.md and its figures",
        out.display()
    ));
    let kept = m.runs.len() + m.panel_runs.len();
    let valid = m.runs.values().filter(|r| r.valid).count()
        + m.panel_runs.values().filter(|r| r.valid).count();
    Ok(Reread {
        kernel,
        points: pts,
        panels: panel_points(exp, &m.panel_runs)?,
        meta: m.meta,
        kept: (kept, valid, invalid.len()),
    })
}

/// `cargo xtask report [DIR]`: rewrites DIR's report.md and figures (DIR:
/// an experiment's output, default `results/demo/`), then
/// `Documentation/vmfair/results.rst` from its template `results.rst.in`
/// and DIR's figures, copied beside it as `results-<name>-*.svg`.
pub fn results_doc(ctx: &Ctx, dir: Option<&Path>) -> Result<PathBuf> {
    let out = dir.map_or_else(|| ctx.results().join("demo"), Path::to_path_buf);
    let v: serde_json::Value = serde_json::from_str(&util::read(&out.join("summary.json"))?)?;
    let name = v["experiment"]
        .as_str()
        .ok_or_else(|| anyhow!("{}: no experiment name", out.display()))?;
    let exp = Experiment::load(&ctx.root.join(format!("qemu-test/experiments/{name}.toml")))?;
    let r = reread(&exp, &out)?;
    let doc = ctx.root.join("Documentation/vmfair");
    let mut fills = BTreeMap::new();
    fills.insert("RUN", rst::run_rst(&exp, &r.kernel, &r.meta, r.kept));
    let summary: Vec<String> = super::summary::summary_lines(&exp, &r.points, &r.panels)
        .iter()
        .map(|l| rst::wrap(&rst::md_to_rst(l), 76, "- ", "  "))
        .collect();
    fills.insert("SUMMARY", summary.join(""));
    fills.insert("SWEEP", rst::sweep_table(&exp, &r.points));
    fills.insert("PANELS", rst::panels_rst(&exp, &r.panels));
    debug_assert!(
        fills.len() == rst::PLACEHOLDERS.len()
            && rst::PLACEHOLDERS.iter().all(|k| fills.contains_key(k))
    );
    let text = rst::render(&util::read(&doc.join("results.rst.in"))?, &fills)?;
    let mut svgs = vec![("sweep.svg".to_string(), format!("results-{name}-sweep.svg"))];
    svgs.extend(exp.panel.iter().map(|p| {
        (
            format!("panel-{}.svg", p.name),
            format!("results-{name}-{}.svg", p.name),
        )
    }));
    for (from, to) in svgs {
        std::fs::copy(out.join(&from), doc.join(&to))
            .with_context(|| format!("copy {from} to {}", doc.join(&to).display()))?;
    }
    let path = doc.join("results.rst");
    util::write(&path, &text)?;
    info(&format!(
        "wrote {} ({} lines) from {}",
        path.display(),
        text.lines().count(),
        out.display()
    ));
    Ok(path)
}

/// Run (or only generate) an experiment; writes `results/<name>/`.
pub fn run(ctx: &Ctx, path: &Path, generate_only: bool) -> Result<PathBuf> {
    let exp = Experiment::load(path)?;
    let out = ctx.results().join(&exp.name);
    let scen_dir = out.join("scenarios");
    if !generate_only && out.exists() {
        // Old results of this experiment would mix into the report.
        std::fs::remove_dir_all(&out).with_context(|| format!("remove {}", out.display()))?;
    }
    std::fs::create_dir_all(&scen_dir)?;
    let jobs = exp.jobs();
    let panel_jobs: BTreeMap<String, PanelJob> = exp
        .panel_jobs()
        .into_iter()
        .map(|j| (j.name.clone(), j))
        .collect();
    let mut metas = BTreeMap::new();
    let tomls = jobs
        .iter()
        .map(|j| (&j.name, &j.toml))
        .chain(panel_jobs.values().map(|j| (&j.name, &j.toml)));
    for (name, toml) in tomls {
        let f = scen_dir.join(format!("{name}.toml"));
        util::write(&f, toml)?;
        metas.insert(name.clone(), scenario::meta(&f)?);
    }
    let order = run_order(&jobs, &exp.panel_jobs());
    info(&format!(
        "experiment {}: {} scenarios ({} of them in {} panels) in {}",
        exp.name,
        order.len(),
        panel_jobs.len(),
        exp.panel.len(),
        scen_dir.display()
    ));
    if generate_only {
        return Ok(out);
    }
    if let Some(mode) = &exp.tcg {
        if std::env::var_os("VMFAIR_TCG").is_none() {
            // Read by qemu::Mode::for_cpus for every boot of this process.
            std::env::set_var("VMFAIR_TCG", mode);
        }
    }
    let t0 = Instant::now();
    let (built, base) = crate::build_all(ctx)?;
    let budget_start = Instant::now();
    let build_s = t0.elapsed().as_secs_f64();
    let mut budget = Budget::default();
    let mut att = Attempts {
        out: &out,
        max_reruns: exp.max_reruns,
        pending: order.into_iter().map(|n| (n, 0)).collect(),
        invalid: Vec::new(),
    };
    let mut m = Measured::default();
    let mut kernel = String::from("?");
    let mut boot_no = 0;
    let mut missing = Vec::new();
    while !att.pending.is_empty() {
        // First attempts before reruns; a boot takes only what is expected
        // to end within the budget.
        att.pending.sort_by_key(|(_, a)| *a);
        let mut take = exp.per_boot.min(att.pending.len());
        if let Some(minutes) = exp.max_minutes {
            let costs: Vec<f64> = att.pending[..take]
                .iter()
                .map(|(n, _)| budget::cost(metas[n].seconds, metas[n].vms))
                .collect();
            let elapsed = budget_start.elapsed().as_secs_f64();
            take = budget.fit(minutes * 60.0, elapsed, &costs);
        }
        if take == 0 {
            missing.extend(att.pending.drain(..).map(|(n, _)| n));
            break;
        }
        let chunk: Vec<(String, u32)> = att.pending.drain(..take).collect();
        let predicted: f64 = chunk
            .iter()
            .map(|(n, _)| budget::cost(metas[n].seconds, metas[n].vms))
            .sum();
        let boot_t0 = Instant::now();
        boot_no += 1;
        let ms: Vec<Meta> = chunk.iter().map(|(n, _)| metas[n].clone()).collect();
        phase(&format!(
            "experiment {}: boot {boot_no}, {} scenarios, {} left after it, {:.0} s so far",
            exp.name,
            ms.len(),
            att.pending.len(),
            t0.elapsed().as_secs_f64()
        ));
        let boot_name = format!("{}-{boot_no}", exp.name);
        let result = scenario::run_many(ctx, &built, &base, &ms, &out, &boot_name);
        let ran = match result {
            Ok((ran, outcome)) => {
                if outcome.done.is_none() {
                    info(&outcome.verdict());
                } else {
                    // Only boots that ran their plan say how long scenarios take.
                    budget.record(predicted, boot_t0.elapsed().as_secs_f64());
                }
                ran
            }
            Err(e) => {
                info(&format!("boot {boot_name} failed: {e:#}"));
                Vec::new()
            }
        };
        for (name, attempts) in chunk {
            let r = ran.iter().find(|r| r.meta.name == name);
            let res = r.and_then(|r| r.json.as_ref()).map(|v| {
                let res = ScenarioResult::deserialize(v).map_err(|e| anyhow!("result: {e}"))?;
                kernel.clone_from(&res.kernel);
                Ok(res)
            });
            let error = r.and_then(|r| r.error.clone());
            match panel_jobs.get(&name) {
                Some(pj) => {
                    let pr = res.map(|res| res.and_then(|res| panel_run(pj, &res)));
                    att.settle(&mut m.panel_runs, &name, attempts, boot_no, pr, error)?;
                }
                None => {
                    let fig = res.map(|res| res.and_then(|res| figures(&res)));
                    att.settle(&mut m.runs, &name, attempts, boot_no, fig, error)?;
                }
            }
        }
        m.meta = run_meta(build_s, budget_start, boot_no);
        // Partial outputs after every boot, so that a sweep cut short
        // still leaves its report.
        write_outputs(
            &exp,
            &out,
            &jobs,
            &m,
            &att.invalid,
            &kernel,
            &pending_names(&att.pending),
        )?;
    }
    let pts = write_outputs(&exp, &out, &jobs, &m, &att.invalid, &kernel, &missing)?;
    print_points(&pts);
    info(&format!(
        "experiment {} finished in {:.0} s: {}/report.md and its figures",
        exp.name,
        t0.elapsed().as_secs_f64(),
        out.display()
    ));
    if m.runs.values().all(|r| !r.valid) && m.panel_runs.values().all(|r| !r.valid) {
        bail!("no valid run in experiment {}", exp.name);
    }
    Ok(out)
}

/// The run's date and times so far.
fn run_meta(build_s: f64, started: Instant, boots: usize) -> RunMeta {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    RunMeta {
        recorded: rst::utc_date(now),
        build_s,
        run_s: started.elapsed().as_secs_f64(),
        boots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reread_keeps_what_the_run_saw() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let exp = Experiment::load(&root.join("qemu-test/experiments/demo.toml")).unwrap();
        let out = std::env::temp_dir().join(format!("vmfair-reread-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let jobs = exp.jobs();
        let (lost, cut) = (jobs[0].name.clone(), jobs[1].name.clone());
        // An attempt that left no JSON file, dropped after its reruns, and a
        // scenario cut by the budget.
        let invalid = vec![(format!("{lost} (attempt 2)"), vec!["no result".to_string()])];
        let m = Measured::default();
        write_outputs(
            &exp,
            &out,
            &jobs,
            &m,
            &invalid,
            "k",
            std::slice::from_ref(&cut),
        )
        .unwrap();
        let r = reread(&exp, &out).unwrap();
        assert_eq!(r.kept, (0, 0, 1));
        let md = util::read(&out.join("report.md")).unwrap();
        assert!(
            md.contains(&format!("- `{lost} (attempt 2)`: no result")),
            "{md}"
        );
        let not_run = md.split("## Not run").nth(1).unwrap();
        assert!(not_run.contains(&cut) && !not_run.contains(&format!("`{lost}`")));
        // An older summary without the two lists: read from the files.
        let v: serde_json::Value =
            serde_json::from_str(&util::read(&out.join("summary.json")).unwrap()).unwrap();
        let mut old = v.as_object().unwrap().clone();
        old.remove("invalid");
        old.remove("missing");
        util::write(
            &out.join("summary.json"),
            serde_json::to_string(&old).unwrap(),
        )
        .unwrap();
        let r = reread(&exp, &out).unwrap();
        assert_eq!(r.kept, (0, 0, 0));
        let md = util::read(&out.join("report.md")).unwrap();
        assert!(md
            .split("## Not run")
            .nth(1)
            .unwrap()
            .contains(&format!("`{lost}`")));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
