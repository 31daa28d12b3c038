// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run scale`: the pure parts, unit tested: percentiles, parsing of `vms`,
//! `/proc/meminfo`, `/proc/slabinfo` and `/proc/<pid>/limits`, the per-VM memory arithmetic
//! and the entitlement.

use super::r3;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use vmfair_scenario::wake::percentile;

/// Nearest-rank percentiles of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pct {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// p50, p99 and max of `v`; None when empty.
pub fn percentiles(v: &[f64]) -> Option<Pct> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some(Pct {
        n: s.len(),
        p50: percentile(&s, 0.50)?,
        p99: percentile(&s, 0.99)?,
        max: s[s.len() - 1],
    })
}

/// Percentiles as JSON (null when empty).
pub fn pct_json(v: &[f64]) -> Value {
    match percentiles(v) {
        Some(p) => json!({"n": p.n, "p50": r3(p.p50), "p99": r3(p.p99), "max": r3(p.max)}),
        None => Value::Null,
    }
}

/// One line of `/proc/sys/kernel/vmfair/vms`: `<pid> vcpus <n> weight <w> shares <s> group
/// <id> reservation <cpus> limit <cpus>` (keys after the pid in any order; unknown ones are
/// kept too, those with decimals checked and left out).
#[derive(Clone, Debug, PartialEq)]
pub struct VmLine {
    pub pid: u32,
    pub fields: BTreeMap<String, u64>,
}

impl VmLine {
    pub fn group(&self) -> Option<u64> {
        self.fields.get("group").copied()
    }
}

/// Parses `vms`; an error names the first line that is not `<pid> (<key> <number>)*`.
pub fn parse_vms(text: &str) -> Result<Vec<VmLine>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || format!("vms: cannot parse {line:?}");
        let mut w = line.split_whitespace();
        let pid = w.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let mut fields = BTreeMap::new();
        while let Some(k) = w.next() {
            let v = w.next().ok_or_else(bad)?;
            // `reservation` and `limit` are CPUs with two decimals: numbers, not counts.
            match v.parse::<u64>() {
                Ok(n) => {
                    fields.insert(k.to_string(), n);
                }
                Err(_) if v.parse::<f64>().is_ok_and(f64::is_finite) => {}
                Err(_) => return Err(bad()),
            }
        }
        out.push(VmLine { pid, fields });
    }
    Ok(out)
}

/// `/proc/meminfo` as key to value (kB for the sized fields).
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_string(), n))
        })
        .collect()
}

/// One cache of `/proc/slabinfo` (version 2.1).
#[derive(Clone, Debug, PartialEq)]
pub struct SlabCache {
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u64,
    pub pages_per_slab: u64,
    pub num_slabs: u64,
}

impl SlabCache {
    /// Bytes of the slabs of this cache.
    pub fn slab_bytes(&self) -> u64 {
        self.num_slabs * self.pages_per_slab * 4096
    }
}

/// Parses `/proc/slabinfo`: `name active_objs num_objs objsize objperslab pagesperslab :
/// tunables ... : slabdata active_slabs num_slabs sharedavail`.
pub fn parse_slabinfo(text: &str) -> Result<Vec<SlabCache>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(v) if v.starts_with("slabinfo - version: 2.") => {}
        other => return Err(format!("slabinfo: unknown header {other:?}")),
    }
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| w.get(i).and_then(|s| s.parse::<u64>().ok());
        let sd = w.iter().position(|s| *s == "slabdata");
        let parsed = (|| {
            Some(SlabCache {
                name: w.first()?.to_string(),
                active_objs: num(1)?,
                num_objs: num(2)?,
                objsize: num(3)?,
                pages_per_slab: num(5)?,
                num_slabs: num(sd? + 2)?,
            })
        })();
        out.push(parsed.ok_or_else(|| format!("slabinfo: cannot parse {line:?}"))?);
    }
    Ok(out)
}

/// Per-cache growth from `before` to `after`: (name, object size, objects, slab bytes), largest
/// slab growth first, caches that did not change left out.
pub fn slab_growth(before: &[SlabCache], after: &[SlabCache]) -> Vec<(String, u64, i64, i64)> {
    let old: HashMap<&str, &SlabCache> = before.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out: Vec<(String, u64, i64, i64)> = after
        .iter()
        .map(|a| {
            let (objs, bytes) = old
                .get(a.name.as_str())
                .map_or((0, 0), |b| (b.active_objs as i64, b.slab_bytes() as i64));
            (
                a.name.clone(),
                a.objsize,
                a.active_objs as i64 - objs,
                a.slab_bytes() as i64 - bytes,
            )
        })
        .filter(|g| g.2 != 0 || g.3 != 0)
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.3.abs()));
    out
}

