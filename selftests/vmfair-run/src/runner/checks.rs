// SPDX-License-Identifier: GPL-2.0
//! The checks after `modprobe` (every VM in a group of its own) and `rmmod` (every thread
//! back where it was).
//!
//! The methods of [`Run`] read the threads and the scheduler's debug file; what they conclude
//! from them is in [`grouped_check`] and [`restored_checks`], which read nothing.

use super::setup::thread_ids;
use super::{Run, CGROUP_ROOT};
use crate::procfs::{self, SchedGroups};
use std::collections::BTreeSet;
use vmfair_scenario::{Check, GroupKind};

/// The threads of one member, as the checks see them.
#[derive(Clone, Debug)]
pub(super) struct Threads {
    pub(super) label: String,
    /// A VM instance (host processes are not grouped).
    pub(super) vm: bool,
    /// The cgroup the member was placed in by hand, as a path below the cgroup root
    /// (`/vmfair-a-0`), the form the scheduler's debug file names it in.
    pub(super) cgroup: Option<String>,
    pub(super) tids: Vec<u32>,
}

impl Run {
    /// The groups read from sched/debug, or None with a failed check `name` saying why.
    pub(super) fn groups_or_fail(
        &mut self,
        name: &str,
        groups: Result<SchedGroups, String>,
    ) -> Option<SchedGroups> {
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

    /// Every member's threads, read now.
    fn threads(&self) -> Vec<Threads> {
        self.members
            .iter()
            .map(|m| Threads {
                label: m.label.clone(),
                vm: m.kind == GroupKind::Vm,
                cgroup: m
                    .cgroup
                    .as_ref()
                    .map(|cg| cg[CGROUP_ROOT.len()..].to_string()),
                tids: thread_ids(m.pid),
            })
            .collect()
    }

    /// After `modprobe`: see [`grouped_check`].
    pub(super) fn check_grouped(&mut self) {
        // A thread list read after the debug file may name a thread the file missed (created
        // in between, or a torn read): read the file again once, after the thread lists.
        let threads = self.threads();
        let mut groups = procfs::sched_groups();
        if let Ok(g) = &groups {
            if threads
                .iter()
                .flat_map(|t| &t.tids)
                .any(|t| !g.of_thread.contains_key(t))
            {
                groups = procfs::sched_groups();
            }
        }
        let Some(groups) = self.groups_or_fail("vms-grouped", groups) else {
            return;
        };
        self.checks.push(grouped_check(&threads, &groups));
    }

    /// After `rmmod`: see [`restored_checks`].
    pub(super) fn check_restored(&mut self) {
        let Some(before) = self.groups_before_load.clone() else {
            return;
        };
        let Some(after) = self.groups_or_fail("groups-restored", procfs::sched_groups()) else {
            return;
        };
        let checks = restored_checks(&before, &after, &self.threads());
        self.checks.extend(checks);
    }
}

/// `vms-grouped`, after `modprobe`: every thread of every VM placed by hand in a cgroup is
/// still there, every other VM thread is in a VM group (`/vmgroup-<id>`), one group per VM.
pub(super) fn grouped_check(members: &[Threads], groups: &SchedGroups) -> Check {
    let mut bad = Vec::new();
    let mut seen = 0;
    let mut vm_groups = BTreeSet::new();
    for m in members.iter().filter(|m| m.vm) {
        let mut paths = BTreeSet::new();
        for &tid in &m.tids {
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
            let ok = match &m.cgroup {
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
    let vms = members
        .iter()
        .filter(|m| m.vm && m.cgroup.is_none())
        .count();
    if vm_groups.len() != vms {
        bad.push(format!("{vms} VMs in {} VM groups", vm_groups.len()));
    }
    Check {
        name: "vms-grouped".into(),
        ok: bad.is_empty() && seen > 0,
        detail: if bad.is_empty() {
            format!("{seen} VM threads in {} VM groups", vm_groups.len())
        } else {
            bad.join("; ")
        },
    }
}

/// `groups-restored` and `group-count`, after `rmmod`: every thread that existed before the
/// first `modprobe` is back in the group it was in then, and the set of groups in use is the
/// same (so the same count), with no VM group left anywhere.
pub(super) fn restored_checks(
    before: &SchedGroups,
    after: &SchedGroups,
    members: &[Threads],
) -> [Check; 2] {
    let mut moved = Vec::new();
    let mut compared = 0;
    let mut vm_threads = 0;
    for m in members {
        for tid in &m.tids {
            if let (Some(b), Some(a)) = (before.of_thread.get(tid), after.of_thread.get(tid)) {
                compared += 1;
                if m.vm {
                    vm_threads += 1;
                }
                if a != b {
                    moved.push(format!("{} thread {tid}: {b} -> {a}", m.label));
                }
            }
        }
    }
    let restored = Check {
        name: "groups-restored".into(),
        ok: moved.is_empty() && vm_threads > 0,
        detail: if moved.is_empty() {
            format!("{compared} threads ({vm_threads} of VMs) back in their groups")
        } else {
            moved.join("; ")
        },
    };
    let (pb, pa) = (before.paths(), after.paths());
    let left: Vec<&String> = after
        .of_thread
        .values()
        .chain(&after.cfs_rqs)
        .filter(|p| p.starts_with("/vmgroup-"))
        .collect();
    let count = Check {
        name: "group-count".into(),
        ok: pb == pa && left.is_empty(),
        detail: format!(
            "{} groups in use before load {pb:?}, {} after unload {pa:?}; VM groups left: {}",
            pb.len(),
            pa.len(),
            left.len()
        ),
    };
    [restored, count]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(of: &[(u32, &str)], cfs_rqs: &[&str]) -> SchedGroups {
        SchedGroups {
            of_thread: of.iter().map(|(t, p)| (*t, p.to_string())).collect(),
            unparsed: Vec::new(),
            cfs_rqs: cfs_rqs.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn vm(label: &str, cgroup: Option<&str>, tids: &[u32]) -> Threads {
        Threads {
            label: label.into(),
            vm: true,
            cgroup: cgroup.map(String::from),
            tids: tids.to_vec(),
        }
    }

    fn host(tids: &[u32]) -> Threads {
        Threads {
            vm: false,
            ..vm("host h#0", None, tids)
        }
    }

    #[test]
    fn each_vm_in_a_group_of_its_own() {
        let members = [
            vm("vm a#0", None, &[10, 11]),
            vm("vm a#1", None, &[20, 21]),
            host(&[30]),
        ];
        let g = groups(
            &[
                (10, "/vmgroup-1"),
                (11, "/vmgroup-1"),
                (20, "/vmgroup-2"),
                (21, "/vmgroup-2"),
                (30, "/"),
            ],
            &[],
        );
        let c = grouped_check(&members, &g);
        assert!(c.ok, "{c:?}");
        assert_eq!(c.name, "vms-grouped");
        assert_eq!(c.detail, "4 VM threads in 2 VM groups");
    }

    #[test]
    fn vms_sharing_or_splitting_groups_fail() {
        // Two VMs in one group.
        let members = [vm("vm a#0", None, &[10]), vm("vm a#1", None, &[20])];
        let shared = groups(&[(10, "/vmgroup-1"), (20, "/vmgroup-1")], &[]);
        let c = grouped_check(&members, &shared);
        assert!(!c.ok);
        assert!(c.detail.contains("2 VMs in 1 VM groups"), "{}", c.detail);
        // One VM's threads split over two groups.
        let members = [vm("vm a#0", None, &[10, 11])];
        let split = groups(&[(10, "/vmgroup-1"), (11, "/vmgroup-2")], &[]);
        let c = grouped_check(&members, &split);
        assert!(!c.ok);
        assert!(
            c.detail.contains("vm a#0 threads in 2 groups"),
            "{}",
            c.detail
        );
        // A VM thread left in the root group.
        let members = [vm("vm a#0", None, &[10, 11])];
        let root = groups(&[(10, "/vmgroup-1"), (11, "/")], &[]);
        let c = grouped_check(&members, &root);
        assert!(!c.ok);
        assert!(c.detail.contains("vm a#0 thread 11 in /"), "{}", c.detail);
    }

    #[test]
    fn hand_placed_vms_stay_in_their_cgroup() {
        let members = [
            vm("vm a#0", None, &[10]),
            vm("vm b#0", Some("/vmfair-b-0"), &[20, 21]),
        ];
        let ok = groups(
            &[(10, "/vmgroup-1"), (20, "/vmfair-b-0"), (21, "/vmfair-b-0")],
            &[],
        );
        let c = grouped_check(&members, &ok);
        // Only the VM not placed by hand counts as a VM group.
        assert!(c.ok, "{c:?}");
        assert_eq!(c.detail, "3 VM threads in 1 VM groups");
        let moved = groups(
            &[(10, "/vmgroup-1"), (20, "/vmfair-b-0"), (21, "/vmgroup-2")],
            &[],
        );
        let c = grouped_check(&members, &moved);
        assert!(!c.ok);
        assert!(
            c.detail.contains("vm b#0 thread 21 in /vmgroup-2"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn threads_missing_from_the_debug_file_fail() {
        let members = [vm("vm a#0", None, &[10, 11])];
        let mut g = groups(&[(10, "/vmgroup-1")], &[]);
        g.unparsed.push(" S      vmfair-run    11  garbage".into());
        let c = grouped_check(&members, &g);
        assert!(!c.ok);
        assert!(c.detail.contains("vm a#0 thread 11 not in"), "{}", c.detail);
        assert!(c.detail.contains("1 unparsed lines"), "{}", c.detail);
        // No VM thread seen at all is no evidence.
        let c = grouped_check(&[vm("vm a#0", None, &[10])], &groups(&[], &[]));
        assert!(!c.ok);
        let c = grouped_check(&[host(&[30])], &groups(&[(30, "/")], &[]));
        assert!(!c.ok, "no VM thread: {c:?}");
    }

    #[test]
    fn threads_back_in_their_groups_after_unload() {
        let members = [vm("vm a#0", None, &[10, 11]), host(&[30])];
        let before = groups(
            &[(10, "/"), (11, "/"), (30, "/autogroup-2"), (1, "/")],
            &["/"],
        );
        // Thread 11 exited and 12 was created meanwhile: neither is compared.
        let after = groups(
            &[(10, "/"), (12, "/"), (30, "/autogroup-2"), (1, "/")],
            &["/"],
        );
        let [restored, count] = restored_checks(&before, &after, &members);
        assert!(restored.ok, "{restored:?}");
        assert_eq!(restored.detail, "2 threads (1 of VMs) back in their groups");
        assert!(count.ok, "{count:?}");
        assert_eq!(count.name, "group-count");
    }

    #[test]
    fn moved_threads_and_left_groups_fail_after_unload() {
        let members = [vm("vm a#0", None, &[10]), host(&[30])];
        let before = groups(&[(10, "/"), (30, "/")], &["/"]);
        let after = groups(&[(10, "/vmgroup-1"), (30, "/")], &["/"]);
        let [restored, count] = restored_checks(&before, &after, &members);
        assert!(!restored.ok);
        assert_eq!(restored.detail, "vm a#0 thread 10: / -> /vmgroup-1");
        assert!(!count.ok);
        assert!(
            count.detail.ends_with("VM groups left: 1"),
            "{}",
            count.detail
        );
        // All threads back, but a VM group's run queue is still on the list.
        let after = groups(&[(10, "/"), (30, "/")], &["/", "/vmgroup-1"]);
        let [restored, count] = restored_checks(&before, &after, &members);
        assert!(restored.ok);
        assert!(!count.ok, "{count:?}");
        // A group in use before the load that is gone after the unload.
        let before = groups(&[(10, "/"), (30, "/autogroup-1")], &[]);
        let after = groups(&[(10, "/"), (30, "/")], &[]);
        let [_, count] = restored_checks(&before, &after, &members);
        assert!(!count.ok, "{count:?}");
        // Only host threads compared: no evidence about the VMs.
        let [restored, _] = restored_checks(&after, &after, &[host(&[30])]);
        assert!(!restored.ok);
    }
}
