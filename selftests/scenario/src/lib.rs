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
//! Additions (not in §4): `sample_ms = 0` (no time series), no `[[event]]`, no `cpu_max`,
//! `reservation = 0` and `limit = 0` (none), `top = false`;
//! for `load = "desktop"`: `io_hz = 20`, `io_us = 200`, `refresh_hz = 30`, `refresh_us = 300`.
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
//!   `sysctl` writes `value` to `key`; `reservation` and `limit` set those of every instance
//!   of `vm` to `value` CPUs. The result's `events` say when each happened and how.
//! * `cpu_max` on a `[[vm]]` (cgroup v2 `cpu.max` syntax, `"max"` or `"QUOTA PERIOD"` in µs):
//!   each instance's VMM is placed by hand, before it starts, into its own cpu cgroup
//!   `vmfair-<name>-<i>` with that limit, whatever the policy: a management stack's placement.
//! * `reservation` and `limit` on a `[[vm]]` (CPUs, e.g. `1.25`; 0 = none): the CPUs each
//!   instance is guaranteed while it demands them, and the most it gets. The runner writes
//!   them as [`cpus_text`] does (two decimals count) to vmfair's `vm/<pid>/reservation` and
//!   `vm/<pid>/limit` after the VMs run and before the warm-up. `reservation` needs policy
//!   `vmfair`; `limit` needs `vmfair`, or `cgroup`, where it becomes the `cpu.max` of the VM's
//!   cgroup ([`limit_cpu_max`]). Neither goes with `cpu_max`.
//! * `top = true`: at the start of the window the runner runs `vmfair-top -b -n 3 -d 2 --json`
//!   ([`TOP_ITERATIONS`], [`TOP_INTERVAL_S`]) and compares every VM's mean `%USED`
//!   with its own figure for that VM over the same intervals; the result's `checks` hold the
//!   comparison. It needs policy `vmfair`, at least one `[[vm]]`, `duration_s` of at least
//!   [`TOP_MIN_DURATION_S`] and no `modprobe` or `rmmod` event.
//!
//! # Ranges
//!
//! `guest_cpus` 1..=64, `duration_s` in (0, 3600], `warmup_s` in [0, 600], `count` 1..=64,
//! `vcpus` 1..=64, `threads` 1..=64, `weight` 1..=10000 (cgroup v2 `cpu.weight` scale),
//! `nice` -20..=19, `io_threads` 0..=64, `tick_hz` 19..=10000 (the PIT's 16-bit divisor),
//! `burst_us` 0..(1e6 / `tick_hz`), `io_hz` and `refresh_hz` 1..=1000, `io_us` and
//! `refresh_us` shorter than their period; events: `at_s` in [0, `duration_s`), a `weight` event's
//! `value` 1..=10000 and `vm` naming a `[[vm]]` entry; `reservation`, `limit` and their events'
//! `value` 0..=64 CPUs, no non-zero reservation above a non-zero limit, and the reservations of
//! all instances within `guest_cpus` minus `kernel.vmfair.reservation_headroom` (if set in
//! `[sysctl]`), at the start and after each event.
//! Names are 1..=32 characters of `[A-Za-z0-9_-]`, unique over all `[[vm]]` and `[[host]]`
//! entries (they become cgroup and file names). Sysctl keys are dotted names of
//! `[A-Za-z0-9_-]` components; values are strings, integers or floats.
//!
//! # Result stability
//!
//! The result keys of §4 never change. Additions are allowed, so the result types here do *not*
//! reject unknown keys, and the added keys have defaults so that older results still parse.
//!
//! # Layout
//!
//! `values` holds the enumerations the scenario file and the result share ([`Policy`],
//! [`Load`], [`SysctlValue`]); `scenario` the scenario file's types and their defaults;
//! `validate` the checks [`Scenario::from_toml_str`] makes (`top` those of `top`); `result` the
//! result's types.

mod result;
mod scenario;
mod top;
mod validate;
mod values;
pub mod wake;

pub use result::{
    Accounting, BenchScore, Check, EventRecord, GroupKind, GroupResult, Sample, ScenarioResult,
};
pub use scenario::{
    cpus_hundredths, cpus_rounded, cpus_text, limit_cpu_max, valid_cpu_max, EventAction, EventSpec,
    HostSpec, Periodic, Scenario, VmSpec, DEFAULT_TICK, DESKTOP_IO, DESKTOP_REFRESH,
    DESKTOP_THREADS,
};
pub use top::{TOP_INTERVAL_S, TOP_ITERATIONS, TOP_MIN_DURATION_S};
pub use values::{Load, Policy, SysctlValue};
