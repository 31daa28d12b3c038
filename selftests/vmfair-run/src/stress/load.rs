// SPDX-License-Identifier: GPL-2.0
//! The concurrent workloads of `vmfair-run stress`, each a thread of the parent until the
//! deadline: VMM spawners (which kill some VMMs with SIGKILL at a phase), the module loop,
//! knob writers, the cgroup mover and the autogroup toggler; and failslab's set-up.

use super::{vmm, Counters, Rng, PH_CREATED, PH_STARTED, PH_VCPUS, SLOTS};
use crate::sys::{self, ChildSetup, Proc, ProcExit};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VMFAIR: &str = "/proc/sys/kernel/vmfair";
const FAILSLAB: &str = "/sys/kernel/debug/failslab";
const AUTOGROUP: &str = "/proc/sys/kernel/sched_autogroup_enabled";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const CGROUP: &str = "/sys/fs/cgroup/vmfair-stress";
/// VMMs alive at once per spawner thread.
const LIVE_PER_SPAWNER: usize = 3;
const SPAWNERS: usize = 2;
/// VM churn processes alive at once (`--role churn`).
const CHURNERS: usize = 1;
const KNOB_WRITERS: usize = 2;
/// failslab's `times` at the start: each injected failure takes one off.
const TIMES: u64 = 1_000_000_000;

/// failslab (`/sys/kernel/debug/failslab`), limited by its stack filter to call chains
/// through the vmfair module's text.
pub struct Failslab {
    pub percent: u32,
    /// Whether failslab is there (a debug kernel) and set up.
    pub ready: bool,
}

fn write(path: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

impl Failslab {
    /// Every attribute but the text range; injection stays off until [`Failslab::arm`].
    pub fn setup(percent: u32) -> Result<Failslab, String> {
        let set = |k: &str, v: &str| {
            write(&format!("{FAILSLAB}/{k}"), v).map_err(|e| format!("{FAILSLAB}/{k}: {e}"))
        };
        set("probability", "0")?;
        set("interval", "1")?;
        set("times", &TIMES.to_string())?;
        set("space", "0")?;
        set("verbose", "0")?;
        set("task-filter", "N")?;
        set("ignore-gfp-wait", "N")?;
        set("cache-filter", "N")?;
        set("stacktrace-depth", "32")?;
        Ok(Failslab {
            percent,
            ready: true,
        })
    }

    /// Points the stack filter at the loaded module's text and switches injection on.
    /// The range stays armed across `rmmod`: a module loaded at the same address next time
    /// sees failures in its init.
    pub fn arm(&self) -> Result<(), String> {
        if !self.ready {
            return Ok(());
        }
        let (start, end) = module_text()?;
        write(&format!("{FAILSLAB}/require-start"), &start.to_string())
            .and_then(|_| write(&format!("{FAILSLAB}/require-end"), &end.to_string()))
            .and_then(|_| {
                write(
                    &format!("{FAILSLAB}/probability"),
                    &self.percent.to_string(),
                )
            })
            .map_err(|e| format!("failslab: {e}"))
    }

    pub fn disarm(&self) {
        if !self.ready {
            return;
        }
        let _ = write(&format!("{FAILSLAB}/probability"), "0");
    }

    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        if !self.ready {
            return 0;
        }
        std::fs::read_to_string(format!("{FAILSLAB}/times"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map_or(0, |left| TIMES.saturating_sub(left.max(0) as u64))
    }
}

/// The vmfair module's text: from its lowest `.text*` section to that plus its core size.
pub fn module_text() -> Result<(u64, u64), String> {
    let dir = "/sys/module/vmfair/sections";
    let mut start = u64::MAX;
    for e in std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".text" || name.starts_with(".text.") {
            let v = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Ok(a) = u64::from_str_radix(v.trim().trim_start_matches("0x"), 16) {
                start = start.min(a);
            }
        }
    }
    let size: u64 = std::fs::read_to_string("/sys/module/vmfair/coresize")
        .map_err(|e| format!("coresize: {e}"))?
        .trim()
        .parse()
        .map_err(|_| "coresize is not a number".to_string())?;
    if start == u64::MAX || start == 0 {
        return Err(format!("no .text address in {dir} (kptr_restrict?)"));
    }
    Ok((start, start + size))
}

/// State the workload threads share.
pub struct Shared {
    pub counters: Arc<Counters>,
    pub failslab: Failslab,
    seed: u64,
    stop: AtomicBool,
    /// Pids of the VMMs alive now.
    live: Mutex<Vec<u32>>,
    pub loads: AtomicU64,
    pub unloads: AtomicU64,
    pub writes: AtomicU64,
    stats: Mutex<BTreeMap<String, u64>>,
    unexpected: Mutex<Vec<String>>,
    slots: Mutex<Vec<usize>>,
}

impl Shared {
    pub fn new(counters: Arc<Counters>, failslab: Failslab, seed: u64) -> Arc<Shared> {
        Arc::new(Shared {
            counters,
            failslab,
            seed,
            stop: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
            loads: AtomicU64::new(0),
            unloads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            stats: Mutex::new(BTreeMap::new()),
            unexpected: Mutex::new(Vec::new()),
            slots: Mutex::new((0..SLOTS).collect()),
        })
    }
    fn count(&self, key: &str, n: u64) {
        *self
            .stats
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default() += n;
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    fn unexpected(&self, what: String) {
        let mut u = self.unexpected.lock().unwrap();
        if u.len() < 20 {
            u.push(what);
        }
    }
}

/// Sleeps `ms` milliseconds in steps, returning early when the workloads stop.
fn nap(s: &Shared, ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    while !s.stopping() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(ms.min(50)));
    }
}

