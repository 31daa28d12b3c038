// SPDX-License-Identifier: GPL-2.0
//! The checks after `modprobe` (every VM in a group of its own) and `rmmod` (every thread
//! back where it was).

use super::setup::thread_ids;
use super::{Run, CGROUP_ROOT};
use crate::procfs;
use vmfair_scenario::{Check, GroupKind};

impl Run {
    /// The groups read from sched/debug, or None with a failed check `name` saying why.
    pub(super) fn groups_or_fail(
        &mut self,
        name: &str,
        groups: Result<procfs::SchedGroups, String>,
    ) -> Option<procfs::SchedGroups> {
        groups
            .map_err(|e| {
                self.checks.push(Check {
                    name: name.into(),
                    ok: false,
                    detail: e,
                })
            })
            .ok()
    }

    /// After `modprobe`: every thread of every VM placed by hand in a cgroup is still there,
    /// every other VM thread is in a VM group (`/vmgroup-<id>`), one group per VM.
    pub(super) fn check_grouped(&mut self) {
        // A thread list read after the debug file may name a thread the file missed (created
        // in between, or a torn read): read the file again once, after the thread lists.
        let tids: Vec<Vec<u32>> = self.members.iter().map(|m| thread_ids(m.pid)).collect();
        let mut groups = procfs::sched_groups();
        if let Ok(g) = &groups {
            if tids.iter().flatten().any(|t| !g.of_thread.contains_key(t)) {
                groups = procfs::sched_groups();
            }
        }
        let Some(groups) = self.groups_or_fail("vms-grouped", groups) else {
            return;
        };
        let mut bad = Vec::new();
        let mut seen = 0;
        let mut vm_groups = std::collections::BTreeSet::new();
        for (m, tids) in self.members.iter().zip(&tids) {
            if m.kind != GroupKind::Vm {
                continue;
            }
            let mut paths = std::collections::BTreeSet::new();
            for &tid in tids {
                let Some(path) = groups.of_thread.get(&tid) else {
                    let raw: Vec<&String> = groups
                        .unparsed
                        .iter()
                        .filter(|l| l.contains(&format!(" {tid} ")))
                        .take(2)
                        .collect();
                    bad.push(format!(
                        "{} thread {tid} not in {} (unparsed: {raw:?}; {} unparsed lines)",
                        m.label,
                        procfs::SCHED_DEBUG,
                        groups.unparsed.len()
                    ));
                    continue;
                };
                seen += 1;
                paths.insert(path.clone());
                let want_cgroup = m.cgroup.as_ref().map(|cg| &cg[CGROUP_ROOT.len()..]);
                let ok = match want_cgroup {
                    Some(cg) => path == cg,
                    None => path.starts_with("/vmgroup-"),
                };
                if !ok {
                    bad.push(format!("{} thread {tid} in {path}", m.label));
                }
            }
            if m.cgroup.is_none() {
                if paths.len() != 1 {
                    bad.push(format!(
                        "{} threads in {} groups: {paths:?}",
                        m.label,
                        paths.len()
                    ));
                }
                vm_groups.extend(paths);
            }
        }
        let vms = self
            .members
            .iter()
            .filter(|m| m.kind == GroupKind::Vm && m.cgroup.is_none())
            .count();
        if vm_groups.len() != vms {
            bad.push(format!("{vms} VMs in {} VM groups", vm_groups.len()));
        }
        self.checks.push(Check {
            name: "vms-grouped".into(),
            ok: bad.is_empty() && seen > 0,
            detail: if bad.is_empty() {
                format!("{seen} VM threads in {} VM groups", vm_groups.len())
            } else {
                bad.join("; ")
            },
        });
    }

    /// After `rmmod`: every thread that existed before the first `modprobe` is back in the
    /// group it was in then, and the set of groups in use is the same (so the same count), with
    /// no VM group left anywhere.
    pub(super) fn check_restored(&mut self) {
        let Some(before) = self.groups_before_load.clone() else {
            return;
        };
        let Some(after) = self.groups_or_fail("groups-restored", procfs::sched_groups()) else {
            return;
        };
        let mut moved = Vec::new();
        let mut compared = 0;
        let mut vm_threads = 0;
        for m in &self.members {
            for tid in thread_ids(m.pid) {
                if let (Some(b), Some(a)) = (before.of_thread.get(&tid), after.of_thread.get(&tid))
                {
                    compared += 1;
                    if m.kind == GroupKind::Vm {
                        vm_threads += 1;
                    }
                    if a != b {
                        moved.push(format!("{} thread {tid}: {b} -> {a}", m.label));
                    }
                }
            }
        }
        self.checks.push(Check {
            name: "groups-restored".into(),
            ok: moved.is_empty() && vm_threads > 0,
            detail: if moved.is_empty() {
                format!("{compared} threads ({vm_threads} of VMs) back in their groups")
            } else {
                moved.join("; ")
            },
        });
        let (pb, pa) = (before.paths(), after.paths());
        let left: Vec<&String> = after
            .of_thread
            .values()
            .chain(&after.cfs_rqs)
            .filter(|p| p.starts_with("/vmgroup-"))
            .collect();
        self.checks.push(Check {
            name: "group-count".into(),
            ok: pb == pa && left.is_empty(),
            detail: format!(
                "{} groups in use before load {pb:?}, {} after unload {pa:?}; VM groups left: {}",
                pb.len(),
                pa.len(),
                left.len()
            ),
        });
    }
}
