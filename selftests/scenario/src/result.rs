// SPDX-License-Identifier: GPL-2.0
//! The result `vmfair-run scenario` prints: one line of JSON (see the crate documentation).

use crate::scenario::EventAction;
use crate::values::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Addition: the reservation in force at the end of the window (CPUs as written, two
    /// decimals; 0 = none, and for host processes).
    #[serde(default)]
    pub reservation: f64,
    /// Addition: the limit in force at the end of the window (CPUs as written, two decimals;
    /// 0 = none, and for host processes).
    #[serde(default)]
    pub limit: f64,
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
    /// Addition: ticking loads (`idle`, `bursty`, `desktop`): median of the wake-up
    /// latency of the VM's timer ticks inside the window (each tick's lateness: the TSC
    /// interval from the previous tick's handler entry minus the nominal tick period, clamped
    /// at 0; see Documentation/vmfair/contract.rst), microseconds; `null` without ticks.
    #[serde(default)]
    pub wake_p50_us: Option<f64>,
    /// Addition: 99th percentile of the ticks' wake-up latency (as `wake_p50_us`), µs.
    #[serde(default)]
    pub wake_p99_us: Option<f64>,
    /// Addition: largest tick wake-up latency in the window (as `wake_p50_us`), µs.
    #[serde(default)]
    pub wake_max_us: Option<f64>,
    /// Addition: ticks behind the `wake_*` figures (0 for other loads).
    #[serde(default)]
    pub wake_n: u64,
    /// Addition: the ticks' latencies as a histogram `[bucket lower bound µs, ticks]` (see
    /// [`crate::wake`]), so that the instances of a VM entry can be pooled; empty for other
    /// loads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wake_hist: Vec<[u64; 2]>,
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

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use crate::*;
    use std::collections::BTreeMap;

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
                reservation: 1.25,
                limit: 1.5,
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
                wake_p50_us: Some(3.5),
                wake_p99_us: Some(120.25),
                wake_max_us: Some(4000.0),
                wake_n: 2000,
                wake_hist: vec![[3, 1500], [120, 500]],
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

    #[test]
    fn result_round_trips() {
        let r = sample_result();
        let line = r.to_json_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("{\"scenario\":\"weights-1-3\""));
        assert!(line.contains("\"index\":null"));
        assert!(line.contains("\"wake_p99_us\":120.25,\"wake_max_us\":4000.0,\"wake_n\":2000"));
        assert!(line.contains("\"wake_hist\":[[3,1500],[120,500]]"));
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
        assert_eq!((r.groups[0].reservation, r.groups[0].limit), (0.0, 0.0));
        assert_eq!(r.groups[0].work, 123456789);
        assert_eq!(r.groups[0].kind, GroupKind::Vm);
        // Older results have no wake-up figures.
        let g = &r.groups[0];
        assert_eq!(
            (g.wake_p50_us, g.wake_p99_us, g.wake_max_us),
            (None, None, None)
        );
        assert!(g.wake_n == 0 && g.wake_hist.is_empty());
        assert!(ScenarioResult::from_json_str("{\"scenario\": 1}").is_err());
    }
}
