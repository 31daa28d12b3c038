// SPDX-License-Identifier: GPL-2.0

//! The user interface: sysctls under `/proc/sys/kernel/vmfair/`, and the KVM event handler that
//! feeds the registry.
//!
//! Global files (`kernel.vmfair.*`):
//! - `enabled` (0/1, default 1): group VMs or not;
//! - `default_weight` (1..10000, default 100): weight of VMs without their own;
//! - `vm_class_weight` (0..10000, default 0): weight of all VMs together against host tasks,
//!   0 for none (each VM competes on its own);
//! - `vcpu_slice_us` (0 or 100..100000, default 0): EEVDF slice of vCPU threads, 0 = kernel
//!   default;
//! - `share_mode` (`vm` or `vcpu`, also `0`/`1`; default `vm`): one share per VM, or per vCPU;
//! - `reservation_headroom` (CPUs, two decimals, default 0): CPUs that reservations may not
//!   take; all VMs together may reserve the online CPUs minus this;
//! - `precision` (0/1, default 1): the precision loop, which corrects every contended VM's
//!   shares by what the load monitor measured it used against its allocation;
//! - `vms` (read-only): one line per VM;
//! - `monitor` (read-only): what the load monitor did and what it cost;
//! - `vm_weight`: `PID WEIGHT` sets the weight of the VM run by process `PID`, as its
//!   `vm/<pid>/weight` file does; reading lists `PID WEIGHT` per VM. A pid that no process or
//!   thread has fails with `ESRCH`, one that is not a VMM process with `EINVAL`.
//!
//! Per VM, `vm/<pid>/weight`, `vm/<pid>/reservation` and `vm/<pid>/limit` (read-write; CPUs
//! with two decimals, 0 for none) and `vm/<pid>/stats` (read-only), `<pid>` being the VMM's. A
//! reservation that would make all reservations exceed what may be reserved fails with
//! `ENOSPC`, one above the VM's limit (or a limit below its reservation) with `EINVAL`. Every pid here is the process's number in the initial pid namespace, whichever
//! namespace the VMM and the writer run in, so `vm/<pid>`, `vms` and `vm_weight` agree; a
//! number names a VM only while it names the VMM process that created it. Writes need `CAP_SYS_NICE` (else `EPERM`); bad input fails with `EINVAL`, an unknown pid
//! with `ESRCH`, and changes nothing.

use crate::allocation;
use crate::glue::{self, Tick};
use crate::kvm_notifier::{VmEvent, VmListener};
use crate::policy::{self, UCPU};
use crate::registry::{Created, Knobs, Registry, Vm};
use crate::sysctl::{SysctlEntry, SysctlFile, SysctlTable, TextBuf};
use core::fmt::Write;
use kernel::{
    new_mutex,
    prelude::*,
    str::CString,
    sync::{Arc, Mutex},
    time::{Instant, Monotonic},
};

/// File keys of the global table.
const K_ENABLED: usize = 1;
const K_DEFAULT_WEIGHT: usize = 2;
const K_CLASS_WEIGHT: usize = 3;
const K_SLICE: usize = 4;
const K_SHARE_MODE: usize = 5;
const K_VMS: usize = 6;
const K_VM_WEIGHT: usize = 7;
const K_HEADROOM: usize = 8;
const K_MONITOR: usize = 9;
const K_PRECISION: usize = 10;
/// Per-VM keys: `K_VM_BASE + VM_FILES * tgid + file`.
const K_VM_BASE: usize = 16;
const VM_FILES: usize = 4;
const F_WEIGHT: usize = 0;
const F_STATS: usize = 1;
const F_RESERVATION: usize = 2;
const F_LIMIT: usize = 3;

/// A micro-CPU amount as CPUs with three decimals.
struct Cpus(u64);

impl core::fmt::Display for Cpus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / UCPU, self.0 % UCPU / 1000)
    }
}

/// The module's state: the registry, fed by KVM events and the sysctls.
#[pin_data]
pub(crate) struct Core {
    #[pin]
    registry: Mutex<Registry>,
    /// The monitor's clock starts at load.
    epoch: Instant<Monotonic>,
}

