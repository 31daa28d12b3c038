//! `make overhead` (`cargo xtask overhead`): a benchmark of what vmfair
//! costs a host (`Documentation/vmfair/performance.rst`).
//!
//! One boot of the test kernel runs every benchmark variant alternately with
//! the module not loaded (`off`) and loaded (`vmfair`), run by run (for each
//! variant off, vmfair, off, vmfair, …). The same kernel built without the
//! patch series and without `kconfig/vmfair.config` (`stock`, a second build
//! key) runs them all as the baseline, in two boots: half of the rounds
//! before the test boot, the rest after it. Each run is one `overhead` plan
//! step (`qemu-test/init`): `vmfair-run overhead BENCH …` prints one JSON
//! line. The guest repeats an invalid run up to three times; runs that never
//! reported (a guest that died) go into another boot, at most
//! [`RERUN_BOOTS`] more per kernel. Outputs: `results/overhead/report.md`,
//! `overhead.json`, `figure.svg`; the last line printed is the worst ratio.

use crate::guest;
use crate::kbuild::{self, Built};
use crate::kselftest;
use crate::overhead_report::{self as report, Meta, RunRec};
use crate::qemu::{self, Boot, Mode};
use crate::util::{self, info, phase, Ctx};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A benchmark as the report names it: `vmfair-run overhead BENCH ARGS…`.
pub struct Variant {
    pub name: &'static str,
    pub bench: &'static str,
    pub args: &'static [&'static str],
    /// Expected emulated seconds of one run, for the boot's time limit.
    pub est_s: f64,
    /// What one run is, for the report.
    pub what: &'static str,
}

