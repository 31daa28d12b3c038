//! `report.md` and the tables printed on the console.

use super::figures::RunFigures;
use super::panels::{panels_md, PanelPoint};
use super::points::{jobs_runs, Point, Stat};
use super::spec::{Experiment, PolicyDef};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn fmt_stat(s: Option<Stat>, prec: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => format!("{:.p$}", s.mean, p = prec),
        Some(s) => format!("{:.p$} ({:.p$}–{:.p$})", s.mean, s.min, s.max, p = prec),
    }
}

/// `report.md`.
pub fn report_md(
    exp: &Experiment,
    points: &[Point],
    panels: &[PanelPoint],
    runs: &BTreeMap<String, RunFigures>,
    invalid: &[(String, Vec<String>)],
    kernel: &str,
    missing: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# vmfair experiment `{}`\n", exp.name);
    s.push_str(&super::summary::summary_md(exp, points, panels));
    let _ = writeln!(
        s,
        "## The sweep: the target beside {} dummy VMs\n",
        exp.dummies
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "Kernel `{kernel}`, {} guest CPUs (QEMU TCG, {}-threaded), window {} s after {} s \
         of warm-up, {} repetition(s) per point. Target: {} vCPU(s), load `{}`. Dummies: {}.\n",
        exp.guest_cpus,
        exp.tcg_mode(),
        exp.duration_s,
        exp.warmup_s,
        exp.repetitions,
        exp.target.vcpus,
        exp.target.load,
        exp.dummy_kinds
            .iter()
            .map(|k| {
                let d = &exp.dummy[k];
                let mut vm = format!("`{k}` = {} vCPU `{}`", d.vcpus, d.load);
                if let Some(t) = d.tick() {
                    let _ = write!(vm, " at {} Hz with {} µs per tick", t.hz, t.us);
                }
                if let Some((io, refresh)) = d.desktop() {
                    let _ = write!(
                        vm,
                        ", its VMM's I/O thread waking at {} Hz for {} µs and its \
                         display-refresh thread at {} Hz for {} µs",
                        io.hz, io.us, refresh.hz, refresh.us
                    );
                }
                vm
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "Cells give the mean over the valid repetitions and, with more than one, (min–max). \
         `rel` is the target's index over the mean solo index (all policies) of the same \
         boot, so that the host's speed, which varies between boots, cancels out. CPU \
         figures are in CPUs (CPU-seconds per second of window, out of {}); the dummies' \
         include their `kvm-pit` threads; halt-poll is part of it. `preempt/s` counts the \
         target's involuntary context switches. `speed` is the target's index per CPU-second \
         relative to solo: below 1, its CPU time itself ran slower, a loss the scheduler did \
         not cause; `rel` ≈ target CPU × speed. {}\n",
        exp.guest_cpus,
        if exp.tcg_mode() == "single" {
            "Under single-threaded TCG both guest CPUs share one host thread: `TCG model` is \
             the speed expected if that thread is split evenly over all busy guest CPU time \
             (busy CPUs of the solo runs over busy CPUs of this run)."
        } else {
            "Under multi-threaded TCG each guest CPU has a host thread of its own, so the \
             dummies' emulation no longer slows the target's CPU; what is left of a speed \
             below 1 comes from sharing one guest CPU with busy vCPUs (each switch between \
             nested guests costs emulated world switches and cold caches) and from the host's \
             own load. `TCG model` applies to single-threaded TCG only and is not given."
        }
    );
    let _ = writeln!(
        s,
        "| policy | dummies | valid/runs | index | rel | target CPU | speed | TCG model | target \
         wait | target preempt/s | dummies CPU | dummies halt-poll | dummies sleeps/s | idle CPU |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in points {
        let d = if p.dummies == 0 {
            "0".to_string()
        } else {
            format!("{} {}", p.dummies, p.kind)
        };
        let _ = writeln!(
            s,
            "| {} | {d} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.policy,
            p.valid,
            p.runs,
            fmt_stat(p.index, 1),
            fmt_stat(p.relative, 2),
            fmt_stat(p.target_cpu, 3),
            fmt_stat(p.speed, 2),
            if exp.tcg_mode() == "single" {
                fmt_stat(p.tcg_model, 2)
            } else {
                "–".to_string()
            },
            fmt_stat(p.target_wait, 2),
            fmt_stat(p.target_preempt_per_s, 0),
            fmt_stat(p.dummies_cpu, 2),
            fmt_stat(p.dummies_halt_poll, 3),
            fmt_stat(p.dummies_sleeps_per_s, 0),
            fmt_stat(p.idle_cpu, 2),
        );
    }
    entitlement_table(&mut s, exp, points);
    let placement: Vec<(&Point, f64, f64, f64, f64, f64)> = points
        .iter()
        .filter_map(|p| {
            let f = |k: &str| {
                let xs: Vec<f64> = jobs_runs(p, runs)
                    .iter()
                    .filter_map(|r| r.dummies_sched.get(k).copied())
                    .collect();
                Stat::of(&xs).map(|s| s.mean)
            };
            let t = |k: &str| {
                let xs: Vec<f64> = jobs_runs(p, runs)
                    .iter()
                    .filter_map(|r| r.target_sched.get(k).copied())
                    .collect();
                Stat::of(&xs).map(|s| s.mean)
            };
            let w = f("nr_wakeups").filter(|w| *w > 0.0)?;
            Some((
                p,
                w,
                f("nr_wakeups_local").unwrap_or(0.0) / w,
                f("nr_wakeups_migrate").unwrap_or(0.0) / w,
                f("nr_wakeups_affine").unwrap_or(0.0) / w,
                t("se.nr_migrations").unwrap_or(0.0),
            ))
        })
        .collect();
    if !placement.is_empty() {
        let _ = writeln!(
            s,
            "\nWake-up placement (`kernel.sched_schedstats` = 1): the dummies' wake-ups per \
             second, the fraction placed on the CPU that woke them (`local`), placed on \
             another CPU than they last ran on (`migrate`), or pulled to the waker's CPU by \
             wake-affine (`affine`); the target's migrations per second.\n"
        );
        let _ = writeln!(
            s,
            "| policy | dummies | dummy wake-ups/s | local | migrate | affine | target \
             migrations/s |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for (p, w, local, migrate, affine, tmig) in placement {
            let _ = writeln!(
                s,
                "| {} | {} {} | {w:.0} | {local:.2} | {migrate:.2} | {affine:.2} | {tmig:.1} |",
                p.policy, p.dummies, p.kind
            );
        }
    }
    let _ = writeln!(
        s,
        "\n![sweep](sweep.svg)\n\nThe index and the target's CPU of every point, with \
         the spread of the repetitions: [figure.svg](figure.svg).\n"
    );
    s.push_str(&panels_md(exp, panels));
    let n_valid = runs.values().filter(|r| r.valid).count();
    let p_runs: usize = panels.iter().map(|p| p.runs).sum();
    let p_valid: usize = panels.iter().map(|p| p.valid).sum();
    let _ = writeln!(
        s,
        "{} sweep runs kept ({} valid), {p_runs} panel runs ({p_valid} valid); {} invalid \
         attempts were run again or dropped.\n",
        runs.len(),
        n_valid,
        invalid.len()
    );
    if !invalid.is_empty() {
        let _ = writeln!(s, "## Invalid attempts\n");
        for (name, problems) in invalid {
            let _ = writeln!(s, "- `{name}`: {}", problems.join("; "));
        }
        let _ = writeln!(s);
    }
    if !missing.is_empty() {
        let _ = writeln!(
            s,
            "## Not run (still pending, or dropped for the time budget)\n"
        );
        for m in missing {
            let _ = writeln!(s, "- `{m}`");
        }
    }
    s
}

/// `sched_prio_to_weight[]` (kernel/sched/core.c), nice -20..=19.
pub(super) const PRIO_TO_WEIGHT: [u32; 40] = [
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904,
    3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87,
    70, 56, 45, 36, 29, 23, 18, 15,
];

/// The target's weight on the cpu.weight scale under a policy line: its
/// `target_weight`, or its `target_nice` converted as cgroup v2's
/// `cpu.weight.nice` does, or 100.
pub(super) fn target_weight(p: &PolicyDef) -> f64 {
    if let Some(w) = p.target_weight {
        return f64::from(w);
    }
    let nice = p.target_nice.unwrap_or(0).clamp(-20, 19);
    f64::from(PRIO_TO_WEIGHT[(nice + 20) as usize]) * 100.0 / 1024.0
}

/// For dummies that are busy (every thread always runnable), what the target
/// is entitled to: weighted max-min fair shares of the guest's CPUs
/// (vmfair-policy's entitlement()), the target weighing its weight, each
/// 1-vCPU dummy 100. Per VM and per thread are the same here (all VMs have
/// one vCPU), so the same figure holds for stock, autogroup and cgroup.
fn entitlement_table(s: &mut String, exp: &Experiment, points: &[Point]) {
    use std::fmt::Write;
    let busy: Vec<&String> = exp
        .dummy_kinds
        .iter()
        .filter(|k| exp.dummy[*k].load == "busy" && exp.dummy[*k].vcpus == 1)
        .collect();
    let rows: Vec<&Point> = points
        .iter()
        .filter(|p| p.dummies > 0 && busy.contains(&&p.kind) && exp.target.vcpus == 1)
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nThe target's CPU against its entitlement beside busy 1-vCPU dummies: weighted \
         max-min fair shares of the {} guest CPUs (`vmfair_policy::entitlement`), the target \
         weighing its weight (`nice -5` = cpu.weight 305, as cgroup v2 converts it), each \
         dummy 100. `deviation` compares the mean; `worst` the repetition farthest from it.\n",
        exp.guest_cpus
    );
    let _ = writeln!(
        s,
        "| policy | dummies | target weight | entitled CPU | target CPU | deviation | worst |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for p in rows {
        let Some(def) = exp.policy.iter().find(|d| d.name == p.policy) else {
            continue;
        };
        let w = target_weight(def);
        let mut vms = vec![(w.round() as u32, 1u32)];
        vms.extend(std::iter::repeat_n((100, 1), p.dummies as usize));
        let mut out = vec![0.0; vms.len()];
        vmfair_policy::entitlement(f64::from(exp.guest_cpus), &vms, &mut out);
        let want = out[0];
        let Some(cpu) = p.target_cpu else {
            continue;
        };
        let dev = |v: f64| (v - want) / want * 100.0;
        let worst = if dev(cpu.min).abs() > dev(cpu.max).abs() {
            dev(cpu.min)
        } else {
            dev(cpu.max)
        };
        let _ = writeln!(
            s,
            "| {} | {} {} | {w:.0} | {want:.3} | {} | {:+.1} % | {worst:+.1} % |",
            p.policy,
            p.dummies,
            p.kind,
            fmt_stat(Some(cpu), 3),
            dev(cpu.mean)
        );
    }
}

pub(super) fn print_run(f: &RunFigures) {
    println!(
        "  {:<32} index {:>7.2}  target cpu {:.2} wait {:.2} preempt/s {:>5.0}  dummies cpu {:.2}  idle {:.2}",
        f.scenario,
        f.target_index.unwrap_or(0.0),
        f.target_cpu,
        f.target_wait,
        f.target_preempt_per_s.unwrap_or(0.0),
        f.dummies_cpu,
        f.idle_cpu.unwrap_or(0.0)
    );
}

pub(super) fn print_points(pts: &[Point]) {
    println!(
        "{:<14} {:>10} {:>6} {:>22} {:>18} {:>18} {:>18} {:>18} {:>18}",
        "policy",
        "dummies",
        "valid",
        "index",
        "rel",
        "target CPU",
        "speed",
        "dummies CPU",
        "idle CPU"
    );
    for p in pts {
        println!(
            "{:<14} {:>10} {:>6} {:>22} {:>18} {:>18} {:>18} {:>18} {:>18}",
            p.policy,
            if p.dummies == 0 {
                "0".to_string()
            } else {
                format!("{} {}", p.dummies, p.kind)
            },
            format!("{}/{}", p.valid, p.runs),
            fmt_stat(p.index, 1),
            fmt_stat(p.relative, 2),
            fmt_stat(p.target_cpu, 3),
            fmt_stat(p.speed, 2),
            fmt_stat(p.dummies_cpu, 2),
            fmt_stat(p.idle_cpu, 2)
        );
    }
}
