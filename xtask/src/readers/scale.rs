//! `results/scale/scale.json`: what `cargo xtask scale` writes (the boot, the structure sizes
//! of the kernel under test) around one line of JSON per run of `vmfair-run scale` in the
//! guest (`selftests/vmfair-run/src/scale.rs`), each with the host's memory model added. The
//! types hold what the report, the summary and the model read; the file has more (the limits,
//! every memory snapshot, each busy VM's share and migrations …).
//!
//! A run writes its sections as it gets to them, so a run that stopped early (`error` set)
//! lacks the later ones; [`ScaleFile::check`] requires every section of a run that did not.

use super::nullable;
use anyhow::{bail, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct ScaleFile {
    pub guest_cpus: u32,
    pub guest_mem_mib: u32,
    /// `multi` or `single`-threaded TCG.
    pub tcg: String,
    pub parallel: u32,
    pub boot_s: f64,
    /// Problems of the boot (a run without a result, kernel warnings).
    pub problems: Vec<String>,
    pub sizes: Sizes,
    pub runs: Vec<Run>,
}

/// The sizes of the structures behind a VM group, or why the probe could not take them.
#[derive(Debug)]
pub enum Sizes {
    Compiled(StructSizes),
    /// `{"error": "…"}` (the report shows `?` for every size).
    Failed,
}

/// `sizeof` (and one `__alignof__`) in the kernel under test, bytes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StructSizes {
    pub autogroup: u64,
    pub cfs_rq: u64,
    pub cfs_tg_state: u64,
    pub cfs_tg_state_align: u64,
    pub sched_entity: u64,
    pub task_group: u64,
}

impl<'de> Deserialize<'de> for Sizes {
    /// `{"error": "…"}` when the probe failed, else every size.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sizes, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Failed {
            #[allow(dead_code)] // Checked to be a string, not shown.
            error: String,
        }
        let v = serde_json::Value::deserialize(d)?;
        let r = if v.get("error").is_some() {
            serde_json::from_value::<Failed>(v).map(|_: Failed| Sizes::Failed)
        } else {
            serde_json::from_value(v).map(Sizes::Compiled)
        };
        r.map_err(|e| serde::de::Error::custom(format!("sizes: {e}")))
    }
}

impl Sizes {
    pub fn compiled(&self) -> Option<&StructSizes> {
        match self {
            Sizes::Compiled(s) => Some(s),
            Sizes::Failed => None,
        }
    }
}

/// One `vmfair-run scale` run.
#[derive(Debug, Deserialize)]
pub struct Run {
    pub vms: u32,
    pub busy: u32,
    pub possible_cpus: u32,
    pub kernel: String,
    pub problems: Vec<String>,
    pub passed: bool,
    /// Why the run stopped before its end.
    #[serde(default)]
    pub error: Option<String>,
    /// The sections, in the order the run writes them.
    #[serde(default)]
    pub modprobe_empty_s: Option<f64>,
    #[serde(default)]
    pub rmmod_empty_s: Option<f64>,
    /// The N VMs started without vmfair.
    #[serde(default)]
    pub start_stock: Option<Start>,
    #[serde(default)]
    pub modprobe_s: Option<f64>,
    #[serde(default)]
    pub adopted: Option<u64>,
    #[serde(default)]
    pub adopted_check: Option<GroupCheck>,
    #[serde(default)]
    pub reads: Option<Reads>,
    #[serde(default)]
    pub rmmod_s: Option<f64>,
    #[serde(default)]
    pub released_check: Option<ReleasedCheck>,
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub stock_teardown_s: Option<f64>,
    /// The N VMs started with vmfair loaded.
    #[serde(default)]
    pub start: Option<Start>,
    #[serde(default)]
    pub grouped_check: Option<GroupCheck>,
    /// Only when some VMs were busy.
    #[serde(default)]
    pub fairness: Option<Fairness>,
    #[serde(default)]
    pub teardown_s: Option<f64>,
    /// The load monitor's cost with the N VMs (runs since it reads it).
    #[serde(default)]
    pub monitor: Option<MonitorRun>,
    /// Added by the host: [`Model`].
    #[serde(default)]
    pub model: Option<Model>,
}

