//! `cargo xtask scale` (`make scale`): vmfair with 1, 64, 256 and 1024 concurrent VMs.
//!
//! One boot of the test kernel runs `vmfair-run scale --vms N --busy K` for each N (plan step
//! `scale`, see `qemu-test/init` and `selftests/vmfair-run/src/scale.rs`); each prints one line
//! of JSON. This writes them to `results/scale/scale.json`, renders
//! `results/scale/report.md`, and ends with one line on the largest run:
//! `scale: N VMs grouped, modprobe X s, rmmod Y s, Z KiB per VM group`.
//! Method and reading: `Documentation/vmfair/scale.rst`.

use crate::kbuild::Built;
use crate::qemu::{self, Boot, Mode};
use crate::util::{self, info, phase, Ctx};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The VM counts of a full run, and how many of them are busy in the fairness window.
const RUNS: &[(u32, u32)] = &[(1, 1), (64, 64), (256, 64), (1024, 64)];
/// Guest CPUs: what the fairness figure's entitlement (2/64 CPU) is written for.
const GUEST_CPUS: u32 = 2;
/// Estimated guest seconds per VM started (TCG, nested SVM), for the boot's time limit.
const SECS_PER_VM: f64 = 0.6;

/// CPU count of the estimate.
const ESTIMATE_CPUS: u32 = 256;

/// The probe: the sizes of the scheduler structures behind a VM group in the kernel under
/// test, as the sizes of arrays that `nm -S` reads back.
const PROBE_C: &str = r#"// SPDX-License-Identifier: GPL-2.0
/* vmfair scale: sizes of the structures a VM group allocates (never loaded). */
#include "sched.h"
#include "autogroup.h"
char vmfair_size_cfs_tg_state[sizeof(struct cfs_tg_state)];
char vmfair_align_cfs_tg_state[__alignof__(struct cfs_tg_state)];
char vmfair_size_cfs_rq[sizeof(struct cfs_rq)];
char vmfair_size_sched_entity[sizeof(struct sched_entity)];
char vmfair_size_task_group[sizeof(struct task_group)];
char vmfair_size_autogroup[sizeof(struct autogroup)];
"#;

/// Compiles [`PROBE_C`] against the kernel's build directory (one object, not linked or
/// loaded) and returns `{"cfs_tg_state": bytes, "cfs_tg_state_align": bytes, ...}`.
fn probe_sizes(ctx: &Ctx, built: &Built) -> Result<Value> {
    let dir = built.dir.join("vmfair-scale-probe");
    std::fs::create_dir_all(&dir)?;
    util::write(
        &dir.join("Kbuild"),
        "obj-m := vmfair_sizes.o\nccflags-y := -I$(srctree)/kernel/sched\n",
    )?;
    util::write(&dir.join("vmfair_sizes.c"), PROBE_C)?;
    let obj = dir.join("vmfair_sizes.o");
    let _ = std::fs::remove_file(&obj);
    util::output(
        ctx.kmake(&built.dir)
            .arg(format!("M={}", dir.display()))
            .arg("vmfair_sizes.o"),
    )
    .context("compiling the structure size probe")?;
    parse_nm(&util::output(Command::new("nm").arg("-S").arg(&obj))?)
}

/// `nm -S` lines `<addr> <size> B vmfair_size_<name>` (or `vmfair_align_<name>`, read as
/// `<name>_align`) into `{name: size}`; every structure of [`PROBE_C`] must be there.
pub fn parse_nm(text: &str) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [_, size, _, sym] = w[..] else { continue };
        let key = match (
            sym.strip_prefix("vmfair_size_"),
            sym.strip_prefix("vmfair_align_"),
        ) {
            (Some(k), _) => k.to_string(),
            (_, Some(k)) => format!("{k}_align"),
            _ => continue,
        };
        let n = u64::from_str_radix(size, 16).with_context(|| format!("nm: {line}"))?;
        out.insert(key, json!(n));
    }
    for k in [
        "cfs_tg_state",
        "cfs_tg_state_align",
        "cfs_rq",
        "sched_entity",
        "task_group",
        "autogroup",
    ] {
        if !out.contains_key(k) {
            bail!("the size probe has no {k}: {text}");
        }
    }
    Ok(Value::Object(out))
}

