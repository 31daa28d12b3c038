// SPDX-License-Identifier: GPL-2.0
//! The figures read at the edges of the window, and the result of every member.

use super::setup::write_file;
use super::{log, Edge, Member, Run, ACCOUNTING_RANGE, STUCK_RUN_S, TASKS_MAX};
use crate::bench;
use crate::procfs;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vmfair_scenario::{Accounting, GroupKind, GroupResult, Policy, Scenario};

impl Run {
    pub(super) fn edge(&self) -> Result<Edge, String> {
        let work = self.members.iter().map(Member::work).collect();
        let io_work = self.members.iter().map(Member::io_work).collect();
        let kvm_exits = self
            .members
            .iter()
            .map(|m| match m.kind {
                GroupKind::Vm => procfs::kvm_exits(m.pid),
                GroupKind::Host => None,
            })
            .collect();
        let halt_poll_ns = self
            .members
            .iter()
            .map(|m| match m.kind {
                GroupKind::Vm => procfs::kvm_halt_poll_ns(m.pid),
                GroupKind::Host => None,
            })
            .collect();
        let switches = self
            .members
            .iter()
            .map(|m| procfs::switches(m.pid))
            .collect();
        let schedstats = procfs::schedstats_on();
        let sched = self
            .members
            .iter()
            .map(|m| {
                if schedstats {
                    procfs::sched_counters(m.pid)
                } else {
                    Default::default()
                }
            })
            .collect();
        let bench = self
            .members
            .iter()
            .map(|m| {
                if !m.bench {
                    return None;
                }
                (0..m.vcpus)
                    .map(|i| bench::snapshot(&m.status, i))
                    .collect::<Option<Vec<_>>>()
            })
            .collect();
        let idle_s = procfs::idle_s()?;
        // Reading every task takes a while under emulation: date the figures at its middle.
        let t0 = Instant::now();
        let tasks = procfs::tasks(None);
        let at = t0 + t0.elapsed() / 2;
        Ok(Edge {
            at,
            idle_s,
            tasks,
            work,
            io_work,
            kvm_exits,
            halt_poll_ns,
            switches,
            sched,
            bench,
        })
    }