impl Core {
    /// A core with an empty registry and default knobs.
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            registry <- new_mutex!(Registry::new(Knobs::DEFAULT), "vmfair_registry"),
            epoch: Instant::now(),
        }? Error)
    }

    /// The global sysctl table, `kernel/vmfair`; it holds a reference on the core.
    pub(crate) fn register_sysctls(this: &Arc<Self>) -> Result<SysctlTable> {
        SysctlTable::register(
            CString::try_from_fmt(fmt!("kernel/vmfair"))?,
            this.clone(),
            &[
                SysctlEntry::new(c"enabled", 0o644, K_ENABLED),
                SysctlEntry::new(c"default_weight", 0o644, K_DEFAULT_WEIGHT),
                SysctlEntry::new(c"vm_class_weight", 0o644, K_CLASS_WEIGHT),
                SysctlEntry::new(c"vcpu_slice_us", 0o644, K_SLICE),
                SysctlEntry::new(c"share_mode", 0o644, K_SHARE_MODE),
                SysctlEntry::new(c"vms", 0o444, K_VMS),
                SysctlEntry::new(c"vm_weight", 0o644, K_VM_WEIGHT),
                SysctlEntry::new(c"reservation_headroom", 0o644, K_HEADROOM),
                SysctlEntry::new(c"monitor", 0o444, K_MONITOR),
                SysctlEntry::new(c"precision", 0o644, K_PRECISION),
            ],
        )
    }

    /// The per-VM directory `kernel/vmfair/vm/<tgid>`. It holds a reference on the core and
    /// lives in the core's registry: [`Core::release_all`] breaks that cycle at unload.
    fn register_vm_sysctls(this: &Arc<Self>, tgid: i32) -> Result<SysctlTable> {
        let base = K_VM_BASE + VM_FILES * usize::try_from(tgid).map_err(|_| EINVAL)?;
        SysctlTable::register(
            CString::try_from_fmt(fmt!("kernel/vmfair/vm/{}", tgid))?,
            this.clone(),
            &[
                SysctlEntry::new(c"weight", 0o644, base + F_WEIGHT),
                SysctlEntry::new(c"stats", 0o444, base + F_STATS),
                SysctlEntry::new(c"reservation", 0o644, base + F_RESERVATION),
                SysctlEntry::new(c"limit", 0o644, base + F_LIMIT),
            ],
        )
    }

    /// Empties the registry, for unload: every VMM goes back to its own group, every VM group
    /// and per-VM directory goes away, and with the directories the references they hold on
    /// the core. Call it once no KVM event can come any more.
    pub(crate) fn release_all(&self) -> usize {
        let mut vms = self.registry.lock().drain();
        let n = vms.len();
        // Outside the lock: unregistering a sysctl waits for its handlers.
        for vm in vms.iter_mut() {
            if let Err(e) = vm.release() {
                pr_warn!("VM process {} stays in its VM group: {:?}\n", vm.tgid(), e);
            }
        }
        drop(vms);
        n
    }

    /// Number of VMM processes known.
    pub(crate) fn nr_vms(&self) -> usize {
        self.registry.lock().len()
    }

    fn handle(this: &Arc<Self>, ev: VmEvent) -> Result {
        let mut removed: Option<Vm> = None;
        let created = {
            let mut reg = this.registry.lock();
            match ev {
                VmEvent::Create { vm, tgid, vmm } => reg.vm_created(vm, tgid, vmm.as_deref())?,
                VmEvent::Destroy { vm } => {
                    removed = reg.vm_destroyed(vm);
                    Created::Nothing
                }
                VmEvent::VcpuThread {
                    vm,
                    tgid,
                    vmm,
                    vcpu_id,
                    thread,
                } => reg.vcpu_thread(vm, tgid, vmm.as_deref(), vcpu_id, &thread)?,
            }
        };
        if let Some(vm) = removed {
            pr_debug!("VM process {} gone, group released\n", vm.tgid());
            drop(vm); // outside the lock, see release_all()
        }
        if let Created::NewProcess(tgid, stale) = created {
            // The directory of a reaped process with the same number goes first.
            drop(stale);
            let table = Self::register_vm_sysctls(this, tgid)?;
            let mut reg = this.registry.lock();
            let back = reg.set_sysctl(tgid, table);
            if let Ok(info) = reg.info(tgid) {
                pr_debug!(
                    "VM process {} adopted: /vmgroup-{}, weight {}, shares {}\n",
                    tgid,
                    info.group_id,
                    info.weight,
                    info.shares
                );
            }
            drop(reg);
            drop(back);
        }
        Ok(())
    }

    fn show_global(&self, key: usize, out: &mut TextBuf) -> Result {
        let reg = self.registry.lock();
        let k = reg.knobs();
        let r = match key {
            K_ENABLED => writeln!(out, "{}", u32::from(k.enabled)),
            K_DEFAULT_WEIGHT => writeln!(out, "{}", k.default_weight),
            K_CLASS_WEIGHT => writeln!(out, "{}", k.class_weight),
            K_SLICE => writeln!(out, "{}", k.vcpu_slice_us),
            K_SHARE_MODE => writeln!(out, "{}", k.share_mode.name()),
            K_VMS => {
                let mut r = Ok(());
                reg.for_each(|v| {
                    if r.is_ok() {
                        r = writeln!(
                            out,
                            "{} vcpus {} weight {} shares {} group {} reservation {} limit {}",
                            v.tgid, v.vcpus, v.weight, v.shares, v.group_id, v.reservation, v.limit
                        );
                    }
                });
                r
            }
            K_VM_WEIGHT => {
                let mut r = Ok(());
                reg.for_each(|v| {
                    if r.is_ok() {
                        r = writeln!(out, "{} {}", v.tgid, v.weight);
                    }
                });
                r
            }
            K_HEADROOM => writeln!(out, "{}", k.headroom),
            K_PRECISION => writeln!(out, "{}", u32::from(k.precision)),
            K_MONITOR => {
                let m = reg.monitor;
                writeln!(
                    out,
                    "period_ms {}\npasses {}\nreadings {}\nbusy_ns {}\nlast_ns {}\n\
                     share_updates {}",
                    <Core as Tick>::PERIOD_MS,
                    m.passes,
                    m.readings,
                    m.busy_ns,
                    m.last_ns,
                    m.share_updates
                )
            }
            _ => return Err(EINVAL),
        };
        r.map_err(|_| ENOMEM)
    }

    /// `vm_weight`: `PID WEIGHT`. Nothing changes on error.
    fn store_vm_weight(&self, input: &[u8]) -> Result {
        let (pid, weight) = policy::parse_pid_weight(input).map_err(|_| EINVAL)?;
        let tgid = i32::try_from(pid).map_err(|_| EINVAL)?;
        let r = self.registry.lock().set_weight(tgid, weight);
        match r {
            // Not a VMM we know: no such process at all (ESRCH), or one that runs no VM.
            Err(e) if e == ESRCH && glue::pid_exists(tgid) => Err(EINVAL),
            r => r,
        }
    }

    fn store_global(&self, key: usize, input: &[u8]) -> Result {
        let mut reg = self.registry.lock();
        let mut k = reg.knobs();
        let num = || policy::parse_u32(input).map_err(|_| EINVAL);
        match key {
            K_ENABLED => {
                k.enabled = match num()? {
                    0 => false,
                    1 => true,
                    _ => return Err(EINVAL),
                }
            }
            K_DEFAULT_WEIGHT => {
                k.default_weight = policy::parse_weight(input).map_err(|_| EINVAL)?;
            }
            K_CLASS_WEIGHT => {
                let w = num()?;
                if w != 0 {
                    policy::validate_weight(w).map_err(|_| EINVAL)?;
                }
                k.class_weight = w;
            }
            K_SLICE => {
                k.vcpu_slice_us = policy::validate_slice_us(num()?).map_err(|_| EINVAL)?;
            }
            K_SHARE_MODE => {
                k.share_mode = policy::parse_share_mode(input).map_err(|_| EINVAL)?;
            }
            K_PRECISION => {
                k.precision = match num()? {
                    0 => false,
                    1 => true,
                    _ => return Err(EINVAL),
                }
            }
            K_HEADROOM => {
                return reg.set_headroom(allocation::parse_centi(input).map_err(|_| EINVAL)?);
            }
            _ => return Err(EINVAL),
        }
        reg.set_knobs(k)
    }

    fn show_vm(&self, tgid: i32, file: usize, out: &mut TextBuf) -> Result {
        let reg = self.registry.lock();
        let info = reg.info(tgid)?;
        let r = match file {
            F_WEIGHT => writeln!(out, "{}", info.weight),
            F_RESERVATION => writeln!(out, "{}", info.reservation),
            F_LIMIT => writeln!(out, "{}", info.limit),
            _ => {
                let st = reg.stats(tgid).unwrap_or_default();
                let l = &info.load;
                let per_vcpu = |ready: u64| ready * 100 / u64::from(info.vcpus.max(1));
                writeln!(
                    out,
                    "pid {}\nvcpus {}\nweight {}\nweight_source {}\nshares {}\ngroup {}\nvms {}\n\
                     threads {}\ncpu_ns {}\nwait_ns {}\nreservation {}\nlimit {}\n\
                     used_1s {}\nready_1s {}\ndemand_1s {}\nused_10s {}\nready_10s {}\n\
                     ready_pct_1s {}\nready_pct_10s {}\nallocated {}\ncorrection {}",
                    info.tgid,
                    info.vcpus,
                    info.weight,
                    if info.own_weight { "vm" } else { "default" },
                    info.shares,
                    info.group_id,
                    info.vms,
                    st.threads,
                    st.cpu_ns,
                    st.wait_ns,
                    info.reservation,
                    info.limit,
                    Cpus(l.used_short),
                    Cpus(l.ready_short),
                    Cpus(l.demand(0)),
                    Cpus(l.used_long),
                    Cpus(l.ready_long),
                    Cpus(per_vcpu(l.ready_short)),
                    Cpus(per_vcpu(l.ready_long)),
                    Cpus(info.allocated.unwrap_or(0)),
                    Cpus(info.correction * UCPU / allocation::CORRECTION_ONE)
                )
            }
        };
        r.map_err(|_| ENOMEM)
    }
}

