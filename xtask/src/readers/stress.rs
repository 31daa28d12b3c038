//! `results/stress/stress.json`: what `cargo xtask stress` writes (the boot) around the one line
//! of JSON that `vmfair-run stress` prints in the guest (`selftests/vmfair-run/src/stress/`).
//! The types hold what the report and the verdict read; the file has more (the build and
//! boot times, the console's path, the kmsg reader's record counts …).

use super::nullable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct StressFile {
    /// Kernel release of the debug kernel.
    pub release: String,
    /// Kernel command line added for the boot.
    pub cmdline: String,
    pub guest_cpus: u32,
    pub guest_mem_mib: u32,
    pub boot_s: u64,
    /// Problems of the boot (no result, no end of run).
    pub problems: Vec<String>,
    /// The guest's result; `null` when the guest printed none.
    #[serde(deserialize_with = "nullable")]
    pub guest: Option<Guest>,
}

/// The guest's line (`vmfair-run stress`).
#[derive(Debug, Deserialize)]
pub struct Guest {
    pub seconds: u64,
    pub seed: u64,
    pub fail_percent: u32,
    /// VMM processes started: `null` when the spawners started none.
    #[serde(deserialize_with = "nullable")]
    pub vm_processes: Option<u64>,
    pub vms_created: u64,
    pub loads: u64,
    pub unloads: u64,
    pub writes: u64,
    pub injected: u64,
    pub reports: u64,
    pub leaks: u64,
    /// The counters shared by the parent and its children, by name.
    pub counters: BTreeMap<String, u64>,
    pub load: Load,
    pub kmsg: Kmsg,
    pub end: End,
    pub problems: Vec<String>,
    pub passed: bool,
}

/// The workloads' counts.
#[derive(Debug, Deserialize)]
pub struct Load {
    /// VMM processes: spawned, exited, killed at a phase …
    pub vmm: BTreeMap<String, u64>,
    /// Churn processes: spawned, killed, failed.
    pub churn: BTreeMap<String, u64>,
    pub module: ModuleLoop,
    pub knobs: Knobs,
    pub cgroup_moves: u64,
    pub autogroup_toggles: u64,
}

/// The `modprobe`/`rmmod` loop.
#[derive(Debug, Deserialize)]
pub struct ModuleLoop {
    pub load_failures: u64,
    pub unload_failures: u64,
    pub arm_failures: u64,
}

/// The knob writers.
#[derive(Debug, Deserialize)]
pub struct Knobs {
    /// Writes by `good|bad.<result>`.
    pub results: BTreeMap<String, u64>,
}

/// The `/dev/kmsg` reader.
#[derive(Debug, Deserialize)]
pub struct Kmsg {
    /// Log lines of note (vmfair's own messages), by kind.
    pub notes: BTreeMap<String, u64>,
    /// The first lines of each kernel report.
    pub excerpts: Vec<Vec<String>>,
}

/// The state after the last `rmmod`. The report shows it whole, so every field is read and
/// an unknown one is an error; fields in alphabetical order, as the file has them.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    pub kmemleak: Kmemleak,
    pub kvm_vms: u64,
    pub rmmod_tries: u64,
    pub slab_after: BTreeMap<String, u64>,
    pub slab_before: BTreeMap<String, u64>,
    pub vm_group_rqs: u64,
    pub vm_group_threads: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kmemleak {
    /// The first lines of each unreferenced object.
    pub excerpts: Vec<String>,
    pub leaks: u64,
    pub scan_s: u64,
}
