// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run scenario FILE.toml`: the in-guest scenario runner.
//!
//! Sets up the policy and sysctls, starts one VMM process per VM instance and one process per
//! `[[host]]` instance (fork + exec of this binary), waits until every vCPU runs, warms up,
//! measures over the window, stops everything and prints the result.
//!
//! Validation (Documentation/vmfair/contract.rst): every VMM checks every exit and reports bad ones in its
//! status area; the runner also checks that counters only grow, that no vCPU burns CPU without
//! progress, that no process dies or hangs, and the accounting identity (CPU time of all tasks
//! plus idle time ≈ CPUs × window). Any failure marks the result invalid with a problem string.
//!
//! The runner is split by concern: `setup` (policy, sysctls, cgroups and the module tools),
//! `members` (the VMM and host processes it starts, their health, stopping them), `measure`
//! (the figures at the window's edges and the result groups), `window` (the measurement
//! window: health checks, time series and when events are due), `events` (carrying out an
//! `[[event]]`), `alloc` (a VM's reservation and limit, written and read back), `checks`
//! (the group checks after `modprobe` and `rmmod`) and `topcmp` (`top = true`: vmfair-top
//! against the runner's own figures).

mod alloc;
mod checks;
mod events;
mod measure;
mod members;
pub(crate) mod monitor;
mod setup;
mod topcmp;
mod window;

use crate::bench;
use crate::procfs::{self, TaskStat};
use crate::status::Status;
use crate::sys::{self, Proc, ProcExit};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use vmfair_scenario::{Check, EventRecord, GroupKind, Sample, Scenario, ScenarioResult};

use setup::setup_policy;
pub(crate) use setup::{cpu_controller, modprobe_argv, rmmod_argv, run_tool};

/// How long a process may take from spawn until all its threads run.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Health-check period.
const TICK: Duration = Duration::from_millis(250);
/// Accepted range of the accounting identity ratio `(tasks + idle) / (CPUs x window)`.
///
/// Below: time was lost (an L1 vCPU that stalled). Above, the bound is loose on purpose:
/// 7.3 measures idle time exactly only while the tick is stopped; a CPU that idles with the
/// tick running has each tick that lands in idle counted as a whole tick of idle
/// (`account_idle_time(TICK_NSEC)`), so with hundreds of short sleeps a second (sixteen
/// ticking dummy VMs) idle reads 10-25% high while task times stay exact. That excess is
/// bounded by the CPU the sleepers leave, so the upper bound only catches nonsense; the
/// tasks' own CPU time is checked against the capacity with [`TASKS_MAX`].
const ACCOUNTING_RANGE: (f64, f64) = (0.9, 1.3);
/// The CPU time of all tasks may exceed CPUs x window by this factor at most.
const TASKS_MAX: f64 = 1.02;
/// A vCPU that ran this long in the window must have made progress.
const STUCK_RUN_S: f64 = 0.5;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const AUTOGROUP_SYSCTL: &str = "/proc/sys/kernel/sched_autogroup_enabled";

fn log(msg: &str) {
    say!("{msg}");
}

/// Entry point of `vmfair-run scenario`.
pub fn main(path: &str) -> i32 {
    match run_file(path) {
        Ok(result) => {
            println!("{}", result.to_json_line());
            0
        }
        Err(e) => {
            say!("scenario: error: {e}");
            1
        }
    }
}

/// One started process: a VM instance or a host process.
struct Member {
    kind: GroupKind,
    name: String,
    instance: u32,
    label: String,
    vcpus: usize,
    busy_threads: usize,
    weight: u32,
    /// Reservation and limit in CPUs (two decimals, 0 = none): asked for, then as written.
    reservation: f64,
    limit: f64,
    nice: i32,
    ticking: bool,
    /// `load = "bench"`: the runner reads the suite's records.
    bench: bool,
    child: Proc,
    pid: u32,
    status: Status,
    state_path: String,
    exit: Option<ProcExit>,
    /// A problem about this member was already reported: don't pile on.
    failed: bool,
    last_work: Vec<u64>,
    messages_seen: usize,
    /// Kernel threads working for this VM outside its process (`kvm-pit/<pid>`).
    kthreads: Vec<u32>,
    /// The cpu cgroup the process was placed in (policy cgroup, or `cpu_max`).
    cgroup: Option<String>,
    /// Ticking loads: the readers of the vCPUs' tick rings.
    wake: Vec<crate::wakelat::Track>,
    /// Ticking loads: the ticks' wake-up latencies read since the window start, µs.
    wake_us: Vec<f64>,
}