/// Percpu bytes of one VM group per CPU: one `struct cfs_tg_state`, rounded up to its
/// alignment (the percpu allocator's unit for it).
pub fn percpu_per_cpu(sizes: &Value) -> Option<u64> {
    let size = sizes["cfs_tg_state"].as_u64()?;
    let align = sizes["cfs_tg_state_align"].as_u64()?.max(1);
    Some(size.div_ceil(align) * align)
}

/// Kernel memory of one VM group on `cpus` CPUs, bytes: the measured slab part, which does not
/// depend on the CPU count, plus one `cfs_tg_state` per CPU.
pub fn model_bytes(slab_per_vm: f64, per_cpu: u64, cpus: u32) -> f64 {
    slab_per_vm + (per_cpu * u64::from(cpus)) as f64
}

/// Adds the model to every run: `model` = {per_cpu_bytes, at_measured_kib, estimate_kib}.
fn add_model(all: &mut Value) {
    let Some(per_cpu) = percpu_per_cpu(&all["sizes"]) else {
        return;
    };
    for r in all["runs"].as_array_mut().into_iter().flatten() {
        let Some(slab) = r["memory"]["per_vm_bytes"]["slab"].as_f64() else {
            continue;
        };
        let cpus = r["possible_cpus"].as_u64().unwrap_or(1) as u32;
        r["model"] = json!({
            "per_cpu_bytes": per_cpu,
            "at_measured_kib": model_bytes(slab, per_cpu, cpus) / 1024.0,
            "estimate_kib": model_bytes(slab, per_cpu, ESTIMATE_CPUS) / 1024.0,
        });
    }
}

/// What to run, from the command line.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub runs: Vec<(u32, u32)>,
    pub window: f64,
    pub parallel: u32,
}

/// Parses `[--vms 1,64,…] [--busy K] [--window S] [--parallel P]`. `--busy` applies to every
/// run, capped at its VM count; without `--vms`, the runs are [`RUNS`].
pub fn parse_args(args: &[String]) -> Result<Plan> {
    let mut vms: Option<Vec<u32>> = None;
    let mut busy: Option<u32> = None;
    let mut plan = Plan {
        runs: RUNS.to_vec(),
        window: 20.0,
        parallel: 4,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--vms" => {
                let list = val()?
                    .split(',')
                    .map(|v| v.trim().parse::<u32>().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<u32>>>()
                    .context("--vms takes a list of positive numbers, e.g. 1,64,256")?;
                vms = Some(list);
            }
            "--busy" => busy = Some(val()?.parse().context("--busy takes a number")?),
            "--window" => plan.window = val()?.parse().context("--window takes seconds")?,
            "--parallel" => plan.parallel = val()?.parse().context("--parallel takes a number")?,
            other => bail!(
                "unknown argument {other:?}\nusage: cargo xtask scale [--vms 1,64,256,1024] \
                 [--busy K] [--window S] [--parallel P] | --report"
            ),
        }
    }
    if let Some(v) = vms {
        plan.runs = v.iter().map(|n| (*n, (*n).min(64))).collect();
    }
    if let Some(b) = busy {
        for r in &mut plan.runs {
            r.1 = b.min(r.0);
        }
    }
    if plan.runs.is_empty() || plan.parallel == 0 || !(1.0..=600.0).contains(&plan.window) {
        bail!("nothing to run, or --parallel 0, or --window outside 1..600 s");
    }
    Ok(plan)
}

