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

use crate::bench;
use crate::layout::*;
use crate::procfs::{self, TaskStat};
use crate::status::{map_state_file, Status};
use crate::sys::{self, ChildSetup, Proc, ProcExit};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmfair_scenario::{
    Accounting, Check, EventAction, EventRecord, EventSpec, GroupKind, GroupResult, Load, Policy,
    Sample, Scenario, ScenarioResult,
};

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
}

impl Member {
    /// Per-vCPU progress (loop iterations for busy, ticks for idle/bursty), or per thread for
    /// host processes.
    fn work(&self) -> Vec<u64> {
        match self.kind {
            GroupKind::Vm => (0..self.vcpus)
                .map(|i| {
                    let gpa = if self.ticking {
                        ticks_gpa(i)
                    } else {
                        counter_gpa(i)
                    };
                    self.status.guest_u64(gpa)
                })
                .collect(),
            GroupKind::Host => (0..self.busy_threads)
                .map(|j| self.status.busy(j))
                .collect(),
        }
    }

    fn io_work(&self) -> u64 {
        match self.kind {
            GroupKind::Vm => (0..self.busy_threads).map(|j| self.status.busy(j)).sum(),
            GroupKind::Host => 0,
        }
    }

    fn vcpu_tids(&self) -> Vec<u32> {
        (0..self.vcpus)
            .map(|i| self.status.vcpu(i, 0) as u32)
            .collect()
    }

    /// Whether the process and all its vCPUs report running.
    fn running(&self) -> bool {
        self.status.ready_magic()
            && self.status.state() == STATE_RUNNING
            && (0..self.vcpus).all(|i| self.status.vcpu(i, 1) == STATE_RUNNING)
    }
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
}

/// The thread ids of process `pid`.
fn thread_ids(pid: u32) -> Vec<u32> {
    procfs::tasks(Some(pid)).into_keys().collect()
}

fn write_file(path: &str, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))
}

/// `modprobe vmfair`, with modprobe found on PATH.
pub(crate) fn modprobe_argv() -> Vec<String> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/sbin:/bin:/usr/sbin:/usr/bin".into());
    let exe = path
        .split(':')
        .map(|d| format!("{d}/modprobe"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| "/sbin/modprobe".into());
    vec![exe, "vmfair".into()]
}

/// `rmmod vmfair`, with rmmod found on PATH.
pub(crate) fn rmmod_argv() -> Vec<String> {
    let mut argv = modprobe_argv();
    argv[0] = argv[0].replace("modprobe", "rmmod");
    argv
}

/// Runs a tool to completion; Err names it and how it ended.
pub(crate) fn run_tool(argv: &[String]) -> Result<(), String> {
    let st = sys::spawn(argv, ChildSetup::default())
        .and_then(|mut p| p.wait())
        .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {st}", argv.join(" ")))
    }
}

/// Mounts cgroup v2 if needed and enables the cpu controller for the root's children.
pub(crate) fn cpu_controller() -> Result<(), String> {
    let controllers = format!("{CGROUP_ROOT}/cgroup.controllers");
    if !Path::new(&controllers).exists() {
        sys::mount("cgroup2", CGROUP_ROOT)
            .map_err(|e| format!("mount cgroup2 on {CGROUP_ROOT}: {e}"))?;
    }
    let have = fs::read_to_string(&controllers).map_err(|e| format!("{controllers}: {e}"))?;
    if !have.split_whitespace().any(|c| c == "cpu") {
        return Err(format!(
            "cgroup v2 has no cpu controller (controllers: {:?})",
            have.trim()
        ));
    }
    write_file(&format!("{CGROUP_ROOT}/cgroup.subtree_control"), "+cpu")
}

