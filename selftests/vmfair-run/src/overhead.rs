// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run overhead BENCH [--key value…]`: one run of a benchmark of what vmfair costs a
//! host (`make overhead`, `Documentation/vmfair/performance.rst`). It prints one line of JSON
//! on stdout ([`Output`]: the run's figures, whether vmfair was loaded, whether the run's VMs
//! were grouped, whether the run is valid) and its progress on stderr.
//!
//! | bench | one run | headline figures |
//! | --- | --- | --- |
//! | `pipe` | two threads ping-pong a byte over two pipes (`--vm 1`: in a process that first created and ran a one-vCPU VM, so vmfair puts it into a VM group) | round trip ns, p50 |
//! | `fork` | fork + `_exit` + waitpid of an ordinary process | µs per op |
//! | `hackbench` | `--groups` groups of `--fds` senders and `--fds` receivers (processes) over pipes, `--loops` messages of 100 bytes from every sender to every receiver of its group | seconds |
//! | `wakeup` | schbench-style: a waker stamps the time and wakes one of `--workers` threads through a pipe, which reads the clock once it runs; beside `--vms` busy one-vCPU VMs (`vmfair-run vmm --load busy`) | wake-up to running µs, p50 and p99 |
//! | `vmlife` | VM life cycle, a new process per VM: fork, `KVM_CREATE_VM`, vCPU, first `KVM_RUN` (`hlt`), until grouped when vmfair is loaded, exit, waitpid | cycle ms p50/p99, VMs per second; create→grouped gap apart |
//! | `forklat` | the `fork` loop of an unrelated process while another one runs the `vmlife` loop | fork µs p50/p99 |
//! | `kvmexit` | a running VM whose guest loops on `out` to a port: `KVM_RUN` round trips | ns per round trip |
//! | `rseq` | the kernel's KVM selftest `rseq_test` (`--path`), in its own cpu cgroup with `--cgroup NAME` | seconds |
//!
//! A run is invalid when anything in it went wrong: a VM exit other than the expected one, a
//! child or VMM that failed, a background VM that made no progress, a VM that vmfair (loaded)
//! did not group within `--group-timeout-ms`, no samples. Such a run is repeated, up to
//! `--attempts` times; the output says how many attempts it took and what went wrong before.
//! Exit status: 0 when a result was printed (valid or not), 1 when none could be.

use crate::guest;
use crate::kvm::{Exit, Kvm, Regs, Vcpu};
use crate::layout::{
    counter_gpa, CODE_GPA, GUEST_MEM_SIZE, STACKS_GPA, STACK_SIZE, STATE_FAILED, STATE_RUNNING,
    STATUS_SIZE,
};
use crate::procfs;
use crate::status::{map_state_file, Status};
use crate::sys::{self, ChildSetup, Proc, ProcExit, SharedMem};
use crate::Opts;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod procs;
mod vms;

/// The benchmarks.
pub const BENCHES: &[&str] = &[
    "pipe",
    "fork",
    "hackbench",
    "wakeup",
    "vmlife",
    "forklat",
    "kvmexit",
    "rseq",
];

/// Options of `vmfair-run overhead` (each benchmark uses some of them).
pub const OPTIONS: &[&str] = &[
    "seconds",
    "attempts",
    "vm",
    "groups",
    "fds",
    "loops",
    "vms",
    "workers",
    "sleep-us",
    "spin-us",
    "path",
    "cgroup",
    "vm-cgroups",
    "cgroup-mode",
    "preempt",
    "sched-feat",
    "precision",
    "group-timeout-ms",
];

/// Guest code of the short-lived VMs (flat 32-bit): `hlt; jmp .-1`. Without an in-kernel
/// irqchip every `hlt` is an exit to the VMM (`KVM_EXIT_HLT`).
pub const HLT_LOOP: [u8; 3] = [0xf4, 0xeb, 0xfd];
/// `mov dx, OUT_PORT; 1: out dx, al; jmp 1b`: an I/O exit to the VMM per `out`.
pub const OUT_LOOP: [u8; 7] = [0x66, 0xba, 0x01, 0x05, 0xee, 0xeb, 0xfd];
/// The port of [`OUT_LOOP`].
pub const OUT_PORT: u16 = 0x501;
/// Guest RAM of a short-lived VM: code, GDT and one stack (see `layout.rs`).
const TINY_MEM: usize = 0x10000;
/// `KVM_EXIT_HLT`.
const EXIT_HLT: u32 = 5;
/// Exit status of `rseq_test` (kselftest) for a skipped test.
const KSFT_SKIP: i32 = 4;
const AUTOGROUP_SYSCTL: &str = "/proc/sys/kernel/sched_autogroup_enabled";

