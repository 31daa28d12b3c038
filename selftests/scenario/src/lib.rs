// SPDX-License-Identifier: GPL-2.0
//! The vmfair scenario contract (Documentation/vmfair/contract.rst): the scenario file (TOML) and the result
//! (one line of JSON) that the in-guest runner `vmfair-run` prints.
//!
//! The API is deliberately small:
//!
//! * [`Scenario::from_toml_str`] parses *and validates* a scenario file. Unknown keys are an
//!   error (every table is `deny_unknown_fields`), so are out-of-range values.
//! * [`ScenarioResult`] is the result; it is `Serialize`/`Deserialize`.
//!   [`ScenarioResult::from_json_str`] parses one, [`ScenarioResult::to_json_line`] writes one,
//!   [`ScenarioResult::find_in_output`] picks it out of a serial-console log.
//!
//! # Defaults
//!
//! Top level: `guest_cpus = 2`, `warmup_s = 3`, `policy = "stock"`, `[sysctl]` empty; `name` and
//! `duration_s` are required. `[[vm]]`: `count = 1`, `vcpus = 1`, `load = "busy"`, `weight = 100`,
//! `nice = 0`, `io_threads = 0`, `tick_hz = 250`, `burst_us = 50`; `name` is required.
//! `[[host]]`: `count = 1`, `threads = 1`, `load = "busy"`, `nice = 0`; `name` is required.
//! Additions (not in §4): `sample_ms = 0` (no time series), no `[[event]]`, no `cpu_max`.
//!
//! # Additions: time series, events, hand-placed cgroups
//!
//! * `sample_ms` (50..=5000, or 0 = off): the runner samples every process's CPU time and guest
//!   progress this often over the window; each result group then carries `series`.
//! * `[[event]]` entries (`at_s`, `action`, and `vm`/`key`/`value` as the action needs) happen
//!   at `at_s` seconds into the window, in order: `weight` sets the per-VM weight of every
//!   instance of `vm` to `value` at run time; `modprobe` and `rmmod` load and unload vmfair
//!   while the VMs run (the runner records every thread's scheduler group before the first
//!   `modprobe` and after each `rmmod`: the result's `checks` say whether they match);
//!   `sysctl` writes `value` to `key`. The result's `events` say when each happened and how.
//! * `cpu_max` on a `[[vm]]` (cgroup v2 `cpu.max` syntax, `"max"` or `"QUOTA PERIOD"` in µs):
//!   each instance's VMM is placed by hand, before it starts, into its own cpu cgroup
//!   `vmfair-<name>-<i>` with that limit, whatever the policy: a management stack's placement.
//!
//! # Ranges
//!
//! `guest_cpus` 1..=64, `duration_s` in (0, 3600], `warmup_s` in [0, 600], `count` 1..=64,
//! `vcpus` 1..=64, `threads` 1..=64, `weight` 1..=10000 (cgroup v2 `cpu.weight` scale),
//! `nice` -20..=19, `io_threads` 0..=64, `tick_hz` 19..=10000 (the PIT's 16-bit divisor),
//! `burst_us` 0..(1e6 / `tick_hz`); events: `at_s` in [0, `duration_s`), a `weight` event's
//! `value` 1..=10000 and `vm` naming a `[[vm]]` entry.
//! Names are 1..=32 characters of `[A-Za-z0-9_-]`, unique over all `[[vm]]` and `[[host]]`
//! entries (they become cgroup and file names). Sysctl keys are dotted names of
//! `[A-Za-z0-9_-]` components; values are strings or integers.
//!
//! # Result stability
//!
//! The result keys of §4 never change. Additions are allowed, so the result types here do *not*
//! reject unknown keys, and the added keys have defaults so that older results still parse.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How VMs are grouped for the fair scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Autogroup off, no vmfair: every thread competes on its own.
    Stock,
    /// Autogroup on, every VMM in its own session (so its own autogroup).
    Autogroup,
    /// One cgroup v2 per VM instance with `cpu.weight` = the VM's weight (libvirt style).
    Cgroup,
    /// The vmfair module loaded, autogroup off.
    Vmfair,
}

