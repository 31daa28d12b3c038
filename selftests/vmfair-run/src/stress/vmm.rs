// SPDX-License-Identifier: GPL-2.0
//! The processes `vmfair-run stress` starts: short-lived VMMs (`--role vmm`), what a VMM
//! becomes when one of its threads calls `exec()` (`--role after-exec`), and VM churners
//! (`--role churn`) that create and destroy small VMs as fast as they can until killed.
//!
//! A VMM creates one KVM VM with one or two vCPUs and one page of guest RAM: real mode from
//! the reset vector, `hlt` (a `KVM_EXIT_HLT` without an in-kernel irqchip), then a loop that
//! never exits, as in `scale.rs`. It runs its vCPUs in rounds: each round starts one thread per
//! vCPU that enters `KVM_RUN`, lets it run for a few to a few hundred milliseconds, kicks it out
//! with a signal and lets the thread exit, so that the next round runs the same vCPU from a new
//! thread. Depending on its seed it also keeps a pool of worker threads that come and go (as
//! QEMU's thread pool does), forks a storm of children, calls `setsid()`, or calls `exec()`
//! from a thread that is not the leader. Its progress goes into its slot of the counters file,
//! where the parent watches it to kill it with SIGKILL at a given phase.

use super::os;
use super::{Counters, Rng, C, PH_CREATED, PH_EXITING, PH_RUNNING, PH_STARTED, PH_VCPUS};
use crate::kvm::{Exit, Kvm, Vcpu};
use crate::procfs;
use crate::sys::SharedMem;
use crate::Opts;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Guest-physical address of the page (the top page: the reset vector is in it).
const GUEST_GPA: u64 = 0xffff_f000;
/// Page offset of the guest code (IP 0xfff0).
const CODE: usize = 0xff0;
/// `hlt` at 0xfff0; at 0xfff1 `inc dword cs:[0xf800]`, `jmp 0xfff1`.
const GUEST_CODE: [u8; 9] = [0xf4, 0x2e, 0x66, 0xff, 0x06, 0x00, 0xf8, 0xeb, 0xf8];

/// Exit status of an after-exec process still in a VM group although it runs no VM.
pub const EXIT_STALE_GROUP: i32 = 4;
/// Exit status of a VMM that saw something it should not (bad exit, failed ioctl).
pub const EXIT_BAD: i32 = 3;

/// What one VMM does, drawn from its seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// VMs created and destroyed one after the other before the main one.
    pub cycles: usize,
    pub vcpus: usize,
    pub rounds: usize,
    pub workers: bool,
    pub forks: usize,
    pub setsid: bool,
    pub exec: bool,
}

impl Plan {
    pub fn from_seed(seed: u64) -> Plan {
        let mut r = Rng::new(seed);
        Plan {
            cycles: r.below(8) as usize,
            vcpus: 1 + r.below(2) as usize,
            rounds: 1 + r.below(3) as usize,
            workers: r.chance(50),
            forks: if r.chance(25) {
                5 + r.below(20) as usize
            } else {
                0
            },
            setsid: r.chance(20),
            exec: r.chance(8),
        }
    }
}

/// Entry point of `--role vmm` and `--role after-exec`.
pub fn main(opts: &Opts) -> Result<i32, String> {
    let counters = Counters::open(opts.get("counters").ok_or("--role needs --counters")?)?;
    let slot: usize = opts.num("slot", 0)?;
    match opts.get("role") {
        Some("vmm") => {
            let seed: u64 = opts.num("seed", 1)?;
            os::install_kick_handler().map_err(|e| format!("sigaction: {e}"))?;
            let plan = Plan::from_seed(seed);
            match vmm(&counters, slot, seed, plan) {
                Ok(()) => Ok(0),
                Err(e) => {
                    counters.add(C::ChildErrors, 1);
                    say!("stress vmm {} ({plan:?}): {e}", std::process::id());
                    Ok(EXIT_BAD)
                }
            }
        }
        Some("after-exec") => Ok(after_exec(&counters, slot)),
        Some("churn") => {
            let seed: u64 = opts.num("seed", 1)?;
            match churn(&counters, seed) {
                Ok(()) => Ok(0),
                Err(e) => {
                    counters.add(C::ChildErrors, 1);
                    say!("stress churn {}: {e}", std::process::id());
                    Ok(EXIT_BAD)
                }
            }
        }
        other => Err(format!("unknown --role {other:?}")),
    }
}

