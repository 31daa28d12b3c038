//! `cargo xtask scale` (`make scale`): vmfair with 1, 64, 256 and 1024 concurrent VMs.
//!
//! One boot of the test kernel runs `vmfair-run scale --vms N --busy K` for each N (plan step
//! `scale`, see `qemu-test/init` and `selftests/vmfair-run/src/scale.rs`); each prints one line
//! of JSON. This writes them to `results/scale/scale.json`, renders
//! `results/scale/report.md`, and ends with one line on the largest run:
//! `scale: N VMs grouped, modprobe X s, rmmod Y s, Z KiB per VM group[, monitor …]`.
//! Method and reading: `Documentation/vmfair/scale.rst`.

use crate::kbuild::Built;
use crate::qemu::{self, Boot, Mode};
use crate::readers::{
    self,
    scale::{Model, Pct, Run, ScaleFile, StructSizes},
};
use crate::util::{self, info, phase, Ctx};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
/// loaded) and returns the sizes.
fn probe_sizes(ctx: &Ctx, built: &Built) -> Result<StructSizes> {
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
/// `<name>_align`) into the sizes; every structure of [`PROBE_C`] must be there.
pub fn parse_nm(text: &str) -> Result<StructSizes> {
    let mut out = BTreeMap::new();
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
        out.insert(key, n);
    }
    let get = |k: &str| {
        out.get(k)
            .copied()
            .with_context(|| format!("the size probe has no {k}: {text}"))
    };
    Ok(StructSizes {
        autogroup: get("autogroup")?,
        cfs_rq: get("cfs_rq")?,
        cfs_tg_state: get("cfs_tg_state")?,
        cfs_tg_state_align: get("cfs_tg_state_align")?,
        sched_entity: get("sched_entity")?,
        task_group: get("task_group")?,
    })
}

/// Percpu bytes of one VM group per CPU: one `struct cfs_tg_state`, rounded up to its
/// alignment (the percpu allocator's unit for it).
pub fn percpu_per_cpu(sizes: &StructSizes) -> u64 {
    let align = sizes.cfs_tg_state_align.max(1);
    sizes.cfs_tg_state.div_ceil(align) * align
}

/// Kernel memory of one VM group on `cpus` CPUs, bytes: the measured slab part, which does not
/// depend on the CPU count, plus one `cfs_tg_state` per CPU.
pub fn model_bytes(slab_per_vm: f64, per_cpu: u64, cpus: u32) -> f64 {
    slab_per_vm + (per_cpu * u64::from(cpus)) as f64
}

/// The model of a run with a memory figure: [`Model`].
fn model(sizes: &StructSizes, run: &Run) -> Option<Model> {
    let slab = run.memory.as_ref()?.per_vm_bytes.slab;
    let per_cpu = percpu_per_cpu(sizes);
    Some(Model {
        per_cpu_bytes: per_cpu,
        at_measured_kib: model_bytes(slab, per_cpu, run.possible_cpus) / 1024.0,
        estimate_kib: model_bytes(slab, per_cpu, ESTIMATE_CPUS) / 1024.0,
    })
}

