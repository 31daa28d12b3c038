// SPDX-License-Identifier: GPL-2.0

//! Kernel glue: thin safe wrappers over the C interfaces vmfair uses.
//!
//! Every `unsafe` block of the module lives in this file: VM groups
//! (`<linux/sched/vmgroup.h>`), the KVM VM notifier (`<linux/kvm_vm_notifier.h>`), sysctl tables,
//! task lookup, the EEVDF slice, and kernel threads for the KUnit suites. The registry and the
//! interface are safe Rust on top of it.

use core::{fmt, marker::PhantomPinned, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    prelude::*,
    str::CString,
    sync::{aref::ARef, Arc},
    task::Task,
    types::{ForeignOwnable, Opaque},
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

/// A KVM VM life cycle event, with counted references to the tasks it names.
pub(crate) enum VmEvent {
    /// A VM was created (or exists when the listener registers).
    Create {
        /// Opaque VM cookie.
        vm: usize,
        /// VMM thread group id.
        tgid: i32,
        /// VMM process, if still alive.
        vmm: Option<ARef<Task>>,
    },
    /// A VM is being destroyed.
    Destroy {
        /// Opaque VM cookie.
        vm: usize,
    },
    /// A vCPU is run by a new thread.
    VcpuThread {
        /// Opaque VM cookie.
        vm: usize,
        /// VMM thread group id.
        tgid: i32,
        /// VMM process, if still alive.
        vmm: Option<ARef<Task>>,
        /// vCPU id.
        vcpu_id: i32,
        /// The thread.
        thread: ARef<Task>,
    },
}

/// Receives KVM VM events.
///
/// The listener is shared ([`Arc`]), so that other registrations (sysctl files, say) can hold
/// it too.
pub(crate) trait VmListener: Send + Sync + 'static {
    /// Called in process context from the notifier's own ordered workqueue, one event at a time
    /// and in the order KVM reported them, without any KVM lock held: may sleep and allocate,
    /// but must not drop the [`VmNotifier`] that calls it.
    fn event(this: &Arc<Self>, ev: VmEvent);
}

/// A workqueue that runs one work item at a time, in the order queued.
///
/// # Invariants
///
/// `self.0` is a workqueue allocated by `alloc_workqueue()`, destroyed only on drop.
struct OrderedQueue(NonNull<bindings::workqueue_struct>);

// SAFETY: workqueues may be used and destroyed from any task.
unsafe impl Send for OrderedQueue {}
// SAFETY: queueing and flushing are thread-safe.
unsafe impl Sync for OrderedQueue {}

impl OrderedQueue {
    /// Allocates an ordered workqueue named `name`.
    fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: the format and its one argument are valid C strings; `name` is static. Flags as
        // alloc_ordered_workqueue() sets them: unbound, ordered, one active item.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(
                c"%s".as_ptr().cast(),
                bindings::wq_flags_WQ_UNBOUND | bindings::wq_flags___WQ_ORDERED,
                1,
                name.as_ptr(),
            )
        };
        // INVARIANT: a non-null result is a new workqueue we own.
        NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }

    fn queue(&self) -> &kernel::workqueue::Queue {
        // SAFETY: `self.0` is a valid workqueue until `self` is dropped (type invariant), which
        // the returned borrow cannot outlive.
        unsafe { kernel::workqueue::Queue::from_raw(self.0.as_ptr()) }
    }

    /// Waits until every item queued so far has run.
    fn flush(&self) {
        // SAFETY: `self.0` is a valid workqueue (type invariant).
        unsafe { bindings::__flush_workqueue(self.0.as_ptr()) };
    }
}

impl Drop for OrderedQueue {
    fn drop(&mut self) {
        // SAFETY: `self.0` is our workqueue (type invariant); destroy_workqueue() runs the items
        // still queued first, and nothing queues on it any more once we are dropped.
        unsafe { bindings::destroy_workqueue(self.0.as_ptr()) };
    }
}

/// The address of a registered [`VmNotifier`], for its work items.
struct NotifierRef<T: VmListener>(*const VmNotifier<T>);

// SAFETY: the notifier is `Sync` (its listener is), and it outlives every work item that holds
// this reference: it flushes its queue before it goes away (type invariant of `VmNotifier`).
unsafe impl<T: VmListener> Send for NotifierRef<T> {}

