//! The peer suites: the kernel's own KVM selftests and the cgroup cpu
//! controller selftest, run in one boot of the test kernel twice, without
//! vmfair and with it loaded, and compared test by test (`make test`, and
//! `cargo xtask peers` on its own). Which tests run, why others do not, and
//! what they found: Documentation/vmfair/peer-suites.rst.
//!
//! The binaries are built static from the pinned source
//! (`xtask/src/kselftest.rs`) and go into the per-run archive of this boot
//! only, so the other boots' initramfs does not grow. The guest runs them
//! with `vmfair-run peers` (plan step `peers off|vmfair`, `qemu-test/init`),
//! which prints one `result` line per test and the test's output; a result
//! follows kselftest's exit codes (0 pass, 4 skip, anything else fail), and
//! the TAP lines of the KVM harness tests (`ok N …`, `not ok N …`) count as
//! subtests.

use crate::kbuild::Built;
use crate::kselftest::{self, Suite};
use crate::qemu::{Boot, Outcome};
use crate::util::{info, phase, Ctx};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `NR_TASK_MIGRATIONS` of `rseq_test` (100000 upstream): the same build
/// as `make overhead`'s.
pub const RSEQ_MIGRATIONS: u32 = crate::overhead::RSEQ_MIGRATIONS;

/// Forked VMs of `hardware_disable_test` (`NR_ITERATIONS`, 512 upstream:
/// more than 4 minutes under TCG, 16 more than 2).
pub const HARDWARE_DISABLE_ITERATIONS: u32 = 4;

const TEST_CPU_C: &str = "tools/testing/selftests/cgroup/test_cpu.c";

/// The source edits of the peers' build.
///
/// `test_cpu` holds CPU time against time to tolerances that this test bed
/// does not keep (Documentation/vmfair/peer-suites.rst), with and without
/// vmfair alike: `test_cpucg_stats` and `test_cpucg_nice` count 2 s of a
/// hog's CPU time to 1 %, and came out 1.0–2.0 % over (under TCG a process's
/// start and exit alone cost tens of milliseconds); the `cpu.max` tests let
/// 11–38 % more than the quota through (10 % allowed). Those four checks
/// get 5 % and 50 %, still far below what a controller that ignored nice or
/// `cpu.max` would give.
pub fn edits() -> Vec<kselftest::Edit> {
    let tolerance = |from: &str, to: &str, lines| kselftest::Edit {
        file: TEST_CPU_C,
        from: from.into(),
        to: to.into(),
        lines,
    };
    vec![
        kselftest::rseq_migrations(RSEQ_MIGRATIONS),
        kselftest::define(
            "tools/testing/selftests/kvm/hardware_disable_test.c",
            "NR_ITERATIONS",
            512,
            HARDWARE_DISABLE_ITERATIONS,
        ),
        tolerance(
            "if (!values_close_report(usage_usec, expected_usage_usec, 1))",
            "\tif (!values_close_report(usage_usec, expected_usage_usec, 5))",
            1,
        ),
        tolerance(
            "if (!values_close_report(nice_usec, expected_nice_usec, 1))",
            "\t\tif (!values_close_report(nice_usec, expected_nice_usec, 5))",
            1,
        ),
        tolerance(
            "if (!values_close_report(usage_usec, expected_usage_usec, 10))",
            "\tif (!values_close_report(usage_usec, expected_usage_usec, 50))",
            2,
        ),
    ]
}

/// One test of the peer suites.
pub struct Peer {
    pub suite: Suite,
    /// Target inside the suite's directory.
    pub target: &'static str,
    pub args: &'static [&'static str],
    /// Per run, in the guest; a test that outlives it fails.
    pub timeout_s: u32,
    /// Why it is in the list.
    pub why: &'static str,
    /// Subtests known to fail on this test bed without vmfair, and why
    /// (they must still give the same result with vmfair).
    pub known_fail: &'static [(&'static str, &'static str)],
}

fn kvm(target: &'static str, timeout_s: u32, why: &'static str) -> Peer {
    Peer {
        suite: Suite::Kvm,
        target,
        args: &[],
        timeout_s,
        why,
        known_fail: &[],
    }
}

