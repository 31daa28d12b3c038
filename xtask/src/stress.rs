//! `cargo xtask stress [--minutes N]` (`make stress`): vmfair under concurrent load on the
//! debug kernel (`kconfig/debug.config`), then checks for kernel reports and leaks.
//!
//! Builds the debug kernel beside the normal one (its own build key), boots it with both
//! CPUs, enough memory for the debugging facilities and `slab_nomerge slub_debug=FZP`, and
//! runs the plan step `stress` (`vmfair-run stress`, `selftests/vmfair-run/src/stress/`).
//! Writes `results/stress/stress.json` and `report.md`; the last line is the verdict:
//! `stress: PASS — N VMs created/destroyed, …, R reports, L leaks` or `stress: FAIL — …`.
//! Method and findings: `Documentation/vmfair/robustness.rst`.

use crate::kbuild::{self, Built, Inputs};
use crate::qemu::Boot;
use crate::util::{self, info, phase, Ctx};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Guest CPUs and memory: kmemleak, KFENCE, debug objects and lockdep need room.
const GUEST_CPUS: u32 = 2;
const GUEST_MEM_MIB: u32 = 3072;
/// Kernel command line for the stress boot: caches kept apart (per-cache object counts),
/// SLUB red zones and poisoning on every cache, a log buffer that holds a long run, and the
/// module's KUnit suites not run on every `modprobe`.
const CMDLINE: &str = "slab_nomerge slub_debug=FZP log_buf_len=8M kunit.enable=0";

/// The project's inputs with `kconfig/debug.config`, whatever `VMFAIR_DEBUG` says.
pub fn debug_inputs(ctx: &Ctx) -> Result<Inputs> {
    let mut inputs = Inputs::project(ctx)?;
    let debug = ctx.root.join("kconfig/debug.config");
    if !inputs.fragments.contains(&debug) {
        inputs.fragments.push(debug);
        inputs.fragments.sort();
    }
    Ok(inputs)
}

/// Builds the debug kernel, the module for it, the guest programs and the initramfs.
pub fn build(ctx: &Ctx) -> Result<(Built, PathBuf)> {
    let t = Instant::now();
    let built = kbuild::kernel(ctx, &debug_inputs(ctx)?)?;
    let stage = kbuild::module(ctx, &built)?;
    info(&format!(
        "debug kernel and module ready in {}s ({})",
        t.elapsed().as_secs(),
        built.release
    ));
    let bins = crate::guest::programs(ctx)?;
    let base = crate::guest::base_initramfs(ctx, &built, &stage, &bins)?;
    Ok((built, base))
}

/// What to run.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub seconds: u64,
    pub seed: u64,
    pub fail_percent: u32,
}

pub fn parse_args(args: &[String]) -> Result<Args> {
    let mut a = Args {
        seconds: 600,
        seed: 1,
        fail_percent: 5,
    };
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--minutes" => a.seconds = 60 * val()?.parse::<u64>().context("--minutes N")?,
            "--seconds" => a.seconds = val()?.parse().context("--seconds N")?,
            "--seed" => a.seed = val()?.parse().context("--seed N")?,
            "--fail-percent" => a.fail_percent = val()?.parse().context("--fail-percent P")?,
            other => bail!(
                "unknown argument {other:?}\nusage: cargo xtask stress [--minutes N] \
                 [--seconds S] [--seed X] [--fail-percent P] | --report"
            ),
        }
    }
    if a.seconds == 0 || a.fail_percent > 100 {
        bail!("--minutes must be positive and --fail-percent at most 100");
    }
    Ok(a)
}