/// Bytes of live slab objects gained from `before` to `after`: the sum over caches of the
/// change in active objects times the object size.
pub fn slab_object_bytes(before: &[SlabCache], after: &[SlabCache]) -> i64 {
    slab_growth(before, after)
        .iter()
        .map(|(_, size, objs, _)| *size as i64 * objs)
        .sum()
}

/// Kernel memory of VM groups from four snapshots (kB of one meminfo field, or bytes, any unit):
/// module loaded and unloaded with N VMs running, and the same with none. The module's own
/// fixed cost (`l0 - u0`) is taken out; what is left is divided by N.
pub fn per_vm(ln: i64, un: i64, l0: i64, u0: i64, n: usize) -> f64 {
    ((ln - un) - (l0 - u0)) as f64 / n.max(1) as f64
}

/// Estimated kernel memory of one VM group on a host with `cpus` possible CPUs from the one
/// measured with `measured_cpus`: the slab part does not depend on the CPU count, the percpu
/// part (`struct cfs_tg_state`, a cfs_rq, a sched_entity and its statistics per CPU) grows
/// with it.
pub fn estimate_per_vm(slab: f64, percpu: f64, measured_cpus: u32, cpus: u32) -> f64 {
    slab + percpu / f64::from(measured_cpus.max(1)) * f64::from(cpus)
}

/// Entitlement of each of `busy` busy 1-vCPU VMs on `cpus` CPUs, in CPUs: an equal share,
/// at most one CPU.
pub fn entitlement(busy: usize, cpus: u32) -> f64 {
    (f64::from(cpus) / busy.max(1) as f64).min(1.0)
}