impl Policy {
    /// The name used in scenario files and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Stock => "stock",
            Policy::Autogroup => "autogroup",
            Policy::Cgroup => "cgroup",
            Policy::Vmfair => "vmfair",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a VM's guest code (or a host process) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    /// Spin forever counting loop iterations; never exits to the VMM.
    Busy,
    /// HLT between timer ticks at `tick_hz`, `burst_us` of work per tick.
    Idle,
    /// Like idle, meant with a larger `burst_us`.
    Bursty,
    /// The UnixBench-style suite (integer loop, memory copy, I/O round trips to the VMM),
    /// looped for the whole window; the result's `index` is 10 × the geometric mean of the
    /// sub-scores against fixed baselines.
    Bench,
}

impl Load {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Load::Busy => "busy",
            Load::Idle => "idle",
            Load::Bursty => "bursty",
            Load::Bench => "bench",
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sysctl value: TOML strings and integers are both accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SysctlValue {
    /// `"kernel.x" = "100"`
    Str(String),
    /// `"kernel.x" = 100`
    Int(i64),
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Str(s) => f.write_str(s),
            SysctlValue::Int(i) => write!(f, "{i}"),
        }
    }
}

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
}

impl EventAction {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Weight => "weight",
            EventAction::Modprobe => "modprobe",
            EventAction::Rmmod => "rmmod",
            EventAction::Sysctl => "sysctl",
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
    /// `weight`: the `[[vm]]` entry whose instances change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// `sysctl`: the dotted sysctl name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `weight`: the new weight; `sysctl`: the value written.
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
    /// Addition: place each instance's VMM by hand into its own cpu cgroup with this `cpu.max`
    /// (`"max"` or `"QUOTA PERIOD"`, microseconds), whatever the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<String>,
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
    250
}
fn default_burst_us() -> u32 {
    50
}
fn default_true() -> bool {
    true
}

fn check_range<T: PartialOrd + fmt::Display>(
    errs: &mut Vec<String>,
    what: &str,
    v: T,
    lo: T,
    hi: T,
) {
    if v < lo || v > hi {
        errs.push(format!("{what} = {v} is out of range {lo}..={hi}"));
    }
}

fn check_name(errs: &mut Vec<String>, what: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        errs.push(format!(
            "{what} name {name:?} must be 1..=32 characters of [A-Za-z0-9_-]"
        ));
    }
}