/// A KVM VM notifier delivering events to a `T`, registered while it exists.
///
/// # Invariants
///
/// Once [`VmNotifier::register`] has returned it, `nb` is registered with KVM with
/// `Self::trampoline` as its callback, until drop unregisters it. Work items on `queue` refer
/// to `self`; drop flushes `queue` after unregistering, before anything is freed.
#[pin_data(PinnedDrop)]
pub(crate) struct VmNotifier<T: VmListener> {
    #[pin]
    nb: Opaque<bindings::notifier_block>,
    queue: OrderedQueue,
    listener: Arc<T>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: the notifier block is only read and written by KVM; we only hand out its address. The
// listener is shared as `&T` across tasks, hence its bounds (`VmListener: Send + Sync`).
unsafe impl<T: VmListener> Send for VmNotifier<T> {}
// SAFETY: as above.
unsafe impl<T: VmListener> Sync for VmNotifier<T> {}

impl<T: VmListener> VmNotifier<T> {
    /// Registers a notifier that delivers KVM's VM events to `listener` from an ordered
    /// workqueue named `name`. The VMs and vCPU threads that exist already are replayed to the
    /// listener, and handled, before this returns. Unregistered when the result is dropped,
    /// which waits for the events queued until then. Sleeps.
    pub(crate) fn register(name: &'static CStr, listener: Arc<T>) -> Result<Pin<KBox<Self>>> {
        let this = KBox::pin_init(
            try_pin_init!(Self {
                nb: Opaque::new(bindings::notifier_block {
                    notifier_call: Some(Self::trampoline),
                    next: core::ptr::null_mut(),
                    priority: 0,
                }),
                queue: OrderedQueue::new(name)?,
                listener,
                _pin: PhantomPinned,
            }? Error),
            GFP_KERNEL,
        )?;
        // SAFETY: `nb` is pinned inside `this`, and `this` unregisters it when dropped, before
        // its memory goes; the callback and the listener are ready for the replay.
        to_result(unsafe { bindings::kvm_vm_notifier_register(this.nb.get()) })?;
        // INVARIANT: registered; dropping `this` on error above unregisters a block KVM does
        // not know, which is harmless.
        this.queue.flush();
        Ok(this)
    }

    /// Makes the owned form of KVM's event `action`, or `None` for one we do not handle.
    ///
    /// # Safety
    ///
    /// The task pointers in `ev` must be null or valid for the duration of the call.
    unsafe fn owned_event(action: c_ulong, ev: &bindings::kvm_vm_event) -> Option<VmEvent> {
        let task = |p: *mut bindings::task_struct| {
            NonNull::new(p).map(|p| {
                // SAFETY: `Task` is a transparent wrapper of `task_struct`, and `p` is valid for
                // the call (the caller's promise); the `ARef` takes a reference of its own.
                ARef::from(unsafe { &*p.as_ptr().cast::<Task>() })
            })
        };
        let vm = ev.vm as usize;
        Some(match action as u32 {
            bindings::kvm_vm_event_type_KVM_VM_EVENT_CREATE => VmEvent::Create {
                vm,
                tgid: ev.vmm_tgid,
                vmm: task(ev.vmm),
            },
            bindings::kvm_vm_event_type_KVM_VM_EVENT_DESTROY => VmEvent::Destroy { vm },
            bindings::kvm_vm_event_type_KVM_VM_EVENT_VCPU_THREAD => VmEvent::VcpuThread {
                vm,
                tgid: ev.vmm_tgid,
                vmm: task(ev.vmm),
                vcpu_id: ev.vcpu_id,
                thread: task(ev.vcpu_task)?,
            },
            _ => return None,
        })
    }

