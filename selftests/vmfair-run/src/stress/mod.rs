// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run stress [--minutes M | --seconds S] [--seed X] [--fail-percent P]`: vmfair under
//! concurrent load on a debug kernel, then checks that nothing is left behind. Prints one line
//! of JSON on stdout (counts, reports, leaks, problems), progress on stderr every 30 s; exits 0
//! when every check passed, 1 otherwise.
//!
//! Workloads, all at once, each in threads of this process until the time is up
//! (`load.rs`): VMMs started and ended (`vmm.rs`: VM churn, vCPU threads that exit and
//! `KVM_RUN` from new threads, worker-thread churn, fork storms, `setsid()`, `exec()` from a
//! non-leader thread), some killed with SIGKILL at a given phase (while the VM is created,
//! right after `KVM_CREATE_VM` while vmfair attaches it, while running); a VMM moved into a cpu
//! cgroup and back; `kernel.sched_autogroup_enabled` toggled; `modprobe`/`rmmod vmfair` in a
//! loop; every knob and per-VM weight written with good and bad values; failslab injecting
//! allocation failures into call chains through the vmfair module's text. A reader of
//! `/dev/kmsg` (`kmsg.rs`) counts kernel reports as they come. Afterwards (`checks.rs`): the
//! last `rmmod`, no VM left, kmemleak scans, slab objects and every thread's group back where
//! they were.

mod checks;
mod kmsg;
mod load;
mod os;
mod vmm;

use crate::status::map_state_file;
use crate::sys::SharedMem;
use crate::Opts;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `vmfair-run stress` (parent and children).
pub const OPTIONS: &[&str] = &[
    "minutes",
    "seconds",
    "seed",
    "fail-percent",
    "role",
    "counters",
    "slot",
];

/// Counters shared by the parent and every child, in the counters file.
#[derive(Clone, Copy, Debug)]
pub enum C {
    VmsCreated,
    VcpusCreated,
    VcpuThreadExits,
    NewThreadRuns,
    WorkerThreads,
    Forks,
    Setsids,
    Execs,
    AfterExec,
    StaleAfterExec,
    BadExits,
    ChildErrors,
    ChurnVms,
}

const ALL_COUNTERS: [C; 13] = [
    C::VmsCreated,
    C::VcpusCreated,
    C::VcpuThreadExits,
    C::NewThreadRuns,
    C::WorkerThreads,
    C::Forks,
    C::Setsids,
    C::Execs,
    C::AfterExec,
    C::StaleAfterExec,
    C::BadExits,
    C::ChildErrors,
    C::ChurnVms,
];

impl C {
    fn name(self) -> &'static str {
        match self {
            C::VmsCreated => "vms_created",
            C::VcpusCreated => "vcpus_created",
            C::VcpuThreadExits => "vcpu_thread_exits",
            C::NewThreadRuns => "kvm_run_from_new_thread",
            C::WorkerThreads => "worker_threads",
            C::Forks => "forks",
            C::Setsids => "setsids",
            C::Execs => "execs_from_thread",
            C::AfterExec => "after_exec",
            C::StaleAfterExec => "stale_group_after_exec",
            C::BadExits => "bad_exits",
            C::ChildErrors => "child_errors",
            C::ChurnVms => "churn_vms",
        }
    }
}

/// Phases a VMM writes into its slot (the parent kills at one of them).
pub const PH_STARTED: u64 = 1;
pub const PH_CREATED: u64 = 2;
pub const PH_VCPUS: u64 = 3;
pub const PH_RUNNING: u64 = 4;
pub const PH_EXITING: u64 = 5;

/// Counters file layout: 64 counters, then [`SLOTS`] slots of 16 bytes (phase, pid).
const HEADER: usize = 512;
pub const SLOTS: usize = 256;
const FILE_LEN: usize = HEADER + SLOTS * 16;

/// The mapped counters file.
pub struct Counters {
    mem: SharedMem,
    path: String,
}

impl Counters {
    pub fn open(path: &str) -> Result<Arc<Counters>, String> {
        let (_f, mem) =
            map_state_file(path, FILE_LEN, true).map_err(|e| format!("counters file: {e}"))?;
        Ok(Arc::new(Counters {
            mem,
            path: path.to_string(),
        }))
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn add(&self, c: C, n: u64) {
        self.mem
            .atomic_u64(8 * c as usize)
            .fetch_add(n, Ordering::SeqCst);
    }
    pub fn get(&self, c: C) -> u64 {
        self.mem.atomic_u64(8 * c as usize).load(Ordering::SeqCst)
    }
    pub fn set_slot(&self, slot: usize, phase: u64, pid: u32) {
        let base = HEADER + 16 * (slot % SLOTS);
        self.mem
            .atomic_u64(base + 8)
            .store(u64::from(pid), Ordering::SeqCst);
        self.mem.atomic_u64(base).store(phase, Ordering::SeqCst);
    }
    pub fn phase(&self, slot: usize) -> u64 {
        self.mem
            .atomic_u64(HEADER + 16 * (slot % SLOTS))
            .load(Ordering::SeqCst)
    }
    pub fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for c in ALL_COUNTERS {
            m.insert(c.name().into(), json!(self.get(c)));
        }
        Value::Object(m)
    }
}

