// SPDX-License-Identifier: GPL-2.0

//! KVM VM life cycle events (`<linux/kvm_vm_notifier.h>`) delivered to Rust code.
//!
//! [`VmNotifier::register`] registers a notifier with KVM and returns it; it stays registered
//! exactly as long as the returned object exists. KVM calls the notifier inside its ioctls
//! (`KVM_CREATE_VM`, `KVM_RUN`) and while it destroys a VM; the callback only takes references
//! on the tasks the event names and queues it. A [`VmListener`] then gets the events one at a
//! time, in order, from an ordered workqueue of the notifier's own, outside KVM, where it may
//! sleep and allocate.
//!
//! Nothing here knows what the listener does with the events.

use core::{marker::PhantomPinned, ptr::NonNull};
use kernel::{
    bindings,
    error::to_result,
    prelude::*,
    sync::{aref::ARef, Arc},
    task::Task,
    types::Opaque,
};

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
