// SPDX-License-Identifier: GPL-2.0
//! The enumerations and values that the scenario file and the result share.

use serde::{Deserialize, Serialize};
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
    /// A desktop VM's VMM, like the study's dummies: the vCPU as `idle` (`tick_hz`,
    /// `burst_us`), plus an I/O thread (`io_hz`, `io_us`) and a display-refresh thread
    /// (`refresh_hz`, `refresh_us`) that each wake periodically and do a little work.
    Desktop,
}

impl Load {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Load::Busy => "busy",
            Load::Idle => "idle",
            Load::Bursty => "bursty",
            Load::Bench => "bench",
            Load::Desktop => "desktop",
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sysctl value: TOML strings, integers and floats are accepted (an `[[event]]`'s `value`
/// has the same type: `reservation` and `limit` events take CPUs such as `1.5`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SysctlValue {
    /// `"kernel.x" = "100"`
    Str(String),
    /// `"kernel.x" = 100`
    Int(i64),
    /// `"kernel.x" = 0.5`, written as Rust's `{}` prints it (`0.5`, `1` for `1.0`).
    Float(f64),
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Str(s) => f.write_str(s),
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Float(x) => write!(f, "{x}"),
        }
    }
}
