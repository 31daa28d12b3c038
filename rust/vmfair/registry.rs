// SPDX-License-Identifier: GPL-2.0

//! The VM registry: which VMM processes run VMs, their vCPU threads, weights and groups.
//!
//! One entry per VMM process (VMs are counted by their KVM cookie, so a process that runs two VMs
//! is still one entry). While vmfair is enabled each entry's process is attached to a VM group of
//! its own, nested in the class group when the class weight is set; the group's shares follow
//! the policy (see [`crate::policy`]). The registry lives under one mutex; callers drop removed
//! entries after releasing it, since dropping detaches the process and unregisters the entry's
//! sysctl directory.
//!
//! A process is held by its `struct pid` ([`ProcessId`]), not by its leader thread: `exec()`
//! from another thread replaces the leader, and a number can be reused once the process is
//! reaped while its VM lives on (a child that inherited the VM's file descriptor keeps it). An
//! entry answers to its number only while that number names its own process.

use crate::allocation::{self, AdmitError, Centi, Load, Reading};
use crate::glue::{self, ProcStats, ProcessId, VmGroup};
use crate::policy::{self, Claim, ShareMode, UCPU};
use crate::sysctl::SysctlTable;
use kernel::{prelude::*, sync::aref::ARef, task::Task};

/// The global knobs, as the sysctls set them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Knobs {
    /// Whether VMM processes are put into VM groups.
    pub(crate) enabled: bool,
    /// Weight of VMs without a weight of their own.
    pub(crate) default_weight: u32,
    /// Weight of all VMs together against the rest of the system; 0: no class group, each VM
    /// group competes on its own at the top level.
    pub(crate) class_weight: u32,
    /// EEVDF slice of vCPU threads in microseconds; 0: kernel default.
    pub(crate) vcpu_slice_us: u32,
    /// One share per VM, or per vCPU.
    pub(crate) share_mode: ShareMode,
    /// CPUs that reservations may not take, of the online ones.
    pub(crate) headroom: Centi,
    /// Whether the precision loop corrects every contended VM's shares towards its allocation.
    pub(crate) precision: bool,
}

impl Knobs {
    /// The defaults at module load.
    pub(crate) const DEFAULT: Knobs = Knobs {
        enabled: true,
        default_weight: policy::WEIGHT_DEFAULT,
        class_weight: 0,
        vcpu_slice_us: 0,
        share_mode: ShareMode::PerVm,
        headroom: Centi(0),
        precision: true,
    };
}

struct Vcpu {
    id: i32,
    thread: ARef<Task>,
}

/// One VMM process.
pub(crate) struct Vm {
    /// The process's number in the initial pid namespace, as in `vm/<tgid>`.
    tgid: i32,
    process: ProcessId,
    cookies: KVec<usize>,
    vcpus: KVec<Vcpu>,
    weight: Option<u32>,
    /// Guaranteed CPU while it demands that much; 0 for none.
    reservation: Centi,
    /// CPU cap (CFS bandwidth of its group); 0 for none.
    limit: Centi,
    /// What the load monitor measured.
    load: Load,
    /// Its allocation and the shares that give it, while reservations or the precision loop
    /// are in force.
    allocated: Option<(u64, u64)>,
    /// The precision loop's correction of its shares (`allocation::CORRECTION_ONE` = none).
    correction: u64,
    /// The allocation of the precision loop's last pass, to see a new regime by.
    last_alloc: u64,
    /// Passes the precision loop still leaves the VM alone after a new regime.
    hold: u32,
    /// Passes the precision loop has corrected the VM in its regime (after the hold).
    step: u32,
    group: Option<VmGroup>,
    sysctl: Option<SysctlTable>,
}

impl Vm {
    /// The VMM's thread group id.
    pub(crate) fn tgid(&self) -> i32 {
        self.tgid
    }

    /// Takes the process out of its VM group, for unload; an error means a live process stays
    /// in it (the group itself is the kernel's, so this is not unsafe, only untidy).
    pub(crate) fn release(&mut self) -> Result {
        self.detach()
    }

    /// Takes the process out of its VM group. The group reference goes in any case; an error
    /// means a live process could not be moved.
    fn detach(&mut self) -> Result {
        if self.group.is_none() {
            return Ok(());
        }
        let r = match attach_process(&self.process, None) {
            // Exiting, or gone: its signal_struct drops the group.
            Err(e) if e == ESRCH => Ok(()),
            r => r,
        };
        self.group = None;
        r
    }

