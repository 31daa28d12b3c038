// SPDX-License-Identifier: GPL-2.0
//! The figures read at the edges of the window, and the result of every member.

use super::setup::write_file;
use super::{log, Edge, Member, Run, ACCOUNTING_RANGE, STUCK_RUN_S, TASKS_MAX};
use crate::bench;
use crate::procfs;
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
        }
        for (tid, comm) in procfs::comms() {
            let owner = comm
                .strip_prefix("kvm-pit/")
                .and_then(|p| p.parse::<u32>().ok());
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
        log(&format!("window start; measuring {} s", scn.duration_s));
        self.window(scn, &start)?;
        let end = self.edge()?;
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
        let ratio = (tasks_cpu_s + idle_s) / (f64::from(cpus) * window_s);
        let accounting = Accounting {
            cpus,
            window_s,
            tasks_cpu_s,
            idle_s,
            ratio,
        };
        let capacity = f64::from(cpus) * window_s;
        if tasks_cpu_s > TASKS_MAX * capacity {
            self.problems.push(format!(
                "accounting identity off: tasks used {tasks_cpu_s:.3} s of CPU in \
                 {cpus} CPUs x {window_s:.3} s = {capacity:.3} s"
            ));
        }
        if !(ACCOUNTING_RANGE.0..=ACCOUNTING_RANGE.1).contains(&ratio) {
            self.problems.push(format!(
                "accounting identity off: tasks {tasks_cpu_s:.3} s + idle {idle_s:.3} s = \
                 {:.3} s, expected {cpus} CPUs x {window_s:.3} s = {:.3} s (ratio {ratio:.3})",
                tasks_cpu_s + idle_s,
                f64::from(cpus) * window_s
            ));
        }

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
                    if e == s && vrun_s > STUCK_RUN_S {
                        self.problems.push(format!(
                            "{} vcpu {i}: ran {vrun_s:.3} s in the window without progress",
                            m.label
                        ));
                    } else if e == s && m.ticking && window_s >= 1.0 {
                        self.problems.push(format!(
                            "{} vcpu {i}: no timer tick in {window_s:.3} s",
                            m.label
                        ));
                    }
                }
            }
            let (kthread_run, _) =
                procfs::delta(&start.tasks, &end.tasks, |t, _| m.kthreads.contains(&t));
            let threads = (m.vcpus + m.busy_threads) as u32;
            let max = f64::from(threads + 1).min(f64::from(cpus)) * window_s * 1.05;
            if cpu_s > max {
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
                io_work: end.io_work[k].saturating_sub(start.io_work[k]),
                kthread_cpu_s: kthread_run as f64 * 1e-9,
                exits: match (start.kvm_exits[k], end.kvm_exits[k]) {
                    (Some(s), Some(e)) => Some(e.saturating_sub(s)),
                    _ => None,
                },
                halt_poll_s: match (start.halt_poll_ns[k], end.halt_poll_ns[k]) {
                    (Some(s), Some(e)) => Some(e.saturating_sub(s) as f64 * 1e-9),
                    _ => None,
                },
                voluntary_switches: match (start.switches[k], end.switches[k]) {
                    (Some(s), Some(e)) => Some(e.0.saturating_sub(s.0)),
                    _ => None,
                },
                involuntary_switches: match (start.switches[k], end.switches[k]) {
                    (Some(s), Some(e)) => Some(e.1.saturating_sub(s.1)),
                    _ => None,
                },
                sched: end.sched[k]
                    .iter()
                    .map(|(key, e)| {
                        let s = start.sched[k].get(key).copied().unwrap_or(0);
                        (key.clone(), e.saturating_sub(s))
                    })
                    .collect(),
                bench: bench_scores,
                series: self.series.get(k).cloned().unwrap_or_default(),
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
            groups.push(g);
        }
        log(&format!(
            "accounting: tasks {tasks_cpu_s:.3} s + idle {idle_s:.3} s over {cpus} x \
             {window_s:.3} s: ratio {ratio:.4}"
        ));
        Ok((window_s, groups, accounting))
    }
}
