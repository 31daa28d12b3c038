// SPDX-License-Identifier: GPL-2.0
//! `vmfair-top` against the module's own figures, part of `vmfair-run knobs`.
//!
//! Starts a busy 1-vCPU VM with weight 300 and runs `vmfair-top -b -n 1 -d 2 --json` (from the
//! guest's `PATH`) while reading the VM's `stats` `cpu_ns` around it: vmfair-top must list the
//! VM with its vCPUs, weight, name and command line, its `%USED` must agree with the `cpu_ns`
//! delta within 10 points and be above 50, its `%RDY` must be within 0..=100. Then, with
//! vmfair unloaded, vmfair-top must say so and exit 1. Prints a `# top:` line with the figures.

use crate::knobs::{load, read, unload, write, Tally, ROOT};
use crate::layout::{GUEST_MEM_SIZE, STATUS_SIZE};
use crate::status::map_state_file;
use crate::sys::{self, ChildSetup, ProcExit};
use std::fs;
use std::time::{Duration, Instant};

/// The weight given to the VM, so that vmfair-top has to show a value that is not the default.
const WEIGHT: u32 = 300;
/// How far vmfair-top's `%USED` may be from the one computed here, in points.
const TOLERANCE: f64 = 10.0;

/// `cpu_ns` of `vm/<pid>/stats`.
fn cpu_ns(pid: u32) -> Option<u64> {
    read(&format!("{ROOT}/vm/{pid}/stats"))
        .lines()
        .find_map(|l| l.strip_prefix("cpu_ns ")?.trim().parse().ok())
}

/// Runs `sh -c script` (busybox) to the end; its exit.
fn shell(script: &str) -> Result<ProcExit, String> {
    let argv: Vec<String> = ["/bin/busybox", "sh", "-c", script]
        .map(String::from)
        .into();
    sys::spawn(&argv, ChildSetup::default())
        .and_then(|mut p| p.wait())
        .map_err(|e| format!("sh: {e}"))
}