/// Starting the N VMs.
#[derive(Debug, Deserialize)]
pub struct Start {
    pub total_s: f64,
    pub vms_per_s: f64,
    pub grouped: u64,
    pub grouped_at_create: u64,
    /// From `KVM_CREATE_VM` to the VM's group; `null` when no VM was grouped.
    #[serde(deserialize_with = "nullable")]
    pub group_ms: Option<Pct>,
    #[serde(deserialize_with = "nullable")]
    pub create_vm_ms: Option<Pct>,
    #[serde(deserialize_with = "nullable")]
    pub setup_ms: Option<Pct>,
}

/// Nearest-rank percentiles of a sample, ms.
#[derive(Debug, Deserialize)]
pub struct Pct {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The VMs against `vms`, `vm/<pid>` and the scheduler's debug file (the report shows the
/// last count; the file also has what `vms` listed and which VMs have a directory).
#[derive(Debug, Deserialize)]
pub struct GroupCheck {
    /// VMs in their own VM group, by the scheduler's debug file.
    pub sched_debug_same_id: u64,
}

/// After `rmmod` with the VMs running.
#[derive(Debug, Deserialize)]
pub struct ReleasedCheck {
    pub left_in_vmgroup: u64,
    pub vmfair_dir: bool,
}

/// Read costs with vmfair loaded and after it was unloaded.
#[derive(Debug, Deserialize)]
pub struct Reads {
    #[serde(default)]
    pub loaded: Option<LoadedReads>,
    #[serde(default)]
    pub unloaded: Option<SysctlReads>,
}

/// With vmfair loaded: its files, then every sysctl.
#[derive(Debug, Deserialize)]
pub struct LoadedReads {
    pub vms_ms: Timing,
    /// The size of `vms`, or why it could not be read: exactly one of the two.
    #[serde(default)]
    pub vms_bytes: Option<u64>,
    #[serde(default)]
    pub vms_error: Option<String>,
    pub vm_dir_ms: Timing,
    pub proc_sys_walk_ms: Timing,
    pub proc_sys_files: u64,
    pub sysctl_a_ms: Timing,
}

/// Every sysctl: a walk of `/proc/sys` and `sysctl -a`.
#[derive(Debug, Deserialize)]
pub struct SysctlReads {
    pub proc_sys_walk_ms: Timing,
    pub proc_sys_files: u64,
    pub sysctl_a_ms: Timing,
}

/// A few reads, ms: the median (the file also has the best).
#[derive(Debug, Deserialize)]
pub struct Timing {
    pub median: f64,
}

/// Kernel memory per VM group.
#[derive(Debug, Deserialize)]
pub struct Memory {
    pub per_vm_bytes: PerVmBytes,
    pub per_vm_kib: f64,
    pub module_fixed_kib: i64,
    pub slab_caches_adopted_minus_unloaded: Vec<SlabGrowth>,
    /// Written at the run's end.
    #[serde(default)]
    pub after_run_kib: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct PerVmBytes {
    pub slab: f64,
    pub sunreclaim: f64,
    pub percpu: f64,
    pub slab_objects: f64,
    /// Given back by the `rmmod` after the adoption.
    pub released: f64,
}

/// A slab cache that grew across the adoption.
#[derive(Debug, Deserialize)]
pub struct SlabGrowth {
    pub name: String,
    pub objsize: u64,
    pub objs_per_vm: f64,
    pub bytes_per_vm: f64,
}

/// CPU shares of the busy VMs over the window.
#[derive(Debug, Deserialize)]
pub struct Fairness {
    pub busy: u64,
    pub window_s: f64,
    pub entitlement_cpu: f64,
    pub min_cpu: f64,
    pub max_cpu: f64,
    pub sum_cpu: f64,
    pub worst_deviation: f64,
    pub outside: u64,
    pub stalled: u64,
    pub migrations: u64,
    /// Busy VMs per CPU, by CPU number, about once a second.
    pub vms_per_cpu: Vec<BTreeMap<String, u64>>,
}

/// The load monitor with the N VMs: idle (after adoption) and over the fairness window.
#[derive(Debug, Deserialize)]
pub struct MonitorRun {
    /// `kernel.vmfair.precision`.
    #[serde(default)]
    pub precision: Option<u64>,
    #[serde(default)]
    pub idle: Option<MonitorCost>,
    #[serde(default)]
    pub busy: Option<MonitorCost>,
}

/// `kernel.vmfair.monitor` between two reads.
#[derive(Debug, Deserialize)]
pub struct MonitorCost {
    pub passes: u64,
    pub vms_per_pass: f64,
    /// Time in passes per pass.
    pub pass_ms: f64,
    pub per_vm_pass_us: f64,
    /// Time in passes over the stretch, in CPUs.
    pub cpu_fraction: f64,
    pub share_updates: u64,
}

/// The host's model of a VM group's memory: the measured slab part plus one `cfs_tg_state`
/// per CPU, at the guest's CPU count and at the estimate's.
#[derive(Debug, Deserialize, Serialize)]
pub struct Model {
    pub per_cpu_bytes: u64,
    pub at_measured_kib: f64,
    pub estimate_kib: f64,
}

impl ScaleFile {
    /// Every section of a run that went to its end is there (fairness when VMs were busy),
    /// and so is the model of every run with a memory figure when the sizes are known.
    pub fn check(&self) -> Result<()> {
        for r in &self.runs {
            let n = r.vms;
            let reads = r.reads.as_ref();
            let l = reads.and_then(|x| x.loaded.as_ref());
            if l.is_some_and(|l| l.vms_bytes.is_some() == l.vms_error.is_some()) {
                bail!("{n} VMs: reads.loaded needs one of vms_bytes and vms_error");
            }
            if r.memory.is_some() && self.sizes.compiled().is_some() && r.model.is_none() {
                bail!("{n} VMs: memory but no model");
            }
            if r.error.is_some() {
                continue;
            }
            let missing = [
                ("modprobe_empty_s", r.modprobe_empty_s.is_none()),
                ("rmmod_empty_s", r.rmmod_empty_s.is_none()),
                ("start_stock", r.start_stock.is_none()),
                ("modprobe_s", r.modprobe_s.is_none()),
                ("adopted", r.adopted.is_none()),
                ("adopted_check", r.adopted_check.is_none()),
                ("reads.loaded", l.is_none()),
                (
                    "reads.unloaded",
                    reads.and_then(|x| x.unloaded.as_ref()).is_none(),
                ),
                ("rmmod_s", r.rmmod_s.is_none()),
                ("released_check", r.released_check.is_none()),
                ("memory", r.memory.is_none()),
                (
                    "memory.after_run_kib",
                    r.memory.as_ref().is_some_and(|m| m.after_run_kib.is_none()),
                ),
                ("stock_teardown_s", r.stock_teardown_s.is_none()),
                ("start", r.start.is_none()),
                ("grouped_check", r.grouped_check.is_none()),
                ("fairness", r.busy > 0 && r.fairness.is_none()),
                ("teardown_s", r.teardown_s.is_none()),
            ];
            if let Some((what, _)) = missing.iter().find(|(_, m)| *m) {
                bail!("{n} VMs: the run has no error but no {what}");
            }
            if r.busy == 0 && r.fairness.is_some() {
                bail!("{n} VMs: fairness without busy VMs");
            }
        }
        Ok(())
    }

    /// The run with the most VMs (the last of them on a tie).
    pub fn largest(&self) -> Option<&Run> {
        self.runs.iter().max_by_key(|r| r.vms)
    }
}

/// Parses `text` (named `what` in errors) and checks it ([`ScaleFile::check`]).
pub fn parse(what: &str, text: &str) -> Result<ScaleFile> {
    let f: ScaleFile = super::parse(what, text)?;
    f.check()
        .map_err(|e| e.context(format!("{what} is not a complete result file")))?;
    Ok(f)
}