/// Starts every workload thread.
pub fn start(s: &Arc<Shared>, deadline: Instant) -> Vec<std::thread::JoinHandle<()>> {
    let mut hs = Vec::new();
    let mut go = |name: &str, f: Box<dyn FnOnce() + Send>| {
        if let Ok(h) = std::thread::Builder::new().name(name.into()).spawn(f) {
            hs.push(h);
        }
    };
    for i in 0..SPAWNERS {
        let s = s.clone();
        go("spawner", Box::new(move || spawner(&s, i as u64, deadline)));
    }
    for i in 0..CHURNERS {
        let s = s.clone();
        go("churner", Box::new(move || churner(&s, i as u64, deadline)));
    }
    let s2 = s.clone();
    go("module", Box::new(move || module_loop(&s2)));
    for i in 0..KNOB_WRITERS {
        let s = s.clone();
        go("knobs", Box::new(move || knob_writer(&s, i as u64)));
    }
    let s3 = s.clone();
    go("cgroup", Box::new(move || cgroup_mover(&s3)));
    let s4 = s.clone();
    go("autogroup", Box::new(move || autogroup_toggler(&s4)));
    hs
}

/// Stops the workloads and returns their counts.
pub fn stop(s: &Arc<Shared>, threads: Vec<std::thread::JoinHandle<()>>) -> Value {
    s.stop.store(true, Ordering::SeqCst);
    for h in threads {
        let _ = h.join();
    }
    let stats = s.stats.lock().unwrap().clone();
    let get = |k: &str| stats.get(k).copied().unwrap_or(0);
    let by_prefix = |p: &str| -> BTreeMap<String, u64> {
        stats
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(p).map(|k| (k.to_string(), *v)))
            .collect()
    };
    json!({
        "vmm": by_prefix("vmm."),
        "churn": by_prefix("churn."),
        "module": {
            "loads": s.loads.load(Ordering::SeqCst),
            "unloads": s.unloads.load(Ordering::SeqCst),
            "load_failures": get("module.load_failures"),
            "unload_failures": get("module.unload_failures"),
            "arm_failures": get("module.arm_failures"),
        },
        "knobs": {
            "writes": s.writes.load(Ordering::SeqCst),
            "reads": get("knobs.reads"),
            "results": by_prefix("write."),
        },
        "cgroup_moves": get("cgroup.moves"),
        "autogroup_toggles": get("autogroup.toggles"),
        "unexpected": *s.unexpected.lock().unwrap(),
    })
}

