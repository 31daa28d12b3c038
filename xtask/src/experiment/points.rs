//! Runs grouped into the points of the sweep (policy, dummy kind, dummies),
//! normalised to the solo runs of the same boot.

use super::figures::RunFigures;
use super::spec::Job;
use serde::Serialize;
use std::collections::BTreeMap;

/// A figure over the valid repetitions of a point: mean, minimum and maximum.
pub use crate::stats::MeanRange as Stat;

/// One point of the sweep: all valid repetitions of (policy, kind, dummies).
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub policy: String,
    pub kind: String,
    pub dummies: u32,
    pub runs: usize,
    pub valid: usize,
    pub index: Option<Stat>,
    /// Index relative to the mean solo index of the same boot (see
    /// `points`).
    pub relative: Option<Stat>,
    /// Index per CPU-second of the target (index / target CPU).
    pub index_per_cpu: Option<Stat>,
    /// `index_per_cpu` relative to the solo runs' (same boot): how fast the target's
    /// CPU time itself ran. Below 1 the emulated CPU was slower (both guest
    /// CPUs share one host thread under single-threaded TCG), which is not
    /// the scheduler's doing.
    pub speed: Option<Stat>,
    /// What `speed` should be if single-threaded TCG splits one host
    /// thread evenly over the busy guest CPU time: busy CPUs of the solo
    /// runs over busy CPUs of this run, `(cpus - idle_solo) / (cpus - idle)`.
    pub tcg_model: Option<Stat>,
    pub target_cpu: Option<Stat>,
    pub target_wait: Option<Stat>,
    pub target_preempt_per_s: Option<Stat>,
    pub dummies_cpu: Option<Stat>,
    pub dummies_halt_poll: Option<Stat>,
    pub dummies_sleeps_per_s: Option<Stat>,
    pub idle_cpu: Option<Stat>,
}

/// Groups runs into points (in the order of the jobs). A run's index is
/// taken relative to the mean solo index (all policy lines) of the runs in
/// the same boot, so that the host's speed, which varies between boots
/// (the emulation shares the host with other work), cancels out; without a
/// valid solo run in its boot, to the mean of all solo runs.
pub fn points(jobs: &[Job], runs: &BTreeMap<String, RunFigures>) -> Vec<Point> {
    let ok = |r: &&RunFigures| r.valid && r.target_index.is_some();
    let per_cpu = |r: &RunFigures| {
        r.target_index
            .filter(|_| r.target_cpu > 0.0)
            .map(|i| i / r.target_cpu)
    };
    // Solo runs: (boot, index, index per CPU, busy CPUs).
    type Solo = (usize, f64, Option<f64>, Option<f64>);
    let solos: Vec<Solo> = jobs
        .iter()
        .filter(|j| j.dummies == 0)
        .filter_map(|j| runs.get(&j.name))
        .filter(ok)
        .map(|r| {
            (
                r.boot,
                r.target_index.unwrap_or(0.0),
                per_cpu(r),
                r.idle_cpu.map(|i| r.cpus - i),
            )
        })
        .collect();
    let mean = |xs: Vec<f64>| Stat::of(&xs).map(|s| s.mean).filter(|m| *m > 0.0);
    let solo_busy = |boot: usize| {
        let same: Vec<&Solo> = solos.iter().filter(|s| s.0 == boot).collect();
        let pick = if same.is_empty() {
            solos.iter().collect()
        } else {
            same
        };
        mean(pick.iter().filter_map(|s| s.3).collect())
    };
    let solo_of = |boot: usize| -> (Option<f64>, Option<f64>) {
        let same: Vec<_> = solos.iter().filter(|s| s.0 == boot).collect();
        let pick = if same.is_empty() {
            solos.iter().collect()
        } else {
            same
        };
        (
            mean(pick.iter().map(|s| s.1).collect()),
            mean(pick.iter().filter_map(|s| s.2).collect()),
        )
    };
    let mut keys: Vec<(String, String, u32)> = Vec::new();
    for j in jobs {
        let k = (j.policy.clone(), j.kind.clone(), j.dummies);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(policy, kind, dummies)| {
            let all: Vec<&RunFigures> = jobs
                .iter()
                .filter(|j| j.policy == policy && j.kind == kind && j.dummies == dummies)
                .filter_map(|j| runs.get(&j.name))
                .collect();
            let good: Vec<&RunFigures> = all.iter().copied().filter(ok).collect();
            let st = |f: &dyn Fn(&RunFigures) -> Option<f64>| {
                Stat::of(&good.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            Point {
                policy,
                kind,
                dummies,
                runs: all.len(),
                valid: good.len(),
                index: st(&|r| r.target_index),
                relative: st(&|r| Some(r.target_index? / solo_of(r.boot).0?)),
                index_per_cpu: st(&|r| per_cpu(r)),
                speed: st(&|r| Some(per_cpu(r)? / solo_of(r.boot).1?)),
                tcg_model: st(&|r| {
                    let busy = r.cpus - r.idle_cpu?;
                    Some(solo_busy(r.boot)? / busy).filter(|_| busy > 0.0)
                }),
                target_cpu: st(&|r| Some(r.target_cpu)),
                target_wait: st(&|r| Some(r.target_wait)),
                target_preempt_per_s: st(&|r| r.target_preempt_per_s),
                dummies_cpu: st(&|r| Some(r.dummies_cpu)),
                dummies_halt_poll: st(&|r| r.dummies_halt_poll),
                dummies_sleeps_per_s: st(&|r| r.dummies_sleeps_per_s),
                idle_cpu: st(&|r| r.idle_cpu),
            }
        })
        .collect()
}

/// The valid runs of a point (by scenario name prefix of the point's key).
pub(super) fn jobs_runs<'a>(
    p: &Point,
    runs: &'a BTreeMap<String, RunFigures>,
) -> Vec<&'a RunFigures> {
    let tag = if p.dummies == 0 {
        format!("-{}-solo-r", p.policy)
    } else {
        format!("-{}-{}-{}-r", p.policy, p.kind, p.dummies)
    };
    runs.values()
        .filter(|r| r.valid && r.scenario.contains(&tag))
        .collect()
}
