//! The load monitor's section of `results/scale/report.md` and its part of the summary line:
//! what a pass of the module's load monitor (every VM read, the allocation and the precision
//! loop, every 100 ms) costs with the N VMs, idle after adoption and busy over the fairness
//! window (`Documentation/vmfair/scale.rst`).

use crate::readers::scale::{MonitorCost, Run, ScaleFile};
use std::fmt::Write;

/// The section, or nothing when no run read the monitor.
pub fn render(all: &ScaleFile) -> String {
    let mut s = String::new();
    if all.runs.iter().all(|r| r.monitor.is_none()) {
        return s;
    }
    let _ = writeln!(s, "\n## Load monitor\n");
    let _ = writeln!(
        s,
        "`kernel.vmfair.monitor` read at both edges of 5 s with the N adopted VMs idle, and of \
         the fairness window with the busy VMs. Time in passes per pass (ms), per VM and pass \
         (µs), and as a share of one CPU; share updates made by the allocation and the \
         precision loop.\n\n\
         | VMs | precision | state | passes | VMs per pass | ms per pass | µs per VM and pass \
         | CPU | share updates |\n\
         | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &all.runs {
        let Some(m) = &r.monitor else { continue };
        for (state, c) in [("idle", &m.idle), ("busy", &m.busy)] {
            let Some(c) = c else { continue };
            let _ = writeln!(
                s,
                "| {} | {} | {state} | {} | {:.0} | {:.3} | {:.2} | {:.2}% | {} |",
                r.vms,
                m.precision.map_or("?".into(), |p| p.to_string()),
                c.passes,
                c.vms_per_pass,
                c.pass_ms,
                c.per_vm_pass_us,
                c.cpu_fraction * 100.0,
                c.share_updates,
            );
        }
    }
    s
}

/// `, monitor X ms per pass (Y% of a CPU)` for the idle stretch of `r`, or nothing.
pub fn summary(r: &Run) -> String {
    let idle: Option<&MonitorCost> = r.monitor.as_ref().and_then(|m| m.idle.as_ref());
    match idle {
        Some(c) => format!(
            ", monitor {:.2} ms per pass ({:.2}% of a CPU)",
            c.pass_ms,
            c.cpu_fraction * 100.0
        ),
        None => String::new(),
    }
}