/// When a spawner kills a VMM.
#[derive(Clone, Copy)]
enum Kill {
    /// As soon as its slot shows this phase.
    AtPhase(u64, &'static str),
    /// This long after it was started.
    After(Duration),
    Never,
}

struct Live {
    proc: Proc,
    slot: usize,
    kill: Kill,
    killed: bool,
    t0: Instant,
}

fn spawner(s: &Shared, id: u64, deadline: Instant) {
    let exe = self_exe();
    let mut rng = Rng::new(s.seed.wrapping_add(id * 7919));
    let mut live: Vec<Live> = Vec::new();
    let mut n = 0u64;
    loop {
        let stopping = s.stopping() || Instant::now() >= deadline;
        while !stopping && live.len() < LIVE_PER_SPAWNER {
            let Some(slot) = s.slots.lock().unwrap().pop() else {
                break;
            };
            s.counters.set_slot(slot, 0, 0);
            n += 1;
            let seed = s.seed ^ (id << 48) ^ n;
            let argv: Vec<String> = [
                exe.as_str(),
                "stress",
                "--role",
                "vmm",
                "--counters",
                s.counters.path(),
                "--slot",
                &slot.to_string(),
                "--seed",
                &seed.to_string(),
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            let kill = match rng.below(100) {
                0..=9 => Kill::AtPhase(PH_STARTED, "creating"),
                10..=24 => Kill::AtPhase(PH_CREATED, "attaching"),
                25..=34 => Kill::AtPhase(PH_VCPUS, "vcpus"),
                35..=49 => Kill::After(Duration::from_millis(rng.below(500))),
                _ => Kill::Never,
            };
            match sys::spawn(&argv, ChildSetup::default()) {
                Ok(proc) => {
                    s.live.lock().unwrap().push(proc.id());
                    s.count("vmm.spawned", 1);
                    live.push(Live {
                        proc,
                        slot,
                        kill,
                        killed: false,
                        t0: Instant::now(),
                    });
                }
                Err(e) => {
                    s.count("vmm.spawn_errors", 1);
                    s.slots.lock().unwrap().push(slot);
                    say!("stress: cannot start a VMM: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
        if stopping && live.is_empty() {
            return;
        }
        let mut i = 0;
        while i < live.len() {
            let l = &mut live[i];
            let kill_now = !l.killed
                && (stopping
                    || match l.kill {
                        Kill::AtPhase(p, _) => s.counters.phase(l.slot) >= p,
                        Kill::After(d) => l.t0.elapsed() >= d,
                        Kill::Never => false,
                    });
            if kill_now {
                // A process that is already gone is not an error.
                let _ = sys::kill(l.proc.id(), libc::SIGKILL);
                let what = match (stopping, l.kill) {
                    (true, _) => "vmm.killed_at_end".to_string(),
                    (_, Kill::AtPhase(_, name)) => format!("vmm.killed_{name}"),
                    _ => "vmm.killed_running".to_string(),
                };
                s.count(&what, 1);
                l.killed = true;
            }
            match l.proc.try_wait() {
                Ok(None) => i += 1,
                res => {
                    let key = match res {
                        Ok(Some(ProcExit::Code(0))) => "vmm.exited",
                        Ok(Some(ProcExit::Code(vmm::EXIT_STALE_GROUP))) => "vmm.stale_after_exec",
                        Ok(Some(ProcExit::Signal(libc::SIGKILL))) => "vmm.reaped_killed",
                        _ => "vmm.failed",
                    };
                    s.count(key, 1);
                    let l = live.swap_remove(i);
                    s.live.lock().unwrap().retain(|p| *p != l.proc.id());
                    s.slots.lock().unwrap().push(l.slot);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// This program, to start VMMs and churners from.
fn self_exe() -> String {
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/bin/vmfair-run".into())
}

/// Keeps a VM churn process (`--role churn`) running: each is killed with SIGKILL after 2 to
/// 10 s, wherever it is (creating, running or destroying a VM), and the next one starts. (Its
/// start alone takes more than a second on the debug kernel: in a first run with 0.2 to 3 s,
/// 98 churners made 22 VMs.)
fn churner(s: &Shared, id: u64, deadline: Instant) {
    let exe = self_exe();
    let mut rng = Rng::new(s.seed.wrapping_add(0xc4u64 + id * 104_729));
    while !s.stopping() && Instant::now() < deadline {
        let seed = rng.next().to_string();
        let argv: Vec<String> = [
            exe.as_str(),
            "stress",
            "--role",
            "churn",
            "--counters",
            s.counters.path(),
            "--seed",
            &seed,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let mut proc = match sys::spawn(&argv, ChildSetup::default()) {
            Ok(p) => p,
            Err(e) => {
                s.count("churn.spawn_errors", 1);
                say!("stress: cannot start a VM churner: {e}");
                nap(s, 1000);
                continue;
            }
        };
        s.count("churn.spawned", 1);
        let until = Instant::now() + Duration::from_millis(2000 + rng.below(8000));
        let mut exited = None;
        while Instant::now() < until && !s.stopping() {
            std::thread::sleep(Duration::from_millis(10));
            if let Ok(Some(e)) = proc.try_wait() {
                exited = Some(e);
                break;
            }
        }
        if exited.is_none() {
            let _ = sys::kill(proc.id(), libc::SIGKILL);
            exited = proc.wait().ok();
        }
        let key = match exited {
            Some(ProcExit::Signal(libc::SIGKILL)) => "churn.killed",
            // A churner ends only when killed: anything else is a failure it reported.
            _ => "churn.failed",
        };
        s.count(key, 1);
    }
}

/// Runs a busybox applet, true on exit status 0.
pub fn run(argv: &[&str]) -> bool {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    sys::spawn(&argv, ChildSetup::default())
        .and_then(|mut p| p.wait())
        .is_ok_and(|e| e.success())
}

fn module_loop(s: &Shared) {
    let mut rng = Rng::new(s.seed ^ 0x6d6f64);
    while !s.stopping() {
        if run(&["/sbin/modprobe", "vmfair"]) {
            s.loads.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = s.failslab.arm() {
                s.count("module.arm_failures", 1);
                say!("stress: {e}");
            }
        } else {
            s.count("module.load_failures", 1);
        }
        nap(s, 1000 + rng.below(3000));
        if std::path::Path::new("/sys/module/vmfair").exists() {
            if run(&["/sbin/rmmod", "vmfair"]) {
                s.unloads.fetch_add(1, Ordering::SeqCst);
            } else {
                s.count("module.unload_failures", 1);
            }
        }
        nap(s, 200 + rng.below(800));
    }
}

/// A knob, its good values and its bad ones.
const KNOBS: &[(&str, &[&str], &[&str])] = &[
    ("enabled", &["1", "1", "1", "0"], &["2", "-1", "x"]),
    (
        "default_weight",
        &["1", "100", "2500", "10000"],
        &["0", "10001", "w", "-3"],
    ),
    (
        "vm_class_weight",
        &["0", "0", "50", "100", "10000"],
        &["10001", "-5", "c"],
    ),
    (
        "vcpu_slice_us",
        &["0", "100", "3000", "100000"],
        &["50", "100001", "z"],
    ),
    ("share_mode", &["vm", "vcpu", "0", "1"], &["x", "2", "vmm"]),
];

/// Whether a write's result is what the kernel promises: good values are taken unless the
/// module is gone (ENOENT), the VM is gone (ESRCH, EINVAL for a pid that no longer runs a
/// VM) or an allocation failed (ENOMEM); bad values are refused with EINVAL.
fn acceptable(good: bool, per_vm: bool, r: &std::io::Result<()>) -> bool {
    let errno = r.as_ref().err().and_then(|e| e.raw_os_error());
    match (good, errno) {
        (_, Some(libc::ENOENT)) => true,
        (true, None) | (true, Some(libc::ENOMEM)) => true,
        (true, Some(libc::ESRCH)) | (true, Some(libc::EINVAL)) => per_vm,
        (false, Some(libc::EINVAL)) => true,
        (false, Some(libc::ESRCH)) => per_vm,
        _ => false,
    }
}

fn result_name(r: &std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => "ENOENT".into(),
            Some(libc::EINVAL) => "EINVAL".into(),
            Some(libc::ESRCH) => "ESRCH".into(),
            Some(libc::ENOMEM) => "ENOMEM".into(),
            Some(libc::EPERM) => "EPERM".into(),
            Some(n) => format!("errno{n}"),
            None => "other".into(),
        },
    }
}

fn knob_writer(s: &Shared, id: u64) {
    let mut rng = Rng::new(s.seed ^ (0x6b6e6f62 + id));
    while !s.stopping() {
        let live: Vec<u32> = s.live.lock().unwrap().clone();
        let pid = if live.is_empty() {
            999_999
        } else {
            *rng.pick(&live)
        };
        let good = rng.chance(60);
        let (path, value, per_vm) = match rng.below(10) {
            0..=4 => {
                let (name, goods, bads) = *rng.pick(KNOBS);
                let v = if good {
                    rng.pick(goods)
                } else {
                    rng.pick(bads)
                };
                (format!("{VMFAIR}/{name}"), v.to_string(), false)
            }
            5..=6 => {
                let w = if good { 1 + rng.below(10000) } else { 10001 };
                let v = match (good, rng.below(3)) {
                    (true, _) => format!("{pid} {w}"),
                    (false, 0) => format!("{pid} 0"),
                    (false, 1) => format!("{pid} x"),
                    (false, _) => "garbage".to_string(),
                };
                (format!("{VMFAIR}/vm_weight"), v, true)
            }
            7..=8 => {
                let v = if good {
                    (1 + rng.below(10000)).to_string()
                } else {
                    rng.pick(&["0", "10001", "abc", "-1"]).to_string()
                };
                (format!("{VMFAIR}/vm/{pid}/weight"), v, true)
            }
            _ => {
                // Reads of the lists and a VM's stats.
                for f in ["vms", "vm_weight"] {
                    let _ = std::fs::read_to_string(format!("{VMFAIR}/{f}"));
                }
                let _ = std::fs::read_to_string(format!("{VMFAIR}/vm/{pid}/stats"));
                s.count("knobs.reads", 3);
                nap(s, 1 + rng.below(5));
                continue;
            }
        };
        // Keep vmfair enabled most of the time, so that VMs are grouped.
        let r = write(&path, &value);
        if path.ends_with("/enabled") && value == "0" {
            nap(s, 50);
            let _ = write(&path, "1");
        }
        s.writes.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "write.{}.{}",
            if good { "good" } else { "bad" },
            result_name(&r)
        );
        s.count(&key, 1);
        if !acceptable(good, per_vm, &r) {
            s.unexpected(format!("{path} <- {value:?}: {}", result_name(&r)));
        }
        nap(s, 1 + rng.below(5));
    }
    // Leave the knobs at their defaults for the end checks.
    for (name, v) in [
        ("enabled", "1"),
        ("vm_class_weight", "0"),
        ("vcpu_slice_us", "0"),
    ] {
        let _ = write(&format!("{VMFAIR}/{name}"), v);
    }
}

fn cgroup_mover(s: &Shared) {
    let mut rng = Rng::new(s.seed ^ 0x6367);
    let _ = write(&format!("{CGROUP_ROOT}/cgroup.subtree_control"), "+cpu");
    if let Err(e) = std::fs::create_dir_all(CGROUP) {
        say!("stress: mkdir {CGROUP}: {e}");
        return;
    }
    while !s.stopping() {
        nap(s, 50 + rng.below(250));
        let live: Vec<u32> = s.live.lock().unwrap().clone();
        if live.is_empty() {
            continue;
        }
        let pid = rng.pick(&live).to_string();
        let _ = write(
            &format!("{CGROUP}/cpu.weight"),
            &(1 + rng.below(500)).to_string(),
        );
        if write(&format!("{CGROUP}/cgroup.procs"), &pid).is_err() {
            continue;
        }
        nap(s, 20 + rng.below(200));
        if write(&format!("{CGROUP_ROOT}/cgroup.procs"), &pid).is_ok() {
            s.count("cgroup.moves", 1);
        }
    }
}

fn autogroup_toggler(s: &Shared) {
    let mut rng = Rng::new(s.seed ^ 0x6167);
    let orig = std::fs::read_to_string(AUTOGROUP).unwrap_or_else(|_| "1".into());
    let mut on = orig.trim() == "1";
    while !s.stopping() {
        nap(s, 300 + rng.below(1700));
        on = !on;
        if write(AUTOGROUP, if on { "1" } else { "0" }).is_ok() {
            s.count("autogroup.toggles", 1);
        }
    }
    let _ = write(AUTOGROUP, orig.trim());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(n: i32) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(n))
    }

    #[test]
    fn write_results_are_judged() {
        assert!(acceptable(true, false, &Ok(())));
        assert!(acceptable(true, false, &err(libc::ENOMEM)));
        assert!(acceptable(true, false, &err(libc::ENOENT)));
        assert!(
            !acceptable(true, false, &err(libc::EINVAL)),
            "good global value refused"
        );
        assert!(acceptable(true, true, &err(libc::ESRCH)));
        assert!(!acceptable(false, false, &Ok(())), "bad value taken");
        assert!(acceptable(false, false, &err(libc::EINVAL)));
        assert!(!acceptable(false, false, &err(libc::EPERM)));
        assert_eq!(result_name(&err(libc::ESRCH)), "ESRCH");
    }
}
