//! `make scenario SCENARIO=file.toml`: the contract of Documentation/vmfair/contract.rst.
//! Boots the test kernel, runs the scenario(s) in the guest with real KVM
//! VMs, writes `results/<name>.json`, prints a table. Fails only when the
//! run itself failed; it does not judge fairness.

use crate::kbuild::Built;
use crate::qemu::{self, Boot};
use crate::util::{self, info, Ctx};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the host needs to know about a scenario before booting; the full
/// schema is checked by the `vmfair-scenario` crate (also in the guest).
#[derive(Clone, Debug)]
pub struct Meta {
    pub path: PathBuf,
    pub name: String,
    pub guest_cpus: u32,
    pub seconds: f64,
    pub vms: u32,
}

pub fn meta(path: &Path) -> Result<Meta> {
    let text = util::read(path)?;
    let s = vmfair_scenario::Scenario::from_toml_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let vms: u32 = s.vm.iter().map(|v| v.count).sum();
    Ok(Meta {
        path: path.to_path_buf(),
        name: s.name.clone(),
        guest_cpus: s.guest_cpus,
        seconds: s.warmup_s + s.duration_s,
        vms,
    })
}

/// The result of one scenario as written to `results/…/<name>.json`.
pub struct Ran {
    pub meta: Meta,
    pub json: Option<Value>,
    pub file: Option<PathBuf>,
    pub error: Option<String>,
}

/// Run scenarios (same `guest_cpus`) in one boot.
pub fn run_many(
    ctx: &Ctx,
    built: &Built,
    base: &Path,
    scenarios: &[Meta],
    out_dir: &Path,
    boot_name: &str,
) -> Result<(Vec<Ran>, qemu::Outcome)> {
    let Some(first) = scenarios.first() else {
        bail!("no scenarios to run");
    };
    if scenarios.iter().any(|s| s.guest_cpus != first.guest_cpus) {
        bail!("scenarios in one boot must share guest_cpus");
    }
    let mut plan = vec!["info".to_string()];
    let mut files = Vec::new();
    let mut secs = 0.0;
    for s in scenarios {
        let g = format!("/vmfair/scenarios/{}.toml", s.name);
        plan.push(format!("scenario {g}"));
        files.push((g, s.path.clone()));
        // Set-up, VM start and stop cost seconds of emulated time each.
        secs += s.seconds * 1.5 + 20.0 + 2.0 * s.vms as f64;
    }
    plan.push("dmesg".into());
    let longest = scenarios.iter().map(|s| s.seconds).fold(0.0, f64::max);
    let boot = Boot {
        name: boot_name.to_string(),
        built,
        base_cpio: base,
        cpus: first.guest_cpus,
        mem_mib: 2048,
        plan,
        files,
        timeout: Duration::from_secs_f64(90.0 + secs),
        icount: false,
        silence: Duration::from_secs_f64(120.0 + longest * 2.0),
    };
    let out = boot.run(ctx)?;
    std::fs::create_dir_all(out_dir)?;
    let mut ran = Vec::new();
    for s in scenarios {
        let mut r = Ran {
            meta: s.clone(),
            json: None,
            file: None,
            error: None,
        };
        match out.block("scenario", &s.name) {
            None => r.error = Some("no result: the guest did not get to this scenario".into()),
            Some(b) => {
                let line = b.payload.lines().find(|l| l.trim_start().starts_with('{'));
                match line.map(serde_json::from_str::<Value>) {
                    Some(Ok(v)) => {
                        let f = out_dir.join(format!("{}.json", s.name));
                        util::write(&f, serde_json::to_string_pretty(&v)? + "\n")?;
                        r.json = Some(v);
                        r.file = Some(f);
                        if b.rc != Some(0) {
                            r.error = Some(format!("the runner exited with rc={:?}", b.rc));
                        }
                    }
                    _ => {
                        r.error = Some(format!(
                            "the runner printed no JSON (rc={:?}); console: {}",
                            b.rc,
                            out.console.display()
                        ))
                    }
                }
            }
        }
        ran.push(r);
    }
    Ok((ran, out))
}