    /// Gives the vCPU threads the kernel's default slice again.
    fn restore_slices(&self) {
        for vcpu in &self.vcpus {
            // A thread that has exited refuses; nothing to restore then.
            let _ = glue::set_slice(&vcpu.thread, 0);
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            pr_warn!(
                "VM process {}: cannot leave its VM group: {:?}\n",
                self.tgid,
                e
            );
        }
        // `group` is gone; `sysctl` is unregistered when the fields drop.
    }
}

/// Moves every thread of `process` into `group` (or out of its VM group), through its leader.
///
/// `exec()` from a non-leader thread replaces the leader between the lookup and the attach,
/// which then fails with `ESRCH` for the old one: look the leader up again, a bounded number of
/// times. `ESRCH` in the end: the process is exiting or gone.
fn attach_process(process: &ProcessId, group: Option<&VmGroup>) -> Result {
    for _ in 0..3 {
        let leader = process.leader().ok_or(ESRCH)?;
        match glue::attach(&leader, group) {
            Err(e) if e == ESRCH => continue,
            r => return r,
        }
    }
    Err(ESRCH)
}

/// A snapshot of one VM, for the interface.
pub(crate) struct VmInfo {
    /// VMM thread group id.
    pub(crate) tgid: i32,
    /// vCPUs seen so far.
    pub(crate) vcpus: u32,
    /// Effective weight (own or default).
    pub(crate) weight: u32,
    /// Whether the weight is the VM's own.
    pub(crate) own_weight: bool,
    /// Group shares in force (0 if not grouped).
    pub(crate) shares: u64,
    /// VM group number (0 if not grouped).
    pub(crate) group_id: u64,
    /// KVM VMs of the process.
    pub(crate) vms: u32,
    /// Reservation (0: none).
    pub(crate) reservation: Centi,
    /// Limit (0: none).
    pub(crate) limit: Centi,
    /// What the load monitor measured.
    pub(crate) load: Load,
    /// Allocation in micro-CPUs while reservations or the precision loop are in force.
    pub(crate) allocated: Option<u64>,
    /// The precision loop's correction, in 1/`allocation::CORRECTION_ONE`.
    pub(crate) correction: u64,
}

/// What the load monitor has done so far.
#[derive(Clone, Copy, Default)]
pub(crate) struct MonitorStats {
    /// Passes over the VMs.
    pub(crate) passes: u64,
    /// VM readings taken.
    pub(crate) readings: u64,
    /// Time spent in passes, in nanoseconds.
    pub(crate) busy_ns: u64,
    /// Time of the last pass.
    pub(crate) last_ns: u64,
    /// Group share changes made from allocations.
    pub(crate) share_updates: u64,
}

/// What [`Registry::vm_created`] did.
pub(crate) enum Created {
    /// A new entry for this process: give it its sysctl directory, after dropping (outside the
    /// registry lock) the directory of an earlier process with the same number, if any.
    NewProcess(i32, Option<SysctlTable>),
    /// The process was known already, or is gone.
    Nothing,
}