/// `cargo xtask stress [ARGS]`; returns the exit status (0: PASS).
pub fn cmd(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let dir = ctx.results().join("stress");
    if args.first().map(String::as_str) == Some("--report") {
        let all: Value = serde_json::from_str(&util::read(&dir.join("stress.json"))?)?;
        return finish(&dir, &all);
    }
    let a = parse_args(args)?;
    let t0 = Instant::now();
    let (built, base) = build(ctx)?;
    let build_s = t0.elapsed().as_secs();
    phase(&format!(
        "stress: {} s of load on {} ({GUEST_CPUS} CPUs, {GUEST_MEM_MIB} MiB), progress every 30 s",
        a.seconds, built.release
    ));
    let out = Boot {
        name: "stress".into(),
        built: &built,
        base_cpio: &base,
        cpus: GUEST_CPUS,
        mem_mib: GUEST_MEM_MIB,
        plan: vec![
            "info".into(),
            format!(
                "stress --seconds {} --seed {} --fail-percent {}",
                a.seconds, a.seed, a.fail_percent
            ),
            "dmesg".into(),
        ],
        files: vec![],
        timeout: Duration::from_secs(a.seconds + 1800),
        icount: false,
        silence: Duration::from_secs(600),
    }
    .run_with(ctx, CMDLINE)?;
    let mut problems = Vec::new();
    let guest = match out.block("stress", "vmfair") {
        None => {
            problems.push("no stress result: the guest did not get there".to_string());
            Value::Null
        }
        Some(b) => match b.payload.lines().find(|l| l.starts_with('{')) {
            Some(l) => serde_json::from_str(l).context("the guest's JSON does not parse")?,
            None => {
                problems.push(format!("no JSON from the guest (rc={:?})", b.rc));
                Value::Null
            }
        },
    };
    if out.done.is_none() {
        problems.push(out.verdict());
    }
    let all = json!({
        "release": built.release,
        "cmdline": CMDLINE,
        "guest_cpus": GUEST_CPUS,
        "guest_mem_mib": GUEST_MEM_MIB,
        "build_s": build_s,
        "boot_s": out.elapsed.as_secs(),
        "console": out.console.display().to_string(),
        "problems": problems,
        "guest": guest,
    });
    std::fs::create_dir_all(&dir)?;
    util::write(
        &dir.join("stress.json"),
        serde_json::to_string_pretty(&all)? + "\n",
    )?;
    finish(&dir, &all)
}

