// SPDX-License-Identifier: GPL-2.0
//! The ticking VMs' wake-up latency in the judge's report: one line per VM entry.

use vmfair_scenario::wake::{hist_percentile, pool};
use vmfair_scenario::{GroupKind, ScenarioResult};

/// One line per VM entry with tick wake-up figures: exact for one instance, read from the
/// pooled histogram (bucket lower bounds, within 6.25 %) for several.
pub fn lines(res: &ScenarioResult) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for g in &res.groups {
        if g.kind == GroupKind::Vm && g.wake_n > 0 && !names.contains(&g.name.as_str()) {
            names.push(&g.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let gs: Vec<_> = res
                .groups
                .iter()
                .filter(|g| g.kind == GroupKind::Vm && g.name == name && g.wake_n > 0)
                .collect();
            let n: u64 = gs.iter().map(|g| g.wake_n).sum();
            let max = gs.iter().filter_map(|g| g.wake_max_us).fold(0.0, f64::max);
            let (p50, p99, how) = if let [g] = gs.as_slice() {
                (g.wake_p50_us, g.wake_p99_us, "")
            } else {
                let h = pool(gs.iter().map(|g| g.wake_hist.as_slice()));
                let q = |x| hist_percentile(&h, x).map(|v| v as f64);
                (q(0.5), q(0.99), ", pooled")
            };
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
            format!(
                "wake-up {name}: {} VM{}, {n} ticks{how}: p50 {} us, p99 {} us, max {max:.1} us",
                gs.len(),
                if gs.len() == 1 { "" } else { "s" },
                f(p50),
                f(p99)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{group, result};
    use super::*;

    #[test]
    fn one_line_per_ticking_vm_entry() {
        let mut busy = group("busy", 0, 9.0, vec![]);
        busy.wake_n = 0;
        let mut a = group("idle", 0, 0.1, vec![]);
        (a.wake_p50_us, a.wake_p99_us, a.wake_max_us) = (Some(3.25), Some(40.0), Some(90.0));
        a.wake_n = 100;
        a.wake_hist = vec![[3, 98], [40, 1], [88, 1]];
        let mut b = a.clone();
        b.instance = 1;
        b.wake_max_us = Some(2500.0);
        b.wake_hist = vec![[3, 50], [2496, 50]];
        let mut solo = a.clone();
        solo.name = "solo".into();
        let r = result(vec![busy, a, b, solo]);
        assert_eq!(
            lines(&r),
            vec![
                "wake-up idle: 2 VMs, 200 ticks, pooled: p50 3.0 us, p99 2496.0 us, max 2500.0 us",
                "wake-up solo: 1 VM, 100 ticks: p50 3.2 us, p99 40.0 us, max 90.0 us",
            ]
        );
        assert!(lines(&result(vec![group("busy", 0, 9.0, vec![])])).is_empty());
    }
}