/// Figures taken at one edge of the window.
struct Edge {
    at: Instant,
    idle_s: f64,
    tasks: HashMap<u32, TaskStat>,
    work: Vec<Vec<u64>>,
    io_work: Vec<u64>,
    kvm_exits: Vec<Option<u64>>,
    halt_poll_ns: Vec<Option<u64>>,
    switches: Vec<Option<(u64, u64)>>,
    /// Per member: wake-up counters (empty without schedstats).
    sched: Vec<std::collections::BTreeMap<String, u64>>,
    /// Per member: the bench snapshots of its vCPUs (None: not a bench VM, or a vCPU whose
    /// records could not be read consistently).
    bench: Vec<Option<Vec<bench::Snapshot>>>,
}

struct Run {
    dir: String,
    members: Vec<Member>,
    cgroups: Vec<String>,
    problems: Vec<String>,
    /// Per member: the time series (`sample_ms` > 0).
    series: Vec<Vec<Sample>>,
    events: Vec<EventRecord>,
    checks: Vec<Check>,
    /// Every thread's group just before the first `modprobe` event.
    groups_before_load: Option<procfs::SchedGroups>,
    /// The vmfair-top run of `top = true` while it runs.
    top: Option<topcmp::TopRun>,
}

fn run_file(path: &str) -> Result<ScenarioResult, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let scn = Scenario::from_toml_str(&text)?;
    if !scn.vm.is_empty() && !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let cpus = procfs::online_cpus()?;
    let kernel = procfs::kernel_release();
    sys::install_stop_handlers().map_err(|e| format!("sigaction: {e}"))?;
    log(&format!(
        "scenario {} policy {} on {kernel}, {cpus} CPUs: {} VM kinds, {} host kinds, \
         warm-up {} s, window {} s",
        scn.name,
        scn.policy,
        scn.vm.len(),
        scn.host.len(),
        scn.warmup_s,
        scn.duration_s
    ));
    let clocksource = procfs::clocksource();
    if !clocksource.starts_with("tsc") {
        log(&format!(
            "warning: clocksource is {clocksource:?}, not tsc: if the kernel could not calibrate \
             the TSC (no HPET/ACPI PM timer; boot with tsc_early_khz=), KVM cannot run vCPUs"
        ));
    }
    if !Path::new(procfs::KVM_DEBUGFS).exists() {
        // For the per-VM exit counts; without it `exits` is reported as null.
        let _ = sys::mount("debugfs", "/sys/kernel/debug");
    }
    setup_policy(&scn)?;
    log(&procfs::topology());

    let dir = format!("/tmp/vmfair-run.{}", std::process::id());
    fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut run = Run {
        dir,
        members: Vec::new(),
        cgroups: Vec::new(),
        problems: Vec::new(),
        series: Vec::new(),
        events: Vec::new(),
        checks: Vec::new(),
        groups_before_load: None,
        top: None,
    };
    if cpus != scn.guest_cpus {
        run.problems.push(format!(
            "guest has {cpus} CPUs online, the scenario asks for {}",
            scn.guest_cpus
        ));
    }
    let measured = run.measure(&scn);
    run.stop_all();
    run.cleanup();
    let (window_s, groups, accounting) = measured?;
    let valid = run.problems.is_empty();
    for p in &run.problems {
        log(&format!("problem: {p}"));
    }
    log(&format!(
        "done: {}",
        if valid { "valid" } else { "INVALID" }
    ));
    Ok(ScenarioResult {
        scenario: scn.name.clone(),
        policy: scn.policy,
        kernel,
        guest_cpus: cpus,
        duration_s: window_s,
        groups,
        valid,
        problems: run.problems,
        accounting: Some(accounting),
        events: run.events,
        checks: run.checks,
    })
}