/// Adds `model` to every run that the typed reader reads and that has a memory figure. A run
/// it cannot read is a problem; the file is written all the same, and reading it back names
/// the field.
fn add_model(sizes: Option<&StructSizes>, runs: &mut [Value], problems: &mut Vec<String>) {
    for r in runs {
        match serde_json::from_value::<Run>(r.clone()) {
            Err(e) => problems.push(format!("a run's result does not read: {e}")),
            Ok(run) => {
                if let Some(m) = sizes.and_then(|z| model(z, &run)) {
                    r["model"] = json!(m);
                }
            }
        }
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
        let path = dir.join("scale.json");
        let all = readers::scale::parse(&path.display().to_string(), &util::read(&path)?)?;
        return finish(&dir, &all);
    }
    let plan = parse_args(args)?;
    let t0 = Instant::now();
    let (built, base) = crate::build_all(ctx)?;
    let sizes = probe_sizes(ctx, &built);
    if let Err(e) = &sizes {
        info(&format!("no structure sizes, no 256-CPU model: {e:#}"));
    }
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
    add_model(sizes.as_ref().ok(), &mut runs, &mut problems);
    let all = json!({
        "guest_cpus": GUEST_CPUS,
        "guest_mem_mib": mem_mib,
        "tcg": mode,
        "window_s": plan.window,
        "parallel": plan.parallel,
        "boot_s": (out.elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "elapsed_s": t0.elapsed().as_secs(),
        "console": out.console.display().to_string(),
        "problems": problems,
        "sizes": match &sizes {
            Ok(z) => json!(z),
            Err(e) => json!({"error": format!("{e:#}")}),
        },
        "runs": runs,
    });
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("scale.json");
    let text = serde_json::to_string_pretty(&all)? + "\n";
    util::write(&path, &text)?;
    // Read back through the typed reader: what the report shows is what the file says.
    finish(
        &dir,
        &readers::scale::parse(&path.display().to_string(), &text)?,
    )
}

/// Writes the report, prints the summary, returns the exit status.
fn finish(dir: &Path, all: &ScaleFile) -> Result<i32> {
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
pub fn all_problems(all: &ScaleFile) -> Vec<String> {
    let mut out = all.problems.clone();
    for r in &all.runs {
        let n = r.vms;
        out.extend(r.problems.iter().map(|p| format!("{n} VMs: {p}")));
        if !r.passed && r.problems.is_empty() {
            out.push(format!("{n} VMs: not passed"));
        }
    }
    out
}

/// `scale: N VMs grouped, modprobe X s, rmmod Y s, Z KiB per VM group`, for the largest run.
pub fn last_line(all: &ScaleFile) -> String {
    let Some(r) = all.largest() else {
        return "scale: no run finished".into();
    };
    format!(
        "scale: {} VMs grouped, modprobe {} s, rmmod {} s, {} KiB per VM group{}",
        num(r.start.as_ref().map(|s| s.grouped as f64), 0),
        num(r.modprobe_s, 2),
        num(r.rmmod_s, 2),
        num(r.memory.as_ref().map(|m| m.per_vm_kib), 2),
        crate::scale_monitor::summary(r)
    )
}

/// A number with `places` decimals, or `?` when absent.
fn num(v: Option<f64>, places: usize) -> String {
    match v {
        Some(x) => format!("{x:.places$}"),
        None => "?".into(),
    }
}

/// A count, or `?` when absent.
fn count(v: Option<u64>) -> String {
    v.map_or("?".into(), |x| x.to_string())
}

/// `{"0": 33, "1": 31}` as `33+31`.
fn cpu_split(v: Option<&BTreeMap<String, u64>>) -> String {
    match v {
        Some(m) if !m.is_empty() => m.values().map(u64::to_string).collect::<Vec<_>>().join("+"),
        _ => "?".into(),
    }
}

/// `p50 / p99 / max` of percentiles.
fn pct(v: Option<&Pct>) -> String {
    match v {
        None => "?".into(),
        Some(p) => format!("{:.2} / {:.2} / {:.2}", p.p50, p.p99, p.max),
    }
}

fn summary_table(all: &ScaleFile) -> String {
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
    for r in &all.runs {
        let start = r.start.as_ref();
        let _ = writeln!(
            s,
            "{:>5} {:>8} {:>22} {:>9} {:>9} {:>9} {:>10} {:>11} {:>8}",
            r.vms,
            count(start.map(|s| s.grouped)),
            pct(start.and_then(|s| s.group_ms.as_ref())),
            num(r.modprobe_s, 3),
            num(r.rmmod_s, 3),
            num(r.memory.as_ref().map(|m| m.per_vm_kib), 2),
            num(r.model.as_ref().map(|m| m.estimate_kib), 1),
            match &r.fairness {
                None => "-".to_string(),
                Some(f) => format!("{:.1}%", f.worst_deviation * 100.0),
            },
            if r.passed { "yes" } else { "NO" }
        );
    }
    s
}

/// `results/scale/report.md`.
pub fn render(all: &ScaleFile) -> String {
    let mut s = String::new();
    let largest = all.largest();
    let kernel = largest.map_or("?", |r| r.kernel.as_str());
    let _ = writeln!(s, "# vmfair at scale\n");
    let _ = writeln!(
        s,
        "Kernel {kernel}, {} guest CPUs ({} possible), {} MiB, QEMU TCG ({}-threaded) with nested \
         SVM; {} VMs set up at a time; one boot of {:.0} s. Method: \
         `Documentation/vmfair/scale.rst`.\n",
        all.guest_cpus,
        largest.map_or("?".into(), |r| r.possible_cpus.to_string()),
        all.guest_mem_mib,
        all.tcg,
        all.parallel,
        all.boot_s,
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
        all.parallel
    );
    for r in &all.runs {
        let st = r.start.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.vms,
            num(st.map(|x| x.total_s), 1),
            num(st.map(|x| x.vms_per_s), 1),
            count(st.map(|x| x.grouped)),
            count(st.map(|x| x.grouped_at_create)),
            pct(st.and_then(|x| x.group_ms.as_ref())),
            pct(st.and_then(|x| x.create_vm_ms.as_ref())),
            pct(st.and_then(|x| x.setup_ms.as_ref())),
            count(r.grouped_check.as_ref().map(|c| c.sched_debug_same_id)),
            pct(r.start_stock.as_ref().and_then(|x| x.create_vm_ms.as_ref())),
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
    for r in &all.runs {
        let released = r
            .released_check
            .as_ref()
            .is_some_and(|c| c.left_in_vmgroup == 0 && !c.vmfair_dir);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.vms,
            num(r.modprobe_empty_s, 3),
            num(r.rmmod_empty_s, 3),
            num(r.modprobe_s, 3),
            count(r.adopted),
            count(r.adopted_check.as_ref().map(|c| c.sched_debug_same_id)),
            num(r.rmmod_s, 3),
            if released { "all" } else { "NO" },
            num(r.stock_teardown_s, 2),
            num(r.teardown_s, 2),
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
    for r in &all.runs {
        let m = r.memory.as_ref();
        let b = m.map(|m| &m.per_vm_bytes);
        let model = r.model.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.vms,
            num(b.map(|b| b.slab), 0),
            num(b.map(|b| b.sunreclaim), 0),
            num(b.map(|b| b.slab_objects), 0),
            num(b.map(|b| b.percpu), 0),
            num(m.map(|m| m.per_vm_kib), 2),
            num(b.map(|b| b.released / 1024.0), 2),
            num(model.map(|m| m.at_measured_kib), 2),
            num(model.map(|m| m.estimate_kib), 1),
            count_i(m.map(|m| m.module_fixed_kib)),
            count_i(m.and_then(|m| m.after_run_kib)),
        );
    }
    let z = all.sizes.compiled();
    let possible = largest.map_or("C".into(), |r| r.possible_cpus.to_string());
    let size = |f: fn(&StructSizes) -> u64| count(z.map(f));
    let per_cpu = size(percpu_per_cpu);
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
        size(|z| z.autogroup),
        size(|z| z.task_group),
        size(|z| z.cfs_rq),
        size(|z| z.sched_entity),
        size(|z| z.cfs_tg_state),
        size(|z| z.cfs_tg_state_align),
    );
    if let Some(r) = largest {
        let caches = r
            .memory
            .as_ref()
            .map(|m| &m.slab_caches_adopted_minus_unloaded);
        if let Some(c) = caches.filter(|c| !c.is_empty()) {
            let _ = writeln!(
                s,
                "\nSlab caches that grew most, {} VMs, adopted minus unloaded (`/proc/slabinfo`; \
                 merged caches show under one name):\n\n\
                 | cache | object (B) | objects per VM | slab bytes per VM |\n\
                 | --- | ---: | ---: | ---: |",
                r.vms
            );
            for x in c {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.2} | {:.0} |",
                    x.name, x.objsize, x.objs_per_vm, x.bytes_per_vm
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
    for r in &all.runs {
        let reads = r.reads.as_ref();
        let l = reads.and_then(|x| x.loaded.as_ref());
        let u = reads.and_then(|x| x.unloaded.as_ref());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.vms,
            num(l.map(|l| l.vms_ms.median), 2),
            match l.and_then(|l| l.vms_error.as_ref()) {
                Some(e) => format!("read fails: {e}"),
                None => count(l.and_then(|l| l.vms_bytes)),
            },
            num(l.map(|l| l.vm_dir_ms.median), 2),
            num(l.map(|l| l.proc_sys_walk_ms.median), 1),
            count(l.map(|l| l.proc_sys_files)),
            num(u.map(|u| u.proc_sys_walk_ms.median), 1),
            count(u.map(|u| u.proc_sys_files)),
            num(l.map(|l| l.sysctl_a_ms.median), 1),
            num(u.map(|u| u.sysctl_a_ms.median), 1),
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
    for r in &all.runs {
        let Some(f) = &r.fairness else { continue };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.4} | {:.4} | {:.4} | {:.3} | {:.1}% | {} | {} | {} / {} | {} |",
            r.vms,
            f.busy,
            f.window_s,
            f.entitlement_cpu,
            f.min_cpu,
            f.max_cpu,
            f.sum_cpu,
            f.worst_deviation * 100.0,
            f.outside,
            f.stalled,
            cpu_split(f.vms_per_cpu.first()),
            cpu_split(f.vms_per_cpu.last()),
            f.migrations,
        );
    }
    s.push_str(&crate::scale_monitor::render(all));
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

/// A signed count, or `?` when absent.
fn count_i(v: Option<i64>) -> String {
    v.map_or("?".into(), |x| x.to_string())
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

    const FILE: &str = include_str!("readers/testdata/scale.json");
    /// The probe failed, a run aborted early, one had no busy VM and could not read `vms`,
    /// one has no slab cache list and no placement series.
    const ODD: &str = include_str!("readers/testdata/scale-odd.json");

    fn file(text: &str) -> Result<ScaleFile> {
        readers::scale::parse("scale.json", text)
    }

    /// A copy of [`FILE`] with one change made to its JSON.
    fn changed(f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(FILE).unwrap();
        f(&mut v);
        v.to_string()
    }

    #[test]
    fn monitor_section_and_summary() {
        let cost = json!({"window_s": 5.0, "period_ms": 100, "passes": 48, "readings": 49152,
            "vms_per_pass": 1024.0, "pass_ms": 2.5, "per_vm_pass_us": 2.44,
            "cpu_fraction": 0.024, "share_updates": 3});
        let all = file(&changed(|v| {
            v["runs"][1]["monitor"] = json!({"precision": 1, "idle": cost});
        }))
        .unwrap();
        assert!(last_line(&all)
            .ends_with("37.00 KiB per VM group, monitor 2.50 ms per pass (2.40% of a CPU)"));
        let r = render(&all);
        assert!(
            r.contains("| 4 | 1 | idle | 48 | 1024 | 2.500 | 2.44 | 2.40% | 3 |"),
            "{r}"
        );
        assert!(!render(&file(FILE).unwrap()).contains("Load monitor"));
    }

    #[test]
    fn summary_line_is_the_largest_run() {
        let all = file(FILE).unwrap();
        assert_eq!(
            last_line(&all),
            "scale: 4 VMs grouped, modprobe 0.12 s, rmmod 0.10 s, 37.00 KiB per VM group"
        );
        assert!(all_problems(&all).is_empty());
        let none = file(&changed(|v| v["runs"] = json!([]))).unwrap();
        assert_eq!(last_line(&none), "scale: no run finished");
        let r = render(&all);
        assert!(
            r.contains("| 4 | 0.4 | 9.3 | 4 | 3 | 13.23 / 18.64 / 18.64 |"),
            "{r}"
        );
        assert!(r.ends_with(&format!("{}\n", last_line(&all))));
        let t = summary_table(&all);
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.lines().nth(2).unwrap().ends_with("0.5%      yes"), "{t}");
    }

    /// The reports are the ones the untyped renderer wrote from the same files, byte for byte:
    /// a real run of `cargo xtask scale --vms 1,4 --busy 2 --window 5` and [`ODD`].
    #[test]
    fn reports_are_unchanged() {
        for (json, md) in [
            (FILE, include_str!("readers/testdata/scale-report.md")),
            (ODD, include_str!("readers/testdata/scale-odd-report.md")),
        ] {
            assert_eq!(render(&file(json).unwrap()), md);
        }
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
        assert_eq!(z.cfs_tg_state, 0x430);
        assert_eq!(z.cfs_tg_state_align, 64);
        assert_eq!(z.task_group, 704);
        // 1072 bytes round up to 1088, the next multiple of 64.
        assert_eq!(percpu_per_cpu(&z), 1088);
        assert_eq!(model_bytes(1000.0, 1088, 256), 1000.0 + 256.0 * 1088.0);
        assert!(parse_nm("0000 0040 B vmfair_align_cfs_tg_state\n").is_err());
        // The file's sizes serialise as they are read.
        let all: Value = serde_json::from_str(FILE).unwrap();
        let read = file(FILE).unwrap();
        assert_eq!(json!(read.sizes.compiled().unwrap()), all["sizes"]);
        // The model, added to runs that have a memory figure, is what the file holds.
        let mut runs: Vec<Value> = all["runs"].as_array().unwrap().clone();
        for r in &mut runs {
            r.as_object_mut().unwrap().remove("model");
        }
        let mut problems = Vec::new();
        add_model(read.sizes.compiled(), &mut runs, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(runs, all["runs"].as_array().unwrap().clone());
        let slab = 1024.0;
        let mut r: Value = runs[0].clone();
        r["memory"]["per_vm_bytes"]["slab"] = json!(slab);
        let m = model(&z, &serde_json::from_value(r).unwrap()).unwrap();
        assert_eq!(m.at_measured_kib, 1.0 + 2.0 * 1088.0 / 1024.0);
        assert_eq!(m.estimate_kib, 1.0 + 272.0);
        // A run that does not read gets no model and is a problem.
        let mut bad = vec![json!({"vms": 8})];
        add_model(Some(&z), &mut bad, &mut problems);
        assert!(bad[0].get("model").is_none());
        assert!(problems[0].contains("missing field `busy`"), "{problems:?}");
    }

    #[test]
    fn problems_are_collected() {
        let all = file(ODD).unwrap();
        assert_eq!(
            all_problems(&all),
            vec![
                "kernel warnings on the console: WARNING: x",
                "1 VMs: run aborted: 4 of 1 VMs busy after 60 s",
                "4 VMs: not passed"
            ]
        );
        // A missing figure is a "?", not a made-up number.
        let r = render(&all);
        assert!(
            r.contains("| 1 | ? | ? | ? | ? | ? | ? | ? | ? | 6.54 / 6.54 / 6.54 |"),
            "{r}"
        );
        assert!(
            r.contains("| 4 | 0.37 | read fails: Cannot allocate memory"),
            "{r}"
        );
        assert!(r.contains("`struct autogroup`, ? B"), "{r}");
    }

    /// A missing field, a value of the wrong type, a run that went to its end without one of
    /// its sections, and inconsistent sections are errors naming the field.
    #[test]
    fn malformed_files_fail() {
        let err = |text: String| format!("{:#}", file(&text).unwrap_err());
        let e = err(changed(|v| {
            v["runs"][1]["memory"]
                .as_object_mut()
                .unwrap()
                .remove("per_vm_kib");
        }));
        assert!(e.contains("missing field `per_vm_kib`"), "{e}");
        let e = err(changed(|v| v["runs"][1]["modprobe_s"] = json!("0.1")));
        assert!(e.contains("invalid type: string \"0.1\""), "{e}");
        let e = err(changed(|v| v["runs"][1]["passed"] = json!(1)));
        assert!(
            e.contains("invalid type: integer `1`, expected a boolean"),
            "{e}"
        );
        // Present but null: only where the writer writes null.
        let e = err(changed(|v| v["runs"][1]["start"]["grouped"] = Value::Null));
        assert!(e.contains("invalid type: null"), "{e}");
        let e = err(changed(|v| {
            v["runs"][1]["start"]
                .as_object_mut()
                .unwrap()
                .remove("group_ms");
        }));
        assert!(e.contains("missing field `group_ms`"), "{e}");
        let e = err(changed(|v| {
            v["runs"][1].as_object_mut().unwrap().remove("rmmod_s");
        }));
        assert!(
            e.contains("4 VMs: the run has no error but no rmmod_s"),
            "{e}"
        );
        let e = err(changed(|v| {
            v["runs"][0].as_object_mut().unwrap().remove("fairness");
        }));
        assert!(
            e.contains("1 VMs: the run has no error but no fairness"),
            "{e}"
        );
        let e = err(changed(|v| {
            v["runs"][0].as_object_mut().unwrap().remove("model");
        }));
        assert!(e.contains("1 VMs: memory but no model"), "{e}");
        let e = err(changed(|v| {
            v["runs"][0]["reads"]["loaded"]["vms_error"] = json!("x")
        }));
        assert!(e.contains("one of vms_bytes and vms_error"), "{e}");
        let e = err(changed(|v| {
            v["sizes"].as_object_mut().unwrap().remove("cfs_rq");
        }));
        assert!(e.contains("sizes: missing field `cfs_rq`"), "{e}");
        let e = err(changed(|v| v["sizes"] = json!({"error": 3})));
        assert!(e.contains("sizes: invalid type: integer `3`"), "{e}");
        // An aborted run may lack the later sections, not the ones every run has.
        let e = err(changed(|v| {
            let r = v["runs"][0].as_object_mut().unwrap();
            r.insert("error".into(), json!("x"));
            r.remove("kernel");
        }));
        assert!(e.contains("missing field `kernel`"), "{e}");
        assert!(file("{}").is_err() && file("[]").is_err());
    }
}