/// How a figure compares between configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Lower is better (time per operation).
    Cost,
    /// Higher is better (operations per second).
    Rate,
    /// Context only, not compared (counts, vmfair's own grouping delay).
    Info,
}

/// One figure of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub kind: Kind,
    pub value: f64,
}

fn metric(name: &str, unit: &'static str, kind: Kind, value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        unit,
        kind,
        value,
    }
}

/// The result line.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The benchmark.
    pub overhead: String,
    pub valid: bool,
    /// What made the last attempt invalid.
    pub problems: Vec<String>,
    pub attempts: u32,
    /// What made earlier attempts invalid, each prefixed with its attempt number.
    pub earlier_problems: Vec<String>,
    /// `/sys/module/vmfair` existed.
    pub vmfair_loaded: bool,
    /// Whether the run's VMs were grouped (`/proc/sys/kernel/vmfair/vm/<pid>` appeared);
    /// `None` when vmfair was not loaded or the benchmark has no VM of its own.
    pub grouped: Option<bool>,
    /// The scheduler groups the benchmark's VM threads were seen in (`pipe --vm`, `rseq`).
    pub groups: Vec<String>,
    pub kernel: String,
    pub cpus: u32,
    /// Wall time of the last attempt.
    pub elapsed_s: f64,
    /// Samples behind the figures (round trips, forks, wake-ups, VMs, …).
    pub samples: u64,
    pub metrics: Vec<Metric>,
}

/// The figures of one attempt.
#[derive(Debug, Default)]
struct Run {
    metrics: Vec<Metric>,
    samples: u64,
    grouped: Option<bool>,
    groups: Vec<String>,
    problems: Vec<String>,
}

impl Run {
    fn push(&mut self, name: &str, unit: &'static str, kind: Kind, value: f64) {
        self.metrics.push(metric(name, unit, kind, value));
    }

    /// Records whether a VM was grouped; a VM that should have been and was not is a problem.
    fn grouped(&mut self, what: &str, ok: bool, timeout: Duration) {
        self.grouped = Some(self.grouped.unwrap_or(true) && ok);
        if !ok {
            self.problems.push(format!(
                "{what}: vmfair is loaded but /proc/sys/kernel/vmfair/vm/<pid> did not appear \
                 within {} ms",
                timeout.as_millis()
            ));
        }
    }
}

/// Percentile `p` (0..=100) of `sorted` (ascending), linear between the closest ranks.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// `xs` sorted ascending.
pub fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

/// Adds `<name>_p50` and `<name>_p99` of `samples` (in ns) in `unit` (`div` ns each).
fn push_percentiles(run: &mut Run, name: &str, samples: Vec<f64>, unit: &'static str, div: f64) {
    let s = sorted(samples);
    for (p, tag) in [(50.0, "p50"), (99.0, "p99")] {
        if let Some(v) = percentile(&s, p) {
            run.push(&format!("{name}_{tag}"), unit, Kind::Cost, v / div);
        }
    }
}

/// What every benchmark needs.
struct Env<'a> {
    opts: &'a Opts,
    /// vmfair was loaded when the run started.
    loaded: bool,
    seconds: f64,
    group_timeout: Duration,
    epoch: Instant,
}

impl Env<'_> {
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.seconds)
    }

    /// Nanoseconds since the epoch (the same clock in every process forked from here).
    fn ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// The sysctl directory vmfair gives the VM of process `pid`.
pub fn vm_dir(pid: u32) -> String {
    format!("/proc/sys/kernel/vmfair/vm/{pid}")
}

