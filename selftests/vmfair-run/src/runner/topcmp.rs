// SPDX-License-Identifier: GPL-2.0
//! `top = true`: `vmfair-top` against the runner's own figures, over the same span.
//!
//! At the window's start the runner starts `/bin/vmfair-top -b -n 3 -d 2 --json` (its output
//! into a file) and, while it runs, reads every VM's CPU time (the sum of its
//! threads' `schedstat` run time, as the window's figures) at every health check (every
//! [`TICK`](super::TICK); more often would take CPU from the VMs), each reading dated
//! on the wall clock at its middle, the clock vmfair-top dates its samples (`t`) by. When
//! vmfair-top has exited, [`compare`] sets its mean `%USED` of every VM beside the runner's
//! over the same intervals: each ends at the `t` of one JSON line and starts at the previous
//! line's, the first one `-d` before the first line (vmfair-top's first sample is not printed;
//! it takes the next one `-d` after it). The runner's CPU time at those moments is interpolated
//! between its two readings around each.

use super::{log, Run};
use crate::procfs;
use crate::sys::{self, ChildSetup, Proc, ProcExit};
use std::collections::BTreeMap;
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};
use vmfair_scenario::{Check, GroupKind, TOP_INTERVAL_S, TOP_ITERATIONS};

/// vmfair-top in the guest.
const TOP: &str = "/bin/vmfair-top";
/// The runner check's name.
pub(super) const CHECK: &str = "vmfair-top agrees with the runner";
/// How far (relative) vmfair-top's mean `%USED` of a VM may be from the runner's.
const TOLERANCE: f64 = 0.05;

/// Per VM pid: its CPU time readings (wall-clock seconds, ns), in time order.
pub(super) type Readings = BTreeMap<u32, Vec<(f64, u64)>>;

/// The vmfair-top run in progress.
pub(super) struct TopRun {
    child: Proc,
    out: String,
    readings: Readings,
    /// Readings taken, and the wall-clock time they took in all (s).
    reads: u32,
    read_s: f64,
    /// vmfair-top's own CPU time as last read (ns), readable until it is reaped.
    own_ns: Option<u64>,
}

/// One JSON line of vmfair-top: its sample's wall-clock time and every VM it lists, with its
/// `%USED` (None: `null`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TopLine {
    pub(super) t: f64,
    pub(super) used: Vec<(u32, Option<f64>)>,
}

/// vmfair-top's JSON lines (empty lines skipped).
pub(super) fn parse_output(text: &str) -> Result<Vec<TopLine>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
            let t = v["t"]
                .as_f64()
                .ok_or_else(|| format!("line {}: no time `t`", i + 1))?;
            let vms = v["vms"]
                .as_array()
                .ok_or_else(|| format!("line {}: no `vms`", i + 1))?;
            let used = vms
                .iter()
                .map(|vm| {
                    let pid = vm["pid"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok())
                        .ok_or_else(|| format!("line {}: a VM without a pid: {vm}", i + 1))?;
                    Ok((pid, vm["used_pct"].as_f64()))
                })
                .collect::<Result<_, String>>()?;
            Ok(TopLine { t, used })
        })
        .collect()
}

/// The CPU time (ns) at `t`, interpolated between the readings just before and just after it;
/// None when `t` is outside the readings.
pub(super) fn cpu_at(series: &[(f64, u64)], t: f64) -> Option<f64> {
    let after = series.iter().position(|&(ts, _)| ts >= t)?;
    let (t1, c1) = series[after];
    if t1 == t {
        return Some(c1 as f64);
    }
    let (t0, c0) = *series.get(after.checked_sub(1)?)?;
    let (c0, c1) = (c0 as f64, c1 as f64);
    Some(c0 + (c1 - c0) * (t - t0) / (t1 - t0))
}

/// The runner's `%USED` of one VM over `(start, end)` from its readings.
fn runner_used(series: &[(f64, u64)], start: f64, end: f64) -> Option<f64> {
    let (a, b) = (cpu_at(series, start)?, cpu_at(series, end)?);
    (end > start && b >= a).then(|| (b - a) / (end - start) / 1e7)
}

