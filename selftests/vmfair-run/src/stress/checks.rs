// SPDX-License-Identifier: GPL-2.0
//! The state before the load and the checks after it: slab objects of the scheduler's task
//! groups and of KVM's vCPUs, KVM VMs left, every thread's group, kmemleak.

use super::load::{self, Shared};
use crate::procfs;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Slab caches whose active objects must come back to their count before the load
/// (`slab_nomerge` on the command line keeps them apart from caches of the same size).
const CACHES: &[&str] = &["task_group", "kvm_vcpu"];
const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// Active objects of each cache in `/proc/slabinfo` text.
pub fn parse_slabinfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let active = w.next()?.parse().ok()?;
            Some((name.to_string(), active))
        })
        .collect()
}

fn slabs() -> BTreeMap<String, u64> {
    let all = parse_slabinfo(&std::fs::read_to_string("/proc/slabinfo").unwrap_or_default());
    CACHES
        .iter()
        .filter_map(|c| all.get(*c).map(|n| (c.to_string(), *n)))
        .collect()
}

/// KVM VMs alive: the `<pid>-<fd>` directories of KVM's debugfs.
fn kvm_vms() -> usize {
    std::fs::read_dir(procfs::KVM_DEBUGFS)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.split_once('-').is_some_and(|(a, b)| {
                        a.chars().all(|c| c.is_ascii_digit())
                            && b.chars().all(|c| c.is_ascii_digit())
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Groups named `/vmgroup-*`: threads in one, and run queues of one.
fn vm_groups() -> Result<(Vec<String>, Vec<String>), String> {
    let g = procfs::sched_groups()?;
    let threads: Vec<String> = g
        .of_thread
        .iter()
        .filter(|(_, p)| p.starts_with("/vmgroup-"))
        .map(|(t, p)| format!("thread {t} in {p}"))
        .collect();
    let rqs = g
        .cfs_rqs
        .iter()
        .filter(|p| p.contains("/vmgroup-"))
        .cloned()
        .collect();
    Ok((threads, rqs))
}

/// The state before the load; clears kmemleak's list so that only new leaks count.
pub fn baseline(problems: &mut Vec<String>) -> Value {
    if std::path::Path::new("/sys/module/vmfair").exists() {
        load::run(&["/sbin/rmmod", "vmfair"]);
    }
    if std::fs::write(KMEMLEAK, "scan").is_err() || std::fs::write(KMEMLEAK, "clear").is_err() {
        problems.push(format!(
            "{KMEMLEAK} cannot be written: kmemleak is not running"
        ));
    }
    json!({ "slab": slabs(), "kvm_vms": kvm_vms() })
}

/// Polls `f` every 500 ms until it returns true or `limit` passed; returns the last result.
fn settle(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// kmemleak's report: the number of unreferenced objects and the first few in full.
pub fn parse_kmemleak(text: &str) -> (u64, Vec<String>) {
    let mut leaks = 0;
    let mut excerpts: Vec<String> = Vec::new();
    for block in text.split("unreferenced object").skip(1) {
        leaks += 1;
        if excerpts.len() < 4 {
            let lines: Vec<&str> = block.lines().take(24).collect();
            excerpts.push(format!("unreferenced object{}", lines.join("\n")));
        }
    }
    (leaks, excerpts)
}

/// After the load: the last unload and every check; returns what it found.
pub fn finish(s: &Shared, base: &Value, problems: &mut Vec<String>) -> Value {
    s.failslab.disarm();
    let mut rmmod_tries = 0;
    let unloaded = settle(Duration::from_secs(30), || {
        if !std::path::Path::new("/sys/module/vmfair").exists() {
            return true;
        }
        rmmod_tries += 1;
        load::run(&["/sbin/rmmod", "vmfair"]);
        !std::path::Path::new("/sys/module/vmfair").exists()
    });
    if !unloaded {
        problems.push("vmfair cannot be unloaded at the end".into());
    }
    let _ = std::fs::remove_dir(load::CGROUP);
    if !settle(Duration::from_secs(60), || kvm_vms() == 0) {
        problems.push(format!("{} KVM VMs left after every VMM ended", kvm_vms()));
    }
    // Task groups are freed after an RCU grace period.
    let want: BTreeMap<String, u64> =
        serde_json::from_value(base["slab"].clone()).unwrap_or_default();
    let mut slab_after = slabs();
    let slab_ok = settle(Duration::from_secs(30), || {
        slab_after = slabs();
        want.iter()
            .all(|(c, n)| slab_after.get(c).copied().unwrap_or(0) <= *n)
    });
    if !slab_ok {
        problems.push(format!(
            "slab objects not back to their baseline: before {want:?}, after {slab_after:?}"
        ));
    }
    let mut groups = (Vec::new(), Vec::new());
    let groups_ok = settle(Duration::from_secs(20), || match vm_groups() {
        Ok(g) => {
            groups = g;
            groups.0.is_empty() && groups.1.is_empty()
        }
        Err(e) => {
            groups.0 = vec![e];
            false
        }
    });
    if !groups_ok {
        problems.push(format!(
            "VM groups left after the last rmmod: {} thread(s) {:?}, run queues {:?}",
            groups.0.len(),
            groups.0.iter().take(8).collect::<Vec<_>>(),
            groups.1.iter().take(8).collect::<Vec<_>>()
        ));
    }
    // Two scans: an object is reported once it stayed unreferenced over a scan.
    say!("stress: kmemleak scans");
    let t = Instant::now();
    let mut scans_ok = true;
    for _ in 0..2 {
        scans_ok &= std::fs::write(KMEMLEAK, "scan").is_ok();
        std::thread::sleep(Duration::from_secs(5));
    }
    let (leaks, leak_excerpts) = match std::fs::read_to_string(KMEMLEAK) {
        Ok(text) if scans_ok => parse_kmemleak(&text),
        _ => {
            problems.push("kmemleak could not scan (disabled?)".into());
            (0, Vec::new())
        }
    };
    if leaks > 0 {
        problems.push(format!("kmemleak: {leaks} unreferenced object(s)"));
    }
    json!({
        "rmmod_tries": rmmod_tries,
        "kvm_vms": kvm_vms(),
        "slab_before": want,
        "slab_after": slab_after,
        "vm_group_threads": groups.0.len(),
        "vm_group_rqs": groups.1.len(),
        "kmemleak": {"leaks": leaks, "scan_s": t.elapsed().as_secs(), "excerpts": leak_excerpts},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slabinfo_rows() {
        let t = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> ...\n\
                 task_group            12     20    640 ...\nkvm_vcpu 0 0 9000\n";
        let m = parse_slabinfo(t);
        assert_eq!(m.get("task_group"), Some(&12));
        assert_eq!(m.get("kvm_vcpu"), Some(&0));
        assert!(!m.contains_key("slabinfo"));
    }

    #[test]
    fn kmemleak_objects_are_counted() {
        let t = "unreferenced object 0xffff8880 (size 64):\n  comm \"kworker\"\n  backtrace:\n    \
                 kmalloc+0x1\nunreferenced object 0xffff8890 (size 32):\n  comm \"x\"\n";
        let (n, ex) = parse_kmemleak(t);
        assert_eq!(n, 2);
        assert!(ex[0].contains("kworker"));
        assert_eq!(parse_kmemleak("").0, 0);
    }
}
