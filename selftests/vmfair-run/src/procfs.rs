// SPDX-License-Identifier: GPL-2.0
//! What the runner reads from /proc and /sys.

use std::collections::{BTreeMap, HashMap};
use std::fs;

/// Per-task scheduler figures from `/proc/<pid>/task/<tid>/schedstat`, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStat {
    /// Thread-group id the task belongs to.
    pub pid: u32,
    /// CPU time (`sum_exec_runtime`).
    pub run_ns: u64,
    /// Time spent runnable on a run queue, waiting.
    pub wait_ns: u64,
}

fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

fn numeric_entries(dir: &str) -> Vec<u32> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every task of `pid` (or of every process when `pid` is None), keyed by tid. Tasks that exit
/// while being read are skipped.
pub fn tasks(pid: Option<u32>) -> HashMap<u32, TaskStat> {
    let pids = match pid {
        Some(p) => vec![p],
        None => numeric_entries("/proc"),
    };
    let mut out = HashMap::new();
    for p in pids {
        for tid in numeric_entries(&format!("/proc/{p}/task")) {
            let path = format!("/proc/{p}/task/{tid}/schedstat");
            if let Some((run_ns, wait_ns)) = fs::read_to_string(path)
                .ok()
                .as_deref()
                .and_then(parse_schedstat)
            {
                out.insert(
                    tid,
                    TaskStat {
                        pid: p,
                        run_ns,
                        wait_ns,
                    },
                );
            }
        }
    }
    out
}

/// Run and wait time (ns) gained between two snapshots by the tasks selected by `keep`. A task
/// absent at the start was created inside the window and counts whole; a task absent at the
/// end exited and its last part is lost (rare: nothing the runner starts exits in the window).
pub fn delta(
    start: &HashMap<u32, TaskStat>,
    end: &HashMap<u32, TaskStat>,
    keep: impl Fn(u32, &TaskStat) -> bool,
) -> (u64, u64) {
    let mut run = 0u64;
    let mut wait = 0u64;
    for (tid, e) in end {
        if !keep(*tid, e) {
            continue;
        }
        match start.get(tid) {
            Some(s) if s.pid == e.pid && s.run_ns <= e.run_ns => {
                run += e.run_ns - s.run_ns;
                wait += e.wait_ns.saturating_sub(s.wait_ns);
            }
            _ => {
                run += e.run_ns;
                wait += e.wait_ns;
            }
        }
    }
    (run, wait)
}

/// `(pid, comm)` of every process (kernel threads are processes of their own).
pub fn comms() -> Vec<(u32, String)> {
    numeric_entries("/proc")
        .into_iter()
        .filter_map(|p| {
            let comm = fs::read_to_string(format!("/proc/{p}/comm")).ok()?;
            Some((p, comm.trim().to_string()))
        })
        .collect()
}

/// The scheduler's debug file (debugfs): every thread with its task group, per CPU.
pub const SCHED_DEBUG: &str = "/sys/kernel/debug/sched/debug";

/// Every thread's scheduler group as the kernel names it (`/`, `/autogroup-3`, `/vmgroup-2`,
/// a cgroup path), and the groups that have a run queue on the leaf list (`cfs_rq[N]:<path>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedGroups {
    /// Thread id to group path.
    pub of_thread: HashMap<u32, String>,
    /// Task lines that could not be parsed (for diagnostics).
    pub unparsed: Vec<String>,
    /// Group paths of the `cfs_rq[N]:` headers.
    pub cfs_rqs: std::collections::BTreeSet<String>,
}

impl SchedGroups {
    /// Distinct group paths of all threads.
    pub fn paths(&self) -> std::collections::BTreeSet<&str> {
        self.of_thread.values().map(String::as_str).collect()
    }
}