/// The check: vmfair-top's `lines` (of a run with `-d interval -n iterations`) list exactly
/// the VMs of `vms` (pid, label) every time, and every VM's mean `%USED` over them is within
/// [`TOLERANCE`] of the runner's mean over the same intervals, from `readings`.
pub(super) fn compare(
    vms: &[(u32, String)],
    interval: f64,
    iterations: usize,
    lines: &[TopLine],
    readings: &Readings,
) -> Check {
    let mut problems = Vec::new();
    if lines.len() != iterations {
        problems.push(format!("{} JSON lines, expected {iterations}", lines.len()));
    }
    let mut want: Vec<u32> = vms.iter().map(|(p, _)| *p).collect();
    want.sort_unstable();
    for (i, line) in lines.iter().enumerate() {
        let mut have: Vec<u32> = line.used.iter().map(|(p, _)| *p).collect();
        have.sort_unstable();
        if have != want {
            let missing: Vec<u32> = want.iter().filter(|p| !have.contains(p)).copied().collect();
            let mut extra: Vec<u32> = have.iter().filter(|p| !want.contains(p)).copied().collect();
            // A pid listed twice is one too many.
            extra.extend(have.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
            problems.push(format!(
                "line {} lists pids {have:?}: missing {missing:?}, not of the scenario {extra:?}",
                i + 1
            ));
        }
    }
    // The intervals: the first starts one interval before the first line.
    let mut edges: Vec<f64> = lines.first().map(|l| l.t - interval).into_iter().collect();
    edges.extend(lines.iter().map(|l| l.t));
    if edges.windows(2).any(|w| w[1] <= w[0]) {
        problems.push(format!("sample times do not increase: {edges:?}"));
    }
    let mut figures = Vec::new();
    let mut worst: Option<(f64, &str)> = None;
    for (pid, label) in vms {
        let top: Option<Vec<f64>> = lines
            .iter()
            .map(|l| l.used.iter().find(|(p, _)| p == pid).and_then(|(_, u)| *u))
            .collect();
        let series = readings.get(pid).map_or(&[][..], Vec::as_slice);
        let own: Option<Vec<f64>> = edges
            .windows(2)
            .map(|w| runner_used(series, w[0], w[1]))
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        match (top, own) {
            (Some(top), Some(own)) if !top.is_empty() && top.len() == own.len() => {
                let each: Vec<String> = top
                    .iter()
                    .zip(&own)
                    .map(|(t, o)| format!("{t:.1}/{o:.1}"))
                    .collect();
                let (top, own) = (mean(&top), mean(&own));
                let dev = if own > 0.0 {
                    (top - own).abs() / own
                } else if top == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                };
                figures.push(format!(
                    "{label}: vmfair-top {top:.2} runner {own:.2} ({:.1} %, per interval {})",
                    dev * 100.0,
                    each.join(" ")
                ));
                if dev > TOLERANCE {
                    problems.push(format!("{label} is {:.1} % off", dev * 100.0));
                }
                if worst.is_none_or(|(w, _)| dev > w) {
                    worst = Some((dev, label));
                }
            }
            (top, own) => problems.push(format!(
                "{label}: no figure from {}",
                match (top.is_some_and(|t| !t.is_empty()), own.is_some()) {
                    (false, false) => "vmfair-top or the runner",
                    (false, true) => "vmfair-top (not listed or null)",
                    _ => "the runner (readings do not cover the intervals)",
                }
            )),
        }
    }
    let worst = worst.map_or("none".to_string(), |(d, l)| {
        format!("{:.1} % ({l})", d * 100.0)
    });
    Check {
        name: CHECK.into(),
        ok: problems.is_empty(),
        detail: format!(
            "{}; worst deviation {worst} (tolerance {:.0} %){}",
            figures.join("; "),
            TOLERANCE * 100.0,
            if problems.is_empty() {
                String::new()
            } else {
                format!("; {}", problems.join("; "))
            }
        ),
    }
}