/// x86 selftests that run on this test bed (SVM under TCG, `kvm_amd` in
/// the guest) and end within a few seconds; the others and why:
/// Documentation/vmfair/peer-suites.rst.
const X86: &[&str] = &[
    "x86/cpuid_test",
    "x86/cr4_cpuid_sync_test",
    "x86/exit_on_emulation_failure_test",
    "x86/feature_msrs_test",
    "x86/fix_hypercall_test",
    "x86/hwcr_msr_test",
    "x86/hyperv_cpuid",
    "x86/hyperv_ipi",
    "x86/hyperv_svm_test",
    "x86/kvm_pv_test",
    "x86/max_vcpuid_cap_test",
    "x86/monitor_mwait_test",
    "x86/nested_close_kvm_test",
    "x86/nested_invalid_cr3_test",
    "x86/nested_set_state_test",
    "x86/nested_tdp_fault_test",
    "x86/platform_info_test",
    "x86/recalc_apic_map_test",
    "x86/set_boot_cpu_id",
    "x86/set_sregs_test",
    "x86/smm_test",
    "x86/state_test",
    "x86/svm_int_ctl_test",
    "x86/svm_nested_shutdown_test",
    "x86/svm_nested_vmcb12_gpa",
    "x86/svm_vmcall_test",
    "x86/sync_regs_test",
    "x86/triple_fault_event_test",
    "x86/tsc_msrs_test",
    "x86/userspace_io_test",
    "x86/userspace_msr_exit_test",
    "x86/xcr0_cpuid_test",
    // SKIP here (need VMX, SEV, TSC scaling): the skip path, compared too.
    "x86/vmx_preemption_timer_test",
    "x86/sev_smoke_test",
    "x86/nested_tsc_scaling_test",
];

/// The tests of `make test`, in the order they run: the life-cycle and
/// thread tests, then the x86 ones.
pub fn peers() -> Vec<Peer> {
    let mut v = vec![
        kvm(
            "hardware_disable_test",
            240,
            "VMs with busy vCPUs and sleeping threads, SIGKILLed",
        ),
        kvm(
            "kvm_create_max_vcpus",
            120,
            "VMs with the most vCPUs KVM allows",
        ),
        kvm(
            "rseq_test",
            120,
            "a vCPU thread migrated between CPUs while in KVM_RUN",
        ),
        kvm(
            "kvm_binary_stats_test",
            60,
            "per-VM and per-vCPU stats fds of many VMs",
        ),
        kvm(
            "steal_time",
            60,
            "steal time: vCPU threads that wait for a CPU",
        ),
        kvm("guest_print_test", 60, "ucall and guest printf"),
        kvm("system_counter_offset_test", 60, "counter offsets"),
        kvm("vm_types_test", 60, "VM types"),
        kvm("pre_fault_memory_test", 60, "KVM_PRE_FAULT_MEMORY"),
        kvm("guest_memfd_test", 60, "guest_memfd: private guest memory"),
    ];
    v.extend(X86.iter().map(|t| kvm(t, 60, "x86")));
    v
}

/// The slow ones, for `cargo xtask peers --slow` (`make peers`): minutes
/// a run under TCG.
pub fn slow() -> Vec<Peer> {
    vec![
        kvm(
            "set_memory_region_test",
            1200,
            "memslots: the most KVM allows (32764), changed under running vCPUs",
        ),
        Peer {
            suite: Suite::Cgroup,
            target: "test_cpu",
            args: &[],
            timeout_s: 1200,
            why: "the cgroup v2 cpu controller: weights, nesting, bandwidth",
            known_fail: &[(
                "test_cpucg_nested_weight_overprovisioned",
                "expects equal weights to get equal CPU (cgroup_mode smp); under 7.3's \
                 default concur mode the group with twice the busy threads gets 2/3",
            )],
        },
    ]
}

/// A test's result, as kselftest reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Skip,
    Fail,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Skip => "SKIP",
            Verdict::Fail => "FAIL",
        })
    }
}

