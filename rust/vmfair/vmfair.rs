// SPDX-License-Identifier: GPL-2.0

//! vmfair: VM-aware fair scheduling.
//!
//! Makes each KVM virtual machine (one VMM process) one fairly weighted entity of the fair
//! scheduler, whatever its number of vCPU and I/O threads. Needs a kernel with the vmfair patch
//! series and `CONFIG_SCHED_VMFAIR=y` (see `Documentation/admin-guide/vmfair.rst`).
//!
//! The module is split by concern:
//! - [`policy`]: pure arithmetic (weights, share modes, entitlement), shared with the host crate
//!   `vmfair-policy`;
//! - [`allocation`]: the arithmetic of reservations, limits and the load monitor, shared
//!   likewise;
//! - [`glue`]: the thin `unsafe` layer over the kernel's VM group interface;
//! - [`kvm_notifier`] and [`sysctl`]: safe wrappers of KVM's VM notifier and of sysctl
//!   directories, with nothing of vmfair in them;
//! - [`registry`]: which processes run VMs, their vCPU threads, weights and groups;
//! - [`interface`]: the sysctls, the KVM event handler and the load monitor's pass (a kernel
//!   thread, every 100 ms);
//! - `kunit`: the KUnit suites, run when the module is loaded on a `CONFIG_KUNIT=y` kernel.
//!
//! Loading adopts the VMs already running (KVM replays them to the new notifier); unloading
//! returns every thread to the group it would have without vmfair.

use kernel::{prelude::*, sync::Arc};

/// Public for the same reason as [`policy`].
pub mod allocation;
mod glue;
mod interface;
mod kvm_notifier;
/// Public: the same file is the host crate `vmfair-policy`, whose users need what this module
/// does not call itself (the host's entitlement front end, the parsers' full API).
pub mod policy;
mod registry;
mod sysctl;

#[cfg(CONFIG_KUNIT)]
mod kunit;

module! {
    type: VmFair,
    name: "vmfair",
    authors: ["vmfair developers"],
    description: "VM-aware fair scheduling: one fair share per KVM VM",
    license: "GPL",
    // The KVM notifier and the VM group API are exported in these
    // namespaces (Documentation/scheduler/vmfair.rst, "Exports").
    imports_ns: ["KVM_VM_NOTIFIER", "SCHED_VMGROUP"],
}

struct VmFair {
    core: Arc<interface::Core>,
    notifier: Option<Pin<KBox<kvm_notifier::VmNotifier<interface::Core>>>>,
    sysctls: Option<sysctl::SysctlTable>,
    monitor: Option<glue::Ticker<interface::Core>>,
}

impl kernel::Module for VmFair {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let core = Arc::pin_init(interface::Core::new(), GFP_KERNEL)?;
        let sysctls = Some(interface::Core::register_sysctls(&core)?);
        let mut this = VmFair {
            core,
            notifier: None,
            sysctls,
            monitor: None,
        };
        // Replays the running VMs: they are adopted before this returns.
        this.notifier = Some(kvm_notifier::VmNotifier::register(
            c"vmfair",
            this.core.clone(),
        )?);
        this.monitor = Some(glue::Ticker::new(this.core.clone(), c"vmfair-monitor")?);
        pr_info!(
            "loaded: {} VM process(es) adopted, default weight {}\n",
            this.core.nr_vms(),
            policy::WEIGHT_DEFAULT
        );
        Ok(this)
    }
}

impl Drop for VmFair {
    fn drop(&mut self) {
        // Stopped first: no pass runs while the VMs go.
        self.monitor = None;
        // Unregistered, and the events queued until then handled: no KVM event after this.
        self.notifier = None;
        let n = self.core.release_all();
        // Per-VM directories are gone; now the parent table.
        self.sysctls = None;
        pr_info!("unloaded: {} VM process(es) released\n", n);
    }
}