/// `cargo xtask scale [ARGS]`; returns the exit status (0: every check passed).
pub fn cmd(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let dir = ctx.results().join("scale");
    if args.first().map(String::as_str) == Some("--report") {
        let all: Value = serde_json::from_str(&util::read(&dir.join("scale.json"))?)?;
        return finish(&dir, &all);
    }
    let plan = parse_args(args)?;
    let t0 = Instant::now();
    let (built, base) = crate::build_all(ctx)?;
    let sizes = match probe_sizes(ctx, &built) {
        Ok(v) => v,
        Err(e) => {
            info(&format!("no structure sizes, no 256-CPU model: {e:#}"));
            json!({"error": format!("{e:#}")})
        }
    };
    let largest = plan.runs.iter().map(|r| r.0).max().unwrap_or(1);
    let mem_mib = 2048 + 2 * largest;
    let mut lines = vec!["info".to_string()];
    let mut secs = 120.0;
    for (n, k) in &plan.runs {
        lines.push(format!(
            "scale --vms {n} --busy {k} --window {} --parallel {}",
            plan.window, plan.parallel
        ));
        secs += 90.0 + f64::from(*n) * SECS_PER_VM + if *k > 0 { plan.window + 30.0 } else { 0.0 };
    }
    lines.push("dmesg".into());
    phase(&format!(
        "scale: {} runs ({}), guest {GUEST_CPUS} CPUs and {mem_mib} MiB",
        plan.runs.len(),
        plan.runs
            .iter()
            .map(|(n, k)| format!("{n} VMs/{k} busy"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let out = Boot {
        name: "scale".into(),
        built: &built,
        base_cpio: &base,
        cpus: GUEST_CPUS,
        mem_mib,
        plan: lines,
        files: vec![],
        timeout: Duration::from_secs_f64(secs * 2.0),
        icount: false,
        silence: Duration::from_secs(300),
    }
    .run(ctx)?;
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for (n, _) in &plan.runs {
        match out.block("scale", &format!("n{n}")) {
            None => problems.push(format!("{n} VMs: no result (the guest did not get there)")),
            Some(b) => {
                match b.payload.lines().find(|l| l.starts_with('{')) {
                    Some(l) => runs.push(serde_json::from_str::<Value>(l).with_context(|| {
                        format!("{n} VMs: the guest's JSON does not parse: {l}")
                    })?),
                    None => problems.push(format!("{n} VMs: no JSON (rc={:?})", b.rc)),
                }
            }
        }
    }
    if out.done.is_none() {
        problems.push(out.verdict());
    }
    let warnings = qemu::kernel_warnings(&out.console_text);
    if !warnings.is_empty() {
        problems.push(format!(
            "kernel warnings on the console: {}",
            warnings.join(" | ")
        ));
    }
    let mode = match Mode::for_cpus(GUEST_CPUS) {
        Mode::MultiThread => "multi",
        Mode::SingleThread => "single",
    };
    let mut all = json!({
        "guest_cpus": GUEST_CPUS,
        "guest_mem_mib": mem_mib,
        "tcg": mode,
        "window_s": plan.window,
        "parallel": plan.parallel,
        "boot_s": (out.elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "elapsed_s": t0.elapsed().as_secs(),
        "console": out.console.display().to_string(),
        "problems": problems,
        "sizes": sizes,
        "runs": runs,
    });
    add_model(&mut all);
    std::fs::create_dir_all(&dir)?;
    util::write(
        &dir.join("scale.json"),
        serde_json::to_string_pretty(&all)? + "\n",
    )?;
    finish(&dir, &all)
}

/// Writes the report, prints the summary, returns the exit status.
fn finish(dir: &Path, all: &Value) -> Result<i32> {
    let report = render(all);
    util::write(&dir.join("report.md"), &report)?;
    info(&format!("wrote {}/report.md and scale.json", dir.display()));
    print!("{}", summary_table(all));
    let problems = all_problems(all);
    for p in &problems {
        eprintln!("problem: {p}");
    }
    println!("{}", last_line(all));
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// Every problem of the boot and of each run.
pub fn all_problems(all: &Value) -> Vec<String> {
    let mut out: Vec<String> = strs(&all["problems"]);
    for r in runs(all) {
        let n = &r["vms"];
        out.extend(
            strs(&r["problems"])
                .into_iter()
                .map(|p| format!("{n} VMs: {p}")),
        );
        if r["passed"] != json!(true) && strs(&r["problems"]).is_empty() {
            out.push(format!("{n} VMs: not passed"));
        }
    }
    out
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn runs(all: &Value) -> impl Iterator<Item = &Value> {
    all["runs"].as_array().into_iter().flatten()
}

/// The run with the most VMs.
fn largest(all: &Value) -> Option<&Value> {
    runs(all).max_by_key(|r| r["vms"].as_u64().unwrap_or(0))
}

/// `scale: N VMs grouped, modprobe X s, rmmod Y s, Z KiB per VM group`, for the largest run.
pub fn last_line(all: &Value) -> String {
    let Some(r) = largest(all) else {
        return "scale: no run finished".into();
    };
    format!(
        "scale: {} VMs grouped, modprobe {} s, rmmod {} s, {} KiB per VM group",
        num(&r["start"]["grouped"], 0),
        num(&r["modprobe_s"], 2),
        num(&r["rmmod_s"], 2),
        num(&r["memory"]["per_vm_kib"], 2)
    )
}

/// A number with `places` decimals, or `?` when absent.
fn num(v: &Value, places: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.places$}"),
        None => "?".into(),
    }
}

/// `{"0": 33, "1": 31}` as `33+31`.
fn cpu_split(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m.values().map(|n| num(n, 0)).collect::<Vec<_>>().join("+"),
        _ => "?".into(),
    }
}

/// `p50 / p99 / max` of a percentile object.
fn pct(v: &Value) -> String {
    if v.is_null() {
        return "?".into();
    }
    format!(
        "{} / {} / {}",
        num(&v["p50"], 2),
        num(&v["p99"], 2),
        num(&v["max"], 2)
    )
}

fn summary_table(all: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>8} {:>22} {:>9} {:>9} {:>9} {:>10} {:>11} {:>8}",
        "VMs",
        "grouped",
        "create->group ms",
        "modprobe",
        "rmmod",
        "KiB/VM",
        "256cpu KiB",
        "fair worst",
        "passed"
    );
    for r in runs(all) {
        let fair = &r["fairness"];
        let _ = writeln!(
            s,
            "{:>5} {:>8} {:>22} {:>9} {:>9} {:>9} {:>10} {:>11} {:>8}",
            num(&r["vms"], 0),
            num(&r["start"]["grouped"], 0),
            pct(&r["start"]["group_ms"]),
            num(&r["modprobe_s"], 3),
            num(&r["rmmod_s"], 3),
            num(&r["memory"]["per_vm_kib"], 2),
            num(&r["model"]["estimate_kib"], 1),
            if fair.is_null() {
                "-".to_string()
            } else {
                format!(
                    "{}%",
                    num(
                        &Value::from(fair["worst_deviation"].as_f64().unwrap_or(0.0) * 100.0),
                        1
                    )
                )
            },
            r["passed"]
                .as_bool()
                .map_or("?", |p| if p { "yes" } else { "NO" })
        );
    }
    s
}

/// `results/scale/report.md`.
pub fn render(all: &Value) -> String {
    let mut s = String::new();
    let kernel = largest(all)
        .and_then(|r| r["kernel"].as_str())
        .unwrap_or("?");
    let _ = writeln!(s, "# vmfair at scale\n");
    let _ = writeln!(
        s,
        "Kernel {kernel}, {} guest CPUs ({} possible), {} MiB, QEMU TCG ({}-threaded) with nested \
         SVM; {} VMs set up at a time; one boot of {} s. Method: \
         `Documentation/vmfair/scale.rst`.\n",
        num(&all["guest_cpus"], 0),
        largest(all).map_or("?".into(), |r| num(&r["possible_cpus"], 0)),
        num(&all["guest_mem_mib"], 0),
        all["tcg"].as_str().unwrap_or("?"),
        num(&all["parallel"], 0),
        num(&all["boot_s"], 0),
    );
    let _ = writeln!(s, "## Grouping at VM creation\n");
    let _ = writeln!(
        s,
        "VMs started with vmfair loaded, at most {} setting up at a time. Creation to group: \
         from entering `KVM_CREATE_VM` to the first sight of `vm/<pid>` (looked at once when \
         the ioctl returns, then every millisecond once the vCPU halted). Times in ms, p50 / \
         p99 / max; the last column is the same VMs' `KVM_CREATE_VM` without vmfair.\n\n\
         | VMs | start (s) | VMs/s | grouped | at create | creation to group | \
         KVM_CREATE_VM | VM setup | in own VM group (sched/debug) | KVM_CREATE_VM, no vmfair |\n\
         | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
        num(&all["parallel"], 0)
    );
    for r in runs(all) {
        let st = &r["start"];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(&r["vms"], 0),
            num(&st["total_s"], 1),
            num(&st["vms_per_s"], 1),
            num(&st["grouped"], 0),
            num(&st["grouped_at_create"], 0),
            pct(&st["group_ms"]),
            pct(&st["create_vm_ms"]),
            pct(&st["setup_ms"]),
            num(&r["grouped_check"]["sched_debug_same_id"], 0),
            pct(&r["start_stock"]["create_vm_ms"]),
        );
    }
    let _ = writeln!(s, "\n## Loading and unloading with the VMs running\n");
    let _ = writeln!(
        s,
        "Wall time of `modprobe vmfair` (adopts every running VM) and `rmmod vmfair` (releases \
         them), in s, with the N VMs started without vmfair; `adopted`: VMs with a `vm/<pid>` \
         directory afterwards, `in own group`: in the VM group `vms` (or `vm/<pid>/stats`) \
         names, per the scheduler's debug file.\n\n\
         | VMs | modprobe, no VM | rmmod, no VM | modprobe | adopted | in own group | rmmod | \
         released | kill all, no vmfair | kill all, vmfair (until released) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in runs(all) {
        let rel = &r["released_check"];
        let released = rel["left_in_vmgroup"] == json!(0) && rel["vmfair_dir"] == json!(false);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(&r["vms"], 0),
            num(&r["modprobe_empty_s"], 3),
            num(&r["rmmod_empty_s"], 3),
            num(&r["modprobe_s"], 3),
            num(&r["adopted"], 0),
            num(&r["adopted_check"]["sched_debug_same_id"], 0),
            num(&r["rmmod_s"], 3),
            if released { "all" } else { "NO" },
            num(&r["stock_teardown_s"], 2),
            num(&r["teardown_s"], 2),
        );
    }
    let _ = writeln!(s, "\n## Kernel memory per VM group\n");
    let _ = writeln!(
        s,
        "Measured across the adoption: loaded (after `modprobe` adopted the N running VMs) minus \
         unloaded (just before), less the module's own cost with no VM, divided by N; \
         `/proc/meminfo` after dropping reclaimable caches and shrinking every slab cache. \
         Slab objects: the same from `/proc/slabinfo`, active objects times object size. Given \
         back: the same difference across the `rmmod` that follows. Model: the measured Slab \
         part plus one `struct cfs_tg_state` per possible CPU (below).\n\n\
         | VMs | Slab (B) | unreclaimable (B) | slab objects (B) | Percpu (B) | measured (KiB) | \
         given back (KiB) | model (KiB) | model, {ESTIMATE_CPUS} CPUs (KiB) | module, no VM \
         (KiB) | left after the run (KiB) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in runs(all) {
        let m = &r["memory"];
        let b = &m["per_vm_bytes"];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(&r["vms"], 0),
            num(&b["slab"], 0),
            num(&b["sunreclaim"], 0),
            num(&b["slab_objects"], 0),
            num(&b["percpu"], 0),
            num(&m["per_vm_kib"], 2),
            num(
                &Value::from(b["released"].as_f64().unwrap_or(f64::NAN) / 1024.0),
                2
            ),
            num(&r["model"]["at_measured_kib"], 2),
            num(&r["model"]["estimate_kib"], 1),
            num(&m["module_fixed_kib"], 0),
            num(&m["after_run_kib"], 0),
        );
    }
    let z = &all["sizes"];
    let possible = largest(all).map_or("C".into(), |r| num(&r["possible_cpus"], 0));
    let per_cpu = percpu_per_cpu(z).map_or("?".into(), |b| b.to_string());
    let _ = writeln!(
        s,
        "\nA VM group is an autogroup (`struct autogroup`, {} B) with a task group (`struct \
         task_group`, {} B), both from the slab allocator, and, from the percpu allocator, one \
         `struct cfs_tg_state` per possible CPU: the group's cfs_rq ({} B), its sched_entity \
         ({} B) and the entity's statistics, {} B aligned to {} B (sizes compiled from the \
         kernel under test). The module adds its per-VM record and sysctl directory (slab). \
         Only the percpu part grows with the CPU count, so for a host with C possible CPUs:\n\n\
         \x20   per VM group (C) = Slab per VM (measured) + C x {per_cpu} B\n\n\
         The guest has {possible} possible CPUs. The measured Percpu figure is a lower bound: \
         the percpu allocator populates pages lazily, serves small amounts from its always \
         populated first chunk and gives freed pages back only when many are empty, so the \
         loaded-minus-unloaded difference sees a group's percpu memory only once the groups \
         need pages of their own.",
        num(&z["autogroup"], 0),
        num(&z["task_group"], 0),
        num(&z["cfs_rq"], 0),
        num(&z["sched_entity"], 0),
        num(&z["cfs_tg_state"], 0),
        num(&z["cfs_tg_state_align"], 0),
    );
    if let Some(r) = largest(all) {
        let caches = r["memory"]["slab_caches_adopted_minus_unloaded"].as_array();
        if let Some(c) = caches.filter(|c| !c.is_empty()) {
            let _ = writeln!(
                s,
                "\nSlab caches that grew most, {} VMs, adopted minus unloaded (`/proc/slabinfo`; \
                 merged caches show under one name):\n\n\
                 | cache | object (B) | objects per VM | slab bytes per VM |\n\
                 | --- | ---: | ---: | ---: |",
                num(&r["vms"], 0)
            );
            for x in c {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    x["name"].as_str().unwrap_or("?"),
                    num(&x["objsize"], 0),
                    num(&x["objs_per_vm"], 2),
                    num(&x["bytes_per_vm"], 0)
                );
            }
        }
    }
    let _ = writeln!(s, "\n## Reading vmfair's files and all sysctls\n");
    let _ = writeln!(
        s,
        "Median of 5 (vms) or 3 (the others) reads, ms.\n\n\
         | VMs | vms | vms bytes | vm/ listing | /proc/sys walk, loaded | files | /proc/sys \
         walk, unloaded | files | sysctl -a, loaded | sysctl -a, unloaded |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in runs(all) {
        let (l, u) = (&r["reads"]["loaded"], &r["reads"]["unloaded"]);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(&r["vms"], 0),
            num(&l["vms_ms"]["median"], 2),
            match l["vms_error"].as_str() {
                Some(e) => format!("read fails: {e}"),
                None => num(&l["vms_bytes"], 0),
            },
            num(&l["vm_dir_ms"]["median"], 2),
            num(&l["proc_sys_walk_ms"]["median"], 1),
            num(&l["proc_sys_files"], 0),
            num(&u["proc_sys_walk_ms"]["median"], 1),
            num(&u["proc_sys_files"], 0),
            num(&l["sysctl_a_ms"]["median"], 1),
            num(&u["sysctl_a_ms"]["median"], 1),
        );
    }
    let _ = writeln!(s, "\n## Fairness between busy 1-vCPU VMs\n");
    let _ = writeln!(
        s,
        "Each busy VM's CPU time over the window (`/proc/<pid>/task/*/schedstat`, each VM's \
         edges dated by its own read), against its entitlement min(1, CPUs / busy VMs); a VM \
         passes within ±10%. Busy VMs per CPU: where they were at the window's first and last \
         read (`/proc/<pid>/stat`, an instant's view).\n\n\
         | VMs | busy | window (s) | entitlement (CPU) | min | max | sum | worst deviation | \
         outside ±10% | no progress | busy VMs per CPU, start / end | migrations |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    );
    for r in runs(all).filter(|r| !r["fairness"].is_null()) {
        let f = &r["fairness"];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {}% | {} | {} | {} / {} | {} |",
            num(&r["vms"], 0),
            num(&f["busy"], 0),
            num(&f["window_s"], 1),
            num(&f["entitlement_cpu"], 4),
            num(&f["min_cpu"], 4),
            num(&f["max_cpu"], 4),
            num(&f["sum_cpu"], 3),
            num(
                &Value::from(f["worst_deviation"].as_f64().unwrap_or(f64::NAN) * 100.0),
                1
            ),
            num(&f["outside"], 0),
            num(&f["stalled"], 0),
            cpu_split(&f["vms_per_cpu"][0]),
            cpu_split(
                f["vms_per_cpu"]
                    .as_array()
                    .and_then(|v| v.last())
                    .unwrap_or(&Value::Null)
            ),
            num(&f["migrations"], 0),
        );
    }
    let problems = all_problems(all);
    let _ = writeln!(s, "\n## Problems\n");
    if problems.is_empty() {
        let _ = writeln!(s, "None: every check passed.");
    }
    for p in problems {
        let _ = writeln!(s, "- {}", p.replace('\n', " "));
    }
    let _ = writeln!(s, "\n{}", last_line(all));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let p = parse_args(&[]).unwrap();
        assert_eq!(p.runs, RUNS.to_vec());
        assert_eq!((p.window, p.parallel), (20.0, 4));
        let p = parse_args(&s(&["--vms", "1,8,200", "--window", "5"])).unwrap();
        assert_eq!(p.runs, vec![(1, 1), (8, 8), (200, 64)]);
        assert_eq!(p.window, 5.0);
        let p = parse_args(&s(&["--vms", "4,16", "--busy", "0"])).unwrap();
        assert_eq!(p.runs, vec![(4, 0), (16, 0)]);
        assert!(parse_args(&s(&["--vms", "1,x"])).is_err());
        assert!(parse_args(&s(&["--vms", "0"])).is_err());
        assert!(parse_args(&s(&["--vms"])).is_err());
        assert!(parse_args(&s(&["--parallel", "0"])).is_err());
        assert!(parse_args(&s(&["--bogus"])).is_err());
    }

    fn result(vms: u64, passed: bool) -> Value {
        json!({
            "vms": vms, "passed": passed, "problems": if passed { json!([]) } else { json!(["x"]) },
            "kernel": "7.3.4", "possible_cpus": 2,
            "start": {"grouped": vms, "group_ms": {"n": vms, "p50": 1.5, "p99": 2.0, "max": 3.25}},
            "modprobe_s": 0.5, "rmmod_s": 1.25,
            "memory": {"per_vm_kib": 2.5, "estimate_256cpu_kib": 120.0},
        })
    }

    #[test]
    fn summary_line_is_the_largest_run() {
        let all = json!({"problems": [], "runs": [result(64, true), result(1024, true), result(1, true)]});
        assert_eq!(
            last_line(&all),
            "scale: 1024 VMs grouped, modprobe 0.50 s, rmmod 1.25 s, 2.50 KiB per VM group"
        );
        assert!(all_problems(&all).is_empty());
        assert_eq!(last_line(&json!({"runs": []})), "scale: no run finished");
        let r = render(&all);
        assert!(
            r.contains("| 1024 |") && r.contains("1.50 / 2.00 / 3.25"),
            "{r}"
        );
        assert!(r.ends_with(&format!("{}\n", last_line(&all))));
    }

    #[test]
    fn structure_sizes_and_model() {
        let nm = "0000000000000660 0000000000000040 B vmfair_align_cfs_tg_state\n\
                  0000000000000340 0000000000000048 B vmfair_size_autogroup\n\
                  0000000000000140 0000000000000200 B vmfair_size_cfs_rq\n\
                  00000000000006a0 0000000000000430 B vmfair_size_cfs_tg_state\n\
                  0000000000000000 0000000000000140 B vmfair_size_sched_entity\n\
                  00000000000003a0 00000000000002c0 B vmfair_size_task_group\n\
                                   U some_undefined_symbol\n";
        let z = parse_nm(nm).unwrap();
        assert_eq!(z["cfs_tg_state"], 0x430);
        assert_eq!(z["cfs_tg_state_align"], 64);
        assert_eq!(z["task_group"], 704);
        // 1072 bytes round up to 1088, the next multiple of 64.
        assert_eq!(percpu_per_cpu(&z), Some(1088));
        assert_eq!(model_bytes(1000.0, 1088, 256), 1000.0 + 256.0 * 1088.0);
        assert!(parse_nm("0000 0040 B vmfair_align_cfs_tg_state\n").is_err());
        assert_eq!(percpu_per_cpu(&json!({"error": "x"})), None);
        let mut all = json!({"sizes": z, "runs": [{"possible_cpus": 2,
            "memory": {"per_vm_bytes": {"slab": 1024.0}}}]});
        add_model(&mut all);
        assert_eq!(
            all["runs"][0]["model"]["at_measured_kib"],
            1.0 + 2.0 * 1088.0 / 1024.0
        );
        assert_eq!(all["runs"][0]["model"]["estimate_kib"], 1.0 + 272.0);
    }

    #[test]
    fn problems_are_collected() {
        let all = json!({"problems": ["guest died"], "runs": [result(64, false), {"vms": 8}]});
        assert_eq!(
            all_problems(&all),
            vec!["guest died", "64 VMs: x", "8 VMs: not passed"]
        );
        // A missing figure is a "?", not a made-up number.
        assert!(last_line(&json!({"runs": [{"vms": 8}]})).contains("modprobe ? s"));
    }
}