/// Runs `vcpu` in a new thread until kicked: the first `KVM_RUN` halts, the next ones loop.
fn start_vcpu(
    vcpu: Vcpu,
    counters: &Arc<Counters>,
) -> std::io::Result<std::thread::JoinHandle<Result<Vcpu, String>>> {
    let c = counters.clone();
    std::thread::Builder::new()
        .name("vcpu".into())
        .spawn(move || loop {
            match vcpu.run() {
                Exit::Reason(5, _) => continue, // KVM_EXIT_HLT of the first entry
                Exit::Interrupted => return Ok(vcpu),
                other => {
                    c.add(C::BadExits, 1);
                    return Err(format!("unexpected exit {other:?}"));
                }
            }
        })
}

/// Kicks a vCPU thread until it has left `KVM_RUN` and ended, and takes its vCPU back.
fn stop_vcpu(h: std::thread::JoinHandle<Result<Vcpu, String>>) -> Result<Vcpu, String> {
    while !h.is_finished() {
        os::kick(h.as_pthread_t());
        std::thread::sleep(Duration::from_millis(2));
    }
    h.join().map_err(|_| "a vCPU thread panicked".to_string())?
}

fn vmm(counters: &Arc<Counters>, slot: usize, seed: u64, plan: Plan) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    counters.set_slot(slot, PH_STARTED, std::process::id());
    let mem = SharedMem::anonymous(4096).map_err(|e| format!("guest RAM: {e}"))?;
    mem.write_bytes(CODE, &GUEST_CODE);
    let kvm = Kvm::open().map_err(|e| e.to_string())?;
    for _ in 0..plan.cycles {
        short_vm(&kvm, &mem, counters)?;
    }
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    counters.add(C::VmsCreated, 1);
    counters.set_slot(slot, PH_CREATED, std::process::id());
    let _ = vm.set_tss_addr(0xfffb_d000);
    vm.set_memory(GUEST_GPA, 4096, mem.host_addr())
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let mut vcpus = Vec::new();
    for i in 0..plan.vcpus {
        vcpus.push(
            vm.create_vcpu(i as u32)
                .map_err(|e| format!("KVM_CREATE_VCPU {i}: {e}"))?,
        );
        counters.add(C::VcpusCreated, 1);
    }
    drop(vm);
    counters.set_slot(slot, PH_VCPUS, std::process::id());
    if plan.setsid {
        os::setsid().map_err(|e| format!("setsid: {e}"))?;
        counters.add(C::Setsids, 1);
    }
    let stop_workers = Arc::new(AtomicBool::new(false));
    let pool = plan
        .workers
        .then(|| worker_pool(counters.clone(), stop_workers.clone()));
    counters.set_slot(slot, PH_RUNNING, std::process::id());
    for round in 0..plan.rounds {
        let mut running = Vec::new();
        for v in vcpus.drain(..) {
            running.push(start_vcpu(v, counters).map_err(|e| format!("vCPU thread: {e}"))?);
            if round > 0 {
                counters.add(C::NewThreadRuns, 1);
            }
        }
        std::thread::sleep(Duration::from_millis(5 + rng.below(150)));
        if round == 0 && plan.forks > 0 {
            counters.add(C::Forks, os::fork_storm(plan.forks) as u64);
        }
        if plan.exec && round + 1 == plan.rounds {
            // From a thread that is not the leader, while the vCPU threads are in KVM_RUN.
            let argv = after_exec_argv(counters, slot)?;
            let c = counters.clone();
            let h = std::thread::spawn(move || {
                c.add(C::Execs, 1);
                os::exec(&argv)
            });
            let e = h.join().map_err(|_| "exec thread panicked")?;
            return Err(format!("exec from a thread: {e}"));
        }
        for h in running {
            vcpus.push(stop_vcpu(h)?);
            counters.add(C::VcpuThreadExits, 1);
        }
    }
    counters.set_slot(slot, PH_EXITING, std::process::id());
    stop_workers.store(true, Ordering::SeqCst);
    if let Some(p) = pool {
        let _ = p.join();
    }
    Ok(())
}