/// What one pass reported for one test.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// `exit:N`, `signal:N`, `timeout` or `error:…`.
    pub status: String,
    pub secs: f64,
    /// VMM processes that had a vmfair VM directory while the test ran.
    pub vmgroups: u32,
    /// TAP subtests: (number and description, verdict).
    pub subtests: Vec<(String, Verdict)>,
    pub output: Vec<String>,
}

impl Run {
    pub fn verdict(&self) -> Verdict {
        match self.status.as_str() {
            "exit:0" => Verdict::Pass,
            "exit:4" => Verdict::Skip,
            _ => Verdict::Fail,
        }
    }

    /// `P/F/S` subtests, or "" when the test printed no TAP.
    pub fn subtest_counts(&self) -> String {
        if self.subtests.is_empty() {
            return String::new();
        }
        let n = |v| self.subtests.iter().filter(|(_, s)| *s == v).count();
        format!(
            "{} pass, {} fail, {} skip",
            n(Verdict::Pass),
            n(Verdict::Fail),
            n(Verdict::Skip)
        )
    }
}

/// A TAP test line (`ok 3 name`, `not ok 4 name # SKIP why`) as (name,
/// verdict); the kselftest harness's lines, also nested (`# ok 1 …`) are
/// not counted: only the top level.
fn tap_line(line: &str) -> Option<(String, Verdict)> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("ok ") {
        (true, r)
    } else if let Some(r) = line.strip_prefix("not ok ") {
        (false, r)
    } else {
        return None;
    };
    let num = rest.split_whitespace().next()?;
    num.parse::<u32>().ok()?;
    let (desc, directive) = match rest.split_once(" # ") {
        Some((d, dir)) => (d.trim(), dir.trim().to_ascii_uppercase()),
        None => (rest.trim(), String::new()),
    };
    let v = if directive.starts_with("SKIP") {
        Verdict::Skip
    } else if ok || directive.starts_with("XFAIL") {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Some((desc.to_string(), v))
}

