// SPDX-License-Identifier: GPL-2.0

//! Kernel glue: thin safe wrappers over the scheduler's VM group interface and the other C
//! interfaces vmfair uses.
//!
//! The module's `unsafe` code lives in three thin layers: this file (VM groups,
//! `<linux/sched/vmgroup.h>`; task and pid lookup; the EEVDF slice; kernel threads for the
//! KUnit suites), [`crate::kvm_notifier`] (KVM VM events) and [`crate::sysctl`] (sysctl
//! directories); the last two know nothing of vmfair. The registry and the interface are safe
//! Rust on top of them.

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    prelude::*,
    sync::aref::ARef,
    task::Task,
};

/// An owned reference to a VM group (a `struct autogroup` with the VM flag).
///
/// # Invariants
///
/// `self.0` points to a VM group on which this object holds one reference.
pub(crate) struct VmGroup(NonNull<bindings::autogroup>);

// SAFETY: VM groups are reference counted with a kref, and the sched_vmgroup_*() functions may be
// called from any task in process context.
unsafe impl Send for VmGroup {}
// SAFETY: See above; `&VmGroup` only allows calls that lock internally.
unsafe impl Sync for VmGroup {}

impl VmGroup {
    /// Creates a VM group below `parent` (a class group), or below the root group. Sleeps.
    pub(crate) fn new(parent: Option<&VmGroup>) -> Result<Self> {
        let parent = parent.map_or(core::ptr::null_mut(), |p| p.0.as_ptr());
        // SAFETY: `parent` is null or a VM group we hold a reference on (type invariant); we run in
        // process context without spinlocks, as the function requires.
        let ag = from_err_ptr(unsafe { bindings::sched_vmgroup_create(parent) })?;
        // INVARIANT: sched_vmgroup_create() returned a group with one reference for us.
        NonNull::new(ag).map(Self).ok_or(ENOMEM)
    }

    /// Sets the group's weight in scheduler shares (1024 = a nice-0 task). Sleeps.
    pub(crate) fn set_shares(&self, shares: u64) -> Result {
        let shares = c_ulong::try_from(shares).unwrap_or(c_ulong::MAX);
        // SAFETY: `self.0` is a valid VM group (type invariant); process context.
        to_result(unsafe { bindings::sched_vmgroup_set_shares(self.0.as_ptr(), shares) })
    }

    /// The group's number, as in `/vmgroup-<id>` in `/sys/kernel/debug/sched/debug`.
    pub(crate) fn id(&self) -> u64 {
        // SAFETY: `self.0` is a valid VM group (type invariant).
        unsafe { bindings::sched_vmgroup_id(self.0.as_ptr()) as u64 }
    }

    /// Whether `task` runs in this group now.
    pub(crate) fn contains(&self, task: &Task) -> bool {
        // SAFETY: both pointers are valid for the duration of the call.
        unsafe { bindings::sched_vmgroup_task_in(task.as_ptr(), self.0.as_ptr()) }
    }
}

impl Drop for VmGroup {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant) and give it back exactly once.
        unsafe { bindings::sched_vmgroup_put(self.0.as_ptr()) };
    }
}

/// Moves every thread of `task`'s process into `group`, or out of its VM group if `None`.
///
/// Threads in a non-root cpu cgroup stay where they are. Sleeps; fails with `ESRCH` if the
/// process is exiting.
pub(crate) fn attach(task: &Task, group: Option<&VmGroup>) -> Result {
    let ag = group.map_or(core::ptr::null_mut(), |g| g.0.as_ptr());
    // SAFETY: `task` is valid for the call; `ag` is null or a valid VM group.
    to_result(unsafe { bindings::sched_vmgroup_attach(task.as_ptr(), ag) })
}

/// CPU use of a process.
#[derive(Clone, Copy, Default)]
pub(crate) struct ProcStats {
    /// CPU time of all threads, exited ones included, in ns.
    pub(crate) cpu_ns: u64,
    /// Run-queue wait of the live threads, in ns.
    pub(crate) wait_ns: u64,
    /// Live threads.
    pub(crate) threads: u32,
}

/// Reads the CPU use of `task`'s process.
pub(crate) fn process_stats(task: &Task) -> Result<ProcStats> {
    let mut st = bindings::sched_vmgroup_stats::default();
    // SAFETY: `task` is valid for the call and `st` is a valid, writable struct.
    to_result(unsafe { bindings::sched_vmgroup_task_stats(task.as_ptr(), &mut st) })?;
    Ok(ProcStats {
        cpu_ns: st.cpu_ns,
        wait_ns: st.wait_ns,
        threads: st.nr_threads,
    })
}

/// Sets the EEVDF slice of a fair-class thread to `slice_us` microseconds (0: kernel default),
/// keeping its policy and nice value. Threads of other classes are left alone.
pub(crate) fn set_slice(task: &Task, slice_us: u32) -> Result {
    // SAFETY: `task` is valid for the call; process context without spinlocks.
    to_result(unsafe {
        bindings::sched_vmgroup_set_slice(task.as_ptr(), u64::from(slice_us) * 1000)
    })
}

/// Whether the current task may change scheduling of other users' processes (`CAP_SYS_NICE`).
pub(crate) fn may_change_weights() -> bool {
    // SAFETY: FFI call without preconditions.
    unsafe { bindings::capable(bindings::CAP_SYS_NICE as c_int) }
}