/// Reads [`SCHED_DEBUG`]; see [`parse_sched_debug`].
pub fn sched_groups() -> Result<SchedGroups, String> {
    let text = fs::read_to_string(SCHED_DEBUG).map_err(|e| format!("{SCHED_DEBUG}: {e}"))?;
    let g = parse_sched_debug(&text);
    if g.of_thread.is_empty() {
        return Err(format!("{SCHED_DEBUG}: no task lines with a group path"));
    }
    Ok(g)
}

/// Parses the task lines of the scheduler's debug file (7.3 `print_task()`: a two-character
/// state, the comm right-aligned in 15 columns, the pid, ..., and with `CONFIG_CGROUP_SCHED` the
/// group path last) and its `cfs_rq[N]:<path>` headers.
pub fn parse_sched_debug(text: &str) -> SchedGroups {
    let mut g = SchedGroups::default();
    let mut in_tasks = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cfs_rq[") {
            if let Some((_, path)) = rest.split_once("]:") {
                g.cfs_rqs.insert(path.trim().to_string());
            }
            continue;
        }
        if line.starts_with("runnable tasks:") {
            in_tasks = true;
            continue;
        }
        let header = line.contains(" task ") && line.contains(" PID ");
        if !in_tasks || line.len() < 20 || header || line.starts_with("---") {
            if line.is_empty() || line.starts_with("cpu#") {
                in_tasks = false;
            }
            continue;
        }
        let parsed = (|| {
            let (state, rest) = (line.get(..2)?, line.get(18..)?);
            if !state.starts_with([' ', '>']) {
                return None;
            }
            let mut fields = rest.split_whitespace();
            let tid = fields.next()?.parse::<u32>().ok()?;
            let path = fields.last().filter(|p| p.starts_with('/'))?;
            Some((tid, path.to_string()))
        })();
        match parsed {
            Some((tid, path)) => {
                g.of_thread.insert(tid, path);
            }
            None => g.unparsed.push(line.to_string()),
        }
    }
    g
}

/// KVM's debugfs directory (per VM: `<pid>-<vm fd>/`).
pub const KVM_DEBUGFS: &str = "/sys/kernel/debug/kvm";

/// KVM's count of VM exits (all vCPUs, handled in the kernel or not) of the VMs of process
/// `pid`, from debugfs; None if debugfs is not available.
pub fn kvm_exits(pid: u32) -> Option<u64> {
    kvm_stat(pid, &["exits"])
}

/// Nanoseconds KVM spent halt-polling for the VMs of process `pid` (successful and failed
/// polls), from debugfs; None if not available.
pub fn kvm_halt_poll_ns(pid: u32) -> Option<u64> {
    kvm_stat(pid, &["halt_poll_success_ns", "halt_poll_fail_ns"])
}

/// Sum of KVM debugfs statistics `names` over the VMs of process `pid`.
fn kvm_stat(pid: u32, names: &[&str]) -> Option<u64> {
    let prefix = format!("{pid}-");
    let mut total = None;
    for e in fs::read_dir(KVM_DEBUGFS).ok()?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        for stat in names {
            let text = fs::read_to_string(e.path().join(stat)).ok()?;
            *total.get_or_insert(0) += text.trim().parse::<u64>().ok()?;
        }
    }
    total
}

/// Counters of `/proc/<pid>/task/<tid>/sched` worth keeping: wake-up placement (`nr_wakeups*`,
/// counted only while `kernel.sched_schedstats` = 1) and migrations.
fn keep_sched_key(key: &str) -> bool {
    key.starts_with("nr_wakeups") || key == "se.nr_migrations"
}

fn parse_sched(text: &str, into: &mut BTreeMap<String, u64>) {
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if keep_sched_key(k) {
            if let Ok(n) = v.trim().parse::<u64>() {
                *into.entry(k.to_string()).or_insert(0) += n;
            }
        }
    }
}

/// Wake-up and migration counters of all threads of `pid`, summed (see `keep_sched_key`);
/// empty if `/proc/<pid>/task/*/sched` is not there.
pub fn sched_counters(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for tid in numeric_entries(&format!("/proc/{pid}/task")) {
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")) {
            parse_sched(&text, &mut out);
        }
    }
    out
}