/// Wall-clock seconds since the Unix epoch, as vmfair-top's `t`.
fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Run {
    /// The VM members: pid and label.
    fn top_vms(&self) -> Vec<(u32, String)> {
        self.members
            .iter()
            .filter(|m| m.kind == GroupKind::Vm)
            .map(|m| (m.pid, m.label.clone()))
            .collect()
    }

    /// Adds one CPU time reading of every VM to `readings`; the time it took (s).
    fn top_read(&self, readings: &mut Readings) -> f64 {
        let start = wall();
        for (pid, _) in self.top_vms() {
            let t0 = wall();
            let cpu: u64 = procfs::tasks(Some(pid)).values().map(|t| t.run_ns).sum();
            let t = (t0 + wall()) / 2.0;
            readings.entry(pid).or_default().push((t, cpu));
        }
        wall() - start
    }

    /// One reading into the run's readings.
    fn top_read_into(&self, top: &mut TopRun) {
        top.read_s += self.top_read(&mut top.readings);
        top.reads += 1;
    }

    /// Starts vmfair-top, after a first reading.
    pub(super) fn top_start(&mut self) {
        let out = format!("{}/vmfair-top.json", self.dir);
        let mut readings = Readings::new();
        let read_s = self.top_read(&mut readings);
        let (n, d) = (TOP_ITERATIONS.to_string(), TOP_INTERVAL_S.to_string());
        // Started directly, without a shell: its start costs the VMs CPU in the window.
        let argv: Vec<String> = [TOP, "-b", "-n", &n, "-d", &d, "--json"]
            .map(String::from)
            .into();
        log(&format!("window: {} > {out}", argv.join(" ")));
        let setup = ChildSetup {
            stdout: Some(out.clone()),
            ..Default::default()
        };
        match sys::spawn(&argv, setup) {
            Ok(child) => {
                self.top = Some(TopRun {
                    child,
                    out,
                    readings,
                    reads: 1,
                    read_s,
                    own_ns: None,
                })
            }
            Err(e) => self.checks.push(Check {
                name: CHECK.into(),
                ok: false,
                detail: format!("vmfair-top does not start: {e}"),
            }),
        }
    }

    /// While vmfair-top runs: one reading, and the comparison once it has exited.
    pub(super) fn top_poll(&mut self) {
        let Some(mut top) = self.top.take() else {
            return;
        };
        self.top_read_into(&mut top);
        let own = fs::read_to_string(format!("/proc/{}/schedstat", top.child.id()));
        if let Some(ns) = own
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
        {
            top.own_ns = Some(ns);
        }
        match top.child.try_wait() {
            Ok(None) => self.top = Some(top),
            Ok(Some(exit)) => {
                // One more reading after its last sample.
                self.top_read_into(&mut top);
                self.top_finish(top, Ok(exit));
            }
            Err(e) => self.top_finish(top, Err(format!("waitpid: {e}"))),
        }
    }

    /// At the window's end: vmfair-top should be done; if not, it is stopped and fails.
    pub(super) fn top_stop(&mut self) {
        if let Some(mut top) = self.top.take() {
            let _ = sys::kill(top.child.id(), libc::SIGKILL);
            let _ = top.child.wait();
            self.top_finish(top, Err("still running at the end of the window".into()));
        }
    }

    fn top_finish(&mut self, top: TopRun, exit: Result<ProcExit, String>) {
        let text = fs::read_to_string(&top.out).unwrap_or_default();
        let _ = fs::remove_file(&top.out);
        let check = match (exit, parse_output(&text)) {
            (Ok(exit), Ok(lines)) if exit.success() => compare(
                &self.top_vms(),
                TOP_INTERVAL_S,
                TOP_ITERATIONS as usize,
                &lines,
                &top.readings,
            ),
            (exit, lines) => Check {
                name: CHECK.into(),
                ok: false,
                detail: format!(
                    "vmfair-top: {}, output {}",
                    match exit {
                        Ok(e) => e.to_string(),
                        Err(e) => e,
                    },
                    match lines {
                        Ok(l) => format!("{} lines", l.len()),
                        Err(e) => e,
                    }
                ),
            },
        };
        log(&format!(
            "{}: {}: {} ({} readings of the VMs' CPU time, {:.0} ms in all; vmfair-top used \
             {} ms of CPU)",
            CHECK,
            if check.ok { "ok" } else { "FAILED" },
            check.detail,
            top.reads,
            top.read_s * 1e3,
            top.own_ns
                .map_or("?".to_string(), |ns| format!("{:.0}", ns as f64 * 1e-6))
        ));
        self.checks.push(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings every 50 ms from `from` to `to` of a VM whose CPU rate (in CPUs) is
    /// `rate(t)`, integrated in 1 ms steps.
    fn readings(from: f64, to: f64, rate: impl Fn(f64) -> f64) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        let (mut t, mut cpu) = (from, 0.0f64);
        let mut next = from;
        while t <= to + 1e-9 {
            if t >= next - 1e-9 {
                out.push((t, cpu.round() as u64));
                next += 0.05;
            }
            cpu += rate(t) * 1e-3 * 1e9;
            t += 1e-3;
        }
        out
    }

    /// vmfair-top lines at `t1`, `t1 + 2`, … with the given `%USED` per pid.
    fn lines(t1: f64, used: &[&[(u32, Option<f64>)]]) -> Vec<TopLine> {
        used.iter()
            .enumerate()
            .map(|(i, u)| TopLine {
                t: t1 + 2.0 * i as f64,
                used: u.to_vec(),
            })
            .collect()
    }

    fn vms() -> Vec<(u32, String)> {
        vec![
            (101, "vm a#0 (pid 101)".into()),
            (102, "vm b#0 (pid 102)".into()),
        ]
    }

    /// VM 101 at 0.5 CPU throughout, VM 102 at 1.5 CPUs; readings from 0 to 8 s, vmfair-top's
    /// first sample at 1 s (lines at 3, 5, 7 s).
    fn steady() -> Readings {
        [
            (101, readings(0.0, 8.0, |_| 0.5)),
            (102, readings(0.0, 8.0, |_| 1.5)),
        ]
        .into()
    }

    fn run(used: [f64; 2]) -> Check {
        let one: &[(u32, Option<f64>)] = &[(102, Some(used[1])), (101, Some(used[0]))];
        compare(&vms(), 2.0, 3, &lines(3.0, &[one, one, one]), &steady())
    }

    #[test]
    fn agreeing_figures_pass() {
        let c = run([50.0, 150.0]);
        assert!(c.ok, "{}", c.detail);
        assert_eq!(c.name, CHECK);
        assert!(
            c.detail.contains(
                "vm a#0 (pid 101): vmfair-top 50.00 runner 50.00 (0.0 %, per interval \
                 50.0/50.0 50.0/50.0 50.0/50.0)"
            ),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("worst deviation 0.0 %"), "{}", c.detail);
    }

    #[test]
    fn six_percent_off_fails_four_passes() {
        for (used, ok) in [
            ([50.0, 159.0], false),
            ([50.0, 141.0], false),
            ([47.0, 150.0], false),
            ([53.0, 150.0], false),
            ([50.0, 156.0], true),
            ([48.0, 150.0], true),
        ] {
            let c = run(used);
            assert_eq!(c.ok, ok, "{used:?}: {}", c.detail);
        }
        let c = run([50.0, 159.0]);
        assert!(
            c.detail
                .contains("worst deviation 6.0 % (vm b#0 (pid 102))")
                && c.detail.contains("vm b#0 (pid 102) is 6.0 % off"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn compares_the_same_span() {
        // VM 101 runs at 1 CPU outside vmfair-top's span [1, 7] s, and within it at 0.8 CPU
        // over the first interval [1, 3] (0.6, then 1) and 0.5 CPU over [3, 7]: vmfair-top's
        // mean is 60.
        let rate = |t: f64| match t {
            t if !(1.0..7.0).contains(&t) => 1.0,
            t if t < 2.0 => 0.6,
            t if t < 3.0 => 1.0,
            _ => 0.5,
        };
        let r: Readings = [
            (101, readings(0.0, 8.0, rate)),
            (102, readings(0.0, 8.0, |_| 1.5)),
        ]
        .into();
        let line = |u: f64| [(101, Some(u)), (102, Some(150.0))];
        let (a, b, c) = (line(80.0), line(50.0), line(50.0));
        let l = lines(3.0, &[&a, &b, &c]);
        let check = compare(&vms(), 2.0, 3, &l, &r);
        assert!(check.ok, "{}", check.detail);
        assert!(check.detail.contains("runner 60.00"), "{}", check.detail);
        // The whole readings' span (70), or the lines' span without the first interval (50),
        // would be far off: a mean %USED of either fails.
        for wrong in [70.0, 50.0] {
            let l = lines(3.0, &[&line(wrong), &line(wrong), &line(wrong)]);
            let check = compare(&vms(), 2.0, 3, &l, &r);
            assert!(!check.ok, "{wrong}: {}", check.detail);
        }
        // The interval counts: with -d 1 the first interval would be [2, 3] at 1 CPU.
        let check = compare(&vms(), 1.0, 3, &lines(3.0, &[&a, &b, &c]), &r);
        assert!(check.detail.contains("runner 66.6"), "{}", check.detail);
        // Readings that start after vmfair-top's first sample do not cover the span.
        let late: Readings = [
            (101, readings(1.5, 8.0, rate)),
            (102, readings(0.0, 8.0, |_| 1.5)),
        ]
        .into();
        let check = compare(&vms(), 2.0, 3, &lines(3.0, &[&a, &b, &c]), &late);
        assert!(!check.ok, "{}", check.detail);
        assert!(
            check
                .detail
                .contains("vm a#0 (pid 101): no figure from the runner"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn every_vm_and_no_other() {
        let both: &[(u32, Option<f64>)] = &[(101, Some(50.0)), (102, Some(150.0))];
        let one: &[(u32, Option<f64>)] = &[(101, Some(50.0))];
        // Missing from one iteration only.
        let c = compare(&vms(), 2.0, 3, &lines(3.0, &[both, one, both]), &steady());
        assert!(!c.ok, "{}", c.detail);
        assert!(
            c.detail.contains("line 2 lists pids [101]: missing [102]"),
            "{}",
            c.detail
        );
        // Missing throughout: no figure either.
        let c = compare(&vms(), 2.0, 3, &lines(3.0, &[one, one, one]), &steady());
        assert!(
            !c.ok
                && c.detail
                    .contains("vm b#0 (pid 102): no figure from vmfair-top")
        );
        // A VM that is not the scenario's.
        let more: &[(u32, Option<f64>)] = &[(101, Some(50.0)), (102, Some(150.0)), (7, Some(1.0))];
        let c = compare(&vms(), 2.0, 3, &lines(3.0, &[more, more, more]), &steady());
        assert!(!c.ok, "{}", c.detail);
        assert!(c.detail.contains("not of the scenario [7]"), "{}", c.detail);
        // A VM listed twice.
        let twice: &[(u32, Option<f64>)] = &[(101, Some(50.0)), (102, Some(150.0)), (101, None)];
        let c = compare(&vms(), 2.0, 3, &lines(3.0, &[both, both, twice]), &steady());
        assert!(
            !c.ok && c.detail.contains("not of the scenario [101]"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn null_figures_and_wrong_counts_fail() {
        let both: &[(u32, Option<f64>)] = &[(101, Some(50.0)), (102, Some(150.0))];
        let null: &[(u32, Option<f64>)] = &[(101, None), (102, Some(150.0))];
        let c = compare(&vms(), 2.0, 3, &lines(3.0, &[null, both, both]), &steady());
        assert!(
            !c.ok
                && c.detail
                    .contains("vm a#0 (pid 101): no figure from vmfair-top")
        );
        let c = compare(&vms(), 2.0, 3, &lines(3.0, &[both, both]), &steady());
        assert!(
            !c.ok && c.detail.contains("2 JSON lines, expected 3"),
            "{}",
            c.detail
        );
        let c = compare(&vms(), 2.0, 3, &[], &steady());
        assert!(!c.ok && c.detail.contains("0 JSON lines"), "{}", c.detail);
        // Times that do not increase.
        let mut l = lines(3.0, &[both, both, both]);
        l[2].t = l[1].t;
        let c = compare(&vms(), 2.0, 3, &l, &steady());
        assert!(
            !c.ok && c.detail.contains("do not increase"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn interpolates_between_readings() {
        let s = [(1.0, 100), (2.0, 300), (4.0, 300)];
        assert_eq!(cpu_at(&s, 1.0), Some(100.0));
        assert_eq!(cpu_at(&s, 1.25), Some(150.0));
        assert_eq!(cpu_at(&s, 2.0), Some(300.0));
        assert_eq!(cpu_at(&s, 3.0), Some(300.0));
        assert_eq!(cpu_at(&s, 0.99), None);
        assert_eq!(cpu_at(&s, 4.01), None);
        assert_eq!(cpu_at(&[], 1.0), None);
        // 200 ns over 1 s is 2e-5 % of a CPU.
        let u = runner_used(&s, 1.0, 2.0).unwrap();
        assert!((u - 2e-5).abs() < 1e-12, "{u}");
    }

    #[test]
    fn parses_vmfair_top_json() {
        let text = "{\"t\":1796208012.503,\"vms\":[{\"pid\":1412,\"name\":\"vmfair-run\",\
                    \"vcpus\":2,\"weight\":300,\"reservation\":null,\"limit\":null,\
                    \"used_pct\":199.62,\"rdy_pct\":0.31,\"threads\":3,\"cmdline\":\"x\"},\
                    {\"pid\":1420,\"used_pct\":null}]}\n\n{\"t\":1796208014.5,\"vms\":[]}\n";
        let l = parse_output(text).unwrap();
        assert_eq!(
            l,
            vec![
                TopLine {
                    t: 1796208012.503,
                    used: vec![(1412, Some(199.62)), (1420, None)]
                },
                TopLine {
                    t: 1796208014.5,
                    used: vec![]
                }
            ]
        );
        assert!(parse_output("{\"vms\":[]}")
            .unwrap_err()
            .contains("no time"));
        assert!(parse_output("{\"t\":1,\"vms\":[{\"used_pct\":1}]}")
            .unwrap_err()
            .contains("without a pid"));
        assert!(parse_output("nonsense").unwrap_err().starts_with("line 1:"));
        assert_eq!(parse_output("").unwrap(), vec![]);
    }
}
