//! `make scenario SCENARIO=file.toml`: the contract of Documentation/vmfair/contract.rst.
//! Boots the test kernel, runs the scenario(s) in the guest with real KVM
//! VMs, writes `results/<name>.json`, prints a table. Fails only when the
//! run itself failed; it does not judge fairness.

use crate::kbuild::Built;
use crate::qemu::{self, Boot};
use crate::util::{self, info, Ctx};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmfair_scenario::{GroupKind, ScenarioResult};

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
        // VMFAIR_ICOUNT=1: guest clocks count instructions (contract.rst), for comparisons
        // that must not depend on what else the host runs.
        icount: std::env::var("VMFAIR_ICOUNT").as_deref() == Ok("1"),
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

/// Print a short table of a result.
pub fn print_table(name: &str, v: &Value) {
    print!("{}", table(name, v));
}

/// The table of a result, read as a [`ScenarioResult`]; a result that does not read says so.
fn table(name: &str, v: &Value) -> String {
    let v = match ScenarioResult::deserialize(v) {
        Ok(r) => r,
        Err(e) => return format!("scenario {name}: the result does not read: {e}\n"),
    };
    let mut s = String::new();
    let dur = v.duration_s;
    let _ = writeln!(
        s,
        "scenario {name}: policy {}, {} guest CPUs, {:.1}s window, kernel {}{}",
        v.policy.as_str(),
        v.guest_cpus,
        dur,
        v.kernel,
        if v.valid { "" } else { "  ** INVALID RUN **" }
    );
    let _ = writeln!(
        s,
        "  {:<5} {:<10} {:>4} {:>6} {:>5} {:>7} {:>6} {:>10} {:>9}",
        "kind", "name", "inst", "pid", "vcpus", "cpu_s", "share", "work(M)", "M/s"
    );
    let cpus = f64::from(v.guest_cpus);
    let total_cpu = cpus * dur.max(1e-9);
    for g in &v.groups {
        let work = g.work as f64;
        let _ = writeln!(
            s,
            "  {:<5} {:<10} {:>4} {:>6} {:>5} {:>7.2} {:>6.3} {:>10.1} {:>9.1}",
            match g.kind {
                GroupKind::Vm => "vm",
                GroupKind::Host => "host",
            },
            g.name,
            g.instance,
            g.pid,
            g.vcpus,
            g.cpu_s,
            g.cpu_s / total_cpu * cpus,
            work / 1e6,
            if dur > 0.0 { work / dur / 1e6 } else { 0.0 }
        );
    }
    for p in &v.problems {
        let _ = writeln!(s, "  problem: {p}");
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result() -> Value {
        json!({"scenario": "two", "policy": "vmfair", "kernel": "7.3.4+", "guest_cpus": 2,
            "duration_s": 10.0, "valid": false, "problems": ["vm a: bogus exit"],
            "groups": [
                {"kind": "vm", "name": "a", "instance": 0, "pid": 120, "vcpus": 2,
                 "cpu_s": 15.0, "work": 2500000000_u64, "index": null},
                {"kind": "host", "name": "noise", "instance": 1, "pid": 131, "vcpus": 0,
                 "cpu_s": 5.0, "work": 7000000, "index": null}]})
    }

    #[test]
    fn tables_are_read_from_typed_results() {
        assert_eq!(
            table("two", &result()),
            "scenario two: policy vmfair, 2 guest CPUs, 10.0s window, kernel 7.3.4+  ** INVALID \
             RUN **\n  kind  name       inst    pid vcpus   cpu_s  share    work(M)       M/s\n  \
             vm    a             0    120     2   15.00  1.500     2500.0     250.0\n  host  \
             noise         1    131     0    5.00  0.500        7.0       0.7\n  problem: vm a: \
             bogus exit\n"
        );
        // A missing or mistyped field is said, not printed as "?" or 0.
        let mut v = result();
        v["groups"][0].as_object_mut().unwrap().remove("cpu_s");
        assert!(table("two", &v).contains("does not read: missing field `cpu_s`"));
        let mut v = result();
        v["guest_cpus"] = json!("2");
        assert!(table("two", &v).contains("does not read: invalid type: string"));
    }
}
