// SPDX-License-Identifier: GPL-2.0
//! The processes a scenario starts (one VMM per VM instance, one per host instance): spawning
//! them, their health while they run, stopping them.

use super::alloc;
use super::setup::write_file;
use super::{log, Member, Run, CGROUP_ROOT, READY_TIMEOUT, STOP_TIMEOUT, TICK};
use crate::layout::*;
use crate::status::{map_state_file, Status};
use crate::sys::{self, ChildSetup, ProcExit};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmfair_scenario::{
    cpus_hundredths, cpus_rounded, GroupKind, HostSpec, Load, Policy, Scenario, VmSpec,
};

impl Member {
    /// Per-vCPU progress (loop iterations for busy, ticks for idle/bursty), or per thread for
    /// host processes.
    pub(super) fn work(&self) -> Vec<u64> {
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

    /// Ticking VMs: reads the ticks' stamps since the last call into `wake_us`.
    pub(super) fn poll_wake(&mut self) {
        if self.kind != GroupKind::Vm || !self.ticking || self.failed {
            return;
        }
        self.wake.resize_with(self.vcpus, Default::default);
        let mut cycles = Vec::new();
        for (i, track) in self.wake.iter_mut().enumerate() {
            let khz = crate::wakelat::tsc_khz(&self.status, i);
            if khz == 0 {
                continue;
            }
            cycles.clear();
            crate::wakelat::poll(&self.status, i, track, &mut cycles);
            self.wake_us
                .extend(cycles.iter().map(|&c| crate::wakelat::cycles_us(c, khz)));
        }
    }

    /// Ticks without a wake-up figure (see `wakelat::Track::lost`), all vCPUs.
    pub(super) fn wake_lost(&self) -> u64 {
        self.wake.iter().map(|t| t.lost).sum()
    }

    pub(super) fn io_work(&self) -> u64 {
        match self.kind {
            GroupKind::Vm => (0..self.busy_threads).map(|j| self.status.busy(j)).sum(),
            GroupKind::Host => 0,
        }
    }

    pub(super) fn vcpu_tids(&self) -> Vec<u32> {
        (0..self.vcpus)
            .map(|i| self.status.vcpu(i, 0) as u32)
            .collect()
    }

    /// Whether the process and all its vCPUs report running.
    pub(super) fn running(&self) -> bool {
        self.status.ready_magic()
            && self.status.state() == STATE_RUNNING
            && (0..self.vcpus).all(|i| self.status.vcpu(i, 1) == STATE_RUNNING)
    }
}

impl Run {
    pub(super) fn spawn_all(&mut self, scn: &Scenario) -> Result<(), String> {
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
                    if scn.policy == Policy::Cgroup && cpus_hundredths(vm.limit) != 0 {
                        // The limit is the cgroup's cpu.max (validation: no cpu_max then).
                        let (path, value) =
                            alloc::target(Some(&cg), 0, alloc::Amount::Limit, vm.limit);
                        write_file(&path, &value)?;
                        let read = fs::read_to_string(&path).unwrap_or_default();
                        if !alloc::reads_back(&value, &read) {
                            self.problems.push(format!(
                                "{label}: wrote {value:?} to {path}, read back {:?}",
                                read.trim()
                            ));
                        }
                    }
                    cgroup_procs = Some(format!("{cg}/cgroup.procs"));
                    cgroup = Some(cg);
                }
                let argv = vmm_argv(&exe, vm, i, &state_path);
                let child = sys::spawn(
                    &argv,
                    ChildSetup {
                        new_session,
                        cgroup_procs,
                        stdout: None,
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
                    // desktop: its periodic threads count in the slots after the busy ones.
                    busy_threads: vm.io_threads as usize
                        + if vm.load == Load::Desktop {
                            crate::desktop::THREADS
                        } else {
                            0
                        },
                    weight: vm.weight,
                    reservation: cpus_rounded(vm.reservation),
                    limit: cpus_rounded(vm.limit),
                    nice: vm.nice,
                    ticking: matches!(vm.load, Load::Idle | Load::Bursty | Load::Desktop),
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
                    wake: Vec::new(),
                    wake_us: Vec::new(),
                });
            }
        }
        for h in &scn.host {
            for i in 0..h.count {
                let label = format!("host {}#{i}", h.name);
                let state_path = format!("{}/host-{}-{i}.mem", self.dir, h.name);
                let (_f, mem) = map_state_file(&state_path, STATUS_SIZE, false)
                    .map_err(|e| format!("{label}: state file: {e}"))?;
                let argv = host_argv(&exe, h, i, &state_path);
                let child = sys::spawn(
                    &argv,
                    ChildSetup {
                        new_session,
                        cgroup_procs: None,
                        stdout: None,
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
                    reservation: 0.0,
                    limit: 0.0,
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
                    wake: Vec::new(),
                    wake_us: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Reaps exited members, collects bad-exit reports, checks that counters only grow.
    pub(super) fn check(&mut self) {
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
            let what = if m.kind == GroupKind::Vm {
                "vcpu"
            } else {
                "thread"
            };
            let back = backwards(&m.label, what, &m.last_work, &work);
            m.failed |= !back.is_empty();
            self.problems.extend(back);
            m.last_work = work;
            m.poll_wake();
        }
    }

    /// Sleeps for `d`, checking health every TICK. Err if the runner itself is interrupted.
    pub(super) fn sleep_checked(&mut self, d: Duration) -> Result<(), String> {
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

    pub(super) fn wait_ready(&mut self) -> Result<(), String> {
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

    /// SIGTERM to every live member, SIGKILL to those that do not exit in time.
    pub(super) fn stop_all(&mut self) {
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

    pub(super) fn cleanup(&mut self) {
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

/// The command line of instance `i` of `vm`: `exe vmm ...` (see [`crate::vmm::OPTIONS`]).
fn vmm_argv(exe: &str, vm: &VmSpec, i: u32, state_path: &str) -> Vec<String> {
    let mut argv: Vec<String> = [
        exe,
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
        state_path,
        "--tick-hz",
        &vm.tick_hz.to_string(),
        "--burst-us",
        &vm.burst_us.to_string(),
    ]
    .map(String::from)
    .into();
    if vm.load == Load::Desktop {
        for (k, v) in [
            ("--io-hz", vm.io_hz),
            ("--io-us", vm.io_us),
            ("--refresh-hz", vm.refresh_hz),
            ("--refresh-us", vm.refresh_us),
        ] {
            argv.extend([k.to_string(), v.to_string()]);
        }
    }
    argv
}

/// The command line of instance `i` of `h`: `exe host ...` (see [`crate::host::OPTIONS`]).
fn host_argv(exe: &str, h: &HostSpec, i: u32, state_path: &str) -> Vec<String> {
    [
        exe,
        "host",
        "--name",
        &format!("{}#{i}", h.name),
        "--threads",
        &h.threads.to_string(),
        "--nice",
        &h.nice.to_string(),
        "--mem-file",
        state_path,
    ]
    .map(String::from)
    .into()
}

/// A problem for every counter of `now` below its value `before` (progress counters only
/// grow); `what` names the counters (`vcpu`, `thread`).
fn backwards(label: &str, what: &str, before: &[u64], now: &[u64]) -> Vec<String> {
    now.iter()
        .zip(before)
        .enumerate()
        .filter(|(_, (now, before))| now < before)
        .map(|(i, (now, before))| {
            format!("{label} {what} {i}: counter went backwards from {before} to {now}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
name = "t"
duration_s = 5
[[vm]]
name = "a"
count = 2
vcpus = 3
load = "bursty"
nice = -5
io_threads = 1
tick_hz = 100
burst_us = 200
[[host]]
name = "h"
threads = 4
nice = 10
"#;

    const DESKTOP: &str = r#"
name = "t"
duration_s = 5
[[vm]]
name = "d"
load = "desktop"
tick_hz = 25
io_us = 150
"#;

    #[test]
    fn child_command_lines_parse_as_their_subcommand() {
        let scn = Scenario::from_toml_str(SCENARIO).unwrap();
        let argv = vmm_argv("/bin/vmfair-run", &scn.vm[0], 1, "/tmp/d/vm-a-1.mem");
        assert_eq!(&argv[..2], ["/bin/vmfair-run", "vmm"]);
        let o = crate::Opts::parse(&argv[2..], crate::vmm::OPTIONS).unwrap();
        assert_eq!(o.get("name"), Some("a#1"));
        assert_eq!(o.num("vcpus", 0), Ok(3));
        assert_eq!(o.get("load"), Some("bursty"));
        assert_eq!(o.num("io-threads", 0), Ok(1));
        assert_eq!(o.num("nice", 0), Ok(-5));
        assert_eq!(o.get("mem-file"), Some("/tmp/d/vm-a-1.mem"));
        assert_eq!(o.num("tick-hz", 0), Ok(100));
        assert_eq!(o.num("burst-us", 0), Ok(200));
        // Only a desktop VM gets the desktop options.
        assert!(o.get("io-hz").is_none());
        let desk = Scenario::from_toml_str(DESKTOP).unwrap();
        let argv = vmm_argv("/bin/vmfair-run", &desk.vm[0], 0, "/tmp/d/vm-d-0.mem");
        let o = crate::Opts::parse(&argv[2..], crate::vmm::OPTIONS).unwrap();
        assert_eq!(o.get("load"), Some("desktop"));
        assert_eq!(o.num("tick-hz", 0), Ok(25));
        assert_eq!(o.num("io-hz", 0), Ok(20));
        assert_eq!(o.num("io-us", 0), Ok(150));
        assert_eq!(o.num("refresh-hz", 0), Ok(30));
        assert_eq!(o.num("refresh-us", 0), Ok(300));
        let d = crate::desktop::Desktop::from_opts(&o).unwrap();
        assert_eq!((d.io.us, d.refresh.hz), (150, 30));
        let argv = host_argv("/bin/vmfair-run", &scn.host[0], 0, "/tmp/d/host-h-0.mem");
        assert_eq!(&argv[..2], ["/bin/vmfair-run", "host"]);
        let o = crate::Opts::parse(&argv[2..], crate::host::OPTIONS).unwrap();
        assert_eq!(o.get("name"), Some("h#0"));
        assert_eq!(o.num("threads", 0), Ok(4));
        assert_eq!(o.num("nice", 0), Ok(10));
        assert_eq!(o.get("mem-file"), Some("/tmp/d/host-h-0.mem"));
    }

    #[test]
    fn counters_only_grow() {
        assert!(backwards("vm a#0", "vcpu", &[1, 2, 3], &[1, 5, 3]).is_empty());
        let p = backwards("vm a#0", "vcpu", &[10, 20, 30], &[11, 19, 29]);
        assert_eq!(
            p,
            [
                "vm a#0 vcpu 1: counter went backwards from 20 to 19",
                "vm a#0 vcpu 2: counter went backwards from 30 to 29"
            ]
        );
        // The first check compares against zeros; a shorter list compares what both have.
        assert!(backwards("host h#0", "thread", &[0, 0], &[0, 7]).is_empty());
        assert_eq!(backwards("host h#0", "thread", &[5], &[4, 0]).len(), 1);
    }
}