/// Every problem: the boot's and the guest's.
pub fn problems(all: &Value) -> Vec<String> {
    let mut p = strs(&all["problems"]);
    p.extend(strs(&all["guest"]["problems"]));
    if all["guest"]["passed"] != json!(true) && p.is_empty() {
        p.push("the guest did not pass".into());
    }
    p
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn n(v: &Value) -> String {
    v.as_u64().map_or("?".into(), |x| x.to_string())
}

/// The verdict line.
pub fn verdict(all: &Value) -> String {
    let g = &all["guest"];
    let counts = format!(
        "{} VMs created/destroyed, {}/{} loads/unloads, {} writes, {} injected failures, \
         {} reports, {} leaks",
        n(&g["vms_created"]),
        n(&g["loads"]),
        n(&g["unloads"]),
        n(&g["writes"]),
        n(&g["injected"]),
        n(&g["reports"]),
        n(&g["leaks"])
    );
    let p = problems(all);
    match p.first() {
        None => format!("stress: PASS — {counts}"),
        Some(first) => {
            let first = first.lines().next().unwrap_or("");
            let more = if p.len() > 1 {
                format!(" (+{} more)", p.len() - 1)
            } else {
                String::new()
            };
            format!("stress: FAIL — {counts}; {first}{more}")
        }
    }
}

fn finish(dir: &Path, all: &Value) -> Result<i32> {
    util::write(&dir.join("report.md"), render(all))?;
    info(&format!(
        "wrote {}/report.md and stress.json",
        dir.display()
    ));
    let p = problems(all);
    for x in &p {
        eprintln!("problem: {x}");
    }
    println!("{}", verdict(all));
    Ok(if p.is_empty() { 0 } else { 1 })
}

/// `results/stress/report.md`.
pub fn render(all: &Value) -> String {
    let g = &all["guest"];
    let mut s = String::new();
    let _ = writeln!(s, "# vmfair stress\n\n{}\n", verdict(all));
    let _ = writeln!(
        s,
        "Kernel {} (debug), {} CPUs, {} MiB, `{}`; {} s of load, seed {}, failslab {} % \
         on the module's text; boot {} s.\n",
        all["release"].as_str().unwrap_or("?"),
        n(&all["guest_cpus"]),
        n(&all["guest_mem_mib"]),
        all["cmdline"].as_str().unwrap_or(""),
        n(&g["seconds"]),
        n(&g["seed"]),
        n(&g["fail_percent"]),
        n(&all["boot_s"])
    );
    let _ = writeln!(s, "## Counts\n\n| what | count |\n| --- | ---: |");
    let mut row = |k: &str, v: &Value| {
        let _ = writeln!(s, "| {k} | {} |", n(v));
    };
    row("VMM processes started", &g["vm_processes"]);
    row("module loads", &g["loads"]);
    row("module unloads", &g["unloads"]);
    row("knob and weight writes", &g["writes"]);
    row("injected allocation failures", &g["injected"]);
    row("kernel reports", &g["reports"]);
    row("kmemleak leaks", &g["leaks"]);
    for (k, v) in g["counters"].as_object().into_iter().flatten() {
        row(k, v);
    }
    for (k, v) in g["load"]["vmm"].as_object().into_iter().flatten() {
        row(&format!("vmm {k}"), v);
    }
    for (k, v) in g["load"]["churn"].as_object().into_iter().flatten() {
        row(&format!("churn processes {k}"), v);
    }
    for k in ["load_failures", "unload_failures", "arm_failures"] {
        row(&format!("module {k}"), &g["load"]["module"][k]);
    }
    row("cgroup moves", &g["load"]["cgroup_moves"]);
    row("autogroup toggles", &g["load"]["autogroup_toggles"]);
    for (k, v) in g["kmsg"]["notes"].as_object().into_iter().flatten() {
        row(&format!("log: {k}"), v);
    }
    let _ = writeln!(s, "\n## Knob writes by result\n");
    for (k, v) in g["load"]["knobs"]["results"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(s, "- {k}: {}", n(v));
    }
    let _ = writeln!(s, "\n## End state\n\n```\n{}\n```", pretty(&g["end"]));
    let _ = writeln!(s, "\n## Problems\n");
    let p = problems(all);
    if p.is_empty() {
        let _ = writeln!(s, "None.");
    }
    for x in &p {
        let _ = writeln!(s, "- {}", x.replace('\n', " "));
    }
    let excerpts = g["kmsg"]["excerpts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !excerpts.is_empty() {
        let _ = writeln!(s, "\n## Kernel reports (first lines)\n");
        for e in excerpts {
            let lines: Vec<String> = strs(&e);
            let _ = writeln!(s, "```\n{}\n```\n", lines.join("\n"));
        }
    }
    let leaks = strs(&g["end"]["kmemleak"]["excerpts"]);
    if !leaks.is_empty() {
        let _ = writeln!(s, "\n## kmemleak\n");
        for l in leaks {
            let _ = writeln!(s, "```\n{l}\n```\n");
        }
    }
    s
}

fn pretty(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(k) = v.get_mut("kmemleak") {
        k["excerpts"] = json!("(below)");
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args() {
        assert_eq!(parse_args(&[]).unwrap().seconds, 600);
        assert_eq!(parse_args(&s(&["--minutes", "30"])).unwrap().seconds, 1800);
        assert!(parse_args(&s(&["--minutes", "0"])).is_err());
        assert!(parse_args(&s(&["--bogus"])).is_err());
    }

    #[test]
    fn verdicts() {
        let mut all = json!({"problems": [], "guest": {
            "passed": true, "vms_created": 3412, "loads": 57, "unloads": 57, "writes": 120311,
            "injected": 842, "reports": 0, "leaks": 0, "problems": []}});
        assert_eq!(
            verdict(&all),
            "stress: PASS — 3412 VMs created/destroyed, 57/57 loads/unloads, 120311 writes, \
             842 injected failures, 0 reports, 0 leaks"
        );
        all["guest"]["passed"] = json!(false);
        all["guest"]["problems"] = json!(["2 kernel report(s) in the log", "x"]);
        assert!(verdict(&all).starts_with("stress: FAIL — 3412 VMs"));
        assert!(verdict(&all).ends_with("2 kernel report(s) in the log (+1 more)"));
        let died = json!({"problems": ["no stress result"], "guest": null});
        assert!(verdict(&died).contains("FAIL") && verdict(&died).contains("? VMs"));
        assert!(render(&died).contains("no stress result"));
    }
}
