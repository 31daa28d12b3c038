// SPDX-License-Identifier: GPL-2.0
//! Carrying out the `[[event]]` entries of a scenario.

use super::alloc::Amount;
use super::setup::{modprobe_argv, rmmod_argv, run_tool, sysctl_path, write_file};
use super::{log, Run};
use crate::procfs;
use std::path::Path;
use std::time::Instant;
use vmfair_scenario::{EventAction, EventRecord, EventSpec};

impl Run {
    /// Carries out one `[[event]]` and records it.
    pub(super) fn event(&mut self, ev: &EventSpec, window_start: Instant) {
        let at_s = window_start.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let (detail, result) = match ev.action {
            EventAction::Weight => {
                let name = ev.vm.clone().unwrap_or_default();
                let value = ev.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let mut done = Vec::new();
                let mut result = Ok(());
                for m in self.members.iter_mut().filter(|m| m.name == name) {
                    let path = weight_path(m.cgroup.as_deref(), m.pid, || {
                        Path::new("/sys/module/vmfair").exists()
                    });
                    match write_file(&path, &value) {
                        Ok(()) => {
                            m.weight = value.parse().unwrap_or(m.weight);
                            done.push(path);
                        }
                        Err(e) => result = Err(e),
                    }
                }
                (format!("{value} -> {}", done.join(", ")), result)
            }
            EventAction::Reservation | EventAction::Limit => {
                let amount = if ev.action == EventAction::Reservation {
                    Amount::Reservation
                } else {
                    Amount::Limit
                };
                let name = ev.vm.clone().unwrap_or_default();
                let cpus = ev.cpus().unwrap_or(0.0);
                let mut done = Vec::new();
                let mut result = Ok(());
                for k in 0..self.members.len() {
                    if self.members[k].name != name {
                        continue;
                    }
                    match self.set_amount(k, amount, cpus) {
                        Ok(d) => done.push(d),
                        Err((e, problem)) => {
                            if problem {
                                self.problems.push(e.clone());
                            }
                            result = Err(e);
                        }
                    }
                }
                (done.join(", "), result)
            }
            EventAction::Sysctl => {
                let key = ev.key.clone().unwrap_or_default();
                let value = ev.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let path = sysctl_path(&key);
                (format!("{key} = {value}"), write_file(&path, &value))
            }
            EventAction::Modprobe => {
                if self.groups_before_load.is_none() {
                    self.groups_before_load =
                        self.groups_or_fail("groups-before-load", procfs::sched_groups());
                }
                let argv = modprobe_argv();
                let r = run_tool(&argv);
                if r.is_ok() {
                    self.check_grouped();
                }
                (argv.join(" "), r)
            }
            EventAction::Rmmod => {
                let argv = rmmod_argv();
                let r = run_tool(&argv);
                if r.is_ok() {
                    self.check_restored();
                }
                (argv.join(" "), r)
            }
        };
        let took_s = t0.elapsed().as_secs_f64();
        let ok = result.is_ok();
        let detail = match result {
            Ok(()) => detail,
            Err(e) => format!("{detail}: {e}"),
        };
        log(&format!(
            "event at {at_s:.3} s: {} {detail} ({}, {took_s:.3} s)",
            ev.action,
            if ok { "ok" } else { "FAILED" }
        ));
        self.events.push(EventRecord {
            at_s,
            action: ev.action,
            detail,
            ok,
            took_s,
        });
    }
}

/// The file a `weight` event writes for the VM process `pid`: the `cpu.weight` of the cgroup
/// it was placed in by hand while vmfair is not loaded (`loaded` is asked only then), else
/// vmfair's per-VM weight.
fn weight_path(cgroup: Option<&str>, pid: u32, loaded: impl FnOnce() -> bool) -> String {
    match cgroup {
        Some(cg) if !loaded() => format!("{cg}/cpu.weight"),
        _ => format!("/proc/sys/kernel/vmfair/vm/{pid}/weight"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_event_paths() {
        let cg = Some("/sys/fs/cgroup/vmfair-a-0");
        assert_eq!(
            weight_path(cg, 42, || false),
            "/sys/fs/cgroup/vmfair-a-0/cpu.weight"
        );
        assert_eq!(
            weight_path(cg, 42, || true),
            "/proc/sys/kernel/vmfair/vm/42/weight"
        );
        assert_eq!(
            weight_path(None, 7, || panic!("asked without a cgroup")),
            "/proc/sys/kernel/vmfair/vm/7/weight"
        );
    }
}