/// A JSON value as a table cell (serde_json's Display ignores widths).
fn cell(v: &Value) -> String {
    v.to_string()
}

/// Print a short table of a result.
pub fn print_table(name: &str, v: &Value) {
    let valid = v["valid"].as_bool().unwrap_or(true);
    let dur = v["duration_s"].as_f64().unwrap_or(0.0);
    println!(
        "scenario {name}: policy {}, {} guest CPUs, {:.1}s window, kernel {}{}",
        v["policy"].as_str().unwrap_or("?"),
        cell(&v["guest_cpus"]),
        dur,
        v["kernel"].as_str().unwrap_or("?"),
        if valid { "" } else { "  ** INVALID RUN **" }
    );
    println!(
        "  {:<5} {:<10} {:>4} {:>6} {:>5} {:>7} {:>6} {:>10} {:>9}",
        "kind", "name", "inst", "pid", "vcpus", "cpu_s", "share", "work(M)", "M/s"
    );
    let total_cpu = v["guest_cpus"].as_f64().unwrap_or(1.0) * dur.max(1e-9);
    for g in v["groups"].as_array().into_iter().flatten() {
        let cpu = g["cpu_s"].as_f64().unwrap_or(0.0);
        let work = g["work"].as_f64().unwrap_or(0.0);
        println!(
            "  {:<5} {:<10} {:>4} {:>6} {:>5} {:>7.2} {:>6.3} {:>10.1} {:>9.1}",
            g["kind"].as_str().unwrap_or("?"),
            g["name"].as_str().unwrap_or("?"),
            cell(&g["instance"]),
            cell(&g["pid"]),
            cell(&g["vcpus"]),
            cpu,
            cpu / total_cpu * v["guest_cpus"].as_f64().unwrap_or(1.0),
            work / 1e6,
            if dur > 0.0 { work / dur / 1e6 } else { 0.0 }
        );
    }
    for p in v["problems"].as_array().into_iter().flatten() {
        println!("  problem: {}", p.as_str().unwrap_or(""));
    }
}

/// `cargo xtask scenario FILE…`
pub fn cmd(ctx: &Ctx, files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        bail!("usage: cargo xtask scenario FILE.toml [FILE.toml…] (make scenario SCENARIO=…)");
    }
    let metas: Vec<Meta> = files.iter().map(|f| meta(f)).collect::<Result<_>>()?;
    let (built, base) = crate::build_all(ctx)?;
    let mut failed = false;
    // One boot per distinct guest_cpus value.
    let mut cpus: Vec<u32> = metas.iter().map(|m| m.guest_cpus).collect();
    cpus.sort();
    cpus.dedup();
    for c in cpus {
        let group: Vec<Meta> = metas
            .iter()
            .filter(|m| m.guest_cpus == c)
            .cloned()
            .collect();
        let (ran, out) = run_many(
            ctx,
            &built,
            &base,
            &group,
            &ctx.results(),
            &format!("scenario-{c}cpu"),
        )
        .context("scenario boot failed")?;
        for r in &ran {
            match (&r.json, &r.error) {
                (Some(v), err) => {
                    print_table(&r.meta.name, v);
                    if let Some(f) = &r.file {
                        info(&format!("wrote {}", f.display()));
                    }
                    if let Some(e) = err {
                        eprintln!("error: scenario {}: {e}", r.meta.name);
                        failed = true;
                    }
                }
                (None, e) => {
                    eprintln!(
                        "error: scenario {}: {}",
                        r.meta.name,
                        e.as_deref().unwrap_or("no result")
                    );
                    failed = true;
                }
            }
        }
        if out.done.is_none() {
            eprintln!("{}", out.verdict());
            failed = true;
        }
    }
    if failed {
        bail!("the scenario run failed");
    }
    Ok(())
}