/// xorshift64*: reproducible choices without a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with `percent` % probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Entry point of `vmfair-run stress`.
pub fn main(opts: &Opts) -> Result<i32, String> {
    if opts.get("role").is_some() {
        return vmm::main(opts);
    }
    let secs: u64 = match opts.get("seconds") {
        Some(_) => opts.num("seconds", 60)?,
        None => opts.num::<u64>("minutes", 10)? * 60,
    };
    let seed: u64 = opts.num("seed", 1)?;
    let fail_percent: u32 = opts.num("fail-percent", 5)?;
    if secs == 0 || fail_percent > 100 {
        return Err("--minutes/--seconds must be positive, --fail-percent 0..=100".into());
    }
    let t0 = Instant::now();
    let dir = format!("/tmp/vmfair-stress.{}", std::process::id());
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    let counters = Counters::open(&format!("{dir}/counters"))?;
    let mut problems: Vec<String> = Vec::new();

    let kmsg = kmsg::Reader::start().map_err(|e| format!("/dev/kmsg: {e}"))?;
    let baseline = checks::baseline(&mut problems);
    let failslab = load::Failslab::setup(fail_percent).unwrap_or_else(|e| {
        problems.push(format!("no failure injection (not the debug kernel?): {e}"));
        load::Failslab {
            percent: 0,
            ready: false,
        }
    });
    say!(
        "stress: {secs} s of load, seed {seed}, failslab {fail_percent}% on vmfair's text; \
         baseline {}",
        baseline
    );
    let shared = load::Shared::new(counters.clone(), failslab, seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads = load::start(&shared, deadline);
    let mut next = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        if Instant::now() >= next {
            next += Duration::from_secs(30);
            say!(
                "stress [{:>4}s] {}",
                t0.elapsed().as_secs(),
                progress(&shared, &kmsg)
            );
        }
    }
    say!("stress: load done, stopping the workloads");
    let load = load::stop(&shared, threads);
    let injected = shared.failslab.injected();
    let end = checks::finish(&shared, &baseline, &mut problems);
    let k = kmsg.stop();
    if counters.get(C::StaleAfterExec) > 0 {
        problems.push(format!(
            "{} process(es) stayed in a VM group after exec() from a non-leader thread ended \
             their VM",
            counters.get(C::StaleAfterExec)
        ));
    }
    if counters.get(C::BadExits) > 0 {
        problems.push(format!(
            "{} unexpected KVM_RUN exits",
            counters.get(C::BadExits)
        ));
    }
    if counters.get(C::ChildErrors) > 0 {
        problems.push(format!(
            "{} VMM or churn process(es) saw a failed KVM ioctl or an unexpected exit (their \
             lines above)",
            counters.get(C::ChildErrors)
        ));
    }
    for (what, n) in [
        ("VMM(s) failed", &load["vmm"]["failed"]),
        (
            "churn process(es) ended other than by SIGKILL",
            &load["churn"]["failed"],
        ),
    ] {
        if n.as_u64().unwrap_or(0) > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if k.reports > 0 {
        problems.push(format!("{} kernel report(s) in the log", k.reports));
    }
    problems.extend(k.disabled.iter().cloned());
    problems.extend(
        load["unexpected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v.as_str()
                    .map(|s| format!("unexpected knob write result: {s}"))
            }),
    );
    let leaks = end["kmemleak"]["leaks"].as_u64().unwrap_or(0);
    let passed = problems.is_empty();
    let out = json!({
        "seconds": secs,
        "seed": seed,
        "fail_percent": fail_percent,
        "elapsed_s": t0.elapsed().as_secs(),
        "vm_processes": load["vmm"]["spawned"],
        "vms_created": counters.get(C::VmsCreated),
        "loads": load["module"]["loads"],
        "unloads": load["module"]["unloads"],
        "writes": load["knobs"]["writes"],
        "injected": injected,
        "reports": k.reports,
        "leaks": leaks,
        "counters": counters.json(),
        "load": load,
        "kmsg": k.json(),
        "end": end,
        "problems": problems,
        "passed": passed,
    });
    println!("{out}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if passed { 0 } else { 1 })
}

/// One progress line: the counts so far.
fn progress(s: &load::Shared, k: &kmsg::Reader) -> String {
    format!(
        "vms={} loads={} unloads={} writes={} injected={} reports={}",
        s.counters.get(C::VmsCreated),
        s.loads.load(Ordering::Relaxed),
        s.unloads.load(Ordering::Relaxed),
        s.writes.load(Ordering::Relaxed),
        s.failslab.injected(),
        k.reports()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_bounded() {
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..100 {
            let x = a.below(7);
            assert_eq!(x, b.below(7));
            assert!(x < 7);
        }
        let hits = (0..1000).filter(|_| a.chance(30)).count();
        assert!((200..400).contains(&hits), "{hits}");
    }

    #[test]
    fn counters_are_shared_through_the_file() {
        let path = std::env::temp_dir().join(format!("vmfair-stress-test.{}", std::process::id()));
        let p = path.to_string_lossy().into_owned();
        let a = Counters::open(&p).unwrap();
        let b = Counters::open(&p).unwrap();
        a.add(C::Forks, 3);
        b.add(C::Forks, 2);
        assert_eq!(a.get(C::Forks), 5);
        a.set_slot(SLOTS + 1, PH_CREATED, 42);
        assert_eq!(b.phase(1), PH_CREATED);
        assert_eq!(a.json()["forks"], json!(5));
        let _ = std::fs::remove_file(path);
    }
}