/// Whether the scheduler statistics behind `nr_wakeups*` are being collected.
pub fn schedstats_on() -> bool {
    fs::read_to_string("/proc/sys/kernel/sched_schedstats").is_ok_and(|s| s.trim() == "1")
}

/// One line on the CPU topology and the scheduling domains of CPU 0, for the log.
///
/// The kernel lists the domains in debugfs only while `sched/verbose` is on; if it is off,
/// it is turned on for the read and off again (which rebuilds nothing, it only adds and
/// removes the files).
pub fn topology() -> String {
    const VERBOSE: &str = "/sys/kernel/debug/sched/verbose";
    let rd = |p: &str| {
        fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let dom0 = "/sys/kernel/debug/sched/domains/cpu0/domain0";
    let toggled = !std::path::Path::new(dom0).exists()
        && fs::read_to_string(VERBOSE).is_ok_and(|v| v.trim() == "N")
        && fs::write(VERBOSE, "Y").is_ok();
    let mut doms = Vec::new();
    for i in 0..8 {
        let base = format!("/sys/kernel/debug/sched/domains/cpu0/domain{i}");
        if !std::path::Path::new(&base).exists() {
            break;
        }
        doms.push(format!(
            "{}(flags {})",
            rd(&format!("{base}/name")),
            rd(&format!("{base}/flags"))
        ));
    }
    if toggled {
        let _ = fs::write(VERBOSE, "N");
    }
    let t = "/sys/devices/system/cpu/cpu0/topology";
    format!(
        "cpu0: package {} core_cpus {} die_cpus {} llc(cache index3 shared) {}; sched domains of cpu0: {}",
        rd(&format!("{t}/physical_package_id")),
        rd(&format!("{t}/core_cpus_list")),
        rd(&format!("{t}/die_cpus_list")),
        rd("/sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list"),
        if doms.is_empty() { "none".to_string() } else { doms.join(" > ") }
    )
}

fn parse_switches(status: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

/// Voluntary and involuntary context switches of all threads of `pid`, summed over
/// `/proc/<pid>/task/*/status`; None if the process is gone.
pub fn switches(pid: u32) -> Option<(u64, u64)> {
    let tids = numeric_entries(&format!("/proc/{pid}/task"));
    if tids.is_empty() {
        return None;
    }
    let mut total = (0, 0);
    for tid in tids {
        if let Some((v, n)) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
            .ok()
            .as_deref()
            .and_then(parse_switches)
        {
            total.0 += v;
            total.1 += n;
        }
    }
    Some(total)
}

/// Idle time summed over CPUs, seconds (second field of `/proc/uptime`).
pub fn idle_s() -> Result<f64, String> {
    let text = fs::read_to_string("/proc/uptime").map_err(|e| format!("/proc/uptime: {e}"))?;
    text.split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("/proc/uptime: cannot parse {text:?}"))
}

/// Parses a CPU list such as `0-3,5`.
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let mut n = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// Online CPUs.
pub fn online_cpus() -> Result<u32, String> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online")
        .map_err(|e| format!("/sys/devices/system/cpu/online: {e}"))?;
    parse_cpu_list(&text).ok_or_else(|| format!("cannot parse CPU list {text:?}"))
}

