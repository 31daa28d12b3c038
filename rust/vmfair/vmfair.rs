// SPDX-License-Identifier: GPL-2.0

//! vmfair: VM-aware fair scheduling.
//!
//! Makes each KVM virtual machine (one VMM process) one fairly weighted entity of the fair
//! scheduler, whatever its number of vCPU and I/O threads.
//!
//! The module is split by concern:
//! - [`policy`]: pure arithmetic (weights, share modes, entitlement), shared with the host crate
//!   `vmfair-policy`;
//! - `kunit`: the KUnit suites, run when the module is loaded on a `CONFIG_KUNIT=y` kernel.

use kernel::prelude::*;

#[allow(dead_code, unreachable_pub)]
mod policy;

mod kunit;

module! {
    type: VmFair,
    name: "vmfair",
    authors: ["vmfair developers"],
    description: "VM-aware fair scheduling: one fair share per KVM VM",
    license: "GPL",
}

struct VmFair;

impl kernel::Module for VmFair {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!(
            "loaded (default weight {}, range {}..{})\n",
            policy::WEIGHT_DEFAULT,
            policy::WEIGHT_MIN,
            policy::WEIGHT_MAX
        );
        Ok(VmFair)
    }
}

impl Drop for VmFair {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