/// Polls until process `pid` has its VM directory; the time it took, `None` after `timeout`.
fn wait_grouped(pid: u32, timeout: Duration) -> Option<Duration> {
    let (t0, dir) = (Instant::now(), vm_dir(pid));
    loop {
        if Path::new(&dir).exists() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The distinct scheduler groups of the threads of process `pid` (debugfs `sched/debug`).
fn thread_groups(pid: u32) -> Result<Vec<String>, String> {
    let groups = procfs::sched_groups()?;
    let mut mine: Vec<String> = procfs::tasks(Some(pid))
        .keys()
        .filter_map(|t| groups.of_thread.get(t).cloned())
        .collect();
    mine.sort();
    mine.dedup();
    if mine.is_empty() {
        return Err(format!("no thread of {pid} in {}", procfs::SCHED_DEBUG));
    }
    Ok(mine)
}

/// Where a benchmark's threads must be: `/` (the root group), `/NAME` (a cgroup) or `vm` (one
/// VM group); a problem when `groups` (see [`thread_groups`]) say otherwise.
pub fn placement_problem(groups: &[String], want: &str) -> Option<String> {
    let ok = match (groups, want) {
        ([g], "vm") => g.starts_with("/vmgroup-"),
        ([g], w) => g == w,
        _ => false,
    };
    let want = if want == "vm" { "one VM group" } else { want };
    (!ok).then(|| format!("threads in groups {groups:?}, expected {want}"))
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A one-vCPU VM of this process running `code` at `CODE_GPA`; its guest RAM stays mapped
/// as long as the VM exists.
struct TinyVm {
    vcpu: Vcpu,
    _mem: SharedMem,
    /// When `KVM_CREATE_VM` returned, ns since the epoch.
    created_ns: u64,
}

fn tiny_vm(code: &[u8], env: &Env) -> Result<TinyVm, String> {
    let mem = SharedMem::anonymous(TINY_MEM).map_err(err("guest RAM"))?;
    // The busy program's GDT, then `code` over the program.
    guest::build(&mem, guest::Kind::Busy);
    mem.write_bytes(CODE_GPA as usize, code);
    let kvm = Kvm::open().map_err(|e| e.to_string())?;
    let vm = kvm.create_vm().map_err(err("KVM_CREATE_VM"))?;
    let created_ns = env.ns();
    let _ = vm.set_tss_addr(0xfffb_d000);
    vm.set_memory(0, TINY_MEM as u64, mem.host_addr())
        .map_err(err("KVM_SET_USER_MEMORY_REGION"))?;
    let vcpu = vm.create_vcpu(0).map_err(err("KVM_CREATE_VCPU"))?;
    let cpuid = kvm
        .supported_cpuid()
        .map_err(err("KVM_GET_SUPPORTED_CPUID"))?;
    vcpu.set_cpuid(&cpuid).map_err(err("KVM_SET_CPUID2"))?;
    let s = vcpu.sregs().map_err(err("KVM_GET_SREGS"))?;
    vcpu.set_sregs(&crate::vmm::protected_mode_sregs(
        s,
        guest::idt_limit(false),
    ))
    .map_err(err("KVM_SET_SREGS"))?;
    let regs = Regs {
        rip: CODE_GPA,
        rflags: 2,
        rsp: STACKS_GPA + STACK_SIZE,
        ..Regs::default()
    };
    vcpu.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;
    Ok(TinyVm {
        vcpu,
        _mem: mem,
        created_ns,
    })
}

/// The exit [`HLT_LOOP`] makes, or why this one is not it.
fn expect_hlt(exit: Exit) -> Result<(), String> {
    match exit {
        Exit::Reason(EXIT_HLT, _) => Ok(()),
        other => Err(format!("KVM_RUN: {other:?}, expected HLT")),
    }
}

/// The exit [`OUT_LOOP`] makes, or why this one is not it.
fn expect_out(exit: Exit) -> Result<(), String> {
    match exit {
        Exit::IoOut {
            port: OUT_PORT,
            size: 1,
            ..
        } => Ok(()),
        other => Err(format!("KVM_RUN: {other:?}, expected out to {OUT_PORT:#x}")),
    }
}

/// Waits (up to `timeout`) for a child; kills it after that.
fn wait_timeout(p: &mut Proc, timeout: Duration) -> Result<ProcExit, String> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = p.try_wait().map_err(err("waitpid"))? {
            return Ok(st);
        }
        if t0.elapsed() > timeout {
            let _ = sys::kill(p.id(), libc::SIGKILL);
            let st = p.wait().map_err(err("waitpid"))?;
            return Err(format!(
                "pid {} killed after {} s ({st})",
                p.id(),
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One attempt of benchmark `bench`.
fn attempt(bench: &str, env: &Env) -> Result<Run, String> {
    match bench {
        "pipe" => procs::pipe(env),
        "fork" => procs::fork(env),
        "hackbench" => procs::hackbench(env),
        "wakeup" => vms::wakeup(env),
        "vmlife" => vms::vmlife(env),
        "forklat" => vms::forklat(env),
        "kvmexit" => vms::kvmexit(env),
        "rseq" => vms::rseq(env),
        other => Err(format!("unknown benchmark {other:?}")),
    }
}

/// Entry point of `vmfair-run overhead BENCH` (`bench` is one of [`BENCHES`]).
pub fn main(bench: &str, opts: &Opts) -> Result<i32, String> {
    let attempts: u32 = opts.num("attempts", 3)?;
    let env = Env {
        opts,
        loaded: Path::new("/sys/module/vmfair").exists(),
        seconds: opts.num("seconds", 2.0)?,
        group_timeout: Duration::from_millis(opts.num("group-timeout-ms", 5000)?),
        epoch: Instant::now(),
    };
    if !(0.1..=600.0).contains(&env.seconds) || attempts == 0 {
        return Err("--seconds must be 0.1..=600 and --attempts positive".into());
    }
    // Ordinary processes in the root group (autogroup would give each session a group).
    if Path::new(AUTOGROUP_SYSCTL).exists() {
        std::fs::write(AUTOGROUP_SYSCTL, "0").map_err(err(AUTOGROUP_SYSCTL))?;
    }
    let mut earlier = Vec::new();
    for n in 1..=attempts {
        let t0 = Instant::now();
        let mut run = attempt(bench, &env).unwrap_or_else(|e| Run {
            problems: vec![e],
            ..Run::default()
        });
        if run.problems.is_empty() && (run.metrics.is_empty() || run.samples == 0) {
            run.problems.push("no samples".into());
        }
        if let Some(m) = run.metrics.iter().find(|m| !m.value.is_finite()) {
            run.problems.push(format!("{} is not a number", m.name));
        }
        let valid = run.problems.is_empty();
        if valid || n == attempts {
            let out = Output {
                overhead: bench.to_string(),
                valid,
                problems: run.problems,
                attempts: n,
                earlier_problems: earlier,
                vmfair_loaded: env.loaded,
                grouped: run.grouped,
                groups: run.groups,
                kernel: procfs::kernel_release(),
                cpus: procfs::online_cpus().unwrap_or(0),
                elapsed_s: t0.elapsed().as_secs_f64(),
                samples: run.samples,
                metrics: run.metrics,
            };
            say!("overhead {bench}: {}", summary(&out));
            println!("{}", to_json_line(&out));
            return Ok(0);
        }
        say!(
            "overhead {bench}: attempt {n} invalid: {}",
            run.problems.join("; ")
        );
        earlier.extend(run.problems.iter().map(|p| format!("attempt {n}: {p}")));
    }
    unreachable!("the last attempt always returns")
}

/// The result as one line of JSON.
pub fn to_json_line(out: &Output) -> String {
    // Plain data: serializing to a string cannot fail (non-finite floats become null).
    serde_json::to_string(out).expect("result serializes")
}

/// One line for the console.
fn summary(out: &Output) -> String {
    let figs: Vec<String> = out
        .metrics
        .iter()
        .filter(|m| m.kind != Kind::Info)
        .map(|m| format!("{} {:.3} {}", m.name, m.value, m.unit))
        .collect();
    format!(
        "{}{}, {} samples{}",
        if out.valid { "" } else { "INVALID: " },
        figs.join(", "),
        out.samples,
        match out.grouped {
            Some(true) => ", grouped",
            Some(false) => ", NOT grouped",
            None => "",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let s = sorted(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(percentile(&s, 0.0), Some(1.0));
        assert_eq!(percentile(&s, 100.0), Some(4.0));
        assert_eq!(percentile(&s, 50.0), Some(2.5));
        let p99 = percentile(&s, 99.0).unwrap();
        assert!((p99 - 3.97).abs() < 1e-9, "{p99}");
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&s, 101.0), None);
    }

    #[test]
    fn guest_code() {
        // hlt; jmp back to the hlt (rel8 -3 from the end of the jmp).
        assert_eq!(HLT_LOOP[0], 0xf4);
        assert_eq!(HLT_LOOP[1..], [0xeb, (-3i8) as u8]);
        // mov dx, imm16 (operand-size prefix in 32-bit code) with OUT_PORT; out dx, al; jmp
        // back to the out.
        assert_eq!(OUT_LOOP[..2], [0x66, 0xba]);
        assert_eq!(u16::from_le_bytes([OUT_LOOP[2], OUT_LOOP[3]]), OUT_PORT);
        assert_eq!(OUT_LOOP[4..], [0xee, 0xeb, (-3i8) as u8]);
        assert!(CODE_GPA as usize + 16 < crate::layout::GDT_GPA as usize);
        assert!(STACKS_GPA + STACK_SIZE <= TINY_MEM as u64);
    }

    #[test]
    fn exits_are_checked() {
        assert!(expect_hlt(Exit::Reason(EXIT_HLT, "HLT".into())).is_ok());
        assert!(expect_hlt(Exit::Reason(8, "SHUTDOWN".into())).is_err());
        assert!(expect_hlt(Exit::Interrupted).is_err());
        let out = |port, size| Exit::IoOut {
            port,
            size,
            value: 0,
            desc: String::new(),
        };
        assert!(expect_out(out(OUT_PORT, 1)).is_ok());
        assert!(expect_out(out(OUT_PORT + 1, 1)).is_err());
        assert!(expect_out(out(OUT_PORT, 4)).is_err());
    }

    #[test]
    fn grouping_failures_are_problems() {
        let mut run = Run::default();
        run.grouped("a", true, Duration::from_millis(5));
        assert_eq!(run.grouped, Some(true));
        assert!(run.problems.is_empty());
        run.grouped("b", false, Duration::from_millis(5));
        run.grouped("c", true, Duration::from_millis(5));
        assert_eq!(run.grouped, Some(false), "one ungrouped VM spoils the run");
        assert_eq!(run.problems.len(), 1);
        assert!(run.problems[0].starts_with("b: "));
        assert_eq!(vm_dir(42), "/proc/sys/kernel/vmfair/vm/42");
    }

    #[test]
    fn placements() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(placement_problem(&g(&["/"]), "/"), None);
        assert_eq!(placement_problem(&g(&["/vmgroup-3"]), "vm"), None);
        assert_eq!(placement_problem(&g(&["/cg"]), "/cg"), None);
        assert!(placement_problem(&g(&["/vmgroup-3"]), "/").is_some());
        assert!(placement_problem(&g(&["/"]), "vm").is_some());
        assert!(placement_problem(&g(&["/vmgroup-3", "/"]), "vm").is_some());
        assert!(placement_problem(&g(&["/vmgroup-3", "/vmgroup-4"]), "vm").is_some());
        assert!(placement_problem(&g(&["/autogroup-1"]), "/").is_some());
        assert!(placement_problem(&[], "/").is_some());
    }

    #[test]
    fn json_line() {
        let mut run = Run::default();
        push_percentiles(&mut run, "lat", vec![3000.0, 1000.0, 2000.0], "us", 1e3);
        assert_eq!(run.metrics.len(), 2);
        assert_eq!(run.metrics[0].name, "lat_p50");
        assert_eq!(run.metrics[0].value, 2.0);
        let out = Output {
            overhead: "pipe".into(),
            valid: false,
            problems: vec!["a \"quoted\" problem".into()],
            attempts: 2,
            earlier_problems: vec![],
            vmfair_loaded: true,
            grouped: None,
            groups: vec![],
            kernel: "7.3.4".into(),
            cpus: 2,
            elapsed_s: 1.5,
            samples: 3,
            metrics: run.metrics,
        };
        let line = to_json_line(&out);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["overhead"], "pipe");
        assert_eq!(v["problems"][0], "a \"quoted\" problem");
        assert_eq!(v["grouped"], serde_json::Value::Null);
        assert_eq!(v["metrics"][1]["name"], "lat_p99");
        assert_eq!(v["metrics"][1]["kind"], "cost");
        assert_eq!(v["metrics"][1]["unit"], "us");
        assert!(summary(&out).starts_with("INVALID: lat_p50 2.000 us"));
    }
}