/// Current clocksource, e.g. `tsc`.
pub fn clocksource() -> String {
    fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Kernel release (`uname -r`).
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task line as 7.3's `print_task()` writes it (`" %c %15s %5d ..."`, group path last).
    fn task_line(state: &str, comm: &str, pid: u32, path: &str) -> String {
        format!(
            "{state} {comm:>15} {pid:>5}    1048576         6.134787   E           8.894410 \
             2.800000        36.217553        53   120         0.000000         0.000000 \
             0.000000        {path}"
        )
    }

    fn sched_debug_sample() -> String {
        let header = " S            task   PID     weight       vruntime   eligible    deadline \
                      slice          sum-exec      switches  prio         wait-time        \
                      sum-sleep       sum-block  group-path";
        [
            "cpu#0".to_string(),
            "  .nr_running                    : 2".into(),
            String::new(),
            "cfs_rq[0]:/vmgroup-2".into(),
            "  .left_deadline                 : 1.0".into(),
            "cfs_rq[0]:/".into(),
            String::new(),
            "runnable tasks:".into(),
            header.into(),
            "-".repeat(120),
            task_line(" S", "init", 1, "/"),
            task_line(" S", "my thread 1", 101, "/autogroup-3"),
            task_line(">R", "vmfair-run", 205, "/vmgroup-2"),
            String::new(),
            "cpu#1".into(),
            String::new(),
            "runnable tasks:".into(),
            header.into(),
            "-----".into(),
            task_line(" I", "kworker/1:0", 30, "/"),
            task_line(" S", "a-fifteen-char-", 31, "/x/y"),
        ]
        .join("\n")
    }

    #[test]
    fn sched_debug_parsed() {
        let text = sched_debug_sample();
        let g = parse_sched_debug(&text);
        assert_eq!(g.of_thread.len(), 5, "{g:?}");
        assert!(g.unparsed.is_empty(), "{g:?}");
        assert_eq!(g.of_thread[&31], "/x/y");
        assert_eq!(g.of_thread[&1], "/");
        assert_eq!(g.of_thread[&101], "/autogroup-3");
        assert_eq!(g.of_thread[&205], "/vmgroup-2");
        assert_eq!(g.of_thread[&30], "/");
        assert_eq!(
            g.paths().into_iter().collect::<Vec<_>>(),
            ["/", "/autogroup-3", "/vmgroup-2", "/x/y"]
        );
        assert_eq!(
            g.cfs_rqs.iter().map(String::as_str).collect::<Vec<_>>(),
            ["/", "/vmgroup-2"]
        );
        // Without CONFIG_CGROUP_SCHED there is no group column: nothing is made up.
        let no_groups: String = text
            .lines()
            .map(|l| l.trim_end_matches(|c: char| c == '/' || c.is_alphanumeric() || c == '-'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse_sched_debug(&no_groups).of_thread.is_empty());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(7));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn sched_lines() {
        let text = "x (1, #threads: 1)\n----\nse.nr_migrations  :  4\nnr_wakeups  :  10\n\
                    nr_wakeups_local :  7\nnr_switches : 99\nse.vruntime : 1.5\n";
        let mut m = BTreeMap::new();
        parse_sched(text, &mut m);
        parse_sched(text, &mut m);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (
                m["nr_wakeups"],
                m["nr_wakeups_local"],
                m["se.nr_migrations"]
            ),
            (20, 14, 8)
        );
    }

    #[test]
    fn switch_counts() {
        let text = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_switches(text), Some((12, 3)));
        assert_eq!(parse_switches("Name: x\n"), None);
        assert!(switches(std::process::id()).is_some());
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(parse_schedstat("123 456 7\n"), Some((123, 456)));
        assert_eq!(parse_schedstat("123"), None);
    }

    #[test]
    fn deltas() {
        let t = |pid, run_ns, wait_ns| TaskStat {
            pid,
            run_ns,
            wait_ns,
        };
        let start = HashMap::from([(1, t(1, 100, 10)), (2, t(1, 50, 5)), (3, t(3, 9, 9))]);
        let end = HashMap::from([(1, t(1, 160, 15)), (2, t(1, 50, 5)), (4, t(1, 30, 1))]);
        assert_eq!(delta(&start, &end, |_, s| s.pid == 1), (90, 6));
        assert_eq!(delta(&start, &end, |tid, _| tid == 1), (60, 5));
        // The whole system: task 3 exited and is lost, task 4 is new.
        assert_eq!(delta(&start, &end, |_, _| true), (90, 6));
        // Our own counters are real: /proc of the test process has tasks.
        assert!(!tasks(Some(std::process::id())).is_empty());
    }
}