/// Every variant, in report order.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "pipe",
        bench: "pipe",
        args: &["--seconds", "2"],
        est_s: 3.0,
        what: "two threads ping-pong one byte over two pipes for 2 s; round trip, median",
    },
    Variant {
        name: "pipe-vm",
        bench: "pipe",
        args: &["--vm", "1", "--seconds", "2"],
        est_s: 4.0,
        what: "the same in a process that first created a one-vCPU VM and ran it once, so \
               that under vmfair the whole process (both threads) is in a VM group",
    },
    Variant {
        name: "pipe-cgroup",
        bench: "pipe",
        args: &["--cgroup", "vmfair-pipe", "--seconds", "2"],
        est_s: 3.0,
        what: "pipe with the process (both threads) in a cpu cgroup of its own, one level \
               below the root like a VM group: the baseline for pipe-vm under vmfair",
    },
    Variant {
        name: "pipe-cgroup-smp",
        bench: "pipe",
        args: &[
            "--cgroup",
            "vmfair-pipe",
            "--cgroup-mode",
            "smp",
            "--seconds",
            "2",
        ],
        est_s: 3.0,
        what: "pipe-cgroup with the cgroup's shares computed as a VM group's are (debugfs \
               sched/cgroup_mode smp instead of the default concur)",
    },
    Variant {
        name: "fork",
        bench: "fork",
        args: &["--seconds", "2"],
        est_s: 3.0,
        what: "fork + _exit + waitpid of an ordinary process for 2 s; µs per operation",
    },
    Variant {
        name: "hackbench",
        bench: "hackbench",
        args: &["--groups", "2", "--fds", "10", "--loops", "100"],
        est_s: 4.0,
        what: "2 groups of 10 sender and 10 receiver processes, 100 messages of 100 bytes \
               from every sender to every receiver of its group, over pipes; total seconds",
    },
    Variant {
        name: "wakeup",
        bench: "wakeup",
        args: &["--seconds", "3", "--vms", "2", "--workers", "2"],
        est_s: 6.0,
        what: "schbench-style: every 1 ms a waker stamps the time and wakes one of 2 worker \
               threads through a pipe, which reads the clock when it runs (then spins 50 µs), \
               for 3 s beside 2 busy one-vCPU VMs; wake-up to running, p50 and p99",
    },
    Variant {
        name: "wakeup-noprec",
        bench: "wakeup",
        args: &[
            "--seconds",
            "3",
            "--vms",
            "2",
            "--workers",
            "2",
            "--precision",
            "0",
        ],
        est_s: 6.0,
        what: "wakeup with the module's precision loop off (kernel.vmfair.precision 0) \
               while vmfair is loaded: what the loop's share corrections of the busy VMs do \
               to the workers' wake-ups",
    },
    Variant {
        name: "wakeup-full",
        bench: "wakeup",
        args: &[
            "--seconds",
            "3",
            "--vms",
            "2",
            "--workers",
            "2",
            "--preempt",
            "full",
        ],
        est_s: 6.0,
        what: "wakeup with the full preemption model (debugfs sched/preempt full) instead of \
               the kernel's default lazy one, which asks a remote CPU to reschedule without an \
               interrupt: whether that is what remote wake-ups wait for",
    },
    Variant {
        name: "wakeup-noparity",
        bench: "wakeup",
        args: &[
            "--seconds",
            "3",
            "--vms",
            "2",
            "--workers",
            "2",
            "--sched-feat",
            "NO_RUN_TO_PARITY",
        ],
        est_s: 6.0,
        what: "wakeup with the scheduler feature RUN_TO_PARITY off (debugfs sched/features), \
               which otherwise protects the running task from wake-up preemption up to its \
               deadline: whether that is what remote wake-ups wait for",
    },
    Variant {
        name: "wakeup-cgroup",
        bench: "wakeup",
        args: &[
            "--seconds",
            "3",
            "--vms",
            "2",
            "--workers",
            "2",
            "--vm-cgroups",
            "1",
        ],
        est_s: 6.0,
        what: "the same with each busy VM in a cpu cgroup of its own (libvirt style, one level \
               below the root like a VM group; vmfair leaves it there): the baseline for \
               wakeup under vmfair",
    },
    Variant {
        name: "wakeup-cgroup-smp",
        bench: "wakeup",
        args: &[
            "--seconds",
            "3",
            "--vms",
            "2",
            "--workers",
            "2",
            "--vm-cgroups",
            "1",
            "--cgroup-mode",
            "smp",
        ],
        est_s: 6.0,
        what: "wakeup-cgroup with the cgroups' shares computed as a VM group's are \
               (debugfs sched/cgroup_mode smp instead of the default concur)",
    },
    Variant {
        name: "vmlife",
        bench: "vmlife",
        args: &["--seconds", "3"],
        est_s: 5.0,
        what: "VM life cycles for 3 s, each in a new process: fork, KVM_CREATE_VM, one \
               vCPU, first KVM_RUN (the guest halts), under vmfair until the VM's sysctl \
               directory appears, exit, waitpid; cycle p50/p99 and VMs per second, the \
               create→grouped gap as context",
    },
    Variant {
        name: "forklat",
        bench: "forklat",
        args: &["--seconds", "3"],
        est_s: 5.0,
        what: "the fork loop of an unrelated process for 3 s while another process runs \
               the vmlife loop; fork + exit + wait latency p50/p99",
    },
    Variant {
        name: "kvmexit",
        bench: "kvmexit",
        args: &["--seconds", "2"],
        est_s: 3.0,
        what: "a running VM whose guest loops on `out` to a port, 2 s: ns per KVM_RUN \
               round trip (median of batches of 100)",
    },
    Variant {
        name: "rseq",
        bench: "rseq",
        args: &[],
        est_s: 8.0,
        what: "the kernel's KVM selftest rseq_test (a vCPU thread in KVM_RUN while \
               another thread migrates it between CPUs), wall time; in the root group \
               under stock and off, in its VM group under vmfair",
    },
    Variant {
        name: "rseq-cgroup",
        bench: "rseq",
        args: &["--cgroup", "vmfair-overhead"],
        est_s: 8.0,
        what: "rseq_test in a cpu cgroup of its own (cgroup v2) in every configuration",
    },
];

/// Runs per configuration.
const RUNS: u32 = 5;
/// `NR_TASK_MIGRATIONS` of the `rseq_test` build (100000 upstream).
pub const RSEQ_MIGRATIONS: u32 = 2000;
/// Extra boots per kernel, at the end, for runs that never reported.
const RERUN_BOOTS: u32 = 2;
const GUEST_CPUS: u32 = 2;