impl Scenario {
    /// Parses and validates a scenario file. The error says what is wrong, with every
    /// validation failure joined by `"; "`.
    pub fn from_toml_str(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks ranges and consistency (see the crate documentation).
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        check_name(&mut errs, "scenario", &self.name);
        check_range(&mut errs, "guest_cpus", self.guest_cpus, 1, 64);
        if !(self.duration_s > 0.0 && self.duration_s <= 3600.0) {
            errs.push(format!(
                "duration_s = {} must be > 0 and <= 3600",
                self.duration_s
            ));
        }
        if !(self.warmup_s >= 0.0 && self.warmup_s <= 600.0) {
            errs.push(format!(
                "warmup_s = {} must be >= 0 and <= 600",
                self.warmup_s
            ));
        }
        for (key, value) in &self.sysctl {
            let key_ok = key.split('.').count() >= 2
                && key.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !key_ok {
                errs.push(format!(
                    "sysctl key {key:?} must be a dotted name like \"kernel.vmfair.enabled\""
                ));
            }
            if value.to_string().contains(['\n', '\0']) {
                errs.push(format!("sysctl {key}: value must be one line"));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for vm in &self.vm {
            let what = format!("vm {:?}", vm.name);
            check_name(&mut errs, "vm", &vm.name);
            if names.contains(&vm.name.as_str()) {
                errs.push(format!("{what}: duplicate name"));
            }
            names.push(&vm.name);
            check_range(&mut errs, &format!("{what}: count"), vm.count, 1, 64);
            check_range(&mut errs, &format!("{what}: vcpus"), vm.vcpus, 1, 64);
            check_range(&mut errs, &format!("{what}: weight"), vm.weight, 1, 10000);
            check_range(&mut errs, &format!("{what}: nice"), vm.nice, -20, 19);
            check_range(
                &mut errs,
                &format!("{what}: io_threads"),
                vm.io_threads,
                0,
                64,
            );
            check_range(
                &mut errs,
                &format!("{what}: tick_hz"),
                vm.tick_hz,
                19,
                10000,
            );
            if let Some(m) = &vm.cpu_max {
                if !valid_cpu_max(m) {
                    errs.push(format!(
                        "{what}: cpu_max = {m:?} must be \"max\" or \"QUOTA PERIOD\" in \
                         microseconds (quota >= 1000, period 1000..=1000000)"
                    ));
                }
            }
            if vm.tick_hz > 0 && u64::from(vm.burst_us) * u64::from(vm.tick_hz) >= 1_000_000 {
                errs.push(format!(
                    "{what}: burst_us = {} must be shorter than one tick (1e6 / tick_hz = {} us)",
                    vm.burst_us,
                    1_000_000 / vm.tick_hz
                ));
            }
        }
        for h in &self.host {
            let what = format!("host {:?}", h.name);
            check_name(&mut errs, "host", &h.name);
            if names.contains(&h.name.as_str()) {
                errs.push(format!("{what}: duplicate name"));
            }
            names.push(&h.name);
            check_range(&mut errs, &format!("{what}: count"), h.count, 1, 64);
            check_range(&mut errs, &format!("{what}: threads"), h.threads, 1, 64);
            check_range(&mut errs, &format!("{what}: nice"), h.nice, -20, 19);
            if h.load != Load::Busy {
                errs.push(format!(
                    "{what}: load = \"{}\" is not supported for host processes (only \"busy\")",
                    h.load
                ));
            }
        }
        if self.sample_ms != 0 {
            check_range(&mut errs, "sample_ms", self.sample_ms, 50, 5000);
        }
        let mut last_at = 0.0;
        for (i, ev) in self.event.iter().enumerate() {
            let what = format!("event {} ({})", i + 1, ev.action);
            if !(ev.at_s >= 0.0 && ev.at_s < self.duration_s) {
                errs.push(format!(
                    "{what}: at_s = {} must be in [0, duration_s = {})",
                    ev.at_s, self.duration_s
                ));
            }
            if ev.at_s < last_at {
                errs.push(format!("{what}: events must be in order of at_s"));
            }
            last_at = ev.at_s;
            let (want_vm, want_key, want_value) = match ev.action {
                EventAction::Weight => (true, false, true),
                EventAction::Sysctl => (false, true, true),
                EventAction::Modprobe | EventAction::Rmmod => (false, false, false),
            };
            for (have, want, key) in [
                (ev.vm.is_some(), want_vm, "vm"),
                (ev.key.is_some(), want_key, "key"),
                (ev.value.is_some(), want_value, "value"),
            ] {
                if have && !want {
                    errs.push(format!("{what}: `{key}` does not apply"));
                } else if want && !have {
                    errs.push(format!("{what}: `{key}` is required"));
                }
            }
            if ev.action == EventAction::Weight {
                if let Some(vm) = &ev.vm {
                    if !self.vm.iter().any(|v| &v.name == vm) {
                        errs.push(format!("{what}: no [[vm]] named {vm:?}"));
                    }
                }
                if let Some(v) = &ev.value {
                    match v.to_string().parse::<u32>() {
                        Ok(w) => check_range(&mut errs, &format!("{what}: value"), w, 1, 10000),
                        Err(_) => errs.push(format!("{what}: value {v} is not a weight")),
                    }
                }
            }
            if let (EventAction::Sysctl, Some(key)) = (ev.action, &ev.key) {
                if !key.contains('.') || key.contains(['/', '\n', '\0', ' ']) {
                    errs.push(format!("{what}: key {key:?} must be a dotted sysctl name"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("scenario {:?}: {}", self.name, errs.join("; ")))
        }
    }
}

/// Whether a result group is a VM instance or a host process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A VM instance (one VMM process).
    Vm,
    /// An ordinary host process.
    Host,
}

/// The figures of one VM instance or host process over the measurement window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    /// `vm` or `host`.
    pub kind: GroupKind,
    /// Name from the scenario.
    pub name: String,
    /// Instance number, 0..count.
    pub instance: u32,
    /// Process id (in the guest).
    pub pid: u32,
    /// vCPUs (0 for host processes).
    pub vcpus: u32,
    /// CPU time of all the process's threads inside the window, seconds.
    pub cpu_s: f64,
    /// Progress inside the window: guest loop iterations (busy), timer ticks (idle/bursty),
    /// loop iterations of the busy threads (host).
    pub work: u64,
    /// Benchmark index for `load = "bench"`, `null` otherwise.
    pub index: Option<f64>,
    /// Addition: run-queue wait of all the process's threads inside the window, seconds.
    #[serde(default)]
    pub wait_s: f64,
    /// Addition: busy threads asked for (vCPUs + io_threads, or host threads).
    #[serde(default)]
    pub threads: u32,
    /// Addition: the weight asked for (VMs; 0 for host processes).
    #[serde(default)]
    pub weight: u32,
    /// Addition: the nice asked for.
    #[serde(default)]
    pub nice: i32,
    /// Addition: loop iterations of the VMM's io threads inside the window.
    #[serde(default)]
    pub io_work: u64,
    /// Addition: CPU time inside the window of kernel threads working for this VM outside its
    /// process (the in-kernel PIT's `kvm-pit/<pid>`), seconds. Not included in `cpu_s`.
    #[serde(default)]
    pub kthread_cpu_s: f64,
    /// Addition: VM exits (KVM's debugfs `exits`, all vCPUs) inside the window; `null` for host
    /// processes or when debugfs is not available.
    #[serde(default)]
    pub exits: Option<u64>,
    /// Addition: time KVM spent halt-polling for this VM inside the window (debugfs
    /// `halt_poll_success_ns + halt_poll_fail_ns`), seconds; part of `cpu_s`. `null` for host
    /// processes or without debugfs.
    #[serde(default)]
    pub halt_poll_s: Option<f64>,
    /// Addition: voluntary context switches (sleeps: HLT, waits) of all the process's threads
    /// inside the window (`voluntary_ctxt_switches` of `/proc/<pid>/task/*/status`).
    #[serde(default)]
    pub voluntary_switches: Option<u64>,
    /// Addition: involuntary context switches (preemptions) of all the process's threads
    /// inside the window (`nonvoluntary_ctxt_switches`).
    #[serde(default)]
    pub involuntary_switches: Option<u64>,
    /// Addition: wake-up placement and migration counters of the process's threads inside the
    /// window (`nr_wakeups*`, `se.nr_migrations` of `/proc/<pid>/task/*/sched`, summed); only
    /// when `kernel.sched_schedstats` = 1 (set it in `[sysctl]`), empty otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sched: BTreeMap<String, u64>,
    /// Addition: the sub-test figures behind `index` (`load = "bench"`), empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bench: Vec<BenchScore>,
    /// Addition: the time series (`sample_ms` > 0): cumulative figures since the window start,
    /// the first sample at the start (all zero), the last at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Sample>,
}

/// One point of a time series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the window start.
    pub t_s: f64,
    /// CPU time of the process since the window start, seconds.
    pub cpu_s: f64,
    /// Guest progress since the window start (as `work`).
    pub work: u64,
}

/// What happened for one `[[event]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Seconds into the window when the action was taken.
    pub at_s: f64,
    /// The action.
    pub action: EventAction,
    /// What was done (paths and values written, command run).
    pub detail: String,
    /// Whether the action succeeded.
    pub ok: bool,
    /// How long the action took, seconds.
    pub took_s: f64,
}

/// A pass/fail check the runner made (for example: every thread back in its group after
/// `rmmod`). Unlike `problems`, a failed check does not make the figures invalid: it is a
/// finding for the test that asked for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Short name, e.g. `groups-restored`.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// One sub-test of the `bench` load over the window (all vCPUs of the VM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchScore {
    /// Sub-test name (`arith`, `copy`, `io`).
    pub test: String,
    /// Unit of `rate` and `baseline`.
    pub unit: String,
    /// Operations completed in the window.
    pub ops: u64,
    /// Guest time (TSC) spent in the sub-test in the window, summed over vCPUs, seconds.
    pub seconds: f64,
    /// Sum over vCPUs of ops / seconds, in `unit`.
    pub rate: f64,
    /// Fixed reference rate, in `unit`.
    pub baseline: f64,
    /// `rate / baseline`.
    pub score: f64,
}

