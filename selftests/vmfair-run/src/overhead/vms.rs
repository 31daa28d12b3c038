// SPDX-License-Identifier: GPL-2.0
//! The benchmarks with VMs of their own or beside them: `wakeup`, `vmlife`, `forklat`,
//! `kvmexit`, `rseq`.

use super::procs::fork_once;
use super::*;

/// Busy one-vCPU VMs (`vmfair-run vmm --load busy`) running beside a benchmark.
struct BusyVms {
    dir: String,
    vms: Vec<(Proc, Status, u64)>,
    /// The cpu cgroups the VMMs were placed in, one each (`--vm-cgroups 1`), removed on stop.
    cgroups: Vec<String>,
}

impl BusyVms {
    /// Starts `n` VMMs and waits until their vCPUs run (and, vmfair loaded, are grouped). With
    /// `in_cgroups`, each VMM starts in a cpu cgroup of its own (`/vmfair-bg<i>`, libvirt style:
    /// one level below the root, as a VM group), which vmfair leaves it in.
    fn start(n: usize, in_cgroups: bool, env: &Env, run: &mut Run) -> Result<BusyVms, String> {
        let exe = std::env::current_exe().map_err(err("current_exe"))?;
        let dir = format!("/tmp/vmfair-overhead.{}", std::process::id());
        std::fs::create_dir_all(&dir).map_err(err(&dir))?;
        let mut me = BusyVms {
            dir: dir.clone(),
            vms: Vec::new(),
            cgroups: Vec::new(),
        };
        if in_cgroups {
            crate::runner::cpu_controller()?;
        }
        for i in 0..n {
            let path = format!("{dir}/bg{i}.mem");
            let (_f, mem) = map_state_file(&path, GUEST_MEM_SIZE + STATUS_SIZE, false)
                .map_err(err("state file"))?;
            let status = Status::new(Arc::new(mem), GUEST_MEM_SIZE);
            let name = format!("bg{i}");
            let exe = exe.to_string_lossy();
            let argv: Vec<String> = [
                &exe,
                "vmm",
                "--name",
                &name,
                "--vcpus",
                "1",
                "--load",
                "busy",
                "--mem-file",
                &path,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut setup = ChildSetup::default();
            if in_cgroups {
                let cg = format!("/sys/fs/cgroup/vmfair-bg{i}");
                let _ = std::fs::remove_dir(&cg);
                std::fs::create_dir(&cg).map_err(err(&cg))?;
                setup.cgroup_procs = Some(format!("{cg}/cgroup.procs"));
                me.cgroups.push(cg);
            }
            let p = sys::spawn(&argv, setup).map_err(err("spawn vmm"))?;
            me.vms.push((p, status, 0));
        }
        let t0 = Instant::now();
        for (p, st, _) in &mut me.vms {
            while !(st.ready_magic()
                && st.state() == STATE_RUNNING
                && st.vcpu(0, 1) == STATE_RUNNING)
            {
                if st.state() == STATE_FAILED || p.try_wait().ok().flatten().is_some() {
                    return Err(format!("busy VM {} failed: {:?}", p.id(), st.messages()));
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    return Err(format!("busy VM {} not running after 60 s", p.id()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for (p, st, start) in &mut me.vms {
            if env.loaded {
                let ok = wait_grouped(p.id(), env.group_timeout).is_some();
                run.grouped(&format!("busy VM {}", p.id()), ok, env.group_timeout);
            }
            *start = st.guest_u64(counter_gpa(0));
        }
        Ok(me)
    }

    /// Stops the VMMs; a VM that made no progress or saw a bad exit is a problem.
    fn stop(&mut self, run: &mut Run) {
        for (p, st, start) in &self.vms {
            if st.guest_u64(counter_gpa(0)) <= *start {
                run.problems
                    .push(format!("busy VM {} made no progress", p.id()));
            }
            let _ = sys::kill(p.id(), libc::SIGTERM);
        }
        for (mut p, st, _) in self.vms.drain(..) {
            match wait_timeout(&mut p, Duration::from_secs(15)) {
                Ok(ProcExit::Code(0)) => {}
                Ok(e) => run
                    .problems
                    .push(format!("busy VM {}: {e}: {:?}", p.id(), st.messages())),
                Err(e) => run.problems.push(format!("busy VM: {e}")),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for cg in self.cgroups.drain(..) {
            let _ = std::fs::remove_dir(&cg);
        }
    }
}

impl Drop for BusyVms {
    fn drop(&mut self) {
        // After an error in the middle of a run: no VMM may outlive it.
        let mut run = Run::default();
        self.stop(&mut run);
    }
}

/// A scheduler mode in debugfs, set for the lifetime of the value and restored on drop: the
/// group share mode for cgroups ([`SchedMode::PATH`], [`SchedMode::set`]) or the preemption
/// model ([`SchedMode::PREEMPT`]).
pub(super) struct SchedMode(&'static str, String);

impl SchedMode {
    const PATH: &'static str = "/sys/kernel/debug/sched/cgroup_mode";
    const PREEMPT: &'static str = "/sys/kernel/debug/sched/preempt";

    pub(super) fn set(mode: &str) -> Result<SchedMode, String> {
        Self::set_at(Self::PATH, mode)
    }

    fn set_at(path: &'static str, mode: &str) -> Result<SchedMode, String> {
        let old = std::fs::read_to_string(path).map_err(err(path))?;
        std::fs::write(path, mode).map_err(err(path))?;
        let now = std::fs::read_to_string(path).map_err(err(path))?;
        if Self::selected(&now) != Some(mode) {
            return Err(format!("{path}: wrote {mode}, reads {}", now.trim()));
        }
        let old = Self::selected(&old).unwrap_or(old.trim()).to_string();
        Ok(SchedMode(path, old))
    }

    /// The mode in force: the file lists every mode, that one in brackets
    /// (`up (smp) concur max tasks`).
    fn selected(text: &str) -> Option<&str> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix('(')?.strip_suffix(')'))
    }
}

impl Drop for SchedMode {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, &self.1);
    }
}

/// A scheduler feature (debugfs `sched/features`) turned on (`NAME`) or off (`NO_NAME`) for the
/// lifetime of the value, and turned back on drop.
struct SchedFeat(String);

impl SchedFeat {
    const PATH: &'static str = "/sys/kernel/debug/sched/features";

    fn set(feat: &str) -> Result<SchedFeat, String> {
        let name = feat.strip_prefix("NO_").unwrap_or(feat);
        let old = std::fs::read_to_string(Self::PATH).map_err(err(Self::PATH))?;
        let was_on = old.split_whitespace().any(|w| w == name);
        if !was_on && !old.split_whitespace().any(|w| w == format!("NO_{name}")) {
            return Err(format!("{}: no feature {name}", Self::PATH));
        }
        std::fs::write(Self::PATH, feat).map_err(err(Self::PATH))?;
        let back = if was_on {
            name.to_string()
        } else {
            format!("NO_{name}")
        };
        Ok(SchedFeat(back))
    }
}

impl Drop for SchedFeat {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// `kernel.vmfair.precision` set for the lifetime of the value, restored on drop.
struct Precision(String);

impl Precision {
    const PATH: &'static str = "/proc/sys/kernel/vmfair/precision";

    fn set(v: &str) -> Result<Precision, String> {
        let old = std::fs::read_to_string(Self::PATH).map_err(err(Self::PATH))?;
        std::fs::write(Self::PATH, v).map_err(err(Self::PATH))?;
        Ok(Precision(old.trim().to_string()))
    }
}

impl Drop for Precision {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// `wakeup`: wake-up latency of worker threads beside busy VMs.
pub(super) fn wakeup(env: &Env) -> Result<Run, String> {
    let workers: usize = env.opts.num("workers", 2)?;
    let sleep = Duration::from_micros(env.opts.num("sleep-us", 1000)?);
    let spin = Duration::from_micros(env.opts.num("spin-us", 50)?);
    if !(1..=16).contains(&workers) {
        return Err("--workers must be 1..=16".into());
    }
    let mut run = Run::default();
    // VMMs first: they are started by fork + exec, which wants a single-threaded caller.
    let in_cgroups = env.opts.num::<u32>("vm-cgroups", 0)? != 0;
    // `--cgroup-mode M`: the group share computation of cgroups (debugfs), for this run only.
    let _mode = match env.opts.get("cgroup-mode") {
        Some(m) => Some(SchedMode::set(m)?),
        None => None,
    };
    // `--preempt M`: the preemption model (debugfs sched/preempt), for this run only.
    let _preempt = match env.opts.get("preempt") {
        Some(m) => Some(SchedMode::set_at(SchedMode::PREEMPT, m)?),
        None => None,
    };
    // `--sched-feat [NO_]NAME`: a scheduler feature for this run only.
    let _feat = match env.opts.get("sched-feat") {
        Some(f) => Some(SchedFeat::set(f)?),
        None => None,
    };
    // `--precision 0|1`: kernel.vmfair.precision for this run, when the module is loaded.
    let _precision = match env.opts.get("precision") {
        Some(v) if env.loaded => Some(Precision::set(v)?),
        _ => None,
    };
    let mut vms = BusyVms::start(env.opts.num("vms", 2)?, in_cgroups, env, &mut run)?;
    let epoch = env.epoch;
    let mut wakers = Vec::new();
    let mut threads = Vec::new();
    for i in 0..workers {
        let (r, w) = std::io::pipe().map_err(err("pipe"))?;
        // The waker's stamp and its CPU; the worker compares its own CPU with it.
        let stamp = Arc::new((AtomicU64::new(0), AtomicI32::new(-1)));
        let st = stamp.clone();
        let h = std::thread::Builder::new()
            .name(format!("worker{i}"))
            .spawn(move || {
                let (mut b, mut lat) = ([0u8; 1], Vec::new());
                while matches!((&r).read(&mut b), Ok(1)) {
                    let now = epoch.elapsed().as_nanos() as u64;
                    let same = sys::current_cpu() == st.1.load(Ordering::Acquire);
                    lat.push((
                        now.saturating_sub(st.0.load(Ordering::Acquire)) as f64,
                        same,
                    ));
                    let t = Instant::now();
                    while t.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                }
                lat
            })
            .map_err(err("spawn"))?;
        wakers.push((w, stamp));
        threads.push(h);
    }
    let end = env.deadline();
    let mut i = 0;
    while Instant::now() < end {
        let (w, stamp) = &wakers[i % workers];
        stamp.1.store(sys::current_cpu(), Ordering::Release);
        stamp.0.store(env.ns(), Ordering::Release);
        (&*w).write_all(&[1]).map_err(err("pipe write"))?;
        i += 1;
        std::thread::sleep(sleep);
    }
    drop(wakers);
    let mut lat = Vec::new();
    for h in threads {
        lat.extend(h.join().map_err(|_| "a worker panicked".to_string())?);
    }
    vms.stop(&mut run);
    run.samples = lat.len() as u64;
    push_split(&mut run, &lat);
    push_percentiles(
        &mut run,
        "wakeup",
        lat.into_iter().map(|s| s.0).collect(),
        "us",
        1e3,
    );
    Ok(run)
}

/// `wakeup`'s two classes of wake-ups: the worker ran on the CPU its waker had stamped from
/// (local: it waits for the waker to sleep) or on the other one (remote: it waits for the task
/// running there). `wakeup_local_pct` is the share of local wake-ups (context), and
/// `wakeup_local_p50`, `wakeup_remote_p50` the p50 of each class (costs). The pooled p50 lies
/// where the classes meet, so it moves with the share. Samples are (ns, local).
fn push_split(run: &mut Run, lat: &[(f64, bool)]) {
    if lat.is_empty() {
        return;
    }
    let local: Vec<f64> = lat.iter().filter(|s| s.1).map(|s| s.0).collect();
    let remote: Vec<f64> = lat.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let pct = 100.0 * local.len() as f64 / lat.len() as f64;
    run.push("wakeup_local_pct", "%", Kind::Info, pct);
    for (name, xs) in [("wakeup_local_p50", local), ("wakeup_remote_p50", remote)] {
        if let Some(v) = percentile(&sorted(xs), 50.0) {
            run.push(name, "us", Kind::Cost, v / 1e3);
        }
    }
}

/// Times of one VM life cycle, ns since the epoch.
#[derive(Debug)]
struct Cycle {
    start: u64,
    created: u64,
    ran: u64,
    grouped: Option<u64>,
    end: u64,
}

/// One VM life cycle in a new process: fork, create the VM and its vCPU, run it to its first
/// exit, wait until grouped (vmfair loaded), let the child exit, reap it.
fn vm_cycle(env: &Env) -> Result<Cycle, String> {
    let (from_child, to_parent) = std::io::pipe().map_err(err("pipe"))?;
    let (from_parent, to_child) = std::io::pipe().map_err(err("pipe"))?;
    let start = env.ns();
    let mut child = sys::fork_call(|| {
        // Message: created, ran (u64 each), status (0 ok, 1 setup error, 3 bad exit).
        let mut msg = [0u8; 17];
        let vm = tiny_vm(&HLT_LOOP, env);
        let code = match &vm {
            Err(e) => {
                say!("overhead vmlife: {e}");
                1
            }
            Ok(vm) => {
                msg[..8].copy_from_slice(&vm.created_ns.to_le_bytes());
                let exit = vm.vcpu.run();
                msg[8..16].copy_from_slice(&env.ns().to_le_bytes());
                match expect_hlt(exit) {
                    Ok(()) => 0,
                    Err(e) => {
                        say!("overhead vmlife: {e}");
                        3
                    }
                }
            }
        };
        msg[16] = code as u8;
        let mut b = [0u8; 1];
        if (&to_parent).write_all(&msg).is_err() || (&from_parent).read(&mut b).is_err() {
            return 1;
        }
        code
    })
    .map_err(err("fork"))?;
    // Only the child writes this pipe now: its end means the child died.
    drop(to_parent);
    let mut msg = [0u8; 17];
    let got = (&from_child).read_exact(&mut msg);
    let u64_at = |o: usize| u64::from_le_bytes(msg[o..o + 8].try_into().unwrap());
    let (created, ran) = (u64_at(0), u64_at(8));
    let grouped = if got.is_ok() && msg[16] == 0 && env.loaded {
        wait_grouped(child.id(), env.group_timeout).map(|_| env.ns())
    } else {
        None
    };
    let _ = (&to_child).write_all(&[1]);
    let st = child.wait().map_err(err("waitpid"))?;
    let end = env.ns();
    got.map_err(|e| format!("VM child {}: {e} ({st})", child.id()))?;
    if st != ProcExit::Code(0) {
        return Err(format!("VM child {}: {st}", child.id()));
    }
    if env.loaded && grouped.is_none() {
        return Err(format!(
            "VM child {}: not grouped within {} ms",
            child.id(),
            env.group_timeout.as_millis()
        ));
    }
    Ok(Cycle {
        start,
        created,
        ran,
        grouped,
        end,
    })
}

/// `vmlife`: VM life cycles, one process per VM.
pub(super) fn vmlife(env: &Env) -> Result<Run, String> {
    let mut run = Run::default();
    let (mut cycles, t0, end) = (Vec::new(), Instant::now(), env.deadline());
    while Instant::now() < end || cycles.len() < 3 {
        match vm_cycle(env) {
            Ok(c) => cycles.push(c),
            Err(e) => {
                run.problems.push(e);
                break;
            }
        }
    }
    let total = t0.elapsed().as_secs_f64();
    if env.loaded {
        run.grouped = Some(run.problems.is_empty());
    }
    run.samples = cycles.len() as u64;
    let span = |f: &dyn Fn(&Cycle) -> Option<(u64, u64)>| -> Vec<f64> {
        cycles
            .iter()
            .filter_map(f)
            .map(|(a, b)| b.saturating_sub(a) as f64)
            .collect()
    };
    push_percentiles(
        &mut run,
        "cycle",
        span(&|c| Some((c.start, c.end))),
        "ms",
        1e6,
    );
    run.push("vms_per_s", "1/s", Kind::Rate, cycles.len() as f64 / total);
    let to_run = sorted(span(&|c| Some((c.created, c.ran))));
    if let Some(v) = percentile(&to_run, 50.0) {
        run.push("create_to_run_p50", "ms", Kind::Info, v / 1e6);
    }
    let gap = sorted(span(&|c| c.grouped.map(|g| (c.created, g))));
    for (p, tag) in [(50.0, "p50"), (99.0, "p99")] {
        if let Some(v) = percentile(&gap, p) {
            run.push(
                &format!("create_to_grouped_{tag}"),
                "ms",
                Kind::Info,
                v / 1e6,
            );
        }
    }
    Ok(run)
}

/// `forklat`: fork latency of this process while a child process cycles VMs.
pub(super) fn forklat(env: &Env) -> Result<Run, String> {
    let (count_r, count_w) = std::io::pipe().map_err(err("pipe"))?;
    let mut cycler = sys::fork_call(|| {
        if sys::install_stop_handlers().is_err() {
            return 1;
        }
        // One byte after the first VM, the count at the end; nothing after a failure.
        let mut n = 0u64;
        while !sys::stop_requested() {
            if let Err(e) = vm_cycle(env) {
                say!("overhead forklat: {e}");
                return 3;
            }
            n += 1;
            if n == 1 && (&count_w).write_all(&[1]).is_err() {
                return 1;
            }
        }
        match (&count_w).write_all(&n.to_le_bytes()) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    })
    .map_err(err("fork"))?;
    drop(count_w);
    let mut run = Run::default();
    // Measure only once the first VM has come and gone.
    let mut first = [0u8; 1];
    let started = (&count_r).read_exact(&mut first);
    let (mut samples, t0) = (Vec::new(), Instant::now());
    if started.is_ok() {
        let end = env.deadline();
        while Instant::now() < end {
            match fork_once() {
                Ok(ns) => samples.push(ns),
                Err(e) => {
                    run.problems.push(e);
                    break;
                }
            }
        }
    }
    let total = t0.elapsed().as_secs_f64();
    let _ = sys::kill(cycler.id(), libc::SIGTERM);
    let mut count = [0u8; 8];
    let counted = (&count_r).read_exact(&mut count);
    match wait_timeout(&mut cycler, Duration::from_secs(30))? {
        ProcExit::Code(0) if started.is_ok() && counted.is_ok() => {}
        st => run.problems.push(format!(
            "VM cycler: {st} (first VM cycled: {}, count sent: {})",
            started.is_ok(),
            counted.is_ok()
        )),
    }
    let vms = u64::from_le_bytes(count);
    run.samples = samples.len() as u64;
    push_percentiles(&mut run, "fork", samples, "us", 1e3);
    run.push("bg_vms_per_s", "1/s", Kind::Info, vms as f64 / total);
    Ok(run)
}

/// `kvmexit`: `KVM_RUN` round trips of a VM whose guest loops on `out`.
pub(super) fn kvmexit(env: &Env) -> Result<Run, String> {
    const BATCH: u32 = 100;
    let mut run = Run::default();
    let vm = tiny_vm(&OUT_LOOP, env)?;
    expect_out(vm.vcpu.run())?;
    if env.loaded {
        let ok = wait_grouped(std::process::id(), env.group_timeout).is_some();
        run.grouped("this process", ok, env.group_timeout);
    }
    for _ in 0..BATCH {
        expect_out(vm.vcpu.run())?;
    }
    let (mut batches, end) = (Vec::new(), env.deadline());
    while Instant::now() < end {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            expect_out(vm.vcpu.run())?;
        }
        batches.push(t0.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    run.samples = batches.len() as u64 * u64::from(BATCH);
    if let Some(v) = percentile(&sorted(batches), 50.0) {
        run.push("ns_per_exit", "ns", Kind::Cost, v);
    }
    Ok(run)
}

/// `rseq`: the kernel's `rseq_test`, wall time.
pub(super) fn rseq(env: &Env) -> Result<Run, String> {
    let path = env.opts.get("path").unwrap_or("/bin/rseq_test").to_string();
    let mut run = Run::default();
    let mut setup = ChildSetup::default();
    let cgroup = env
        .opts
        .get("cgroup")
        .map(|n| format!("/sys/fs/cgroup/{n}"));
    if let Some(cg) = &cgroup {
        crate::runner::cpu_controller()?;
        let _ = std::fs::remove_dir(cg);
        std::fs::create_dir(cg).map_err(err(cg))?;
        setup.cgroup_procs = Some(format!("{cg}/cgroup.procs"));
    }
    let t0 = Instant::now();
    // -u: no "enough KVM_RUNs per migration" sanity check, which a slow (emulated) host fails;
    // the test proper (rseq and the scheduler agree on the CPU) still runs.
    let result = sys::spawn(&[path.clone(), "-u".into()], setup).map_err(err(&path));
    let mut p = match result {
        Ok(p) => p,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = std::fs::remove_dir(cg);
            }
            return Err(e);
        }
    };
    let timeout = Duration::from_secs(300);
    let want = match (&cgroup, env.loaded) {
        (Some(cg), _) => cg["/sys/fs/cgroup".len()..].to_string(),
        (None, true) => "vm".into(),
        (None, false) => "/".into(),
    };
    // The placement is read once, 200 ms after the test's second thread (the migration
    // thread, started after the VM) exists and, vmfair loaded, the VM is registered.
    let (mut seen, mut ready_at, mut placed) = (false, None, None);
    let st = loop {
        if let Some(st) = p.try_wait().map_err(err("waitpid"))? {
            break Ok(st);
        }
        seen = seen || (env.loaded && Path::new(&vm_dir(p.id())).exists());
        if ready_at.is_none() && procfs::tasks(Some(p.id())).len() >= 2 && (seen || !env.loaded) {
            ready_at = Some(Instant::now());
        }
        if placed.is_none() && ready_at.is_some_and(|t| t.elapsed() > Duration::from_millis(200)) {
            placed = Some(thread_groups(p.id()));
        }
        if t0.elapsed() > timeout {
            break wait_timeout(&mut p, Duration::ZERO);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = t0.elapsed().as_secs_f64();
    if let Some(cg) = &cgroup {
        let _ = std::fs::remove_dir(cg);
    }
    match st? {
        ProcExit::Code(0) => {}
        ProcExit::Code(KSFT_SKIP) => run.problems.push(format!("{path} skipped itself")),
        st => run.problems.push(format!("{path}: {st}")),
    }
    if env.loaded {
        if cgroup.is_none() {
            run.grouped("rseq_test", seen, env.group_timeout);
        } else {
            run.grouped = Some(seen);
        }
    }
    match placed {
        Some(Ok(groups)) => {
            run.problems.extend(placement_problem(&groups, &want));
            run.groups = groups;
        }
        Some(Err(e)) => run.problems.push(e),
        None => run.problems.push(format!("{path}: placement never read")),
    }
    run.samples = 1;
    run.push("seconds", "s", Kind::Cost, secs);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mode_in_force() {
        assert_eq!(
            SchedMode::selected("up (smp) concur max tasks\n"),
            Some("smp")
        );
        assert_eq!(
            SchedMode::selected("up smp (concur) max tasks"),
            Some("concur")
        );
        assert_eq!(SchedMode::selected("up smp concur max tasks"), None);
        // The preemption model file has the same form.
        assert_eq!(SchedMode::selected("full (lazy) \n"), Some("lazy"));
    }

    #[test]
    fn wakeups_split_by_cpu() {
        let mut run = Run::default();
        let lat = [
            (25e3, true),
            (26e3, true),
            (300e3, false),
            (40e3, false),
            (500e3, false),
        ];
        push_split(&mut run, &lat);
        let get = |n: &str| run.metrics.iter().find(|m| m.name == n).map(|m| m.value);
        assert_eq!(get("wakeup_local_pct"), Some(40.0));
        assert_eq!(get("wakeup_local_p50"), Some(25.5));
        assert_eq!(get("wakeup_remote_p50"), Some(300.0));
        // All local: no remote figure, and nothing at all for no samples.
        let mut run = Run::default();
        push_split(&mut run, &[(1e3, true)]);
        assert_eq!(run.metrics.len(), 2);
        let mut run = Run::default();
        push_split(&mut run, &[]);
        assert!(run.metrics.is_empty());
    }
}