/// One planned run.
#[derive(Clone, Copy)]
pub struct Planned {
    pub variant: &'static Variant,
    pub config: &'static str,
    pub round: u32,
}

impl Planned {
    /// The run's name on the results channel.
    pub fn name(&self) -> String {
        format!("{}.{}.{}", self.variant.name, self.config, self.round)
    }
}

/// Rounds × variants × configurations: each variant's runs alternate
/// between the configurations (ABAB…).
pub fn schedule(
    configs: &[&'static str],
    rounds: std::ops::RangeInclusive<u32>,
    variants: &[&'static Variant],
) -> Vec<Planned> {
    let mut out = Vec::new();
    for round in rounds {
        for &variant in variants {
            for &config in configs {
                out.push(Planned {
                    variant,
                    config,
                    round,
                });
            }
        }
    }
    out
}

/// The guest plan of a boot.
pub fn plan_lines(todo: &[Planned]) -> Vec<String> {
    let mut plan = vec!["info".to_string()];
    for (i, p) in todo.iter().enumerate() {
        plan.push(
            format!(
                "overhead {}/{} {} {} {} {}",
                i + 1,
                todo.len(),
                p.config,
                p.name(),
                p.variant.bench,
                p.variant.args.join(" ")
            )
            .trim_end()
            .to_string(),
        );
    }
    plan.push("dmesg".into());
    plan
}

/// The stock kernel: the same fragments but `vmfair.config`, no patches.
pub fn stock_inputs(ctx: &Ctx) -> Result<kbuild::Inputs> {
    let mut inputs = kbuild::Inputs::project(ctx)?;
    // A directory without a `series` file is an empty series.
    let empty = ctx.cache.join("overhead/no-patches");
    std::fs::create_dir_all(&empty)?;
    inputs.patches = empty;
    inputs
        .fragments
        .retain(|f| f.file_name().and_then(|n| n.to_str()) != Some("vmfair.config"));
    Ok(inputs)
}

/// A kernel to boot: its build, initramfs and configurations.
struct Kernel<'a> {
    label: &'static str,
    built: &'a Built,
    base: PathBuf,
    configs: &'static [&'static str],
    /// Runs that never reported, for a rerun boot.
    missing: Vec<Planned>,
}