/// The payload of one `peers` block: test name → run.
pub fn parse_pass(payload: &str) -> BTreeMap<String, Run> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut runs = BTreeMap::new();
    for line in payload.lines() {
        if let Some(rest) = line.strip_prefix("out ") {
            if let Some((name, text)) = rest.split_once("| ") {
                out.entry(name.to_string())
                    .or_default()
                    .push(text.to_string());
            } else if let Some(name) = rest.strip_suffix('|') {
                out.entry(name.to_string()).or_default().push(String::new());
            }
        } else if let Some(rest) = line.strip_prefix("result ") {
            let mut w = rest.split_whitespace();
            let Some(name) = w.next() else { continue };
            let mut run = Run {
                status: String::new(),
                secs: 0.0,
                vmgroups: 0,
                subtests: vec![],
                output: out.remove(name).unwrap_or_default(),
            };
            for kv in w {
                match kv.split_once('=') {
                    Some(("status", v)) => run.status = v.to_string(),
                    Some(("secs", v)) => run.secs = v.parse().unwrap_or(0.0),
                    Some(("vmgroups", v)) => run.vmgroups = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
            if let Some(e) = rest.split_once("status=error:") {
                run.status = format!("error:{}", e.1);
            }
            run.subtests = run.output.iter().filter_map(|l| tap_line(l)).collect();
            runs.insert(name.to_string(), run);
        }
    }
    runs
}

/// One test's name in the list and in the result lines.
pub fn name_of(target: &str) -> String {
    target.replace('/', "_")
}

/// Both passes of one boot.
pub struct Passes {
    pub off: BTreeMap<String, Run>,
    pub vmfair: BTreeMap<String, Run>,
    /// The vmfair pass's own lines (`loaded=`, `rmmod=`).
    pub vmfair_tail: String,
    pub outcome: Outcome,
    /// Bytes the tests add to this boot's initramfs.
    pub bytes: u64,
}

/// Builds the tests (cached) and runs them in one boot of `built`, in the
/// passes asked for (`off`, `vmfair`).
pub fn run_boot(
    ctx: &Ctx,
    built: &Built,
    base: &Path,
    peers: &[&Peer],
    passes: &[&str],
    name: &str,
) -> Result<Passes> {
    let targets: Vec<(Suite, &str)> = peers.iter().map(|p| (p.suite, p.target)).collect();
    let bins = kselftest::build(ctx, &targets, &edits())?;
    let dir = ctx.cache.join("runs").join(format!("{name}-list"));
    std::fs::create_dir_all(&dir)?;
    let mut list = String::new();
    let mut files: Vec<(String, PathBuf)> = vec![];
    let mut bytes = 0;
    let mut secs = 120.0;
    for p in peers {
        let n = name_of(p.target);
        let bin = &bins[p.target];
        bytes += std::fs::metadata(bin)?.len();
        let guest = format!("/vmfair/peers/bin/{n}");
        let _ = writeln!(list, "{n} {} {guest} {}", p.timeout_s, p.args.join(" "));
        files.push((guest, bin.clone()));
        secs += f64::from(p.timeout_s) * passes.len() as f64;
    }
    let list_file = dir.join("list");
    crate::util::write(&list_file, &list)?;
    files.push(("/vmfair/peers/list".into(), list_file));
    let mut plan = vec!["info".to_string()];
    plan.extend(passes.iter().map(|p| format!("peers {p}")));
    plan.push("dmesg".into());
    phase(&format!(
        "peers: {} tests x {} passes ({}), {} KiB of tests in the initramfs",
        peers.len(),
        passes.len(),
        passes.join(", "),
        bytes / 1024
    ));
    let boot = Boot {
        name: name.to_string(),
        built,
        base_cpio: base,
        cpus: 2,
        mem_mib: 2048,
        plan,
        files,
        timeout: Duration::from_secs_f64(secs),
        // The cgroup tests hold CPU time against time: instruction-counted
        // clocks (they cost the KVM tests about twice the time, so only
        // a boot with a cgroup test has them).
        icount: peers.iter().any(|p| p.suite == Suite::Cgroup),
        silence: Duration::from_secs(u64::from(
            peers.iter().map(|p| p.timeout_s).max().unwrap_or(60) + 60,
        )),
    };
    let outcome = boot.run(ctx)?;
    let get = |pass: &str| {
        outcome
            .block("peers", pass)
            .map(|b| parse_pass(&b.payload))
            .unwrap_or_default()
    };
    Ok(Passes {
        off: get("off"),
        vmfair: get("vmfair"),
        vmfair_tail: outcome
            .block("peers", "vmfair")
            .map(|b| {
                b.payload
                    .lines()
                    .filter(|l| l.starts_with("loaded=") || l.starts_with("rmmod="))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        outcome,
        bytes,
    })
}

/// A check of the peer suites: (name, ok, detail).
pub type Check = (String, bool, String);

fn show(r: Option<&Run>) -> String {
    match r {
        None => "no result".into(),
        Some(r) => {
            let sub = r.subtest_counts();
            format!(
                "{} ({}, {:.1} s{})",
                r.verdict(),
                r.status,
                r.secs,
                if sub.is_empty() {
                    String::new()
                } else {
                    format!(", subtests {sub}")
                }
            )
        }
    }
}

/// Whether `r` passed or skipped, or failed only in subtests listed as known
/// to fail on this test bed.
fn passes_but_known(r: &Run, known: &[(&str, &str)]) -> bool {
    r.verdict() != Verdict::Fail
        || (r.status == "exit:1"
            && r.subtests.iter().any(|(_, v)| *v == Verdict::Fail)
            && r.subtests
                .iter()
                .filter(|(_, v)| *v == Verdict::Fail)
                .all(|(name, _)| {
                    // "6 test_cpucg_nested_weight_overprovisioned"
                    let desc = name.split_once(' ').map_or(name.as_str(), |(_, d)| d);
                    known.iter().any(|(k, _)| desc == *k)
                }))
}

/// The checks of `make test` for the peers boot.
pub fn checks(p: &Passes, peers: &[&Peer]) -> Vec<Check> {
    let mut v: Vec<Check> = vec![];
    let o = &p.outcome;
    v.push((
        "peers: the boot ran both passes".into(),
        o.done.is_some()
            && o.block("peers", "off").is_some()
            && o.block("peers", "vmfair").is_some(),
        o.verdict(),
    ));
    let mut failing_off = vec![];
    let mut held = 0;
    let mut held_off = 0;
    for peer in peers {
        let n = name_of(peer.target);
        let (a, b) = (p.off.get(&n), p.vmfair.get(&n));
        let same = match (a, b) {
            (Some(a), Some(b)) => a.verdict() == b.verdict() && a.subtests == b.subtests,
            _ => false,
        };
        v.push((
            format!("peers: {n}: same result with vmfair loaded as without"),
            same,
            format!("without: {}; with vmfair: {}", show(a), show(b)),
        ));
        if a.is_none_or(|a| !passes_but_known(a, peer.known_fail)) {
            failing_off.push(format!("{n}: {}", show(a)));
        }
        held += b.map_or(0, |b| b.vmgroups);
        held_off += a.map_or(0, |a| a.vmgroups);
    }
    v.push((
        "peers: every listed test passes or skips without vmfair".into(),
        failing_off.is_empty(),
        failing_off.join("; "),
    ));
    let rseq = p.vmfair.get("rseq_test").map_or(0, |r| r.vmgroups);
    v.push((
        "peers: vmfair's VM groups held the selftests' VMs (none without vmfair)".into(),
        held > 0 && held_off == 0 && (rseq > 0 || !peers.iter().any(|x| x.target == "rseq_test")),
        format!("VM groups seen: {held} with vmfair, {held_off} without, {rseq} for rseq_test"),
    ));
    v.push((
        "peers: vmfair stayed loaded for its pass and unloads after it".into(),
        p.vmfair_tail == "loaded=yes rmmod=ok",
        p.vmfair_tail.clone(),
    ));
    let (clean, detail) = o.dmesg_clean();
    v.push((
        "peers: no kernel warnings in the peers boot".into(),
        clean,
        detail,
    ));
    v
}

/// The per-test table: results and durations both ways.
pub fn table(p: &Passes, names: &[String]) -> String {
    let mut s = format!(
        "{:<34} {:<28} {:<28} {:>5}\n",
        "test", "without vmfair", "with vmfair", "vmgrp"
    );
    for n in names {
        let cell = |r: Option<&Run>| match r {
            None => "-".to_string(),
            Some(r) => {
                let sub = if r.subtests.is_empty() {
                    String::new()
                } else {
                    let pass = r
                        .subtests
                        .iter()
                        .filter(|(_, v)| *v == Verdict::Pass)
                        .count();
                    format!(" {pass}/{}", r.subtests.len())
                };
                format!("{} {:.1}s{sub}", r.verdict(), r.secs)
            }
        };
        let _ = writeln!(
            s,
            "{:<34} {:<28} {:<28} {:>5}",
            n,
            cell(p.off.get(n)),
            cell(p.vmfair.get(n)),
            p.vmfair.get(n).map_or(0, |r| r.vmgroups)
        );
    }
    s
}

/// `cargo xtask peers [--slow] [--tests T,…] [--timeout S] [--passes off,vmfair] [-v]`:
/// the peers boot on its own (`--slow`: the slow tests instead, `make
/// peers`); `--tests` runs other KVM selftest targets
/// (as in the kernel's Makefile, `x86/cpuid_test`; `test_cpu` is cgroup's).
pub fn cmd(ctx: &Ctx, args: &[String]) -> Result<u32> {
    let mut custom: Vec<Peer> = vec![];
    let mut passes = vec!["off".to_string(), "vmfair".to_string()];
    let mut timeout = 120;
    let mut verbose = false;
    let mut slow_only = false;
    let mut it = args.iter();
    let mut tests: Option<String> = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tests" => tests = it.next().cloned(),
            "--timeout" => timeout = it.next().and_then(|v| v.parse().ok()).unwrap_or(120),
            "--passes" => {
                passes = it
                    .next()
                    .map(|v| v.split(',').map(String::from).collect())
                    .unwrap_or_default()
            }
            "-v" => verbose = true,
            "--slow" => slow_only = true,
            other => bail!("peers: unknown argument {other}"),
        }
    }
    if let Some(t) = tests {
        for name in t.split(',').filter(|s| !s.is_empty()) {
            let target: &'static str = Box::leak(name.to_string().into_boxed_str());
            custom.push(Peer {
                suite: if name.starts_with("test_") {
                    Suite::Cgroup
                } else {
                    Suite::Kvm
                },
                target,
                args: &[],
                timeout_s: timeout,
                why: "",
                known_fail: &[],
            });
        }
    }
    let listed = if slow_only { slow() } else { peers() };
    let peers: Vec<&Peer> = if custom.is_empty() {
        for p in &listed {
            info(&format!("{}: {}", p.target, p.why));
        }
        listed.iter().collect()
    } else {
        custom.iter().collect()
    };
    let (built, base) = crate::build_all(ctx)?;
    let pass_refs: Vec<&str> = passes.iter().map(String::as_str).collect();
    let name = if slow_only { "peers-slow" } else { "peers" };
    let p = run_boot(ctx, &built, &base, &peers, &pass_refs, name)?;
    let names: Vec<String> = peers.iter().map(|x| name_of(x.target)).collect();
    if verbose {
        for (pass, runs) in [("off", &p.off), ("vmfair", &p.vmfair)] {
            for (n, r) in runs.iter() {
                println!("--- {pass} {n} {}", r.status);
                for l in &r.output {
                    println!("    {l}");
                }
            }
        }
    }
    print!("{}", table(&p, &names));
    info(&format!(
        "boot {:.0} s, tests add {} KiB to its initramfs",
        p.outcome.elapsed.as_secs_f64(),
        p.bytes / 1024
    ));
    let mut failed = 0;
    if passes.len() == 2 {
        for (name, ok, detail) in checks(&p, &peers) {
            if ok {
                println!("ok     {name}");
            } else {
                failed += 1;
                println!("FAILED {name}: {detail}");
            }
        }
    }
    println!(
        "{} passed, {failed} failed",
        if passes.len() == 2 {
            checks(&p, &peers).len() as u32 - failed
        } else {
            0
        }
    );
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_lines() {
        assert_eq!(tap_line("ok 1 foo"), Some(("1 foo".into(), Verdict::Pass)));
        assert_eq!(
            tap_line("not ok 2 bar"),
            Some(("2 bar".into(), Verdict::Fail))
        );
        assert_eq!(
            tap_line("ok 3 baz # SKIP no VMX"),
            Some(("3 baz".into(), Verdict::Skip))
        );
        assert_eq!(tap_line("# ok 1 nested"), None);
        assert_eq!(tap_line("ok go"), None);
        assert_eq!(tap_line("1..5"), None);
    }

    #[test]
    fn passes_parse_and_judge() {
        let payload = "out a| TAP version 13\nout a| ok 1 x\nout a| not ok 2 y\nout b|\n\
                       result a status=exit:1 secs=1.5 vmgroups=2\nresult b status=exit:4 secs=0.1 vmgroups=0\n\
                       result c status=timeout secs=60.0 vmgroups=1\nloaded=yes\n";
        let r = parse_pass(payload);
        assert_eq!(r.len(), 3);
        assert_eq!(r["a"].verdict(), Verdict::Fail);
        assert_eq!(r["a"].secs, 1.5);
        assert_eq!(r["a"].vmgroups, 2);
        assert_eq!(r["a"].subtests.len(), 2);
        assert_eq!(r["a"].subtest_counts(), "1 pass, 1 fail, 0 skip");
        assert_eq!(r["b"].verdict(), Verdict::Skip);
        assert_eq!(r["b"].output, vec![String::new()]);
        assert_eq!(r["c"].verdict(), Verdict::Fail);
        assert_eq!(r["c"].status, "timeout");
        let known = [("y", "why")];
        assert!(passes_but_known(&r["a"], &known));
        assert!(!passes_but_known(&r["a"], &[("x", "why")]));
        assert!(!passes_but_known(&r["a"], &[]));
        assert!(passes_but_known(&r["b"], &[]));
        // A timeout is never a known subtest failure.
        assert!(!passes_but_known(&r["c"], &known));
        let none = parse_pass("result d status=exit:1 secs=1 vmgroups=0\n");
        assert!(!passes_but_known(&none["d"], &known));
    }
}
