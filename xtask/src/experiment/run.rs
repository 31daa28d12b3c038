//! The boots of a sweep, the reruns of invalid results, and the outputs.

use super::figures::{figures, RunFigures};
use super::points::{points, Point};
use super::report::{print_points, print_run, report_md};
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
}

impl Summary {
    fn read(path: &Path) -> Result<Summary> {
        serde_json::from_str(&util::read(path)?).with_context(|| path.display().to_string())
    }
}

/// Writes summary.json, report.md and figure.svg; returns the points.
fn write_outputs(
    exp: &Experiment,
    out: &Path,
    jobs: &[Job],
    runs: &BTreeMap<String, RunFigures>,
    invalid: &[(String, Vec<String>)],
    kernel: &str,
    missing: &[String],
) -> Result<Vec<Point>> {
    let pts = points(jobs, runs);
    util::write(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "experiment": exp.name,
            "kernel": kernel,
            "points": pts,
            "runs": runs,
        }))? + "\n",
    )?;
    let md = report_md(exp, &pts, runs, invalid, kernel, missing);
    util::write(&out.join("report.md"), &md)?;
    util::write(&out.join("figure.svg"), figure_svg(exp, &pts))?;
    Ok(pts)
}

/// Rewrites report.md and figure.svg of a finished (or cut short) sweep
/// from its summary.json and its `*.invalid-*.json` files, without running
/// anything.
pub fn report_only(ctx: &Ctx, path: &Path) -> Result<PathBuf> {
    let exp = Experiment::load(path)?;
    let out = ctx.results().join(&exp.name);
    let Summary { kernel, runs } = Summary::read(&out.join("summary.json"))?;
    let mut invalid = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)?
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
    let jobs = exp.jobs();
    let missing: Vec<String> = jobs
        .iter()
        .filter(|j| !runs.contains_key(&j.name))
        .map(|j| j.name.clone())
        .collect();
    let pts = write_outputs(&exp, &out, &jobs, &runs, &invalid, &kernel, &missing)?;
    print_points(&pts);
    info(&format!("rewrote {}/report.md, figure.svg", out.display()));
    Ok(out)
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
    let mut metas = BTreeMap::new();
    for j in &jobs {
        let f = scen_dir.join(format!("{}.toml", j.name));
        util::write(&f, &j.toml)?;
        metas.insert(j.name.clone(), scenario::meta(&f)?);
    }
    info(&format!(
        "experiment {}: {} scenarios in {}",
        exp.name,
        jobs.len(),
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
    let over_budget = |frac: f64| {
        exp.max_minutes
            .is_some_and(|m| budget_start.elapsed().as_secs_f64() > m * 60.0 * frac)
    };
    // (job name, attempts so far)
    let mut pending: Vec<(String, u32)> = jobs.iter().map(|j| (j.name.clone(), 0)).collect();
    let mut runs: BTreeMap<String, RunFigures> = BTreeMap::new();
    let mut invalid: Vec<(String, Vec<String>)> = Vec::new();
    let mut kernel = String::from("?");
    let mut boot_no = 0;
    let mut missing = Vec::new();
    while !pending.is_empty() {
        if over_budget(1.0) {
            missing.extend(pending.drain(..).map(|(n, _)| n));
            break;
        }
        // First attempts before reruns; reruns only while within 3/4 of
        // the budget.
        pending.sort_by_key(|(_, a)| *a);
        if pending[0].1 > 0 && over_budget(0.75) {
            missing.extend(pending.drain(..).map(|(n, _)| n));
            break;
        }
        let take = exp.per_boot.min(pending.len());
        let chunk: Vec<(String, u32)> = pending.drain(..take).collect();
        boot_no += 1;
        let ms: Vec<Meta> = chunk.iter().map(|(n, _)| metas[n].clone()).collect();
        phase(&format!(
            "experiment {}: boot {boot_no}, {} scenarios, {} left after it, {:.0} s so far",
            exp.name,
            ms.len(),
            pending.len(),
            t0.elapsed().as_secs_f64()
        ));
        let boot_name = format!("{}-{boot_no}", exp.name);
        let result = scenario::run_many(ctx, &built, &base, &ms, &out, &boot_name);
        let ran = match result {
            Ok((ran, outcome)) => {
                if outcome.done.is_none() {
                    info(&outcome.verdict());
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
            let fig = r.and_then(|r| r.json.as_ref()).map(|v| {
                let res = ScenarioResult::deserialize(v).map_err(|e| anyhow!("result: {e}"))?;
                kernel.clone_from(&res.kernel);
                figures(&res)
            });
            let (ok, problems) = match (&fig, r.and_then(|r| r.error.clone())) {
                (Some(Ok(f)), None) if f.valid && f.target_index.is_some() => (true, vec![]),
                (Some(Ok(f)), err) => {
                    let mut p = f.problems.clone();
                    if f.target_index.is_none() {
                        p.push("no target index".into());
                    }
                    p.extend(err);
                    (false, p)
                }
                (Some(Err(e)), err) => {
                    (false, vec![format!("{e}")].into_iter().chain(err).collect())
                }
                (None, err) => (false, vec![err.unwrap_or_else(|| "no result".into())]),
            };
            if let Some(Ok(mut f)) = fig {
                f.boot = boot_no;
                if ok {
                    print_run(&f);
                }
                runs.insert(name.clone(), f);
            }
            if !ok {
                let tag = format!("{name} (attempt {})", attempts + 1);
                info(&format!("invalid: {tag}: {}", problems.join("; ")));
                invalid.push((tag, problems));
                let json = out.join(format!("{name}.json"));
                if json.exists() {
                    let keep = out.join(format!("{name}.invalid-{}.json", attempts + 1));
                    std::fs::rename(&json, &keep)?;
                }
                if attempts < exp.max_reruns {
                    runs.remove(&name);
                    pending.push((name, attempts + 1));
                }
            }
        }
        // Partial outputs after every boot, so that a sweep cut short
        // still leaves its report.
        write_outputs(
            &exp,
            &out,
            &jobs,
            &runs,
            &invalid,
            &kernel,
            &pending_names(&pending),
        )?;
    }
    let pts = write_outputs(&exp, &out, &jobs, &runs, &invalid, &kernel, &missing)?;
    print_points(&pts);
    info(&format!(
        "experiment {} finished in {:.0} s: {}/report.md, figure.svg",
        exp.name,
        t0.elapsed().as_secs_f64(),
        out.display()
    ));
    if runs.values().all(|r| !r.valid) {
        bail!("no valid run in experiment {}", exp.name);
    }
    Ok(out)
}