/// What the boots gave.
#[derive(Default)]
struct Collected {
    runs: Vec<RunRec>,
    warnings: Vec<(String, Vec<String>)>,
    /// Configuration to kernel release.
    releases: Vec<(&'static str, String)>,
}

/// One boot of `k` running `todo`; returns the runs that never reported.
fn boot_runs(
    ctx: &Ctx,
    k: &Kernel,
    name: &str,
    todo: Vec<Planned>,
    icount: bool,
    acc: &mut Collected,
) -> Vec<Planned> {
    if todo.is_empty() {
        return todo;
    }
    let est: f64 = todo.iter().map(|p| p.variant.est_s + 1.0).sum();
    phase(&format!(
        "overhead: {} runs on the {} kernel (about {:.0} s)",
        todo.len(),
        k.label,
        est + 20.0
    ));
    let boot = Boot {
        name: name.to_string(),
        built: k.built,
        base_cpio: &k.base,
        cpus: GUEST_CPUS,
        mem_mib: 2048,
        plan: plan_lines(&todo),
        files: vec![],
        // Under icount a busy guest second can take several host seconds.
        timeout: Duration::from_secs_f64(180.0 + est * if icount { 8.0 } else { 3.0 }),
        icount,
        silence: Duration::from_secs(300),
    };
    let outcome = match boot.run(ctx) {
        Ok(o) => o,
        Err(e) => {
            info(&format!("boot {name} failed: {e:#}"));
            return todo;
        }
    };
    if outcome.done.is_none() {
        info(&outcome.verdict());
    }
    if let Some(b) = outcome.block("info", "guest") {
        if let Some(r) = b.payload.lines().find_map(|l| l.strip_prefix("release=")) {
            for c in k.configs {
                acc.releases.retain(|(x, _)| x != c);
                acc.releases.push((c, r.trim().to_string()));
            }
        }
    }
    let log = match outcome.block("dmesg", "all") {
        Some(b) => b.payload.clone(),
        None => outcome.console_text.clone(),
    };
    acc.warnings
        .push((name.to_string(), qemu::kernel_warnings(&log)));
    let mut left = Vec::new();
    for p in todo {
        let Some(b) = outcome.block("overhead", &p.name()) else {
            left.push(p);
            continue;
        };
        let line = b.payload.lines().find(|l| l.trim_start().starts_with('{'));
        let mut r = RunRec::from_guest(
            line.unwrap_or(""),
            p.variant.name,
            p.variant.bench,
            p.config,
            p.round,
            name,
        );
        if b.rc != Some(0) {
            r.valid = false;
            r.problems
                .push(format!("vmfair-run exited with rc={:?}", b.rc));
        }
        print_run(&r);
        acc.runs.push(r);
    }
    left
}

fn print_run(r: &RunRec) {
    let figs: Vec<String> = r
        .metrics
        .iter()
        .filter(|m| m.kind != "info")
        .map(|m| format!("{} {}", m.name, report::num(m.value)))
        .collect();
    info(&format!(
        "{:<24} {}{}",
        format!("{}.{}.{}", r.variant, r.config, r.round),
        if r.valid { "" } else { "INVALID " },
        if r.valid {
            figs.join(", ")
        } else {
            r.problems.join("; ")
        }
    ));
}

/// Options of `cargo xtask overhead`.
struct Args {
    runs: u32,
    only: Option<Vec<String>>,
    stock: bool,
    report_only: bool,
    /// Deterministic guest time (`-icount`), the default.
    icount: bool,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut a = Args {
        runs: RUNS,
        only: None,
        stock: true,
        report_only: false,
        icount: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                a.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .context("--runs needs a positive number")?
            }
            "--only" => {
                let list: Vec<String> = it
                    .next()
                    .context("--only needs a list of variants")?
                    .split(',')
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = list.iter().find(|v| !VARIANTS.iter().any(|x| x.name == *v)) {
                    bail!("unknown variant {bad}; variants: {}", names().join(", "));
                }
                a.only = Some(list);
            }
            "--no-stock" => a.stock = false,
            "--report" => a.report_only = true,
            "--no-icount" => a.icount = false,
            other => bail!(
                "unknown option {other}\nusage: cargo xtask overhead [--runs N] \
                 [--only VARIANT,…] [--no-stock] [--no-icount] [--report]"
            ),
        }
    }
    Ok(a)
}

fn names() -> Vec<&'static str> {
    VARIANTS.iter().map(|v| v.name).collect()
}

