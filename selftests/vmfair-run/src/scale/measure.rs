// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run scale`: what the parent reads from the system (kernel memory snapshots, all of
//! `/proc/sys`) and the tools it runs and times.

use super::r3;
use super::stats::*;
use crate::procfs;
use crate::sys::{self, ChildSetup};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// A kernel memory snapshot.
pub struct Mem {
    pub meminfo: BTreeMap<String, u64>,
    pub slabs: Vec<SlabCache>,
}

const MEM_KEYS: &[&str] = &[
    "MemFree",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "Percpu",
    "KernelStack",
    "PageTables",
    "VmallocUsed",
];

impl Mem {
    pub fn kb(&self, key: &str) -> i64 {
        self.meminfo.get(key).copied().unwrap_or(0) as i64
    }
    pub fn json(&self) -> Value {
        let m: BTreeMap<&str, u64> = MEM_KEYS
            .iter()
            .filter_map(|k| Some((*k, *self.meminfo.get(*k)?)))
            .collect();
        json!(m)
    }
}

/// Migrations of all threads of `pid` so far (`se.nr_migrations`).
pub fn migrations(pid: u32) -> u64 {
    crate::procfs::sched_counters(pid)
        .get("se.nr_migrations")
        .copied()
        .unwrap_or(0)
}

/// Frees what the kernel would free anyway (reclaimable dentries and inodes, empty slabs,
/// objects cached per CPU) after letting RCU callbacks run, then reads meminfo and slabinfo;
/// again until Slab holds within 32 KiB between two reads (at most 6 reads).
pub fn snapshot(settle: Duration) -> Result<Mem, String> {
    std::thread::sleep(settle);
    let mut last: Option<Mem> = None;
    for _ in 0..6 {
        let _ = fs::write("/proc/sys/vm/drop_caches", "2");
        if let Ok(rd) = fs::read_dir("/sys/kernel/slab") {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::write(e.path().join("shrink"), "1");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let meminfo = parse_meminfo(&read("/proc/meminfo")?);
        let slabs = match fs::read_to_string("/proc/slabinfo") {
            Ok(t) => parse_slabinfo(&t)?,
            Err(_) => Vec::new(),
        };
        let m = Mem { meminfo, slabs };
        if last
            .as_ref()
            .is_some_and(|l| (l.kb("Slab") - m.kb("Slab")).abs() <= 32)
        {
            return Ok(m);
        }
        last = Some(m);
    }
    last.ok_or_else(|| "no memory snapshot".into())
}

pub fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// A program on PATH.
pub fn which(name: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/sbin:/bin:/usr/sbin:/usr/bin".into());
    path.split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| format!("/sbin/{name}"))
}

/// Runs a program to completion; its wall time in seconds.
pub fn run_tool(argv: &[&str]) -> Result<f64, String> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let t = Instant::now();
    let st = sys::spawn(&argv, ChildSetup::default())
        .and_then(|mut p| p.wait())
        .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
    let s = t.elapsed().as_secs_f64();
    if st.success() {
        Ok(s)
    } else {
        Err(format!("{} failed: {st}", argv.join(" ")))
    }
}

/// Reads every readable file under `dir`; (files, bytes).
pub fn walk(dir: &Path, files: &mut usize, bytes: &mut usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, files, bytes),
            Ok(_) => {
                if let Ok(data) = fs::read(&p) {
                    *files += 1;
                    *bytes += data.len();
                }
            }
            Err(_) => {}
        }
    }
}

/// Milliseconds of the fastest and the median of `reps` runs of `f`.
pub fn time_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (r3(times[0]), r3(times[times.len() / 2]), last.unwrap())
}

/// Each process's CPU time (schedstat, ns), the CPU it is on and when it was read.
pub fn cpu_times(pids: &[u32]) -> Vec<(Instant, u64, Option<u32>)> {
    pids.iter()
        .map(|p| {
            let run = procfs::tasks(Some(*p)).values().map(|s| s.run_ns).sum();
            let t = Instant::now();
            let cpu = read(&format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| stat_cpu(&s));
            (t, run, cpu)
        })
        .collect()
}

/// How many of the processes are on each CPU.
pub fn placement(pids: &[u32]) -> std::collections::BTreeMap<String, usize> {
    per_cpu(pids.iter().map(|p| {
        read(&format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| stat_cpu(&s))
    }))
}