/// The accounting identity over the window: CPU time of all tasks plus idle time should be
/// `cpus * window_s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// Online CPUs.
    pub cpus: u32,
    /// Wall-clock length of the window, seconds.
    pub window_s: f64,
    /// Sum of the CPU time of all tasks (`/proc/*/task/*/schedstat`) over the window, seconds.
    pub tasks_cpu_s: f64,
    /// Idle time summed over CPUs (`/proc/uptime`) over the window, seconds.
    pub idle_s: f64,
    /// `(tasks_cpu_s + idle_s) / (cpus * window_s)`; valid results need it within 0.9..=1.3
    /// and `tasks_cpu_s` at most 1.02 x `cpus * window_s` (idle is tick-sampled while the tick
    /// runs, so it reads high under many short sleeps; see the runner).
    pub ratio: f64,
}

/// A scenario result, printed by `vmfair-run scenario` as one line of JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// Policy in force.
    pub policy: Policy,
    /// Kernel release (`uname -r`) of the guest.
    pub kernel: String,
    /// CPUs online in the guest.
    pub guest_cpus: u32,
    /// Measured length of the window, seconds.
    pub duration_s: f64,
    /// One entry per VM instance and per host process.
    pub groups: Vec<GroupResult>,
    /// Addition: false if any check failed; the figures must not be used then.
    #[serde(default = "default_true")]
    pub valid: bool,
    /// Addition: what went wrong (each names the VM or check and the figures).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Addition: the accounting identity figures, if they were measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<Accounting>,
    /// Addition: what happened for each `[[event]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventRecord>,
    /// Addition: checks made by the runner (see [`Check`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