/// VM churn, until the parent kills the process (with SIGKILL, at a random moment, which
/// may be inside any of these ioctls): one VM after the other, each of them a VM without a
/// vCPU, a VM whose vCPU runs to its `hlt`, or two to four VMs alive at once, so that
/// vmfair groups and releases the process again and again.
fn churn(counters: &Counters, seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ 0xc4u64);
    let mem = SharedMem::anonymous(4096).map_err(|e| format!("guest RAM: {e}"))?;
    mem.write_bytes(CODE, &GUEST_CODE);
    let kvm = Kvm::open().map_err(|e| e.to_string())?;
    loop {
        match rng.below(4) {
            0 => {
                drop(kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?);
                counters.add(C::VmsCreated, 1);
                counters.add(C::ChurnVms, 1);
            }
            1 => {
                let n = 2 + rng.below(3);
                let mut vms = Vec::new();
                for _ in 0..n {
                    vms.push(kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?);
                    counters.add(C::VmsCreated, 1);
                    counters.add(C::ChurnVms, 1);
                }
                // Destroyed in another order than created.
                while !vms.is_empty() {
                    drop(vms.swap_remove(rng.below(vms.len() as u64) as usize));
                }
            }
            _ => {
                short_vm(&kvm, &mem, counters)?;
                counters.add(C::ChurnVms, 1);
            }
        }
    }
}

/// A VM with one vCPU that runs to its `hlt` and is destroyed: vmfair adopts the process
/// and releases it again.
fn short_vm(kvm: &Kvm, mem: &SharedMem, counters: &Counters) -> Result<(), String> {
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    counters.add(C::VmsCreated, 1);
    vm.set_memory(GUEST_GPA, 4096, mem.host_addr())
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    counters.add(C::VcpusCreated, 1);
    drop(vm);
    match vcpu.run() {
        Exit::Reason(5, _) => Ok(()),
        other => {
            counters.add(C::BadExits, 1);
            Err(format!("short VM: unexpected exit {other:?}"))
        }
    }
}

fn after_exec_argv(counters: &Counters, slot: usize) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    Ok(vec![
        exe.to_string_lossy().into_owned(),
        "stress".into(),
        "--role".into(),
        "after-exec".into(),
        "--counters".into(),
        counters.path().to_string(),
        "--slot".into(),
        slot.to_string(),
    ])
}

/// A thread that keeps 1 to 4 short-lived worker threads alive until `stop`.
fn worker_pool(counters: Arc<Counters>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = Rng::new(u64::from(std::process::id()));
        while !stop.load(Ordering::SeqCst) {
            let n = 1 + rng.below(4);
            let hs: Vec<_> = (0..n)
                .filter_map(|i| {
                    let spin = Duration::from_micros(200 + 300 * i);
                    std::thread::Builder::new()
                        .name("worker".into())
                        .spawn(move || {
                            let t = Instant::now();
                            while t.elapsed() < spin {
                                std::hint::spin_loop();
                            }
                        })
                        .ok()
                })
                .collect();
            counters.add(C::WorkerThreads, hs.len() as u64);
            for h in hs {
                let _ = h.join();
            }
            std::thread::sleep(Duration::from_millis(rng.below(5)));
        }
    })
}

/// The image a VMM `exec()`s into: it runs no VM, so none of its threads may stay in a VM
/// group. Gives vmfair 3 s to process the VM's destruction, then checks.
fn after_exec(counters: &Counters, slot: usize) -> i32 {
    let pid = std::process::id();
    counters.add(C::AfterExec, 1);
    counters.set_slot(slot, PH_EXITING, pid);
    let t = Instant::now();
    let mut group = String::new();
    while t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(500));
        group = procfs::sched_groups()
            .ok()
            .and_then(|g| g.of_thread.get(&pid).cloned())
            .unwrap_or_default();
        if !group.starts_with("/vmgroup-") {
            return 0;
        }
    }
    counters.add(C::StaleAfterExec, 1);
    say!("stress: process {pid} still in {group} 3 s after exec() from a vCPU-less thread ended its VM");
    EXIT_STALE_GROUP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_vary_and_stay_in_range() {
        let plans: Vec<Plan> = (1..200).map(Plan::from_seed).collect();
        assert!(plans.iter().all(|p| (1..=2).contains(&p.vcpus)));
        assert!(plans.iter().all(|p| (1..=3).contains(&p.rounds)));
        assert!(plans.iter().all(|p| p.cycles < 8) && plans.iter().any(|p| p.cycles > 0));
        assert!(plans.iter().any(|p| p.exec) && plans.iter().any(|p| !p.exec));
        assert!(plans.iter().any(|p| p.forks > 0) && plans.iter().any(|p| p.setsid));
        assert_eq!(Plan::from_seed(7), Plan::from_seed(7));
    }
}