/// All VMs known to vmfair.
pub(crate) struct Registry {
    knobs: Knobs,
    class: Option<VmGroup>,
    vms: KVec<Vm>,
    /// The load monitor's own figures.
    pub(crate) monitor: MonitorStats,
    /// Group creations to fail with `ENOMEM`, for the KUnit suites.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fail_groups: u32,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new(knobs: Knobs) -> Self {
        Self {
            knobs,
            class: None,
            vms: KVec::new(),
            monitor: MonitorStats::default(),
            #[cfg(CONFIG_KUNIT)]
            fail_groups: 0,
        }
    }

    /// The knobs in force.
    pub(crate) fn knobs(&self) -> Knobs {
        self.knobs
    }

    /// Number of VMM processes.
    pub(crate) fn len(&self) -> usize {
        self.vms.len()
    }

    /// The entry that `tgid` names now: not one whose process has gone, even if its number
    /// has been reused.
    fn index_of_tgid(&self, tgid: i32) -> Option<usize> {
        self.vms
            .iter()
            .position(|v| v.tgid == tgid && v.process.is_nr(tgid))
    }

    fn index_of_process(&self, process: &ProcessId) -> Option<usize> {
        self.vms.iter().position(|v| v.process.same(process))
    }

    /// A new VM group, nested in the class group if `nested` and there is one.
    fn new_group(&mut self, nested: bool) -> Result<VmGroup> {
        #[cfg(CONFIG_KUNIT)]
        if self.fail_groups > 0 {
            self.fail_groups -= 1;
            return Err(ENOMEM);
        }
        VmGroup::new(if nested { self.class.as_ref() } else { None })
    }

    fn index_of_cookie(&self, vm: usize) -> Option<usize> {
        self.vms.iter().position(|v| v.cookies.contains(&vm))
    }

    /// The shares VM `vm` has from its weight alone.
    fn base_shares(&self, vm: &Vm) -> u64 {
        let weight = vm.weight.unwrap_or(self.knobs.default_weight);
        policy::vm_shares(self.knobs.share_mode, weight, vm.vcpus.len() as u32)
    }

    /// The shares VM `vm` is given: from its allocation while reservations are in force.
    fn shares_of(&self, vm: &Vm) -> u64 {
        vm.allocated
            .map_or_else(|| self.base_shares(vm), |(_, s)| s)
    }

    /// Makes sure the class group matches the knobs.
    fn ensure_class(&mut self) -> Result {
        if self.knobs.class_weight == 0 {
            self.class = None;
            return Ok(());
        }
        if self.class.is_none() {
            self.class = Some(self.new_group(false)?);
        }
        if let Some(class) = &self.class {
            class.set_shares(policy::weight_to_shares(u64::from(self.knobs.class_weight)))?;
        }
        Ok(())
    }

    /// Puts VM `i` into a fresh VM group (replacing its current one) with the right shares.
    fn regroup(&mut self, i: usize) -> Result {
        let shares = self.shares_of(&self.vms[i]);
        let group = self.new_group(true)?;
        // A new task group starts at nice-0 shares, the default weight's: skip the per-CPU
        // update for the common case.
        if shares != policy::NICE_0_SHARES {
            group.set_shares(shares)?;
        }
        let quota = allocation::limit_quota_us(self.vms[i].limit);
        if quota != 0 {
            group.set_limit(quota, allocation::LIMIT_PERIOD_US)?;
        }
        attach_process(&self.vms[i].process, Some(&group))?;
        // Dropping the old group after the attach keeps the process grouped throughout.
        self.vms[i].group = Some(group);
        Ok(())
    }

    /// Brings VM `i`'s group and shares in line with the knobs.
    fn apply(&mut self, i: usize) -> Result {
        if !self.knobs.enabled {
            return self.vms[i].detach();
        }
        match &self.vms[i].group {
            None => self.regroup(i),
            Some(g) => g.set_shares(self.shares_of(&self.vms[i])),
        }
    }

    /// Applies the EEVDF slice to every vCPU thread of VM `i`.
    fn apply_slice(&self, i: usize) {
        for vcpu in &self.vms[i].vcpus {
            // A thread that has exited refuses; nothing to do about it.
            let _ = glue::set_slice(&vcpu.thread, self.knobs.vcpu_slice_us);
        }
    }

    /// Groups VM `i` if it should be and is not (an earlier attempt failed); a failure leaves
    /// it ungrouped, to be retried on its next event or knob write.
    fn group_if_needed(&mut self, i: usize) {
        if !self.knobs.enabled || self.vms[i].group.is_some() {
            return;
        }
        if let Err(e) = self.ensure_class().and_then(|()| self.apply(i)) {
            pr_warn!("cannot group VM of process {}: {:?}\n", self.vms[i].tgid, e);
            let _ = self.vms[i].detach();
        }
    }

    /// A VM was created by process `tgid` (`vmm`, `None` if it is already gone).
    ///
    /// On error nothing changed. A process that cannot be grouped keeps its entry (the VM
    /// exists, and gets its directory) until a later event or knob write groups it.
    pub(crate) fn vm_created(
        &mut self,
        vm: usize,
        tgid: i32,
        vmm: Option<&Task>,
    ) -> Result<Created> {
        let Some(vmm) = vmm else {
            return Ok(Created::Nothing);
        };
        let process = ProcessId::of(vmm)?;
        if let Some(i) = self.index_of_process(&process) {
            if !self.vms[i].cookies.contains(&vm) {
                self.vms[i].cookies.push(vm, GFP_KERNEL)?;
            }
            self.group_if_needed(i);
            return Ok(Created::Nothing);
        }
        let mut cookies = KVec::new();
        cookies.push(vm, GFP_KERNEL)?;
        self.vms.push(
            Vm {
                tgid,
                process,
                cookies,
                vcpus: KVec::new(),
                weight: None,
                reservation: Centi(0),
                limit: Centi(0),
                load: Load::default(),
                allocated: None,
                correction: allocation::CORRECTION_ONE,
                last_alloc: 0,
                hold: 0,
                step: 0,
                group: None,
                sysctl: None,
            },
            GFP_KERNEL,
        )?;
        let i = self.vms.len() - 1;
        // An earlier process with this number has been reaped while a VM of it lives on: it
        // can no longer be named, and its directory's name is this process's now.
        let mut stale = None;
        for old in self.vms[..i].iter_mut().filter(|v| v.tgid == tgid) {
            stale = old.sysctl.take().or(stale);
        }
        self.group_if_needed(i);
        Ok(Created::NewProcess(tgid, stale))
    }

    /// Gives the entry of `tgid` its sysctl directory.
    pub(crate) fn set_sysctl(&mut self, tgid: i32, table: SysctlTable) -> Option<SysctlTable> {
        match self.index_of_tgid(tgid) {
            Some(i) => {
                self.vms[i].sysctl = Some(table);
                None
            }
            // The VM went away meanwhile: hand the table back to be dropped outside the lock.
            None => Some(table),
        }
    }

    /// vCPU `vcpu_id` of VM `vm` is now run by `thread`.
    pub(crate) fn vcpu_thread(
        &mut self,
        vm: usize,
        tgid: i32,
        vmm: Option<&Task>,
        vcpu_id: i32,
        thread: &Task,
    ) -> Result<Created> {
        let created = match self.index_of_cookie(vm) {
            Some(_) => Created::Nothing,
            None => self.vm_created(vm, tgid, vmm.or(Some(thread)))?,
        };
        let Some(i) = self.index_of_cookie(vm) else {
            return Ok(created);
        };
        self.group_if_needed(i);
        let before = self.vms[i].vcpus.len();
        match self.vms[i].vcpus.iter_mut().find(|v| v.id == vcpu_id) {
            Some(v) => v.thread = thread.into(),
            None => self.vms[i].vcpus.push(
                Vcpu {
                    id: vcpu_id,
                    thread: thread.into(),
                },
                GFP_KERNEL,
            )?,
        }
        if self.knobs.vcpu_slice_us != 0 {
            let _ = glue::set_slice(thread, self.knobs.vcpu_slice_us);
        }
        if self.vms[i].vcpus.len() != before && self.knobs.share_mode == ShareMode::PerVcpu {
            self.apply(i)?;
        }
        Ok(created)
    }

    /// VM `vm` is being destroyed; returns the process's entry once its last VM is gone.
    ///
    /// Drop the returned entry after releasing the registry lock.
    pub(crate) fn vm_destroyed(&mut self, vm: usize) -> Option<Vm> {
        let i = self.index_of_cookie(vm)?;
        self.vms[i].cookies.retain(|c| *c != vm);
        if !self.vms[i].cookies.is_empty() {
            return None;
        }
        self.vms.remove(i).ok()
    }

    /// Removes every entry, for unload: vCPU threads get the default slice back. Call
    /// [`Vm::release`] on each after releasing the registry lock, then drop it.
    pub(crate) fn drain(&mut self) -> KVec<Vm> {
        if self.knobs.vcpu_slice_us != 0 {
            for vm in &self.vms {
                vm.restore_slices();
            }
        }
        self.class = None;
        core::mem::take(&mut self.vms)
    }

    /// Sets the weight of the VM run by process `tgid`. Nothing changes on error.
    pub(crate) fn set_weight(&mut self, tgid: i32, weight: u32) -> Result {
        policy::validate_weight(weight).map_err(|_| EINVAL)?;
        let i = self.index_of_tgid(tgid).ok_or(ESRCH)?;
        let old = self.vms[i].weight.replace(weight);
        if let Err(e) = self.apply(i) {
            self.vms[i].weight = old;
            let _ = self.apply(i);
            return Err(e);
        }
        self.rebalance(false);
        Ok(())
    }

    /// Changes the knobs and applies them to every VM. On error the old knobs are restored.
    pub(crate) fn set_knobs(&mut self, knobs: Knobs) -> Result {
        let old = self.knobs;
        if old == knobs {
            return Ok(());
        }
        self.knobs = knobs;
        let res = self.apply_knobs(old);
        if res.is_err() {
            self.knobs = old;
            let _ = self.apply_knobs(knobs);
        }
        self.rebalance(false);
        res
    }

    fn apply_knobs(&mut self, old: Knobs) -> Result {
        let regroup_all = (old.class_weight == 0) != (self.knobs.class_weight == 0);
        if self.knobs.enabled {
            self.ensure_class()?;
        }
        for i in 0..self.vms.len() {
            let r = if regroup_all && self.knobs.enabled {
                self.regroup(i)
            } else {
                self.apply(i)
            };
            match r {
                // The VMM is exiting: its VM's destruction removes the entry. One exiting
                // VMM must not fail (and roll back) a knob write for all the others.
                Err(e) if e == ESRCH => {}
                r => r?,
            }
            if old.vcpu_slice_us != self.knobs.vcpu_slice_us {
                self.apply_slice(i);
            }
        }
        if !self.knobs.enabled {
            self.class = None;
        }
        Ok(())
    }

    /// What may be reserved in all, in hundredths of a CPU.
    fn capacity(&self, headroom: Centi) -> Centi {
        allocation::capacity(glue::online_cpus(), headroom)
    }

    /// The reservations of all VMs but entry `skip`, in hundredths of a CPU.
    fn reserved_except(&self, skip: Option<usize>) -> u64 {
        self.vms
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, v)| u64::from(v.reservation.0))
            .sum()
    }

    /// Sets the reservation of the VM run by process `tgid`: `EINVAL` above its limit,
    /// `ENOSPC` if the reservations of all VMs would exceed what may be reserved. Nothing
    /// changes on error.
    pub(crate) fn set_reservation(&mut self, tgid: i32, reservation: Centi) -> Result {
        let i = self.index_of_tgid(tgid).ok_or(ESRCH)?;
        let others = self.reserved_except(Some(i));
        allocation::admit(
            reservation,
            self.vms[i].limit,
            others,
            self.capacity(self.knobs.headroom),
        )
        .map_err(admit_errno)?;
        self.vms[i].reservation = reservation;
        self.rebalance(false);
        Ok(())
    }

    /// Sets the limit of the VM run by process `tgid` (CFS bandwidth of its group): `EINVAL`
    /// below its reservation or where the scheduler refuses. Nothing changes on error.
    pub(crate) fn set_limit(&mut self, tgid: i32, limit: Centi) -> Result {
        let i = self.index_of_tgid(tgid).ok_or(ESRCH)?;
        allocation::admit(self.vms[i].reservation, limit, 0, Centi(u32::MAX))
            .map_err(admit_errno)?;
        if let Some(g) = &self.vms[i].group {
            g.set_limit(
                allocation::limit_quota_us(limit),
                allocation::LIMIT_PERIOD_US,
            )?;
        }
        self.vms[i].limit = limit;
        self.rebalance(false);
        Ok(())
    }

    /// Sets the host headroom that reservations may not take: `ENOSPC` if the reservations in
    /// force would no longer fit. Nothing changes on error.
    pub(crate) fn set_headroom(&mut self, headroom: Centi) -> Result {
        if self.reserved_except(None) > u64::from(self.capacity(headroom).0) {
            return Err(ENOSPC);
        }
        let mut k = self.knobs;
        k.headroom = headroom;
        self.set_knobs(k)
    }

    /// One pass of the load monitor at `t_ns`: reads every VM's counters, then brings the
    /// shares in line with the allocation.
    pub(crate) fn monitor_pass(&mut self, t_ns: u64) {
        let mut readings = 0;
        for vm in self.vms.iter_mut() {
            let Some(leader) = vm.process.leader() else {
                continue;
            };
            if let Ok(st) = glue::process_stats(&leader) {
                vm.load.update(Reading {
                    t_ns,
                    cpu_ns: st.cpu_ns,
                    wait_ns: st.wait_ns,
                });
                readings += 1;
            }
        }
        self.monitor.passes += 1;
        self.monitor.readings += readings;
        self.rebalance(true);
    }

    /// Shares from the allocation rule while any VM has a reservation or the precision loop is
    /// on; base shares otherwise.
    ///
    /// The allocation ([`policy::allocate_ucpu`]) takes each grouped VM's weight, its demand
    /// as measured by the load monitor (all its vCPUs busy until measured), its reservation
    /// and its limit; [`allocation::allocation_shares`] turns it into shares. With
    /// `precision`, every contended VM (measured, allocated less than it demands and than its
    /// limit) also has its shares corrected by an integral controller on what it used
    /// ([`allocation::correction_step`]), the corrections of the contended VMs kept at a mean
    /// of one. A change of less than 1/64 of the shares in force (1/256 with `precision`) is not
    /// applied: setting shares takes every CPU's run queue lock. `pass`: called from a monitor
    /// pass rather than a knob write.
    fn rebalance(&mut self, pass: bool) {
        let on = self.knobs.enabled;
        let reserved = on && self.vms.iter().any(|v| v.reservation.0 != 0);
        let precise = on && self.knobs.precision;
        let active = reserved || precise;
        let n = self.vms.len();
        let mut scratch = KVec::new();
        // Allocations, shares, and whether the precision loop corrects the VM (0/1).
        if active && scratch.resize(3 * n, 0u64, GFP_KERNEL).is_err() {
            // Keep what is in force; the next pass tries again.
            return;
        }
        if active {
            let (mode, default_weight) = (self.knobs.share_mode, self.knobs.default_weight);
            let vms = &self.vms;
            let claim = |i: usize| {
                let v = &vms[i];
                if v.group.is_none() {
                    return Claim::default();
                }
                let vcpus = v.vcpus.len() as u32;
                let weight = v.weight.unwrap_or(default_weight);
                Claim {
                    weight: policy::effective_weight(mode, weight, vcpus),
                    demand: v.load.demand(u64::from(vcpus.max(1)) * UCPU),
                    reservation: v.reservation.ucpu(),
                    limit: v.limit.ucpu(),
                }
            };
            let cpus = u64::from(glue::online_cpus()) * UCPU;
            let (alloc, rest) = scratch.split_at_mut(n);
            let (shares, corrected) = rest.split_at_mut(n);
            let level = policy::allocate_ucpu(cpus, n, claim, alloc);
            allocation::allocation_shares(
                n,
                level,
                claim,
                |i| alloc[i],
                |i| self.base_shares(&self.vms[i]),
                shares,
            );
            if precise {
                for i in 0..n {
                    let c = claim(i);
                    // Contended: given less than it demands, and not held by its limit
                    // (CFS bandwidth enforces that one; more shares would not help).
                    corrected[i] = u64::from(
                        vms[i].group.is_some()
                            && vms[i].load.samples > 1
                            && alloc[i] > 0
                            && alloc[i] < c.demand
                            && (c.limit == 0 || alloc[i] < c.limit),
                    );
                }
            }
        }
        if precise {
            self.correct(&mut scratch, n, pass);
        } else {
            for v in self.vms.iter_mut() {
                v.correction = allocation::CORRECTION_ONE;
            }
        }
        let deadband = if precise { 256 } else { 64 };
        for i in 0..n {
            let want = if active && self.vms[i].group.is_some() {
                Some((scratch[i], scratch[n + i]))
            } else {
                None
            };
            let (old, new) = (
                self.shares_of(&self.vms[i]),
                want.map_or_else(|| self.base_shares(&self.vms[i]), |(_, s)| s),
            );
            self.vms[i].allocated = want;
            if old.abs_diff(new) > old / deadband || (want.is_none() && old != new) {
                if let Some(g) = &self.vms[i].group {
                    if g.set_shares(new).is_ok() {
                        self.monitor.share_updates += 1;
                    }
                }
            } else if let Some((a, _)) = want {
                // Keep the shares in force, record the new allocation.
                self.vms[i].allocated = Some((a, old));
            }
        }
    }

    /// The precision loop's pass over `scratch` (allocations, shares, corrected flags; `n`
    /// each; `pass`: called from a monitor pass, not a knob write): a corrected VM whose
    /// allocation moved into a new regime ([`allocation::regime_changed`]) starts again at a
    /// correction of one, with its short window restarted, and is left alone for
    /// [`allocation::CORRECTION_HOLD`] monitor passes (a correction integrated from a lagging
    /// average would overshoot); on a monitor pass every other corrected VM's correction takes
    /// a step on what it used over the fast window, larger in the first passes of its regime
    /// ([`allocation::correction_gain_div`]). The corrections are normalised to a mean of one
    /// and applied to the shares. A VM that is not corrected goes back to a correction of one.
    fn correct(&mut self, scratch: &mut [u64], n: usize, pass: bool) {
        let (mut sum, mut count) = (0u64, 0u64);
        for i in 0..n {
            let v = &mut self.vms[i];
            let alloc = scratch[i];
            // Only a contended VM's regime matters; an idle VM's allocation follows its demand.
            if scratch[2 * n + i] != 0 && allocation::regime_changed(v.last_alloc, alloc) {
                v.correction = allocation::CORRECTION_ONE;
                v.hold = allocation::CORRECTION_HOLD;
                v.load.restart_short();
            }
            v.last_alloc = alloc;
            if v.hold > 0 {
                // Counted in monitor passes: a knob write in between brings no new reading.
                if pass {
                    v.hold -= 1;
                }
                scratch[2 * n + i] = 0;
            }
            if scratch[2 * n + i] == 0 {
                // Held after a new regime, or not contended: corrected again, it starts
                // from one, its steps counted afresh.
                v.correction = allocation::CORRECTION_ONE;
                v.step = 0;
                continue;
            }
            if pass {
                // A knob write brings no new reading to step on.
                let div = allocation::correction_gain_div(v.step);
                v.correction =
                    allocation::correction_step(v.correction, alloc, v.load.used_fast, div);
                v.step = v.step.saturating_add(1);
            }
            sum += v.correction;
            count += 1;
        }
        for i in 0..n {
            if scratch[2 * n + i] == 0 {
                continue;
            }
            let v = &mut self.vms[i];
            v.correction = allocation::normalised_correction(v.correction, sum, count);
            scratch[n + i] = allocation::corrected_shares(scratch[n + i], v.correction);
        }
    }

    /// A snapshot of the VM run by process `tgid`.
    pub(crate) fn info(&self, tgid: i32) -> Result<VmInfo> {
        let i = self.index_of_tgid(tgid).ok_or(ESRCH)?;
        Ok(self.info_at(i))
    }

    fn info_at(&self, i: usize) -> VmInfo {
        let vm = &self.vms[i];
        VmInfo {
            tgid: vm.tgid,
            vcpus: vm.vcpus.len() as u32,
            weight: vm.weight.unwrap_or(self.knobs.default_weight),
            own_weight: vm.weight.is_some(),
            shares: if vm.group.is_some() {
                self.shares_of(vm)
            } else {
                0
            },
            group_id: vm.group.as_ref().map_or(0, |g| g.id()),
            vms: vm.cookies.len() as u32,
            reservation: vm.reservation,
            limit: vm.limit,
            load: vm.load,
            allocated: vm.allocated.map(|(a, _)| a),
            correction: vm.correction,
        }
    }

    /// Snapshots of all VMs that their number names, in registration order, for `f`. A VM
    /// whose VMM has been reaped (a child keeps it alive) is left out: it cannot be addressed.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&VmInfo)) {
        for (i, vm) in self.vms.iter().enumerate() {
            if vm.process.is_nr(vm.tgid) {
                f(&self.info_at(i));
            }
        }
    }

    /// CPU use of the VM run by process `tgid`.
    pub(crate) fn stats(&self, tgid: i32) -> Result<ProcStats> {
        let i = self.index_of_tgid(tgid).ok_or(ESRCH)?;
        let leader = self.vms[i].process.leader().ok_or(ESRCH)?;
        glue::process_stats(&leader)
    }

    /// Whether `task` runs in the VM group of process `tgid` (for the KUnit suites).
    pub(crate) fn in_group(&self, tgid: i32, task: &Task) -> bool {
        self.index_of_tgid(tgid)
            .and_then(|i| self.vms[i].group.as_ref())
            .is_some_and(|g| g.contains(task))
    }
}

fn admit_errno(e: AdmitError) -> Error {
    match e {
        AdmitError::NoRoom => ENOSPC,
        AdmitError::AboveLimit => EINVAL,
    }
}