impl ScenarioResult {
    /// Parses a result (one JSON object).
    pub fn from_json_str(text: &str) -> Result<ScenarioResult, String> {
        serde_json::from_str(text.trim()).map_err(|e| format!("result: {e}"))
    }

    /// The result as one line of JSON, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing plain data to a String cannot fail (no maps with non-string keys,
        // floats are written as null if not finite).
        serde_json::to_string(self).expect("result serializes")
    }

    /// Finds the last result line in a log (e.g. a serial console): a line that, after any
    /// leading garbage up to `{"scenario":`, parses as a result. `None` if there is none.
    pub fn find_in_output(log: &str) -> Option<Result<ScenarioResult, String>> {
        log.lines().rev().find_map(|line| {
            line.find("{\"scenario\":")
                .map(|at| ScenarioResult::from_json_str(&line[at..]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "weights-1-3"
guest_cpus = 2
duration_s = 20
warmup_s = 3
policy = "vmfair"
[sysctl]
"kernel.vmfair.default_weight" = "100"
"kernel.sched_autogroup_enabled" = 0

[[vm]]
name = "a"
count = 1
vcpus = 2
load = "busy"
weight = 100
nice = 0
io_threads = 0
tick_hz = 250
burst_us = 50

[[vm]]
name = "b"
weight = 300

[[host]]
name = "noise"
count = 1
threads = 1
load = "busy"
"#;

    #[test]
    fn good_scenario_parses_with_defaults() {
        let s = Scenario::from_toml_str(GOOD).unwrap();
        assert_eq!(s.name, "weights-1-3");
        assert_eq!(s.policy, Policy::Vmfair);
        assert_eq!(s.duration_s, 20.0);
        assert_eq!(s.vm.len(), 2);
        assert_eq!(s.vm[0].vcpus, 2);
        let b = &s.vm[1];
        assert_eq!(
            (b.count, b.vcpus, b.load, b.weight),
            (1, 1, Load::Busy, 300)
        );
        assert_eq!(
            (b.nice, b.io_threads, b.tick_hz, b.burst_us),
            (0, 0, 250, 50)
        );
        assert_eq!(s.host[0].threads, 1);
        assert_eq!(
            s.sysctl["kernel.vmfair.default_weight"].to_string(),
            "100".to_string()
        );
        assert_eq!(s.sysctl["kernel.sched_autogroup_enabled"].to_string(), "0");
    }

    #[test]
    fn minimal_scenario_defaults() {
        let s = Scenario::from_toml_str("name = \"m\"\nduration_s = 1.5\n").unwrap();
        assert_eq!(s.guest_cpus, 2);
        assert_eq!(s.warmup_s, 3.0);
        assert_eq!(s.policy, Policy::Stock);
        assert!(s.vm.is_empty() && s.host.is_empty() && s.sysctl.is_empty());
    }

    #[test]
    fn unknown_keys_rejected() {
        let top = format!("{GOOD}\nbogus = 1\n");
        assert!(Scenario::from_toml_str(&top).is_err());
        let in_vm = GOOD.replace("io_threads = 0", "io_threads = 0\nvcpu = 3");
        let e = Scenario::from_toml_str(&in_vm).unwrap_err();
        assert!(e.contains("vcpu"), "{e}");
        let in_host = GOOD.replace("threads = 1", "threads = 1\nweight = 5");
        assert!(Scenario::from_toml_str(&in_host).is_err());
    }

    #[test]
    fn bad_enums_rejected() {
        let p = GOOD.replace("\"vmfair\"", "\"fair\"");
        assert!(Scenario::from_toml_str(&p).is_err());
        let l = GOOD.replace("load = \"busy\"\nweight", "load = \"spin\"\nweight");
        assert!(Scenario::from_toml_str(&l).is_err());
    }

    #[test]
    fn out_of_range_rejected() {
        for (from, to, needle) in [
            ("weight = 300", "weight = 0", "weight"),
            ("weight = 300", "weight = 10001", "weight"),
            ("vcpus = 2", "vcpus = 0", "vcpus"),
            ("count = 1\nvcpus", "count = 0\nvcpus", "count"),
            ("nice = 0", "nice = 20", "nice"),
            ("nice = 0", "nice = -21", "nice"),
            ("guest_cpus = 2", "guest_cpus = 0", "guest_cpus"),
            ("duration_s = 20", "duration_s = 0", "duration_s"),
            ("duration_s = 20", "duration_s = -1", "duration_s"),
            ("warmup_s = 3", "warmup_s = -1", "warmup_s"),
            ("burst_us = 50", "burst_us = 4000", "burst_us"),
            ("threads = 1", "threads = 0", "threads"),
            ("name = \"b\"", "name = \"a\"", "duplicate"),
            ("name = \"noise\"", "name = \"no/ise\"", "name"),
            ("\"kernel.vmfair.default_weight\"", "\"../etc\"", "sysctl"),
        ] {
            assert!(GOOD.contains(from), "{from}");
            let bad = GOOD.replacen(from, to, 1);
            let e = Scenario::from_toml_str(&bad).unwrap_err();
            assert!(e.contains(needle), "{to}: {e}");
        }
    }

    #[test]
    fn host_load_must_be_busy() {
        let bad = GOOD.replace(
            "threads = 1\nload = \"busy\"",
            "threads = 1\nload = \"idle\"",
        );
        assert!(Scenario::from_toml_str(&bad).unwrap_err().contains("host"));
    }

    fn sample_result() -> ScenarioResult {
        ScenarioResult {
            scenario: "weights-1-3".into(),
            policy: Policy::Vmfair,
            kernel: "7.3.4".into(),
            guest_cpus: 2,
            duration_s: 20.01,
            groups: vec![GroupResult {
                kind: GroupKind::Vm,
                name: "a".into(),
                instance: 0,
                pid: 123,
                vcpus: 2,
                cpu_s: 9.87,
                work: 123456789,
                index: None,
                wait_s: 0.5,
                threads: 2,
                weight: 100,
                nice: 0,
                io_work: 0,
                kthread_cpu_s: 0.01,
                exits: Some(42),
                halt_poll_s: Some(0.25),
                voluntary_switches: Some(10),
                involuntary_switches: Some(3),
                sched: BTreeMap::from([("nr_wakeups".to_string(), 5)]),
                bench: vec![BenchScore {
                    test: "arith".into(),
                    unit: "loops/s".into(),
                    ops: 100,
                    seconds: 1.0,
                    rate: 100.0,
                    baseline: 10.0,
                    score: 10.0,
                }],
                series: vec![
                    Sample {
                        t_s: 0.0,
                        cpu_s: 0.0,
                        work: 0,
                    },
                    Sample {
                        t_s: 0.25,
                        cpu_s: 0.24,
                        work: 1000,
                    },
                ],
            }],
            valid: false,
            problems: vec!["vm a#0 vcpu 1: exit SHUTDOWN".into()],
            accounting: Some(Accounting {
                cpus: 2,
                window_s: 20.01,
                tasks_cpu_s: 39.0,
                idle_s: 1.0,
                ratio: 0.9995,
            }),
            events: vec![EventRecord {
                at_s: 4.01,
                action: EventAction::Weight,
                detail: "b#0: 300".into(),
                ok: true,
                took_s: 0.001,
            }],
            checks: vec![Check {
                name: "groups-restored".into(),
                ok: true,
                detail: "12 threads".into(),
            }],
        }
    }

    const EVENTS: &str = r#"
name = "ev"
duration_s = 10
policy = "autogroup"
sample_ms = 250
[[vm]]
name = "a"
cpu_max = "50000 100000"
[[event]]
at_s = 2
action = "modprobe"
[[event]]
at_s = 4
action = "weight"
vm = "a"
value = 300
[[event]]
at_s = 5
action = "sysctl"
key = "kernel.vmfair.enabled"
value = "0"
[[event]]
at_s = 6
action = "rmmod"
"#;

    #[test]
    fn events_and_series_parse() {
        let s = Scenario::from_toml_str(EVENTS).unwrap();
        assert_eq!(s.sample_ms, 250);
        assert_eq!(s.vm[0].cpu_max.as_deref(), Some("50000 100000"));
        let actions: Vec<_> = s.event.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                EventAction::Modprobe,
                EventAction::Weight,
                EventAction::Sysctl,
                EventAction::Rmmod
            ]
        );
        assert_eq!(s.event[1].value.as_ref().unwrap().to_string(), "300");
        assert_eq!(Scenario::from_toml_str(GOOD).unwrap().sample_ms, 0);
    }

    #[test]
    fn bad_events_rejected() {
        let cases = [
            ("at_s = 6\n", "at_s = 10\n", "at_s"),
            ("at_s = 4\n", "at_s = 1\n", "order"),
            ("vm = \"a\"", "vm = \"zz\"", "no [[vm]]"),
            ("value = 300", "value = 0", "out of range"),
            ("value = 300", "value = \"heavy\"", "not a weight"),
            ("vm = \"a\"\n", "", "`vm` is required"),
            (
                "action = \"rmmod\"",
                "action = \"rmmod\"\nvm = \"a\"",
                "does not apply",
            ),
            (
                "action = \"rmmod\"",
                "action = \"reboot\"",
                "unknown variant",
            ),
            ("sample_ms = 250", "sample_ms = 10", "sample_ms"),
            ("\"50000 100000\"", "\"50 100000\"", "cpu_max"),
            ("\"50000 100000\"", "\"lots\"", "cpu_max"),
            ("key = \"kernel.vmfair.enabled\"", "key = \"a/b\"", "dotted"),
        ];
        for (from, to, want) in cases {
            assert!(EVENTS.contains(from), "{from}");
            let text = EVENTS.replacen(from, to, 1);
            let e = Scenario::from_toml_str(&text).unwrap_err();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn cpu_max_syntax() {
        for ok in ["max", "max 100000", "20000 100000", "1000 1000"] {
            assert!(valid_cpu_max(ok), "{ok}");
        }
        for bad in [
            "",
            "max max",
            "999 100000",
            "20000 999",
            "20000",
            "1 2 3",
            "-5 100000",
        ] {
            assert!(!valid_cpu_max(bad), "{bad}");
        }
    }

    #[test]
    fn result_round_trips() {
        let r = sample_result();
        let line = r.to_json_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("{\"scenario\":\"weights-1-3\""));
        assert!(line.contains("\"index\":null"));
        assert_eq!(ScenarioResult::from_json_str(&line).unwrap(), r);
        let log = format!("boot noise\n[  1.0] foo\r\n\x1b[0m{line}\r\nVMFAIR-DONE\n");
        assert_eq!(ScenarioResult::find_in_output(&log).unwrap().unwrap(), r);
        assert!(ScenarioResult::find_in_output("no result here").is_none());
    }

    #[test]
    fn architecture_example_result_parses() {
        let text = r#"{"scenario": "weights-1-3", "policy": "vmfair", "kernel": "7.3.4-x",
            "guest_cpus": 2, "duration_s": 20.0,
            "groups": [{"kind": "vm", "name": "a", "instance": 0, "pid": 123, "vcpus": 2,
                        "cpu_s": 9.87, "work": 123456789, "index": null}]}"#;
        let r = ScenarioResult::from_json_str(text).unwrap();
        assert!(r.valid && r.problems.is_empty() && r.accounting.is_none());
        assert_eq!(r.groups[0].work, 123456789);
        assert_eq!(r.groups[0].kind, GroupKind::Vm);
        assert!(ScenarioResult::from_json_str("{\"scenario\": 1}").is_err());
    }
}