/// `key value` lines (`vm/<pid>/stats`) as key to value.
pub fn parse_kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(char::is_whitespace)?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The CPU a task last ran on: field 39 of `/proc/<pid>/stat` (fields counted after the
/// command name, which may hold spaces and parentheses).
pub fn stat_cpu(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(36)?.parse().ok()
}

/// How many of the given CPUs are each CPU (unknown ones left out), as `{"0": n, "1": m}`.
pub fn per_cpu(cpus: impl Iterator<Item = Option<u32>>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in cpus.flatten() {
        *m.entry(c.to_string()).or_insert(0) += 1;
    }
    m
}

/// Parses the first field of `/proc/<pid>/limits` line `name` (e.g. "Max open files").
pub fn parse_limit(text: &str, name: &str) -> Option<String> {
    let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
    rest.split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&v).unwrap();
        assert_eq!((p.n, p.p50, p.p99, p.max), (100, 50.0, 99.0, 100.0));
        let p = percentiles(&[3.0]).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (3.0, 3.0, 3.0));
        // Ten values: p50 is the 5th, p99 the 10th (the largest).
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let p = percentiles(&v).unwrap();
        assert_eq!((p.p50, p.p99), (5.0, 10.0));
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn vms_lines() {
        let t = "1234 vcpus 1 weight 100 shares 1024 group 7\n1300 vcpus 4 weight 300 shares \
                 3072 group 8\n\n";
        let v = parse_vms(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].pid, v[0].group(), v[0].fields["vcpus"]),
            (1234, Some(7), 1)
        );
        assert_eq!(
            (v[1].pid, v[1].group(), v[1].fields["shares"]),
            (1300, Some(8), 3072)
        );
        assert!(parse_vms("").unwrap().is_empty());
        assert!(parse_vms("1234 vcpus\n").is_err());
        assert!(parse_vms("x vcpus 1\n").is_err());
        assert!(parse_vms("12 vcpus one\n").is_err());
        let v = parse_vms(
            "1430 vcpus 1 weight 100 shares 1024 group 558 reservation 0.00 limit 0.50\n",
        )
        .unwrap();
        assert_eq!(v[0].group(), Some(558));
        assert_eq!(v[0].fields.len(), 4);
        assert!(parse_vms("12 group 3 limit x\n").is_err());
    }

    #[test]
    fn meminfo_fields() {
        let t = "MemTotal:        4026112 kB\nSlab:              52340 kB\nPercpu:             \
                 1824 kB\nHugePages_Total:       0\n";
        let m = parse_meminfo(t);
        assert_eq!(m["MemTotal"], 4026112);
        assert_eq!(m["Slab"], 52340);
        assert_eq!(m["Percpu"], 1824);
        assert_eq!(m["HugePages_Total"], 0);
        // Our own meminfo parses and has the fields the run uses.
        let own = parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap());
        assert!(own.contains_key("Slab") && own.contains_key("Percpu"));
    }

    const SLABINFO: &str = "slabinfo - version: 2.1\n\
        # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : \
        tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> \
        <sharedavail>\n\
        task_group           120    126    640   21    4 : tunables    0    0    0 : slabdata      6      6      0\n\
        kmalloc-64          4032   4096     64   64    1 : tunables    0    0    0 : slabdata     64     64      0\n";

    #[test]
    fn slabinfo_caches() {
        let c = parse_slabinfo(SLABINFO).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            SlabCache {
                name: "task_group".into(),
                active_objs: 120,
                num_objs: 126,
                objsize: 640,
                pages_per_slab: 4,
                num_slabs: 6,
            }
        );
        assert_eq!(c[0].slab_bytes(), 6 * 4 * 4096);
        assert_eq!(c[1].slab_bytes(), 64 * 4096);
        assert!(parse_slabinfo("slabinfo - version: 1.0\n").is_err());
        assert!(parse_slabinfo("slabinfo - version: 2.1\nfoo 1 2\n").is_err());
        let mut after = c.clone();
        after[0].active_objs += 64;
        after[0].num_slabs += 3;
        after.push(SlabCache {
            name: "new".into(),
            active_objs: 1,
            num_objs: 8,
            objsize: 512,
            pages_per_slab: 1,
            num_slabs: 1,
        });
        assert_eq!(slab_object_bytes(&c, &after), 64 * 640 + 512);
        assert_eq!(slab_object_bytes(&after, &c), -(64 * 640));
        let g = slab_growth(&c, &after);
        assert_eq!(
            g,
            vec![
                ("task_group".to_string(), 640, 64, 3 * 4 * 4096),
                ("new".to_string(), 512, 1, 4096),
            ]
        );
    }

    #[test]
    fn memory_per_vm_and_estimate() {
        // 64 groups of 3 kB each on top of a module costing 100 kB.
        assert_eq!(per_vm(1000 + 100 + 192, 1000, 900 + 100, 900, 64), 3.0);
        assert_eq!(per_vm(10, 10, 0, 0, 0), 0.0);
        // 2 KiB of slab and 1 KiB of percpu on 2 CPUs: 2 + 128 KiB on 256 CPUs.
        assert_eq!(
            estimate_per_vm(2048.0, 1024.0, 2, 256),
            2048.0 + 128.0 * 1024.0
        );
        assert_eq!(estimate_per_vm(2048.0, 1024.0, 2, 2), 3072.0);
    }

    #[test]
    fn stats_and_stat() {
        let kv = parse_kv("pid 12\nweight_source default\ngroup 7\n\n");
        assert_eq!(kv["group"], "7");
        assert_eq!(kv["weight_source"], "default");
        assert_eq!(kv.len(), 3);
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[39 - 3] = "1".into();
        let line = format!("123 (a (b) c) {}\n", fields.join(" "));
        assert_eq!(stat_cpu(&line), Some(1));
        assert_eq!(stat_cpu("123 (x) R 1 2"), None);
        let m = per_cpu([Some(1), None, Some(0), Some(1)].into_iter());
        assert_eq!((m["0"], m["1"], m.len()), (1, 2, 2));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_cpu(&own).is_some());
    }

    #[test]
    fn entitlements_and_limits() {
        assert_eq!(entitlement(64, 2), 2.0 / 64.0);
        assert_eq!(entitlement(1, 2), 1.0);
        assert_eq!(entitlement(2, 2), 1.0);
        let l = "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max processes             31556                31556                processes\n\
                 Max open files            1024                 4096                 files\n";
        assert_eq!(parse_limit(l, "Max open files").as_deref(), Some("1024"));
        assert_eq!(parse_limit(l, "Max processes").as_deref(), Some("31556"));
        assert_eq!(parse_limit(l, "Max locked memory"), None);
    }
}