/// The initial pid namespace, whose numbers vmfair's interface uses.
fn init_pid_ns() -> *mut bindings::pid_namespace {
    // Taking the address of the static does not access it.
    &raw mut bindings::init_pid_ns
}

/// The `struct pid` numbered `nr` in the initial pid namespace, compared by address only.
fn global_pid(nr: i32) -> *const bindings::pid {
    let _rcu = kernel::sync::rcu::read_lock();
    // SAFETY: called under the RCU read lock, as find_pid_ns() requires; the result is only
    // compared, never dereferenced, so it may go stale once the lock is dropped.
    unsafe { bindings::find_pid_ns(nr, init_pid_ns()) }
}

/// Whether process id `nr` is in use in the initial pid namespace (a process or a thread).
///
/// vmfair names VMM processes by their pid in the initial namespace everywhere (`vm/<pid>`,
/// `vms`, `vm_weight`), whatever namespace the VMM or the writer runs in.
pub(crate) fn pid_exists(nr: i32) -> bool {
    !global_pid(nr).is_null()
}

/// A process (thread group), held by its `struct pid` of type `PIDTYPE_TGID`.
///
/// Unlike the leader `task_struct`, this survives `exec()` from a non-leader thread (the thread
/// takes over the leader's pid) and is never confused with a later process that reuses the
/// number.
///
/// # Invariants
///
/// `self.0` is a `struct pid` on which this object holds one reference.
pub(crate) struct ProcessId(NonNull<bindings::pid>);

// SAFETY: `struct pid` is reference counted and the functions used here may be called from any
// task.
unsafe impl Send for ProcessId {}
// SAFETY: `&ProcessId` only allows lookups, which take their own locks.
unsafe impl Sync for ProcessId {}

impl ProcessId {
    /// The process that `task` belongs to; `ESRCH` if it has gone.
    pub(crate) fn of(task: &Task) -> Result<Self> {
        // SAFETY: `task` is valid for the call; get_task_pid() returns a counted reference or
        // NULL.
        let pid = unsafe { bindings::get_task_pid(task.as_ptr(), bindings::pid_type_PIDTYPE_TGID) };
        // INVARIANT: the reference is ours.
        NonNull::new(pid).map(Self).ok_or(ESRCH)
    }

    /// The process's leader now, if the process still has threads.
    pub(crate) fn leader(&self) -> Option<ARef<Task>> {
        // SAFETY: `self.0` is a valid pid (type invariant); get_pid_task() returns a counted
        // reference or NULL.
        let t = unsafe { bindings::get_pid_task(self.0.as_ptr(), bindings::pid_type_PIDTYPE_TGID) };
        // SAFETY: `Task` is a transparent wrapper of `task_struct`, and the reference
        // get_pid_task() took is handed to the `ARef`.
        NonNull::new(t).map(|t| unsafe { ARef::from_raw(t.cast::<Task>()) })
    }

    /// Whether `nr` names this process in the initial pid namespace now. False once the
    /// process has been reaped, even if a new process got the number.
    pub(crate) fn is_nr(&self, nr: i32) -> bool {
        core::ptr::eq(global_pid(nr), self.0.as_ptr())
    }

    /// Whether both name the same process.
    pub(crate) fn same(&self, other: &ProcessId) -> bool {
        self.0 == other.0
    }
}

impl Drop for ProcessId {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant) and give it back exactly once.
        unsafe { bindings::put_pid(self.0.as_ptr()) };
    }
}

/// Gives `task`'s process a new session autogroup, as `setsid()` does (for the KUnit suites).
pub(crate) fn new_session_autogroup(task: &Task) {
    // Exported by kernel/sched/autogroup.c; <linux/sched/autogroup.h> is not in the bindings.
    // The task is passed untyped: its type is opaque to `improper_ctypes`.
    extern "C" {
        fn sched_autogroup_create_attach(p: *mut c_void);
    }
    // SAFETY: `task` is valid for the call; the function sleeps and takes no lock of ours.
    unsafe { sched_autogroup_create_attach(task.as_ptr().cast()) };
}

/// A kernel thread that sleeps until stopped, for the KUnit suites.
pub(crate) struct Sleeper(ARef<Task>);

unsafe extern "C" fn sleeper_fn(_data: *mut c_void) -> c_int {
    // SAFETY: plain FFI calls from the kthread itself.
    while !unsafe { bindings::kthread_should_stop() } {
        // SAFETY: as above.
        unsafe { bindings::schedule_timeout_interruptible(1) };
    }
    0
}

impl Sleeper {
    /// Starts the thread.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: `sleeper_fn` is a valid thread function and the name a valid C string.
        let t = from_err_ptr(unsafe {
            bindings::kthread_create_on_node(
                Some(sleeper_fn),
                core::ptr::null_mut(),
                bindings::NUMA_NO_NODE,
                c"vmfair-kunit".as_ptr().cast(),
            )
        })?;
        // SAFETY: `t` is a valid new kthread; we take a reference for `kthread_stop_put()`.
        let task = unsafe {
            bindings::get_task_struct(t);
            bindings::wake_up_process(t);
            ARef::from_raw(NonNull::new_unchecked(t.cast::<Task>()))
        };
        Ok(Self(task))
    }

    /// The thread.
    pub(crate) fn task(&self) -> &Task {
        &self.0
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SAFETY: the thread only exits once stopped, so it is alive here; kthread_stop() waits.
        unsafe { bindings::kthread_stop(self.0.as_ptr()) };
    }
}