impl VmListener for Core {
    fn event(this: &Arc<Self>, ev: VmEvent) {
        if let Err(e) = Self::handle(this, ev) {
            pr_warn!("KVM event not handled: {:?}\n", e);
        }
    }
}

impl SysctlFile for Core {
    fn show(&self, key: usize, out: &mut TextBuf) -> Result {
        if key < K_VM_BASE {
            return self.show_global(key, out);
        }
        let tgid = i32::try_from((key - K_VM_BASE) / VM_FILES).map_err(|_| EINVAL)?;
        self.show_vm(tgid, (key - K_VM_BASE) % VM_FILES, out)
    }

    fn store(&self, key: usize, input: &[u8]) -> Result {
        if !glue::may_change_weights() {
            return Err(EPERM);
        }
        if key == K_VM_WEIGHT {
            return self.store_vm_weight(input);
        }
        if key < K_VM_BASE {
            return self.store_global(key, input);
        }
        let tgid = i32::try_from((key - K_VM_BASE) / VM_FILES).map_err(|_| EINVAL)?;
        match (key - K_VM_BASE) % VM_FILES {
            F_WEIGHT => {
                let weight = policy::parse_weight(input).map_err(|_| EINVAL)?;
                self.registry.lock().set_weight(tgid, weight)
            }
            F_RESERVATION => {
                let c = allocation::parse_centi(input).map_err(|_| EINVAL)?;
                self.registry.lock().set_reservation(tgid, c)
            }
            F_LIMIT => {
                let c = allocation::parse_centi(input).map_err(|_| EINVAL)?;
                self.registry.lock().set_limit(tgid, c)
            }
            _ => Err(EPERM),
        }
    }
}

impl Tick for Core {
    const PERIOD_MS: u32 = 100;

    fn tick(this: &Arc<Self>) {
        let start = this.epoch.elapsed().as_nanos().max(0) as u64;
        let mut reg = this.registry.lock();
        reg.monitor_pass(start);
        let end = this.epoch.elapsed().as_nanos().max(0) as u64;
        reg.monitor.last_ns = end - start.min(end);
        reg.monitor.busy_ns += reg.monitor.last_ns;
    }
}
