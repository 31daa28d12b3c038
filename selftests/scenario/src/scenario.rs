// SPDX-License-Identifier: GPL-2.0
//! The scenario file: its tables and their defaults (see the crate documentation).

use crate::values::{Load, Policy, SysctlValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Scenario name; also the result file name.
    pub name: String,
    /// CPUs of the guest (QEMU `-smp`).
    #[serde(default = "default_guest_cpus")]
    pub guest_cpus: u32,
    /// Measurement window in seconds, after the warm-up.
    pub duration_s: f64,
    /// Warm-up in seconds, after all VMs run and before the window.
    #[serde(default = "default_warmup_s")]
    pub warmup_s: f64,
    /// Grouping policy.
    #[serde(default = "default_policy")]
    pub policy: Policy,
    /// Sysctls written after the policy is set up, e.g. `"kernel.vmfair.enabled" = "1"`.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
    /// The VMs (`[[vm]]`).
    #[serde(default)]
    pub vm: Vec<VmSpec>,
    /// Ordinary host processes competing with the VMs (`[[host]]`).
    #[serde(default)]
    pub host: Vec<HostSpec>,
    /// Addition: sample period of the time series in milliseconds, 0 = no time series.
    #[serde(default)]
    pub sample_ms: u32,
    /// Addition: run-time events inside the window (`[[event]]`), in order of `at_s`.
    #[serde(default)]
    pub event: Vec<EventSpec>,
    /// Addition: how far (percent of the entitlement) a VM's share may be from it for the
    /// judge to pass the run; None = the judge's default (10 %).
    #[serde(default)]
    pub tolerance_pct: Option<f64>,
    /// Addition: run `vmfair-top` during the window and check its `%USED` against the
    /// runner's own figures (policy vmfair; see [`crate::TOP_ITERATIONS`]).
    #[serde(default)]
    pub top: bool,
}

/// What an `[[event]]` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventAction {
    /// Set the per-VM weight of every instance of `vm` to `value` (vmfair's per-VM weight, or
    /// `cpu.weight` under policy cgroup).
    Weight,
    /// `modprobe vmfair` while the VMs run.
    Modprobe,
    /// `rmmod vmfair` while the VMs run.
    Rmmod,
    /// Write `value` to sysctl `key`.
    Sysctl,
    /// Set the reservation (CPUs) of every instance of `vm` to `value` (policy vmfair).
    Reservation,
    /// Set the limit (CPUs) of every instance of `vm` to `value` (vmfair's per-VM limit, or
    /// `cpu.max` of the VM's cgroup under policy cgroup).
    Limit,
}

impl EventAction {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Weight => "weight",
            EventAction::Modprobe => "modprobe",
            EventAction::Rmmod => "rmmod",
            EventAction::Sysctl => "sysctl",
            EventAction::Reservation => "reservation",
            EventAction::Limit => "limit",
        }
    }
}

impl fmt::Display for EventAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[event]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Seconds into the measurement window.
    pub at_s: f64,
    /// What happens.
    pub action: EventAction,
    /// `weight`, `reservation`, `limit`: the `[[vm]]` entry whose instances change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// `sysctl`: the dotted sysctl name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `weight`: the new weight; `reservation`, `limit`: the new amount in CPUs; `sysctl`:
    /// the value written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SysctlValue>,
}

/// One `[[vm]]` entry: `count` identical VM instances, each one VMM process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Name of the VM (instances are numbered 0..count).
    pub name: String,
    /// Identical instances.
    #[serde(default = "one")]
    pub count: u32,
    /// vCPUs per instance, each its own thread.
    #[serde(default = "one")]
    pub vcpus: u32,
    /// Guest load.
    #[serde(default = "default_load")]
    pub load: Load,
    /// Per-VM weight (vmfair per-VM weight, or `cpu.weight` under policy cgroup).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Nice of all the VMM's threads.
    #[serde(default)]
    pub nice: i32,
    /// Extra busy non-vCPU threads in the VMM process.
    #[serde(default)]
    pub io_threads: u32,
    /// idle/bursty: guest timer rate in Hz.
    #[serde(default = "default_tick_hz")]
    pub tick_hz: u32,
    /// idle/bursty: guest work per tick in microseconds.
    #[serde(default = "default_burst_us")]
    pub burst_us: u32,
    /// Addition, desktop: the VMM's I/O thread wakes this often (Hz).
    #[serde(default = "default_io_hz")]
    pub io_hz: u32,
    /// Addition, desktop: the I/O thread's work per wake-up in microseconds.
    #[serde(default = "default_io_us")]
    pub io_us: u32,
    /// Addition, desktop: the VMM's display-refresh thread wakes this often (Hz).
    #[serde(default = "default_refresh_hz")]
    pub refresh_hz: u32,
    /// Addition, desktop: the refresh thread's work per wake-up in microseconds.
    #[serde(default = "default_refresh_us")]
    pub refresh_us: u32,
    /// Addition: place each instance's VMM by hand into its own cpu cgroup with this `cpu.max`
    /// (`"max"` or `"QUOTA PERIOD"`, microseconds), whatever the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<String>,
    /// Addition: CPUs guaranteed to each instance while it demands them (policy vmfair), 0 for
    /// none; two decimals count (see [`cpus_text`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reservation: f64,
    /// Addition: the most CPUs each instance gets (vmfair's per-VM limit, or the cgroup's
    /// `cpu.max` under policy cgroup), 0 for none; two decimals count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: f64,
}