fn meta_base(seconds: f64, runs: u32, icount: bool) -> Meta {
    Meta {
        runs_per_config: runs,
        guest_cpus: GUEST_CPUS,
        tcg: match (icount, Mode::for_cpus(GUEST_CPUS)) {
            (true, _) => "single-threaded with -icount shift=2,sleep=on (guest time counts \
                          instructions)"
                .into(),
            (false, Mode::MultiThread) => "multi-threaded".into(),
            (false, Mode::SingleThread) => "single-threaded".into(),
        },
        rseq_migrations: RSEQ_MIGRATIONS,
        seconds,
        variants: VARIANTS
            .iter()
            .map(|v| {
                (
                    v.name.to_string(),
                    v.what.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect(),
        ..Meta::default()
    }
}

/// Writes report.md, overhead.json and figure.svg (and prints the table
/// when `table`); returns the last line.
fn write_outputs(out: &Path, meta: &Meta, runs: &[RunRec], table: bool) -> Result<String> {
    std::fs::create_dir_all(out)?;
    let rows = report::rows(runs, &names());
    util::write(&out.join("report.md"), report::report_md(meta, &rows, runs))?;
    util::write(&out.join("overhead.json"), report::json(meta, &rows, runs)?)?;
    util::write(&out.join("figure.svg"), report::figure_svg(&rows))?;
    if table {
        print_table(&rows);
    }
    match report::worst(&rows) {
        Some((x, what)) => Ok(format!("worst ratio: {x:.3} ({what})")),
        None => bail!(
            "no figure has both a vmfair and a baseline value; see {}",
            out.display()
        ),
    }
}

fn print_table(rows: &[report::Row]) {
    println!(
        "{:<12} {:<26} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "benchmark", "figure", "stock", "off", "vmfair", "off/st", "vmfair/st", "paired"
    );
    let med = |r: &report::Row, c: &str| {
        r.stats
            .get(c)
            .map(|s| report::num(s.median))
            .unwrap_or_else(|| "-".into())
    };
    let rat = |x: Option<f64>| x.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
    for r in rows {
        println!(
            "{:<12} {:<26} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}{}",
            r.variant,
            format!("{} ({})", r.metric, r.unit),
            med(r, "stock"),
            med(r, "off"),
            med(r, "vmfair"),
            rat(r.off_ratio),
            rat(r.vmfair_ratio),
            rat(r.paired),
            if r.baseline.as_deref() == Some("off") {
                " (vs off)"
            } else {
                ""
            }
        );
    }
}

/// `cargo xtask overhead [--runs N] [--only V,…] [--no-stock] [--no-icount] [--report]`;
/// returns the line to print last.
pub fn cmd(ctx: &Ctx, args: &[String]) -> Result<String> {
    let a = parse_args(args)?;
    let out = ctx.results().join("overhead");
    if a.report_only {
        let file = out.join("overhead.json");
        let text = util::read(&file)?;
        let saved = report::read_saved(&text).with_context(|| file.display().to_string())?;
        return write_outputs(&out, &saved.meta, &saved.runs, true);
    }
    let t0 = Instant::now();
    let variants: Vec<&'static Variant> = VARIANTS
        .iter()
        .filter(|v| {
            a.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == v.name))
        })
        .collect();
    // Builds: the test kernel and module, the stock kernel (the tree is
    // left at the pristine base), rseq_test, the guest programs.
    let test = kbuild::kernel(ctx, &kbuild::Inputs::project(ctx)?)?;
    let stage = kbuild::module(ctx, &test)?;
    let stock = if a.stock {
        Some(kbuild::kernel(ctx, &stock_inputs(ctx)?).context("building the stock kernel")?)
    } else {
        None
    };
    let rseq = kselftest::rseq_test(ctx, RSEQ_MIGRATIONS)?;
    let mut bins = guest::programs(ctx)?;
    bins.push(("rseq_test".into(), rseq));
    let test_base = guest::base_initramfs(ctx, &test, &stage, &bins)?;
    let stock_base = match &stock {
        Some(b) => Some(guest::base_initramfs(
            ctx,
            b,
            &b.dir.join("no-modules"),
            &bins,
        )?),
        None => None,
    };
    let builds_s = t0.elapsed().as_secs_f64();
    info(&format!("builds done after {builds_s:.0} s"));
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("remove {}", out.display()))?;
    }
    let mut meta = meta_base(0.0, a.runs, a.icount);
    // One boot of the test kernel for all its runs; the stock kernel's runs
    // in two boots, one before and one after it, so that a drift of the
    // emulation speed over the run falls on both kernels alike.
    let mut kernels = vec![Kernel {
        label: "test",
        built: &test,
        base: test_base,
        configs: &["off", "vmfair"],
        missing: vec![],
    }];
    let mut boots = vec![(0, 1..=a.runs, "overhead-test".to_string())];
    if let (Some(b), Some(base)) = (&stock, stock_base) {
        kernels.push(Kernel {
            label: "stock",
            built: b,
            base,
            configs: &["stock"],
            missing: vec![],
        });
        let half = a.runs / 2;
        boots.insert(0, (1, 1..=half, "overhead-stock-1".into()));
        boots.push((1, half + 1..=a.runs, "overhead-stock-2".into()));
    }
    // `None`: a rerun boot, for the runs that never reported.
    let mut boots: Vec<_> = boots.into_iter().map(|(k, r, n)| (k, Some(r), n)).collect();
    for n in 1..=RERUN_BOOTS {
        for (k, kernel) in kernels.iter().enumerate() {
            boots.push((k, None, format!("overhead-{}-rerun{n}", kernel.label)));
        }
    }
    let mut acc = Collected::default();
    for (k, rounds, name) in boots {
        let k = &mut kernels[k];
        let todo = match rounds {
            Some(r) => schedule(k.configs, r, &variants),
            None => std::mem::take(&mut k.missing),
        };
        let left = boot_runs(ctx, k, &name, todo, a.icount, &mut acc);
        k.missing.extend(left);
        // Partial outputs after every boot.
        meta.seconds = t0.elapsed().as_secs_f64();
        meta.warnings = acc.warnings.iter().cloned().collect();
        let _ = write_outputs(&out, &meta, &acc.runs, false);
    }
    for k in &kernels {
        let label = k.label;
        meta.missing
            .extend(k.missing.iter().map(|p| format!("{} ({label})", p.name())));
    }
    for (c, r) in &acc.releases {
        meta.kernels.insert(c.to_string(), r.clone());
    }
    let runs = acc.runs;
    if let Some(k) = meta.kernels.get_mut("stock") {
        k.push_str(" (no patch series)");
    }
    let last = write_outputs(&out, &meta, &runs, true)?;
    info(&format!(
        "overhead: {} runs, {} valid, in {:.0} s ({:.0} s of builds): {}",
        runs.len(),
        runs.iter().filter(|r| r.valid).count(),
        t0.elapsed().as_secs_f64(),
        builds_s,
        out.join("report.md").display()
    ));
    if runs.iter().all(|r| !r.valid) {
        bail!("no valid run");
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_alternate_per_variant() {
        let v: Vec<&Variant> = VARIANTS.iter().take(2).collect();
        let s = schedule(&["off", "vmfair"], 1..=3, &v);
        assert_eq!(s.len(), 12);
        let names: Vec<String> = s.iter().take(4).map(Planned::name).collect();
        assert_eq!(
            names,
            [
                "pipe.off.1",
                "pipe.vmfair.1",
                "pipe-vm.off.1",
                "pipe-vm.vmfair.1"
            ]
        );
        let pipe: Vec<&str> = s
            .iter()
            .filter(|p| p.variant.name == "pipe")
            .map(|p| p.config)
            .collect();
        assert_eq!(pipe, ["off", "vmfair", "off", "vmfair", "off", "vmfair"]);
        assert_eq!(s.last().unwrap().round, 3);
    }

    #[test]
    fn plan_steps() {
        let v: Vec<&Variant> = VARIANTS.iter().filter(|v| v.bench == "rseq").collect();
        let plan = plan_lines(&schedule(&["stock"], 1..=1, &v));
        assert_eq!(plan.first().map(String::as_str), Some("info"));
        assert_eq!(plan.last().map(String::as_str), Some("dmesg"));
        assert_eq!(plan[1], "overhead 1/2 stock rseq.stock.1 rseq");
        assert_eq!(
            plan[2],
            "overhead 2/2 stock rseq-cgroup.stock.1 rseq --cgroup vmfair-overhead"
        );
    }

    #[test]
    fn variants_are_unique_and_known() {
        let mut n = names();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), VARIANTS.len());
        let benches = [
            "pipe",
            "fork",
            "hackbench",
            "wakeup",
            "vmlife",
            "forklat",
            "kvmexit",
            "rseq",
        ];
        for v in VARIANTS {
            assert!(benches.contains(&v.bench), "{}", v.bench);
            assert!(!v.name.contains('.') && !v.name.contains(' '));
        }
        for b in benches {
            assert!(VARIANTS.iter().any(|v| v.bench == b), "{b} has no variant");
        }
    }

    #[test]
    fn options() {
        let a = parse_args(&[
            "--runs".into(),
            "2".into(),
            "--only".into(),
            "pipe,fork".into(),
        ])
        .unwrap();
        assert_eq!(a.runs, 2);
        assert_eq!(a.only.unwrap(), ["pipe", "fork"]);
        assert!(parse_args(&["--only".into(), "nope".into()]).is_err());
        assert!(parse_args(&["--runs".into(), "0".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
        assert!(parse_args(&[]).unwrap().stock);
        assert!(parse_args(&[]).unwrap().icount);
        assert!(!parse_args(&["--no-icount".into()]).unwrap().icount);
    }
}