    /// The notifier block's callback.
    ///
    /// # Safety
    ///
    /// Called by KVM only, for the `nb` of a registered `VmNotifier<T>`, with `data` pointing
    /// to a `struct kvm_vm_event` whose task pointers are null or valid for the call.
    unsafe extern "C" fn trampoline(
        nb: *mut bindings::notifier_block,
        action: c_ulong,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `nb` is the `nb` field of a registered `VmNotifier<T>` (the caller's
        // promise), which is pinned and alive while registered (type invariant).
        let this = unsafe { kernel::container_of!(Opaque::cast_from(nb).cast_mut(), Self, nb) };
        // SAFETY: `data` is a valid `struct kvm_vm_event` whose task pointers are null or
        // valid for the duration of the call (the caller's promise).
        let Some(event) = (unsafe { Self::owned_event(action, &*data.cast()) }) else {
            return bindings::NOTIFY_DONE as c_int;
        };
        let at = NotifierRef(this.cast_const());
        // SAFETY: `this` is alive (see above).
        let queue = unsafe { &(*this).queue };
        let queued = queue.queue().try_spawn(GFP_KERNEL, move || {
            let at = at;
            // SAFETY: the notifier flushes its queue before it goes away (type invariant), so
            // it is alive while this item runs.
            T::event(&unsafe { &*at.0 }.listener, event)
        });
        if queued.is_err() {
            pr_warn!("out of memory: a KVM VM event is lost\n");
        }
        bindings::NOTIFY_OK as c_int
    }
}

#[pinned_drop]
impl<T: VmListener> PinnedDrop for VmNotifier<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `nb` is a valid notifier block; unregistering one KVM does not know is a
        // no-op. Once this returns KVM runs no callback of ours, so nothing queues on `queue`
        // any more.
        unsafe { bindings::kvm_vm_notifier_unregister(self.nb.get()) };
        // Every item queued refers to `self`: let them run while it is alive.
        self.queue.flush();
    }
}

/// A text buffer for sysctl reads, on the heap, at most [`TextBuf::MAX`] bytes.
pub(crate) struct TextBuf {
    buf: KVVec<u8>,
}

impl TextBuf {
    /// Largest content: 1 MiB.
    pub(crate) const MAX: usize = 1 << 20;

    /// An empty buffer.
    pub(crate) fn new() -> Self {
        Self { buf: KVVec::new() }
    }

    /// What was written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.buf.len() + s.len() > Self::MAX {
            return Err(fmt::Error);
        }
        self.buf
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}

/// The behaviour of the files of a [`SysctlTable`]; `key` tells the files apart.
///
/// Handlers run in process context, in the task that reads or writes the file, possibly
/// several at once, and may sleep.
pub(crate) trait SysctlFile: Send + Sync + 'static {
    /// Formats the file's whole content into `out`.
    fn show(&self, key: usize, out: &mut TextBuf) -> Result;
    /// Applies a write of `input` (the whole write); an error is returned to the writer.
    fn store(&self, key: usize, input: &[u8]) -> Result;
}

/// One file of a table.
#[derive(Clone, Copy)]
pub(crate) struct SysctlEntry {
    /// File name.
    pub(crate) name: &'static CStr,
    /// Permissions, e.g. `0o644`.
    pub(crate) mode: u16,
    /// Passed to the [`SysctlFile`] handlers.
    pub(crate) key: usize,
}

impl SysctlEntry {
    /// A file `name` with `mode`, served with `key`.
    pub(crate) const fn new(name: &'static CStr, mode: u16, key: usize) -> Self {
        Self { name, mode, key }
    }
}

/// A registered sysctl directory whose files are served by one `T: SysctlFile`; unregistered
/// on drop.
///
/// Dropping it waits for the handlers running on it, so it must not be dropped while holding
/// a lock they take.
///
/// # Invariants
///
/// `header` is the registration of `table` under `path`. Every entry of `table` has
/// `sysctl_handler::<T>` as its handler and, as its `data`, `data`: a pointer from
/// `Arc::<T>::into_foreign()` whose reference this object owns and gives back (`put`) only
/// after unregistering.
pub(crate) struct SysctlTable {
    header: NonNull<bindings::ctl_table_header>,
    data: *mut c_void,
    /// Gives back the reference behind `data`: `Arc::<T>::from_foreign()`, then drop.
    put: unsafe fn(*mut c_void),
    _table: KVec<bindings::ctl_table>,
    _path: CString,
}

// SAFETY: unregistering and dropping the `Arc<T>` (`T: Send + Sync`) may be done from any task.
unsafe impl Send for SysctlTable {}
// SAFETY: `&SysctlTable` gives access to nothing.
unsafe impl Sync for SysctlTable {}

/// Drops the reference behind a pointer from `Arc::<T>::into_foreign()`.
///
/// # Safety
///
/// `p` comes from `Arc::<T>::into_foreign()` and its reference is not used after this.
unsafe fn put_arc<T: SysctlFile>(p: *mut c_void) {
    // SAFETY: as the caller promises.
    drop(unsafe { Arc::<T>::from_foreign(p) });
}

