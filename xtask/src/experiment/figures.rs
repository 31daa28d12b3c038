//! The figures the report takes from one result file.

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vmfair_scenario::{GroupResult, ScenarioResult};

/// The figures of one run that the report uses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFigures {
    pub scenario: String,
    pub valid: bool,
    pub window_s: f64,
    pub target_index: Option<f64>,
    /// Target CPU time / window (CPUs).
    pub target_cpu: f64,
    /// Target run-queue wait / window.
    pub target_wait: f64,
    /// Target preemptions (involuntary switches) per second.
    pub target_preempt_per_s: Option<f64>,
    /// Dummies' CPU (their processes plus their kvm-pit threads) / window.
    pub dummies_cpu: f64,
    /// Dummies' halt-polling time / window (part of dummies_cpu).
    pub dummies_halt_poll: Option<f64>,
    /// Dummies' sleeps (voluntary switches) per second.
    pub dummies_sleeps_per_s: Option<f64>,
    /// Idle CPU / window.
    pub idle_cpu: Option<f64>,
    pub problems: Vec<String>,
    /// Boot the run was in (runs of one boot share the host's conditions).
    pub boot: usize,
    /// Guest CPUs online.
    pub cpus: f64,
    /// Target's wake-up/migration counters per second (with schedstats).
    pub target_sched: BTreeMap<String, f64>,
    /// Dummies' wake-up/migration counters per second, summed.
    pub dummies_sched: BTreeMap<String, f64>,
}

/// Extracts the report's figures from a result.
pub fn figures(r: &ScenarioResult) -> Result<RunFigures> {
    let window_s = Some(r.duration_s)
        .filter(|w| *w > 0.0)
        .ok_or_else(|| anyhow!("result without a window"))?;
    let target = r
        .groups
        .iter()
        .find(|g| g.name == "target")
        .ok_or_else(|| anyhow!("result without the target VM"))?;
    let dummies: Vec<&GroupResult> = r.groups.iter().filter(|g| g.name == "dummy").collect();
    let sum_opt = |f: fn(&GroupResult) -> Option<f64>| -> Option<f64> {
        dummies.iter().map(|g| f(g)).sum::<Option<f64>>()
    };
    Ok(RunFigures {
        scenario: r.scenario.clone(),
        valid: r.valid,
        window_s,
        target_index: target.index,
        target_cpu: target.cpu_s / window_s,
        target_wait: target.wait_s / window_s,
        target_preempt_per_s: target.involuntary_switches.map(|n| n as f64 / window_s),
        dummies_cpu: dummies
            .iter()
            .map(|g| g.cpu_s + g.kthread_cpu_s)
            .fold(0.0, |a, b| a + b)
            / window_s,
        dummies_halt_poll: if dummies.is_empty() {
            None
        } else {
            sum_opt(|g| g.halt_poll_s).map(|x| x / window_s)
        },
        dummies_sleeps_per_s: if dummies.is_empty() {
            None
        } else {
            sum_opt(|g| g.voluntary_switches.map(|n| n as f64)).map(|x| x / window_s)
        },
        idle_cpu: r.accounting.as_ref().map(|a| a.idle_s / window_s),
        problems: r.problems.clone(),
        boot: 0,
        cpus: f64::from(r.guest_cpus),
        target_sched: sched_rates(std::iter::once(target), window_s),
        dummies_sched: sched_rates(dummies.iter().copied(), window_s),
    })
}

/// Sums the `sched` counters of result groups, per second of window.
fn sched_rates<'a>(
    groups: impl Iterator<Item = &'a GroupResult>,
    window_s: f64,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for g in groups {
        for (k, v) in &g.sched {
            *out.entry(k.clone()).or_insert(0.0) += *v as f64 / window_s;
        }
    }
    out
}
