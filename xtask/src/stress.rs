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
use crate::readers::{
    self,
    stress::{End, StressFile},
};
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
        return finish(&dir, &readers::read(&dir.join("stress.json"))?);
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
    let path = dir.join("stress.json");
    let text = serde_json::to_string_pretty(&all)? + "\n";
    util::write(&path, &text)?;
    // Read back through the typed reader: what the report shows is what the file says.
    finish(&dir, &readers::parse(&path.display().to_string(), &text)?)
}

/// Every problem: the boot's and the guest's.
pub fn problems(all: &StressFile) -> Vec<String> {
    let mut p = all.problems.clone();
    if let Some(g) = &all.guest {
        p.extend(g.problems.iter().cloned());
    }
    if !all.guest.as_ref().is_some_and(|g| g.passed) && p.is_empty() {
        p.push("the guest did not pass".into());
    }
    p
}

/// A count, or `?` when there is none.
fn n(v: Option<u64>) -> String {
    v.map_or("?".into(), |x| x.to_string())
}

/// The verdict line.
pub fn verdict(all: &StressFile) -> String {
    let g = all.guest.as_ref();
    let counts = format!(
        "{} VMs created/destroyed, {}/{} loads/unloads, {} writes, {} injected failures, \
         {} reports, {} leaks",
        n(g.map(|g| g.vms_created)),
        n(g.map(|g| g.loads)),
        n(g.map(|g| g.unloads)),
        n(g.map(|g| g.writes)),
        n(g.map(|g| g.injected)),
        n(g.map(|g| g.reports)),
        n(g.map(|g| g.leaks))
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

fn finish(dir: &Path, all: &StressFile) -> Result<i32> {
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
pub fn render(all: &StressFile) -> String {
    let g = all.guest.as_ref();
    let mut s = String::new();
    let _ = writeln!(s, "# vmfair stress\n\n{}\n", verdict(all));
    let _ = writeln!(
        s,
        "Kernel {} (debug), {} CPUs, {} MiB, `{}`; {} s of load, seed {}, failslab {} % \
         on the module's text; boot {} s.\n",
        all.release,
        all.guest_cpus,
        all.guest_mem_mib,
        all.cmdline,
        n(g.map(|g| g.seconds)),
        n(g.map(|g| g.seed)),
        n(g.map(|g| u64::from(g.fail_percent))),
        all.boot_s
    );
    let _ = writeln!(s, "## Counts\n\n| what | count |\n| --- | ---: |");
    let mut row = |k: &str, v: Option<u64>| {
        let _ = writeln!(s, "| {k} | {} |", n(v));
    };
    row("VMM processes started", g.and_then(|g| g.vm_processes));
    row("module loads", g.map(|g| g.loads));
    row("module unloads", g.map(|g| g.unloads));
    row("knob and weight writes", g.map(|g| g.writes));
    row("injected allocation failures", g.map(|g| g.injected));
    row("kernel reports", g.map(|g| g.reports));
    row("kmemleak leaks", g.map(|g| g.leaks));
    if let Some(g) = g {
        for (k, v) in &g.counters {
            row(k, Some(*v));
        }
        for (k, v) in &g.load.vmm {
            row(&format!("vmm {k}"), Some(*v));
        }
        for (k, v) in &g.load.churn {
            row(&format!("churn processes {k}"), Some(*v));
        }
    }
    let module = g.map(|g| &g.load.module);
    row("module load_failures", module.map(|m| m.load_failures));
    row("module unload_failures", module.map(|m| m.unload_failures));
    row("module arm_failures", module.map(|m| m.arm_failures));
    row("cgroup moves", g.map(|g| g.load.cgroup_moves));
    row("autogroup toggles", g.map(|g| g.load.autogroup_toggles));
    for (k, v) in g.into_iter().flat_map(|g| &g.kmsg.notes) {
        row(&format!("log: {k}"), Some(*v));
    }
    let _ = writeln!(s, "\n## Knob writes by result\n");
    for (k, v) in g.into_iter().flat_map(|g| &g.load.knobs.results) {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(
        s,
        "\n## End state\n\n```\n{}\n```",
        g.map_or("null".into(), |g| pretty(&g.end))
    );
    let _ = writeln!(s, "\n## Problems\n");
    let p = problems(all);
    if p.is_empty() {
        let _ = writeln!(s, "None.");
    }
    for x in &p {
        let _ = writeln!(s, "- {}", x.replace('\n', " "));
    }
    let excerpts = g.map(|g| g.kmsg.excerpts.as_slice()).unwrap_or_default();
    if !excerpts.is_empty() {
        let _ = writeln!(s, "\n## Kernel reports (first lines)\n");
        for e in excerpts {
            let _ = writeln!(s, "```\n{}\n```\n", e.join("\n"));
        }
    }
    let leaks = g
        .map(|g| g.end.kmemleak.excerpts.as_slice())
        .unwrap_or_default();
    if !leaks.is_empty() {
        let _ = writeln!(s, "\n## kmemleak\n");
        for l in leaks {
            let _ = writeln!(s, "```\n{l}\n```\n");
        }
    }
    s
}

/// The end state as pretty JSON, the kmemleak excerpts left to their own section.
fn pretty(end: &End) -> String {
    let mut v = serde_json::to_value(end).unwrap_or_default();
    v["kmemleak"]["excerpts"] = json!("(below)");
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

    const FILE: &str = include_str!("readers/testdata/stress.json");

    fn file(text: &str) -> Result<StressFile> {
        readers::parse("stress.json", text)
    }

    /// A copy of [`FILE`] with one change made to its JSON.
    fn changed(f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(FILE).unwrap();
        f(&mut v);
        v.to_string()
    }

    #[test]
    fn verdicts() {
        let all = file(FILE).unwrap();
        assert_eq!(
            verdict(&all),
            "stress: PASS — 2948 VMs created/destroyed, 93/93 loads/unloads, 14028 writes, \
             3264 injected failures, 0 reports, 0 leaks"
        );
        assert!(problems(&all).is_empty());
        let failed = file(&changed(|v| {
            v["guest"]["passed"] = json!(false);
            v["guest"]["problems"] = json!(["2 kernel report(s) in the log", "x"]);
        }))
        .unwrap();
        assert!(verdict(&failed).starts_with("stress: FAIL — 2948 VMs"));
        assert!(verdict(&failed).ends_with("2 kernel report(s) in the log (+1 more)"));
        // Not passed and no problem named: still a failure.
        let silent = file(&changed(|v| v["guest"]["passed"] = json!(false))).unwrap();
        assert_eq!(problems(&silent), vec!["the guest did not pass"]);
        let died = file(include_str!("readers/testdata/stress-died.json")).unwrap();
        assert!(verdict(&died).contains("FAIL") && verdict(&died).contains("? VMs"));
        assert!(render(&died).contains("no stress result"));
    }

    /// The reports are the ones the untyped renderer wrote from the same files, byte for byte
    /// (a PASS, a FAIL with reports and leaks, a guest that printed nothing).
    #[test]
    fn reports_are_unchanged() {
        for (json, md) in [
            (FILE, include_str!("readers/testdata/stress-report.md")),
            (
                include_str!("readers/testdata/stress-fail.json"),
                include_str!("readers/testdata/stress-fail-report.md"),
            ),
            (
                include_str!("readers/testdata/stress-died.json"),
                include_str!("readers/testdata/stress-died-report.md"),
            ),
        ] {
            assert_eq!(render(&file(json).unwrap()), md);
        }
    }

    /// A missing field, a value of the wrong type, a field the end state does not know, and
    /// a guest result that is not there at all (rather than `null`) are errors naming the
    /// field, not a `?` or a zero in the report.
    #[test]
    fn malformed_files_fail() {
        let err = |text: String| format!("{:#}", file(&text).unwrap_err());
        let e = err(changed(|v| {
            v["guest"].as_object_mut().unwrap().remove("leaks");
        }));
        assert!(e.contains("missing field `leaks`"), "{e}");
        let e = err(changed(|v| v["guest"]["leaks"] = json!("0")));
        assert!(e.contains("invalid type: string \"0\""), "{e}");
        let e = err(changed(|v| {
            v["guest"]["load"]["module"]["arm_failures"] = json!(-1)
        }));
        assert!(e.contains("invalid value: integer `-1`"), "{e}");
        let e = err(changed(|v| v["guest"]["end"]["kvm_vm"] = json!(0)));
        assert!(e.contains("unknown field `kvm_vm`"), "{e}");
        let e = err(changed(|v| {
            v.as_object_mut().unwrap().remove("guest");
        }));
        assert!(e.contains("missing field `guest`"), "{e}");
        let e = err(changed(|v| v["guest"]["counters"]["forks"] = json!(1.5)));
        assert!(e.contains("invalid type: floating point `1.5`"), "{e}");
        assert!(file("{}").is_err() && file("").is_err());
    }
}