impl EventSpec {
    /// A `reservation` or `limit` event's amount in CPUs (None for other events, or a value
    /// that is not a finite number).
    pub fn cpus(&self) -> Option<f64> {
        if !matches!(self.action, EventAction::Reservation | EventAction::Limit) {
            return None;
        }
        let v: f64 = self.value.as_ref()?.to_string().parse().ok()?;
        v.is_finite().then_some(v)
    }
}

/// A CPU amount (`reservation`, `limit`) as the runner writes it to the module: two decimals
/// (`{:.2}`, so `1.234` is `"1.23"` and `0.004` is `"0.00"`, none).
pub fn cpus_text(cpus: f64) -> String {
    format!("{cpus:.2}")
}

/// The amount the module gets for `cpus`: `cpus` rounded as [`cpus_text`] writes it.
pub fn cpus_rounded(cpus: f64) -> f64 {
    cpus_text(cpus).parse().unwrap_or(0.0)
}

/// `cpus` in hundredths of a CPU, as the module gets it (negative or non-finite: 0).
pub fn cpus_hundredths(cpus: f64) -> u64 {
    let r = cpus_rounded(cpus);
    if r.is_finite() && r > 0.0 {
        (r * 100.0).round() as u64
    } else {
        0
    }
}

/// The `cpu.max` that stands for a limit of `cpus` CPUs under policy cgroup: a quota of
/// `cpus` × the period of 100000 µs (two decimals count), `"max 100000"` for 0 (none).
pub fn limit_cpu_max(cpus: f64) -> String {
    match cpus_hundredths(cpus) {
        0 => "max 100000".to_string(),
        h => format!("{} 100000", h * 1000),
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Whether `s` is a valid cgroup v2 `cpu.max` value: `max` or `QUOTA PERIOD` with
/// QUOTA 1000.. and PERIOD 1000..=1000000 (µs), either optionally `max [PERIOD]`.
pub fn valid_cpu_max(s: &str) -> bool {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let period_ok = |p: &str| {
        p.parse::<u64>()
            .is_ok_and(|v| (1000..=1_000_000).contains(&v))
    };
    match parts.as_slice() {
        ["max"] => true,
        ["max", p] => period_ok(p),
        [q, p] => q.parse::<u64>().is_ok_and(|v| v >= 1000) && period_ok(p),
        _ => false,
    }
}

/// One `[[host]]` entry: `count` ordinary processes with `threads` busy threads each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Name of the process group (instances are numbered 0..count).
    pub name: String,
    /// Identical processes.
    #[serde(default = "one")]
    pub count: u32,
    /// Busy threads per process.
    #[serde(default = "one")]
    pub threads: u32,
    /// Load; only `busy` is supported for host processes.
    #[serde(default = "default_load")]
    pub load: Load,
    /// Nice of the process's threads.
    #[serde(default)]
    pub nice: i32,
}

fn default_guest_cpus() -> u32 {
    2
}
fn default_warmup_s() -> f64 {
    3.0
}
fn default_policy() -> Policy {
    Policy::Stock
}
fn one() -> u32 {
    1
}
fn default_load() -> Load {
    Load::Busy
}
fn default_weight() -> u32 {
    100
}
fn default_tick_hz() -> u32 {
    DEFAULT_TICK.hz
}
fn default_burst_us() -> u32 {
    DEFAULT_TICK.us
}
fn default_io_hz() -> u32 {
    DESKTOP_IO.hz
}
fn default_io_us() -> u32 {
    DESKTOP_IO.us
}
fn default_refresh_hz() -> u32 {
    DESKTOP_REFRESH.hz
}
fn default_refresh_us() -> u32 {
    DESKTOP_REFRESH.us
}

/// Something periodic in a VM: it wakes `hz` times a second and works `us` microseconds each
/// time (an idle guest's timer tick, a desktop VMM's I/O or display-refresh thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periodic {
    pub hz: u32,
    pub us: u32,
}

/// The `tick_hz` and `burst_us` of a `[[vm]]` that sets none (`idle`, `bursty`, `desktop`).
pub const DEFAULT_TICK: Periodic = Periodic { hz: 250, us: 50 };

/// `load = "desktop"`: the VMM's I/O thread where the file sets no `io_hz`, `io_us`.
pub const DESKTOP_IO: Periodic = Periodic { hz: 20, us: 200 };

/// `load = "desktop"`: the VMM's display-refresh thread where the file sets no `refresh_hz`,
/// `refresh_us`.
pub const DESKTOP_REFRESH: Periodic = Periodic { hz: 30, us: 300 };

/// Threads a desktop VMM runs beside its vCPUs and busy I/O threads (I/O and refresh).
pub const DESKTOP_THREADS: u32 = 2;