    pub(super) fn apply_vmfair_weights(&mut self) {
        for m in &self.members {
            if m.kind != GroupKind::Vm || m.weight == 100 {
                continue;
            }
            let path = format!("/proc/sys/kernel/vmfair/vm/{}/weight", m.pid);
            if !Path::new(&path).exists() {
                self.problems.push(format!(
                    "{}: per-VM weight interface missing ({path}); weight {} not applied",
                    m.label, m.weight
                ));
            } else if let Err(e) = write_file(&path, &m.weight.to_string()) {
                self.problems.push(format!("{}: {e}", m.label));
            }
        }
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn measure(
        &mut self,
        scn: &Scenario,
    ) -> Result<(f64, Vec<GroupResult>, Accounting), String> {
        self.spawn_all(scn)?;
        log(&format!("started {} processes", self.members.len()));
        self.wait_ready()?;
        if scn.policy == Policy::Vmfair {
            self.apply_vmfair_weights();
            self.apply_allocations();
        }
        for (tid, comm) in procfs::comms() {
            let owner = kvm_pit_owner(&comm);
            if let Some(m) = self.members.iter_mut().find(|m| Some(m.pid) == owner) {
                m.kthreads.push(tid);
            }
        }
        log(&format!("all running; warm-up {} s", scn.warmup_s));
        self.sleep_checked(Duration::from_secs_f64(scn.warmup_s))?;
        if scn.policy == Policy::Vmfair && Path::new(procfs::SCHED_DEBUG).exists() {
            // Every VM in a VM group of its own; hand-placed ones still in their cgroup.
            self.check_grouped();
        }
        let start = self.edge()?;
        // Wake-up latencies: only the ticks inside the window count.
        let mut wake_lost = Vec::new();
        for m in &mut self.members {
            m.poll_wake();
            m.wake_us.clear();
            wake_lost.push(m.wake_lost());
        }
        log(&format!("window start; measuring {} s", scn.duration_s));
        self.window(scn, &start)?;
        let end = self.edge()?;
        for m in &mut self.members {
            m.poll_wake();
        }
        if scn.sample_ms > 0 {
            self.sample(&start, false);
        }
        self.check();
        let window_s = (end.at - start.at).as_secs_f64();
        log(&format!("window end after {window_s:.3} s"));

        let cpus = procfs::online_cpus()?;
        let (all_run, _) = procfs::delta(&start.tasks, &end.tasks, |_, _| true);
        let tasks_cpu_s = all_run as f64 * 1e-9;
        let idle_s = end.idle_s - start.idle_s;
        let (accounting, problems) = accounting(cpus, window_s, tasks_cpu_s, idle_s);
        self.problems.extend(problems);
        let ratio = accounting.ratio;

        let mut groups = Vec::new();
        for (k, m) in self.members.iter().enumerate() {
            let pid = m.pid;
            let (run, wait) = procfs::delta(&start.tasks, &end.tasks, |_, t| t.pid == pid);
            let cpu_s = run as f64 * 1e-9;
            let mut work = 0u64;
            for (i, (s, e)) in start.work[k].iter().zip(&end.work[k]).enumerate() {
                if e < s {
                    // Reported by check(); don't add garbage.
                    continue;
                }
                work += e - s;
                if m.kind == GroupKind::Vm && !m.failed {
                    let tid = m.vcpu_tids()[i];
                    let (vrun, _) = procfs::delta(&start.tasks, &end.tasks, |t, _| t == tid);
                    let vrun_s = vrun as f64 * 1e-9;
                    let stalled = e == s;
                    if let Some(p) = vcpu_problem(&m.label, i, stalled, vrun_s, m.ticking, window_s)
                    {
                        self.problems.push(p);
                    }
                }
            }
            let (kthread_run, _) =
                procfs::delta(&start.tasks, &end.tasks, |t, _| m.kthreads.contains(&t));
            let threads = (m.vcpus + m.busy_threads) as u32;
            if cpu_s > max_cpu_s(threads, cpus, window_s) {
                self.problems.push(format!(
                    "{}: cpu_s {cpu_s:.3} is impossible for {threads} busy threads in \
                     {window_s:.3} s on {cpus} CPUs",
                    m.label
                ));
            }
            let (index, bench_scores) = if m.bench {
                match (&start.bench[k], &end.bench[k]) {
                    (Some(s), Some(e)) => match bench::scores(s, e) {
                        Ok(sc) => {
                            let scores: Vec<f64> = sc.iter().map(|x| x.score).collect();
                            (bench::index(&scores), sc)
                        }
                        Err(e) => {
                            self.problems.push(format!("{}: {e}", m.label));
                            (None, Vec::new())
                        }
                    },
                    _ => {
                        self.problems.push(format!(
                            "{}: bench records could not be read consistently",
                            m.label
                        ));
                        (None, Vec::new())
                    }
                }
            } else {
                (None, Vec::new())
            };
            let wake = wake_figures(&m.wake_us);
            let lost = m.wake_lost() - wake_lost[k];
            if lost > 0 {
                log(&format!(
                    "{}: {lost} ticks without a wake-up figure (ring overrun, or a stamp earlier \
                     than the one before)",
                    m.label
                ));
            }
            let g = GroupResult {
                kind: m.kind,
                name: m.name.clone(),
                instance: m.instance,
                pid: m.pid,
                vcpus: m.vcpus as u32,
                cpu_s,
                work,
                index,
                wait_s: wait as f64 * 1e-9,
                threads,
                weight: m.weight,
                nice: m.nice,
                reservation: m.reservation,
                limit: m.limit,
                io_work: end.io_work[k].saturating_sub(start.io_work[k]),
                kthread_cpu_s: kthread_run as f64 * 1e-9,
                exits: counter_delta(start.kvm_exits[k], end.kvm_exits[k]),
                halt_poll_s: counter_delta(start.halt_poll_ns[k], end.halt_poll_ns[k])
                    .map(|ns| ns as f64 * 1e-9),
                voluntary_switches: counter_delta(
                    start.switches[k].map(|s| s.0),
                    end.switches[k].map(|e| e.0),
                ),
                involuntary_switches: counter_delta(
                    start.switches[k].map(|s| s.1),
                    end.switches[k].map(|e| e.1),
                ),
                sched: sched_delta(&start.sched[k], &end.sched[k]),
                bench: bench_scores,
                series: self.series.get(k).cloned().unwrap_or_default(),
                wake_p50_us: wake.p50,
                wake_p99_us: wake.p99,
                wake_max_us: wake.max,
                wake_n: m.wake_us.len() as u64,
                wake_hist: wake.hist,
            };
            log(&format!(
                "{:<24} cpu {:7.3} s  wait {:7.3} s  kthreads {:6.3} s  work {:>11} ({:.1} M/s)  \
                 exits {}  preempted {}{}",
                m.label,
                g.cpu_s,
                g.wait_s,
                g.kthread_cpu_s,
                g.work,
                g.work as f64 / window_s / 1e6,
                g.exits.map_or("-".to_string(), |e| e.to_string()),
                g.involuntary_switches
                    .map_or("-".to_string(), |e| e.to_string()),
                g.index.map_or(String::new(), |i| format!("  index {i:.2}"))
            ));
            if let (Some(p50), Some(p99), Some(max)) = (g.wake_p50_us, g.wake_p99_us, g.wake_max_us)
            {
                log(&format!(
                    "{:<24} wake-up p50 {p50:.1} us  p99 {p99:.1} us  max {max:.1} us  ({} ticks)",
                    m.label, g.wake_n
                ));
            }
            groups.push(g);
        }
        log(&format!(
            "accounting: tasks {tasks_cpu_s:.3} s + idle {idle_s:.3} s over {cpus} x \
             {window_s:.3} s: ratio {ratio:.4}"
        ));
        Ok((window_s, groups, accounting))
    }
}

/// Percentiles and histogram of a member's tick wake-up latencies (µs).
struct WakeFigures {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    hist: Vec<[u64; 2]>,
}

fn wake_figures(lateness_us: &[f64]) -> WakeFigures {
    use vmfair_scenario::wake::{histogram, percentile};
    let mut sorted = lateness_us.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Two decimals: the result stays readable, and 10 ns is below the TSC's kHz precision.
    let round = |v: Option<f64>| v.map(|x| (x * 100.0).round() / 100.0);
    WakeFigures {
        p50: round(percentile(&sorted, 0.5)),
        p99: round(percentile(&sorted, 0.99)),
        max: round(sorted.last().copied()),
        hist: histogram(&sorted),
    }
}

/// The VM process a `kvm-pit/<pid>` kernel thread works for.
fn kvm_pit_owner(comm: &str) -> Option<u32> {
    comm.strip_prefix("kvm-pit/")
        .and_then(|p| p.parse::<u32>().ok())
}

/// The accounting identity over the window, and the problems with it: the tasks' CPU time
/// beyond [`TASKS_MAX`] × capacity, or tasks plus idle outside [`ACCOUNTING_RANGE`] of it.
fn accounting(
    cpus: u32,
    window_s: f64,
    tasks_cpu_s: f64,
    idle_s: f64,
) -> (Accounting, Vec<String>) {
    let ratio = (tasks_cpu_s + idle_s) / (f64::from(cpus) * window_s);
    let mut problems = Vec::new();
    let capacity = f64::from(cpus) * window_s;
    if tasks_cpu_s > TASKS_MAX * capacity {
        problems.push(format!(
            "accounting identity off: tasks used {tasks_cpu_s:.3} s of CPU in \
             {cpus} CPUs x {window_s:.3} s = {capacity:.3} s"
        ));
    }
    if !(ACCOUNTING_RANGE.0..=ACCOUNTING_RANGE.1).contains(&ratio) {
        problems.push(format!(
            "accounting identity off: tasks {tasks_cpu_s:.3} s + idle {idle_s:.3} s = \
             {:.3} s, expected {cpus} CPUs x {window_s:.3} s = {:.3} s (ratio {ratio:.3})",
            tasks_cpu_s + idle_s,
            f64::from(cpus) * window_s
        ));
    }
    let accounting = Accounting {
        cpus,
        window_s,
        tasks_cpu_s,
        idle_s,
        ratio,
    };
    (accounting, problems)
}

/// A vCPU that made no progress (`stalled`) over the window although it ran more than
/// [`STUCK_RUN_S`], or, ticking, got no timer tick in a window of a second or more.
fn vcpu_problem(
    label: &str,
    i: usize,
    stalled: bool,
    ran_s: f64,
    ticking: bool,
    window_s: f64,
) -> Option<String> {
    if stalled && ran_s > STUCK_RUN_S {
        Some(format!(
            "{label} vcpu {i}: ran {ran_s:.3} s in the window without progress"
        ))
    } else if stalled && ticking && window_s >= 1.0 {
        Some(format!(
            "{label} vcpu {i}: no timer tick in {window_s:.3} s"
        ))
    } else {
        None
    }
}

/// The most CPU time `threads` busy threads (plus one for the VMM's own work) can use in
/// the window on `cpus` CPUs, with 5 % slack.
fn max_cpu_s(threads: u32, cpus: u32, window_s: f64) -> f64 {
    f64::from(threads + 1).min(f64::from(cpus)) * window_s * 1.05
}

/// How much a counter read at both edges grew; None if either read failed.
fn counter_delta(start: Option<u64>, end: Option<u64>) -> Option<u64> {
    match (start, end) {
        (Some(s), Some(e)) => Some(e.saturating_sub(s)),
        _ => None,
    }
}

/// How much every counter read at the window's end grew since its start (a counter missing
/// at the start counts from 0).
fn sched_delta(
    start: &BTreeMap<String, u64>,
    end: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    end.iter()
        .map(|(key, e)| {
            let s = start.get(key).copied().unwrap_or(0);
            (key.clone(), e.saturating_sub(s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_pit_threads_named_by_their_vm() {
        assert_eq!(kvm_pit_owner("kvm-pit/1234"), Some(1234));
        assert_eq!(kvm_pit_owner("kvm-pit/"), None);
        assert_eq!(kvm_pit_owner("kvm-pit/12x"), None);
        assert_eq!(kvm_pit_owner("kvm-nx-lpage-re"), None);
        assert_eq!(kvm_pit_owner("vmfair-run"), None);
    }

    #[test]
    fn wake_figures_of_a_member() {
        let mut v: Vec<f64> = (0..200).map(|k| f64::from(k % 10) + 0.123).collect();
        v.push(1234.567);
        let w = wake_figures(&v);
        assert_eq!(w.p50, Some(5.12));
        assert_eq!(w.p99, Some(9.12));
        assert_eq!(w.max, Some(1234.57));
        assert_eq!(w.hist.iter().map(|b| b[1]).sum::<u64>(), 201);
        assert_eq!(w.hist.last(), Some(&[1216, 1]));
        let none = wake_figures(&[]);
        assert!(none.p50.is_none() && none.max.is_none() && none.hist.is_empty());
    }

    #[test]
    fn accounting_identity() {
        // 2 CPUs x 10 s: 15 s of tasks + 5 s idle is exact.
        let (a, p) = accounting(2, 10.0, 15.0, 5.0);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            (a.cpus, a.window_s, a.tasks_cpu_s, a.idle_s),
            (2, 10.0, 15.0, 5.0)
        );
        assert!((a.ratio - 1.0).abs() < 1e-12);
        // Idle read high (ticking idle): tolerated up to the upper bound.
        let (a, p) = accounting(2, 10.0, 15.0, 10.0);
        assert!(p.is_empty() && (a.ratio - 1.25).abs() < 1e-12, "{p:?}");
        // Time lost: below the lower bound.
        let (a, p) = accounting(2, 10.0, 12.0, 4.0);
        assert!((a.ratio - 0.8).abs() < 1e-12);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("ratio 0.800"), "{}", p[0]);
        // Tasks alone used more than the CPUs have, however idle reads.
        let (_, p) = accounting(2, 10.0, 20.5, 0.0);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("tasks used 20.500 s"), "{}", p[0]);
        let (_, p) = accounting(2, 10.0, 20.3, 0.0);
        assert!(p.is_empty(), "within 2 %: {p:?}");
    }

    #[test]
    fn stalled_vcpus() {
        // Ran without progress.
        let p = vcpu_problem("vm a#0", 1, true, 0.6, false, 10.0).unwrap();
        assert_eq!(
            p,
            "vm a#0 vcpu 1: ran 0.600 s in the window without progress"
        );
        // Idle (ticking) and barely ran: it must still have seen ticks.
        let p = vcpu_problem("vm a#0", 0, true, 0.01, true, 2.0).unwrap();
        assert!(p.contains("no timer tick in 2.000 s"), "{p}");
        // ... but not in a window too short to be sure.
        assert_eq!(vcpu_problem("vm a#0", 0, true, 0.01, true, 0.5), None);
        // A busy vCPU that barely ran is starved, not stuck.
        assert_eq!(vcpu_problem("vm a#0", 0, true, 0.4, false, 10.0), None);
        // Progress: nothing to report, however long it ran.
        assert_eq!(vcpu_problem("vm a#0", 0, false, 9.0, true, 10.0), None);
    }

    #[test]
    fn impossible_cpu_time() {
        // One vCPU (+ the VMM) on 2 CPUs: at most 2 CPUs' worth.
        assert!((max_cpu_s(1, 2, 10.0) - 21.0).abs() < 1e-9);
        // Four threads are capped by the 2 CPUs too.
        assert!((max_cpu_s(4, 2, 10.0) - 21.0).abs() < 1e-9);
        // No busy thread: the process's own thread only.
        assert!((max_cpu_s(0, 4, 10.0) - 10.5).abs() < 1e-9);
    }

    #[test]
    fn counter_deltas() {
        assert_eq!(counter_delta(Some(10), Some(25)), Some(15));
        // A counter that went backwards (a process restarted its count) gives 0.
        assert_eq!(counter_delta(Some(25), Some(10)), Some(0));
        assert_eq!(counter_delta(None, Some(10)), None);
        assert_eq!(counter_delta(Some(10), None), None);
        let start: BTreeMap<String, u64> =
            [("nr_wakeups".to_string(), 100), ("gone".to_string(), 5)].into();
        let end: BTreeMap<String, u64> =
            [("nr_wakeups".to_string(), 180), ("new".to_string(), 7)].into();
        let d = sched_delta(&start, &end);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d["nr_wakeups"], 80);
        assert_eq!(d["new"], 7);
    }
}