fn setup_policy(scn: &Scenario) -> Result<(), String> {
    let autogroup = Path::new(AUTOGROUP_SYSCTL).exists();
    match scn.policy {
        Policy::Autogroup => {
            if !autogroup {
                return Err(format!(
                    "policy autogroup needs {AUTOGROUP_SYSCTL} (CONFIG_SCHED_AUTOGROUP)"
                ));
            }
            write_file(AUTOGROUP_SYSCTL, "1")?;
        }
        Policy::Stock | Policy::Cgroup | Policy::Vmfair => {
            if autogroup {
                write_file(AUTOGROUP_SYSCTL, "0")?;
            }
        }
    }
    if scn.policy == Policy::Cgroup || scn.vm.iter().any(|v| v.cpu_max.is_some()) {
        cpu_controller()?;
    }
    if scn.policy == Policy::Vmfair && !Path::new("/sys/module/vmfair").exists() {
        log("modprobe vmfair");
        run_tool(&modprobe_argv())?;
    }
    for (key, value) in &scn.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        write_file(&path, &value.to_string()).map_err(|e| format!("sysctl {key}: {e}"))?;
    }
    Ok(())
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

impl Run {
    fn spawn_all(&mut self, scn: &Scenario) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let exe = exe.to_string_lossy().into_owned();
        let new_session = scn.policy == Policy::Autogroup;
        for vm in &scn.vm {
            for i in 0..vm.count {
                let label = format!("vm {}#{i}", vm.name);
                let state_path = format!("{}/vm-{}-{i}.mem", self.dir, vm.name);
                let (_f, mem) = map_state_file(&state_path, GUEST_MEM_SIZE + STATUS_SIZE, false)
                    .map_err(|e| format!("{label}: state file: {e}"))?;
                let mut cgroup_procs = None;
                let mut cgroup = None;
                if scn.policy == Policy::Cgroup || vm.cpu_max.is_some() {
                    let cg = format!("{CGROUP_ROOT}/vmfair-{}-{i}", vm.name);
                    if !Path::new(&cg).exists() {
                        fs::create_dir(&cg).map_err(|e| format!("mkdir {cg}: {e}"))?;
                    }
                    self.cgroups.push(cg.clone());
                    if scn.policy == Policy::Cgroup {
                        write_file(&format!("{cg}/cpu.weight"), &vm.weight.to_string())?;
                    }
                    if let Some(max) = &vm.cpu_max {
                        write_file(&format!("{cg}/cpu.max"), max)?;
                    }
                    cgroup_procs = Some(format!("{cg}/cgroup.procs"));
                    cgroup = Some(cg);
                }
                let argv: Vec<String> = [
                    exe.as_str(),
                    "vmm",
                    "--name",
                    &format!("{}#{i}", vm.name),
                    "--vcpus",
                    &vm.vcpus.to_string(),
                    "--load",
                    vm.load.as_str(),
                    "--io-threads",
                    &vm.io_threads.to_string(),
                    "--nice",
                    &vm.nice.to_string(),
                    "--mem-file",
                    &state_path,
                    "--tick-hz",
                    &vm.tick_hz.to_string(),
                    "--burst-us",
                    &vm.burst_us.to_string(),
                ]
                .map(String::from)
                .into();
                let child = sys::spawn(
                    &argv,
                    ChildSetup {
                        new_session,
                        cgroup_procs,
                    },
                )
                .map_err(|e| format!("{label}: spawn: {e}"))?;
                let pid = child.id();
                self.members.push(Member {
                    kind: GroupKind::Vm,
                    name: vm.name.clone(),
                    instance: i,
                    label: format!("{label} (pid {pid})"),
                    vcpus: vm.vcpus as usize,
                    busy_threads: vm.io_threads as usize,
                    weight: vm.weight,
                    nice: vm.nice,
                    ticking: matches!(vm.load, Load::Idle | Load::Bursty),
                    bench: vm.load == Load::Bench,
                    child,
                    pid,
                    status: Status::new(Arc::new(mem), GUEST_MEM_SIZE),
                    state_path,
                    exit: None,
                    failed: false,
                    last_work: vec![0; vm.vcpus as usize],
                    messages_seen: 0,
                    kthreads: Vec::new(),
                    cgroup,
                });
            }
        }
        for h in &scn.host {
            for i in 0..h.count {
                let label = format!("host {}#{i}", h.name);
                let state_path = format!("{}/host-{}-{i}.mem", self.dir, h.name);
                let (_f, mem) = map_state_file(&state_path, STATUS_SIZE, false)
                    .map_err(|e| format!("{label}: state file: {e}"))?;
                let argv: Vec<String> = [
                    exe.as_str(),
                    "host",
                    "--name",
                    &format!("{}#{i}", h.name),
                    "--threads",
                    &h.threads.to_string(),
                    "--nice",
                    &h.nice.to_string(),
                    "--mem-file",
                    &state_path,
                ]
                .map(String::from)
                .into();
                let child = sys::spawn(
                    &argv,
                    ChildSetup {
                        new_session,
                        cgroup_procs: None,
                    },
                )
                .map_err(|e| format!("{label}: spawn: {e}"))?;
                let pid = child.id();
                self.members.push(Member {
                    kind: GroupKind::Host,
                    name: h.name.clone(),
                    instance: i,
                    label: format!("{label} (pid {pid})"),
                    vcpus: 0,
                    busy_threads: h.threads as usize,
                    weight: 0,
                    nice: h.nice,
                    ticking: false,
                    bench: false,
                    child,
                    pid,
                    status: Status::new(Arc::new(mem), 0),
                    state_path,
                    exit: None,
                    failed: false,
                    last_work: vec![0; h.threads as usize],
                    messages_seen: 0,
                    kthreads: Vec::new(),
                    cgroup: None,
                });
            }
        }
        Ok(())
    }

    /// Reaps exited members, collects bad-exit reports, checks that counters only grow.
    fn check(&mut self) {
        for m in &mut self.members {
            let msgs = m.status.messages();
            for msg in msgs.iter().skip(m.messages_seen) {
                self.problems.push(format!("{}: {msg}", m.label));
                m.failed = true;
            }
            m.messages_seen = msgs.len();
            if m.exit.is_none() {
                if let Ok(Some(st)) = m.child.try_wait() {
                    m.exit = Some(st);
                    if !m.failed {
                        self.problems
                            .push(format!("{} died early: {}", m.label, st));
                        m.failed = true;
                    }
                }
            }
            let work = m.work();
            for (i, (now, before)) in work.iter().zip(&m.last_work).enumerate() {
                if now < before {
                    self.problems.push(format!(
                        "{} {} {i}: counter went backwards from {before} to {now}",
                        m.label,
                        if m.kind == GroupKind::Vm {
                            "vcpu"
                        } else {
                            "thread"
                        }
                    ));
                    m.failed = true;
                }
            }
            m.last_work = work;
        }
    }

    /// Sleeps for `d`, checking health every TICK. Err if the runner itself is interrupted.
    fn sleep_checked(&mut self, d: Duration) -> Result<(), String> {
        let end = Instant::now() + d;
        loop {
            self.check();
            if sys::stop_requested() {
                return Err("interrupted by a signal".into());
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep(TICK.min(end - now));
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check();
            // A VMM that could not set its VM up means the scenario cannot run at all.
            for m in &self.members {
                if m.status.ready_magic() && m.status.state() == STATE_FAILED {
                    let msgs = m.status.messages().join("; ");
                    return Err(format!("{}: setup failed: {msgs}", m.label));
                }
            }
            if self
                .members
                .iter()
                .all(|m| m.failed || m.exit.is_some() || m.running())
            {
                return Ok(());
            }
            if sys::stop_requested() {
                return Err("interrupted by a signal".into());
            }
            if Instant::now() >= deadline {
                for m in &mut self.members {
                    if !m.failed && m.exit.is_none() && !m.running() {
                        self.problems.push(format!(
                            "{} not running after {} s; killed",
                            m.label,
                            READY_TIMEOUT.as_secs()
                        ));
                        m.failed = true;
                        let _ = sys::kill(m.pid, libc::SIGKILL);
                    }
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn edge(&self) -> Result<Edge, String> {
        let work = self.members.iter().map(Member::work).collect();
        let io_work = self.members.iter().map(Member::io_work).collect();
        let kvm_exits = self
            .members
            .iter()
            .map(|m| match m.kind {
                GroupKind::Vm => procfs::kvm_exits(m.pid),
                GroupKind::Host => None,
            })
            .collect();
        let halt_poll_ns = self
            .members
            .iter()
            .map(|m| match m.kind {
                GroupKind::Vm => procfs::kvm_halt_poll_ns(m.pid),
                GroupKind::Host => None,
            })
            .collect();
        let switches = self
            .members
            .iter()
            .map(|m| procfs::switches(m.pid))
            .collect();
        let schedstats = procfs::schedstats_on();
        let sched = self
            .members
            .iter()
            .map(|m| {
                if schedstats {
                    procfs::sched_counters(m.pid)
                } else {
                    Default::default()
                }
            })
            .collect();
        let bench = self
            .members
            .iter()
            .map(|m| {
                if !m.bench {
                    return None;
                }
                (0..m.vcpus)
                    .map(|i| bench::snapshot(&m.status, i))
                    .collect::<Option<Vec<_>>>()
            })
            .collect();
        let idle_s = procfs::idle_s()?;
        // Reading every task takes a while under emulation: date the figures at its middle.
        let t0 = Instant::now();
        let tasks = procfs::tasks(None);
        let at = t0 + t0.elapsed() / 2;
        Ok(Edge {
            at,
            idle_s,
            tasks,
            work,
            io_work,
            kvm_exits,
            halt_poll_ns,
            switches,
            sched,
            bench,
        })
    }

    fn apply_vmfair_weights(&mut self) {
        for m in &self.members {
            if m.kind != GroupKind::Vm || m.weight == 100 {
                continue;
            }
            let path = format!("/proc/sys/kernel/vmfair/vm/{}/weight", m.pid);
            if !Path::new(&path).exists() {
                self.problems.push(format!(
                    "{}: per-VM weight interface missing ({path}); weight {} not applied",
                    m.label, m.weight
                ));
            } else if let Err(e) = write_file(&path, &m.weight.to_string()) {
                self.problems.push(format!("{}: {e}", m.label));
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn measure(&mut self, scn: &Scenario) -> Result<(f64, Vec<GroupResult>, Accounting), String> {
        self.spawn_all(scn)?;
        log(&format!("started {} processes", self.members.len()));
        self.wait_ready()?;
        if scn.policy == Policy::Vmfair {
            self.apply_vmfair_weights();
        }
        for (tid, comm) in procfs::comms() {
            let owner = comm
                .strip_prefix("kvm-pit/")
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(m) = self.members.iter_mut().find(|m| Some(m.pid) == owner) {
                m.kthreads.push(tid);
            }
        }
        log(&format!("all running; warm-up {} s", scn.warmup_s));
        self.sleep_checked(Duration::from_secs_f64(scn.warmup_s))?;
        if scn.policy == Policy::Vmfair && Path::new(procfs::SCHED_DEBUG).exists() {
            // Every VM in a VM group of its own; hand-placed ones still in their cgroup.
            self.check_grouped();
        }
        let start = self.edge()?;
        log(&format!("window start; measuring {} s", scn.duration_s));
        self.window(scn, &start)?;
        let end = self.edge()?;
        if scn.sample_ms > 0 {
            self.sample(&start, false);
        }
        self.check();
        let window_s = (end.at - start.at).as_secs_f64();
        log(&format!("window end after {window_s:.3} s"));

        let cpus = procfs::online_cpus()?;
        let (all_run, _) = procfs::delta(&start.tasks, &end.tasks, |_, _| true);
        let tasks_cpu_s = all_run as f64 * 1e-9;
        let idle_s = end.idle_s - start.idle_s;
        let ratio = (tasks_cpu_s + idle_s) / (f64::from(cpus) * window_s);
        let accounting = Accounting {
            cpus,
            window_s,
            tasks_cpu_s,
            idle_s,
            ratio,
        };
        let capacity = f64::from(cpus) * window_s;
        if tasks_cpu_s > TASKS_MAX * capacity {
            self.problems.push(format!(
                "accounting identity off: tasks used {tasks_cpu_s:.3} s of CPU in \
                 {cpus} CPUs x {window_s:.3} s = {capacity:.3} s"
            ));
        }
        if !(ACCOUNTING_RANGE.0..=ACCOUNTING_RANGE.1).contains(&ratio) {
            self.problems.push(format!(
                "accounting identity off: tasks {tasks_cpu_s:.3} s + idle {idle_s:.3} s = \
                 {:.3} s, expected {cpus} CPUs x {window_s:.3} s = {:.3} s (ratio {ratio:.3})",
                tasks_cpu_s + idle_s,
                f64::from(cpus) * window_s
            ));
        }

        let mut groups = Vec::new();
        for (k, m) in self.members.iter().enumerate() {
            let pid = m.pid;
            let (run, wait) = procfs::delta(&start.tasks, &end.tasks, |_, t| t.pid == pid);
            let cpu_s = run as f64 * 1e-9;
            let mut work = 0u64;
            for (i, (s, e)) in start.work[k].iter().zip(&end.work[k]).enumerate() {
                if e < s {
                    // Reported by check(); don't add garbage.
                    continue;
                }
                work += e - s;
                if m.kind == GroupKind::Vm && !m.failed {
                    let tid = m.vcpu_tids()[i];
                    let (vrun, _) = procfs::delta(&start.tasks, &end.tasks, |t, _| t == tid);
                    let vrun_s = vrun as f64 * 1e-9;
                    if e == s && vrun_s > STUCK_RUN_S {
                        self.problems.push(format!(
                            "{} vcpu {i}: ran {vrun_s:.3} s in the window without progress",
                            m.label
                        ));
                    } else if e == s && m.ticking && window_s >= 1.0 {
                        self.problems.push(format!(
                            "{} vcpu {i}: no timer tick in {window_s:.3} s",
                            m.label
                        ));
                    }
                }
            }
            let (kthread_run, _) =
                procfs::delta(&start.tasks, &end.tasks, |t, _| m.kthreads.contains(&t));
            let threads = (m.vcpus + m.busy_threads) as u32;
            let max = f64::from(threads + 1).min(f64::from(cpus)) * window_s * 1.05;
            if cpu_s > max {
                self.problems.push(format!(
                    "{}: cpu_s {cpu_s:.3} is impossible for {threads} busy threads in \
                     {window_s:.3} s on {cpus} CPUs",
                    m.label
                ));
            }
            let (index, bench_scores) = if m.bench {
                match (&start.bench[k], &end.bench[k]) {
                    (Some(s), Some(e)) => match bench::scores(s, e) {
                        Ok(sc) => {
                            let scores: Vec<f64> = sc.iter().map(|x| x.score).collect();
                            (bench::index(&scores), sc)
                        }
                        Err(e) => {
                            self.problems.push(format!("{}: {e}", m.label));
                            (None, Vec::new())
                        }
                    },
                    _ => {
                        self.problems.push(format!(
                            "{}: bench records could not be read consistently",
                            m.label
                        ));
                        (None, Vec::new())
                    }
                }
            } else {
                (None, Vec::new())
            };
            let g = GroupResult {
                kind: m.kind,
                name: m.name.clone(),
                instance: m.instance,
                pid: m.pid,
                vcpus: m.vcpus as u32,
                cpu_s,
                work,
                index,
                wait_s: wait as f64 * 1e-9,
                threads,
                weight: m.weight,
                nice: m.nice,
                io_work: end.io_work[k].saturating_sub(start.io_work[k]),
                kthread_cpu_s: kthread_run as f64 * 1e-9,
                exits: match (start.kvm_exits[k], end.kvm_exits[k]) {
                    (Some(s), Some(e)) => Some(e.saturating_sub(s)),
                    _ => None,
                },
                halt_poll_s: match (start.halt_poll_ns[k], end.halt_poll_ns[k]) {
                    (Some(s), Some(e)) => Some(e.saturating_sub(s) as f64 * 1e-9),
                    _ => None,
                },
                voluntary_switches: match (start.switches[k], end.switches[k]) {
                    (Some(s), Some(e)) => Some(e.0.saturating_sub(s.0)),
                    _ => None,
                },
                involuntary_switches: match (start.switches[k], end.switches[k]) {
                    (Some(s), Some(e)) => Some(e.1.saturating_sub(s.1)),
                    _ => None,
                },
                sched: end.sched[k]
                    .iter()
                    .map(|(key, e)| {
                        let s = start.sched[k].get(key).copied().unwrap_or(0);
                        (key.clone(), e.saturating_sub(s))
                    })
                    .collect(),
                bench: bench_scores,
                series: self.series.get(k).cloned().unwrap_or_default(),
            };
            log(&format!(
                "{:<24} cpu {:7.3} s  wait {:7.3} s  kthreads {:6.3} s  work {:>11} ({:.1} M/s)  \
                 exits {}  preempted {}{}",
                m.label,
                g.cpu_s,
                g.wait_s,
                g.kthread_cpu_s,
                g.work,
                g.work as f64 / window_s / 1e6,
                g.exits.map_or("-".to_string(), |e| e.to_string()),
                g.involuntary_switches
                    .map_or("-".to_string(), |e| e.to_string()),
                g.index.map_or(String::new(), |i| format!("  index {i:.2}"))
            ));
            groups.push(g);
        }
        log(&format!(
            "accounting: tasks {tasks_cpu_s:.3} s + idle {idle_s:.3} s over {cpus} x \
             {window_s:.3} s: ratio {ratio:.4}"
        ));
        Ok((window_s, groups, accounting))
    }

    /// The measurement window: health checks every TICK, samples every `sample_ms`, and the
    /// `[[event]]` actions when they are due.
    fn window(&mut self, scn: &Scenario, start: &Edge) -> Result<(), String> {
        let length = Duration::from_secs_f64(scn.duration_s);
        let period = Duration::from_millis(u64::from(scn.sample_ms));
        self.series = vec![Vec::new(); self.members.len()];
        if scn.sample_ms > 0 {
            self.sample(start, true);
        }
        let mut next_sample = period;
        let mut pending = scn.event.iter().peekable();
        loop {
            self.check();
            if sys::stop_requested() {
                return Err("interrupted by a signal".into());
            }
            let now = start.at.elapsed();
            while let Some(ev) = pending.next_if(|e| Duration::from_secs_f64(e.at_s) <= now) {
                self.event(ev, start.at);
            }
            let now = start.at.elapsed();
            if now >= length {
                return Ok(());
            }
            if scn.sample_ms > 0 && now >= next_sample {
                self.sample(start, false);
                while next_sample <= now {
                    next_sample += period;
                }
            }
            let mut wake = length.min(now + TICK);
            if scn.sample_ms > 0 {
                wake = wake.min(next_sample);
            }
            if let Some(ev) = pending.peek() {
                wake = wake.min(Duration::from_secs_f64(ev.at_s));
            }
            std::thread::sleep(wake.saturating_sub(now));
        }
    }

    /// Appends one point to every member's time series.
    /// Each member's point is dated by when its tasks were read (`zero`: the window start,
    /// where every figure is 0 by definition).
    fn sample(&mut self, start: &Edge, zero: bool) {
        for (k, m) in self.members.iter().enumerate() {
            if zero {
                self.series[k].push(Sample {
                    t_s: 0.0,
                    cpu_s: 0.0,
                    work: 0,
                });
                continue;
            }
            let pid = m.pid;
            let t0 = Instant::now();
            let now = procfs::tasks(Some(pid));
            let t_s = (t0 + t0.elapsed() / 2)
                .saturating_duration_since(start.at)
                .as_secs_f64();
            let (run, _) = procfs::delta(
                &start
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.pid == pid)
                    .map(|(tid, t)| (*tid, *t))
                    .collect(),
                &now,
                |_, _| true,
            );
            let work: u64 = m
                .work()
                .iter()
                .zip(&start.work[k])
                .map(|(e, s)| e.saturating_sub(*s))
                .sum();
            self.series[k].push(Sample {
                t_s,
                cpu_s: run as f64 * 1e-9,
                work,
            });
        }
    }

    /// Carries out one `[[event]]` and records it.
    fn event(&mut self, ev: &EventSpec, window_start: Instant) {
        let at_s = window_start.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let (detail, result) = match ev.action {
            EventAction::Weight => {
                let name = ev.vm.clone().unwrap_or_default();
                let value = ev.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let mut done = Vec::new();
                let mut result = Ok(());
                for m in self.members.iter_mut().filter(|m| m.name == name) {
                    let path = match &m.cgroup {
                        Some(cg) if !Path::new("/sys/module/vmfair").exists() => {
                            format!("{cg}/cpu.weight")
                        }
                        _ => format!("/proc/sys/kernel/vmfair/vm/{}/weight", m.pid),
                    };
                    match write_file(&path, &value) {
                        Ok(()) => {
                            m.weight = value.parse().unwrap_or(m.weight);
                            done.push(path);
                        }
                        Err(e) => result = Err(e),
                    }
                }
                (format!("{value} -> {}", done.join(", ")), result)
            }
            EventAction::Sysctl => {
                let key = ev.key.clone().unwrap_or_default();
                let value = ev.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                (format!("{key} = {value}"), write_file(&path, &value))
            }
            EventAction::Modprobe => {
                if self.groups_before_load.is_none() {
                    self.groups_before_load =
                        self.groups_or_fail("groups-before-load", procfs::sched_groups());
                }
                let argv = modprobe_argv();
                let r = run_tool(&argv);
                if r.is_ok() {
                    self.check_grouped();
                }
                (argv.join(" "), r)
            }
            EventAction::Rmmod => {
                let argv = rmmod_argv();
                let r = run_tool(&argv);
                if r.is_ok() {
                    self.check_restored();
                }
                (argv.join(" "), r)
            }
        };
        let took_s = t0.elapsed().as_secs_f64();
        let ok = result.is_ok();
        let detail = match result {
            Ok(()) => detail,
            Err(e) => format!("{detail}: {e}"),
        };
        log(&format!(
            "event at {at_s:.3} s: {} {detail} ({}, {took_s:.3} s)",
            ev.action,
            if ok { "ok" } else { "FAILED" }
        ));
        self.events.push(EventRecord {
            at_s,
            action: ev.action,
            detail,
            ok,
            took_s,
        });
    }

    /// The groups read from sched/debug, or None with a failed check `name` saying why.
    fn groups_or_fail(
        &mut self,
        name: &str,
        groups: Result<procfs::SchedGroups, String>,
    ) -> Option<procfs::SchedGroups> {
        groups
            .map_err(|e| {
                self.checks.push(Check {
                    name: name.into(),
                    ok: false,
                    detail: e,
                })
            })
            .ok()
    }

    /// After `modprobe`: every thread of every VM placed by hand in a cgroup is still there,
    /// every other VM thread is in a VM group (`/vmgroup-<id>`), one group per VM.
    fn check_grouped(&mut self) {
        // A thread list read after the debug file may name a thread the file missed (created
        // in between, or a torn read): read the file again once, after the thread lists.
        let tids: Vec<Vec<u32>> = self.members.iter().map(|m| thread_ids(m.pid)).collect();
        let mut groups = procfs::sched_groups();
        if let Ok(g) = &groups {
            if tids.iter().flatten().any(|t| !g.of_thread.contains_key(t)) {
                groups = procfs::sched_groups();
            }
        }
        let Some(groups) = self.groups_or_fail("vms-grouped", groups) else {
            return;
        };
        let mut bad = Vec::new();
        let mut seen = 0;
        let mut vm_groups = std::collections::BTreeSet::new();
        for (m, tids) in self.members.iter().zip(&tids) {
            if m.kind != GroupKind::Vm {
                continue;
            }
            let mut paths = std::collections::BTreeSet::new();
            for &tid in tids {
                let Some(path) = groups.of_thread.get(&tid) else {
                    let raw: Vec<&String> = groups
                        .unparsed
                        .iter()
                        .filter(|l| l.contains(&format!(" {tid} ")))
                        .take(2)
                        .collect();
                    bad.push(format!(
                        "{} thread {tid} not in {} (unparsed: {raw:?}; {} unparsed lines)",
                        m.label,
                        procfs::SCHED_DEBUG,
                        groups.unparsed.len()
                    ));
                    continue;
                };
                seen += 1;
                paths.insert(path.clone());
                let want_cgroup = m.cgroup.as_ref().map(|cg| &cg[CGROUP_ROOT.len()..]);
                let ok = match want_cgroup {
                    Some(cg) => path == cg,
                    None => path.starts_with("/vmgroup-"),
                };
                if !ok {
                    bad.push(format!("{} thread {tid} in {path}", m.label));
                }
            }
            if m.cgroup.is_none() {
                if paths.len() != 1 {
                    bad.push(format!(
                        "{} threads in {} groups: {paths:?}",
                        m.label,
                        paths.len()
                    ));
                }
                vm_groups.extend(paths);
            }
        }
        let vms = self
            .members
            .iter()
            .filter(|m| m.kind == GroupKind::Vm && m.cgroup.is_none())
            .count();
        if vm_groups.len() != vms {
            bad.push(format!("{vms} VMs in {} VM groups", vm_groups.len()));
        }
        self.checks.push(Check {
            name: "vms-grouped".into(),
            ok: bad.is_empty() && seen > 0,
            detail: if bad.is_empty() {
                format!("{seen} VM threads in {} VM groups", vm_groups.len())
            } else {
                bad.join("; ")
            },
        });
    }

    /// After `rmmod`: every thread that existed before the first `modprobe` is back in the
    /// group it was in then, and the set of groups in use is the same (so the same count), with
    /// no VM group left anywhere.
    fn check_restored(&mut self) {
        let Some(before) = self.groups_before_load.clone() else {
            return;
        };
        let Some(after) = self.groups_or_fail("groups-restored", procfs::sched_groups()) else {
            return;
        };
        let mut moved = Vec::new();
        let mut compared = 0;
        let mut vm_threads = 0;
        for m in &self.members {
            for tid in thread_ids(m.pid) {
                if let (Some(b), Some(a)) = (before.of_thread.get(&tid), after.of_thread.get(&tid))
                {
                    compared += 1;
                    if m.kind == GroupKind::Vm {
                        vm_threads += 1;
                    }
                    if a != b {
                        moved.push(format!("{} thread {tid}: {b} -> {a}", m.label));
                    }
                }
            }
        }
        self.checks.push(Check {
            name: "groups-restored".into(),
            ok: moved.is_empty() && vm_threads > 0,
            detail: if moved.is_empty() {
                format!("{compared} threads ({vm_threads} of VMs) back in their groups")
            } else {
                moved.join("; ")
            },
        });
        let (pb, pa) = (before.paths(), after.paths());
        let left: Vec<&String> = after
            .of_thread
            .values()
            .chain(&after.cfs_rqs)
            .filter(|p| p.starts_with("/vmgroup-"))
            .collect();
        self.checks.push(Check {
            name: "group-count".into(),
            ok: pb == pa && left.is_empty(),
            detail: format!(
                "{} groups in use before load {pb:?}, {} after unload {pa:?}; VM groups left: {}",
                pb.len(),
                pa.len(),
                left.len()
            ),
        });
    }

    /// SIGTERM to every live member, SIGKILL to those that do not exit in time.
    fn stop_all(&mut self) {
        for m in &self.members {
            if m.exit.is_none() {
                let _ = sys::kill(m.pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            for m in &mut self.members {
                if m.exit.is_none() {
                    if let Ok(Some(st)) = m.child.try_wait() {
                        m.exit = Some(st);
                    }
                }
            }
            if self.members.iter().all(|m| m.exit.is_some()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for m in &mut self.members {
            match m.exit {
                None => {
                    self.problems.push(format!(
                        "{} did not stop within {} s; killed",
                        m.label,
                        STOP_TIMEOUT.as_secs()
                    ));
                    let _ = sys::kill(m.pid, libc::SIGKILL);
                    m.exit = m.child.wait().ok();
                    m.failed = true;
                }
                Some(st) if !st.success() && !m.failed => {
                    // Exit status 3 is a bad exit: its message comes from the status area.
                    if st != ProcExit::Code(crate::vmm::EXIT_BAD_EXIT) {
                        self.problems.push(format!("{} ended with {}", m.label, st));
                    }
                }
                Some(_) => {}
            }
        }
        // Collect bad exits reported while stopping.
        for m in &mut self.members {
            let msgs = m.status.messages();
            for msg in msgs.iter().skip(m.messages_seen) {
                self.problems.push(format!("{}: {msg}", m.label));
            }
            m.messages_seen = msgs.len();
            if m.status.bad_exits() > 0 && msgs.is_empty() {
                self.problems.push(format!(
                    "{}: {} bad exits (messages lost)",
                    m.label,
                    m.status.bad_exits()
                ));
            }
            if m.exit == Some(ProcExit::Code(crate::vmm::EXIT_BAD_EXIT))
                && m.status.bad_exits() == 0
            {
                self.problems
                    .push(format!("{} reported bad exits but recorded none", m.label));
            }
        }
    }

    fn cleanup(&mut self) {
        for m in &self.members {
            let _ = fs::remove_file(&m.state_path);
        }
        let _ = fs::remove_dir(&self.dir);
        for cg in &self.cgroups {
            if let Err(e) = fs::remove_dir(cg) {
                log(&format!("cannot remove {cg}: {e}"));
            }
        }
    }
}
