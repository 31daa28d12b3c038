// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run scale`: what the module's load monitor (every 100 ms, it reads every VM and
//! runs the allocation and the precision loop) costs with the N VMs, from
//! `kernel.vmfair.monitor` read at both edges of a stretch.

use super::r3;
use crate::runner::monitor::{parse, Monitor, MONITOR};
use serde_json::{json, Value};
use std::time::Instant;

/// The monitor's counters and when they were read; None when the module is not loaded.
pub fn read() -> Option<(Monitor, Instant)> {
    let text = std::fs::read_to_string(MONITOR).ok()?;
    Some((parse(&text)?, Instant::now()))
}

/// `kernel.vmfair.precision` (0/1), None when it cannot be read.
pub fn precision() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/vmfair/precision")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The cost between two readings: passes, VM readings, time in passes per pass (ms), per VM
/// and pass (µs), and as a fraction of one CPU, share updates.
pub fn cost(a: (Monitor, Instant), b: (Monitor, Instant)) -> Value {
    let secs = b.1.duration_since(a.1).as_secs_f64();
    let (a, b) = (a.0, b.0);
    let passes = b.passes.saturating_sub(a.passes);
    let readings = b.readings.saturating_sub(a.readings);
    let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64;
    let per = |n: u64, unit: f64| if n == 0 { 0.0 } else { busy / n as f64 / unit };
    json!({
        "window_s": r3(secs),
        "period_ms": b.period_ms,
        "passes": passes,
        "readings": readings,
        "vms_per_pass": if passes == 0 { 0.0 } else { r3(readings as f64 / passes as f64) },
        "pass_ms": r3(per(passes, 1e6)),
        "per_vm_pass_us": r3(per(readings, 1e3)),
        "cpu_fraction": if secs > 0.0 { r3(busy / secs / 1e9 * 1000.0) / 1000.0 } else { 0.0 },
        "share_updates": b.share_updates.saturating_sub(a.share_updates),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cost_per_pass_and_vm() {
        let t = Instant::now();
        let m = |passes, readings, busy_ns, share_updates| Monitor {
            period_ms: 100,
            passes,
            readings,
            busy_ns,
            share_updates,
        };
        let c = cost(
            (m(10, 100, 1_000_000, 1), t),
            (m(60, 51_300, 101_000_000, 9), t + Duration::from_secs(5)),
        );
        assert_eq!(c["passes"], 50);
        assert_eq!(c["readings"], 51_200);
        assert_eq!(c["vms_per_pass"], 1024.0);
        assert_eq!(c["pass_ms"], 2.0);
        assert_eq!(c["per_vm_pass_us"], 1.953);
        assert_eq!(c["cpu_fraction"], 0.02);
        assert_eq!(c["share_updates"], 8);
        let none = cost((m(5, 5, 5, 0), t), (m(5, 5, 5, 0), t));
        assert_eq!(none["pass_ms"], 0.0);
        assert_eq!(none["cpu_fraction"], 0.0);
    }
}