impl SysctlTable {
    /// Registers the directory `path` (e.g. `kernel/vmfair`, parents created as needed) with
    /// `files`, served by `data`. The table keeps `data` alive until it is unregistered.
    pub(crate) fn register<T: SysctlFile>(
        path: CString,
        data: Arc<T>,
        files: &[SysctlEntry],
    ) -> Result<Self> {
        let mut table = KVec::with_capacity(files.len(), GFP_KERNEL)?;
        let data = data.into_foreign();
        // Gives the reference back if anything below fails, before registration.
        let undo = kernel::types::ScopeGuard::new(|| {
            // SAFETY: `data` comes from `into_foreign()` and is not used after this guard runs.
            unsafe { put_arc::<T>(data) }
        });
        for f in files {
            table.push(
                bindings::ctl_table {
                    procname: f.name.as_ptr().cast(),
                    data,
                    maxlen: 0,
                    mode: f.mode,
                    proc_handler: Some(sysctl_handler::<T>),
                    poll: core::ptr::null_mut(),
                    extra1: f.key as *mut c_void,
                    extra2: core::ptr::null_mut(),
                },
                GFP_KERNEL,
            )?;
        }
        // SAFETY: `path` and `table` are valid, and the returned object keeps them (and the
        // reference behind every entry's `data`) alive until it has unregistered the table.
        let header = unsafe {
            bindings::register_sysctl_sz(path.as_ptr().cast(), table.as_ptr(), table.len())
        };
        let header = NonNull::new(header).ok_or(ENOMEM)?;
        undo.dismiss();
        // INVARIANT: `header` registers `table`, whose entries are as described, under `path`.
        Ok(Self {
            header,
            data,
            put: put_arc::<T>,
            _table: table,
            _path: path,
        })
    }
}

impl Drop for SysctlTable {
    fn drop(&mut self) {
        // SAFETY: `header` is our registration (type invariant), unregistered once, here;
        // unregister_sysctl_table() waits for the handlers running on it.
        unsafe { bindings::unregister_sysctl_table(self.header.as_ptr()) };
        // SAFETY: no handler runs or can start any more, so the reference behind `data` (type
        // invariant) is not used after this.
        unsafe { (self.put)(self.data) };
    }
}

/// The `proc_handler` of every file of a [`SysctlTable`] served by a `T`.
///
/// # Safety
///
/// Called by the sysctl core only, for an entry of a registered [`SysctlTable`] served by a
/// `T`, with `lenp` and `ppos` valid and `buf` holding (writes) or having room for (reads)
/// `*lenp` bytes.
unsafe extern "C" fn sysctl_handler<T: SysctlFile>(
    table: *const bindings::ctl_table,
    dir: c_int,
    buf: *mut c_void,
    lenp: *mut usize,
    ppos: *mut bindings::loff_t,
) -> c_int {
    // SAFETY: `table` is an entry of a registered `SysctlTable` served by a `T`, so its `data`
    // comes from `Arc::<T>::into_foreign()` and the table holds that reference until it has
    // unregistered, which waits for this call (type invariant of `SysctlTable`).
    let (file, key) = unsafe { (Arc::<T>::borrow((*table).data), (*table).extra1 as usize) };
    // SAFETY: `lenp` and `ppos` are valid for the call (the caller's promise).
    let (len, pos) = unsafe { (*lenp, *ppos) };
    let Ok(pos) = usize::try_from(pos) else {
        return EINVAL.to_errno();
    };
    if dir != 0 {
        if pos != 0 {
            return EINVAL.to_errno();
        }
        // SAFETY: for writes, `buf` holds `len` bytes copied from user space.
        let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
        if let Err(e) = file.store(key, input) {
            return e.to_errno();
        }
        // SAFETY: as above.
        unsafe { *ppos += len as bindings::loff_t };
        return 0;
    }
    let mut text = TextBuf::new();
    if let Err(e) = file.show(key, &mut text) {
        return e.to_errno();
    }
    let content = text.as_bytes();
    let n = content.len().saturating_sub(pos).min(len);
    if n > 0 {
        // SAFETY: for reads, `buf` has room for `len` bytes, and `pos + n <= content.len()`.
        unsafe { core::ptr::copy_nonoverlapping(content.as_ptr().add(pos), buf.cast::<u8>(), n) };
    }
    // SAFETY: `lenp` and `ppos` are valid for the call.
    unsafe {
        *lenp = n;
        *ppos += n as bindings::loff_t;
    }
    0
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