/// Runs every check; leaves vmfair unloaded.
pub(crate) fn checks(t: &mut Tally, exe: &str) {
    if !load() {
        t.check(
            "vmfair loads for the vmfair-top check",
            false,
            "modprobe failed",
        );
        return;
    }
    let tag = std::process::id();
    let state = format!("/tmp/vmfair-top.{tag}.mem");
    let Ok((_f, _mem)) = map_state_file(&state, GUEST_MEM_SIZE + STATUS_SIZE, false) else {
        t.check("a state file for the vmfair-top check", false, &state);
        return;
    };
    let argv: Vec<String> = [
        exe,
        "vmm",
        "--name",
        "topcheck",
        "--vcpus",
        "1",
        "--load",
        "busy",
        "--mem-file",
        &state,
    ]
    .map(String::from)
    .into();
    let mut vmm = match sys::spawn(&argv, ChildSetup::default()) {
        Ok(p) => p,
        Err(e) => {
            t.check(
                "a busy 1-vCPU VM for vmfair-top starts",
                false,
                &e.to_string(),
            );
            let _ = fs::remove_file(&state);
            return;
        }
    };
    let pid = vmm.id();
    let listed = |pid: u32| {
        read(&format!("{ROOT}/vms"))
            .lines()
            .any(|l| l.starts_with(&format!("{pid} ")) && l.contains(" vcpus 1 "))
    };
    let end = Instant::now() + Duration::from_secs(60);
    while !listed(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = listed(pid);
    t.check(
        "a busy 1-vCPU VM for vmfair-top starts",
        ready,
        &format!(
            "not in vms with 1 vCPU after 60 s: {:?}",
            read(&format!("{ROOT}/vms"))
        ),
    );
    if ready {
        let set = write(&format!("{ROOT}/vm/{pid}/weight"), &format!("{WEIGHT}\n"));
        t.check(
            &format!("vm/<pid>/weight <- {WEIGHT} is taken for vmfair-top"),
            set.is_ok(),
            &format!("errno {:?}", set.err()),
        );
        // Let the vCPU thread get going.
        std::thread::sleep(Duration::from_millis(500));
        compare(t, pid);
    }
    let _ = sys::kill(pid, libc::SIGTERM);
    let _ = vmm.wait();
    let _ = fs::remove_file(&state);
    not_loaded(t);
}

/// One vmfair-top run against the `cpu_ns` delta read around it.
fn compare(t: &mut Tally, pid: u32) {
    let out = format!("/tmp/vmfair-top.{}.json", std::process::id());
    let (c0, t0) = (cpu_ns(pid), Instant::now());
    let exit = shell(&format!("exec vmfair-top -b -n 1 -d 2 --json > {out}"));
    let (c1, took) = (cpu_ns(pid), t0.elapsed());
    let text = read(&out);
    let _ = fs::remove_file(&out);
    let lines: Vec<&str> = text.lines().collect();
    let parsed = match lines[..] {
        [one] => serde_json::from_str::<serde_json::Value>(one).map_err(|e| e.to_string()),
        _ => Err(format!("{} lines", lines.len())),
    };
    t.check(
        "vmfair-top -b -n 1 -d 2 --json exits 0 with one JSON line",
        exit.as_ref().is_ok_and(|e| e.success()) && parsed.is_ok(),
        &format!("{exit:?}, {parsed:?}, output {text:?}"),
    );
    t.check(
        "vmfair-top prints after one interval",
        (2.0..10.0).contains(&took.as_secs_f64()),
        &format!("took {:.2} s", took.as_secs_f64()),
    );
    let Ok(v) = parsed else { return };
    let vm = v["vms"].as_array().and_then(|vms| {
        vms.iter()
            .find(|vm| vm["pid"].as_u64() == Some(u64::from(pid)))
    });
    t.check(
        "vmfair-top lists the VM",
        v["t"].is_number() && vm.is_some(),
        &format!("{v}"),
    );
    let Some(vm) = vm else { return };
    t.check(
        &format!("vmfair-top shows the VM's 1 vCPU and weight {WEIGHT}"),
        vm["vcpus"].as_u64() == Some(1) && vm["weight"].as_u64() == Some(u64::from(WEIGHT)),
        &format!("{vm}"),
    );
    let comm = read(&format!("/proc/{pid}/comm"));
    t.check(
        "vmfair-top names the VM (comm, command line)",
        vm["name"].as_str() == Some(comm.trim_end())
            && vm["cmdline"]
                .as_str()
                .is_some_and(|c| c.contains(" vmm --name topcheck ")),
        &format!("comm {comm:?}, {vm}"),
    );
    let own = match (c0, c1) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / took.as_secs_f64() / 1e7),
        _ => None,
    };
    let used = vm["used_pct"].as_f64();
    let rdy = vm["rdy_pct"].as_f64();
    println!(
        "# top: vmfair-top %USED {used:?} %RDY {rdy:?}; stats cpu_ns {c0:?} -> {c1:?} over {:.3} s = {own:?} %",
        took.as_secs_f64()
    );
    t.check(
        &format!("vmfair-top %USED agrees with the stats cpu_ns delta within {TOLERANCE} points"),
        matches!((used, own), (Some(u), Some(o)) if (u - o).abs() <= TOLERANCE),
        &format!("vmfair-top {used:?}, stats {own:?}"),
    );
    t.check(
        "vmfair-top %USED of the busy VM is above 50",
        used.is_some_and(|u| u > 50.0),
        &format!("{used:?}"),
    );
    t.check(
        "vmfair-top %RDY is within 0..=100",
        rdy.is_some_and(|r| (0.0..=100.0).contains(&r)),
        &format!("{rdy:?}"),
    );
}

/// Without vmfair, vmfair-top says so and exits 1, at once.
fn not_loaded(t: &mut Tally) {
    let unloaded = unload();
    let err = format!("/tmp/vmfair-top.{}.err", std::process::id());
    let t0 = Instant::now();
    let exit = shell(&format!("exec vmfair-top -b -d 5 > /dev/null 2> {err}"));
    let took = t0.elapsed();
    let msg = read(&err);
    let _ = fs::remove_file(&err);
    t.check(
        "without vmfair, vmfair-top -b says it is not loaded and exits 1",
        unloaded
            && exit == Ok(ProcExit::Code(1))
            && msg.contains("not loaded")
            && took < Duration::from_secs(5),
        &format!(
            "rmmod {unloaded}, {exit:?} after {:.2} s, stderr {msg:?}",
            took.as_secs_f64()
        ),
    );
}
