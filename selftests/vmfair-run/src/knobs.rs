// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run knobs`: the vmfair interface against a running VM, in the guest.
//!
//! Loads vmfair if needed, starts one idle VM and checks every knob: good values are taken and
//! read back, bad ones (out of range, malformed, overflow, unknown pid, a pid that is not a VMM)
//! fail with the right error and change nothing, and a writer without `CAP_SYS_NICE` gets
//! `EPERM`. Then the identity checks (`identity.rs`) and vmfair-top against the module's
//! figures (`topcheck.rs`). Prints one `ok NAME` or `FAIL NAME: detail` line per check and
//! exits 1 if any failed.

use crate::layout::{GUEST_MEM_SIZE, STATUS_SIZE};
use crate::status::map_state_file;
use crate::sys::{self, ChildSetup};
use crate::{hostile, identity, topcheck};
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) const ROOT: &str = "/proc/sys/kernel/vmfair";
/// `CAP_SYS_NICE` (include/uapi/linux/capability.h).
const CAP_SYS_NICE: u32 = 23;

pub(crate) struct Tally {
    failed: u32,
    /// Replacements that keep check names stable from run to run (pids).
    subst: Vec<(String, String)>,
}

impl Tally {
    pub(crate) fn check(&mut self, name: &str, ok: bool, detail: &str) {
        let mut name = name.to_string();
        for (from, to) in &self.subst {
            name = name.replace(from, to);
        }
        if ok {
            println!("ok {name}");
        } else {
            self.failed += 1;
            // A tab ends the name: names may contain ": ".
            println!("FAIL {name}\t{}", detail.replace(['\n', '\t'], "; "));
        }
    }
}

pub(crate) fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
}

/// Writes `value` in one write(2), as `echo` does; the errno on failure.
pub(crate) fn write(path: &str, value: &str) -> Result<(), i32> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    f.write_all(value.as_bytes())
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

pub(crate) fn errno_name(e: i32) -> String {
    match e {
        libc::EINVAL => "EINVAL".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::ENOSPC => "ENOSPC".into(),
        0 => "success".into(),
        e => format!("errno {e}"),
    }
}

/// `value` written to `file` must fail with `want` and leave every file in `watch` as it was.
fn rejected(t: &mut Tally, file: &str, value: &str, want: i32, watch: &[&str]) {
    let before: Vec<String> = watch.iter().map(|w| read(w)).collect();
    let got = write(file, value).err().unwrap_or(0);
    let after: Vec<String> = watch.iter().map(|w| read(w)).collect();
    let short = file.strip_prefix(ROOT).unwrap_or(file);
    t.check(
        &format!("{short} <- {value:?} fails with {}", errno_name(want)),
        got == want && before == after,
        &format!(
            "got {}, files {}",
            errno_name(got),
            if before == after {
                "unchanged".to_string()
            } else {
                format!("changed: {before:?} -> {after:?}")
            }
        ),
    );
}

/// `value` written to `file` must succeed and read back as `expect` (from `readback`).
fn accepted(t: &mut Tally, file: &str, value: &str, readback: &str, expect: &str) {
    let r = write(file, value);
    let got = read(readback);
    let short = file.strip_prefix(ROOT).unwrap_or(file);
    t.check(
        &format!("{short} <- {value:?} is taken"),
        r.is_ok() && got.lines().any(|l| l.trim() == expect),
        &format!(
            "write: {}, read back {got:?}",
            errno_name(r.err().unwrap_or(0))
        ),
    );
}

/// Runs `modprobe` or `rmmod` (`args`); whether it succeeded.
fn modprobe(args: &[&str]) -> bool {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    sys::spawn(&argv, ChildSetup::default())
        .and_then(|mut p| p.wait())
        .map(|e| e.success())
        .unwrap_or(false)
}

/// Loads vmfair unless it is loaded; whether it is loaded now.
pub(crate) fn load() -> bool {
    Path::new("/sys/module/vmfair").exists() || modprobe(&["/sbin/modprobe", "vmfair"])
}

/// Unloads vmfair if it is loaded; whether it is unloaded now.
pub(crate) fn unload() -> bool {
    !Path::new("/sys/module/vmfair").exists() || modprobe(&["/sbin/rmmod", "vmfair"])
}

/// Starts `exe vmm` named `name` with `vcpus` idle vCPUs ticking at 25 Hz, its state in the
/// mapped file `state`.
pub(crate) fn idle_vmm(exe: &str, name: &str, vcpus: u32, state: &str) -> io::Result<sys::Proc> {
    let vcpus = vcpus.to_string();
    let argv: Vec<String> = [
        exe,
        "vmm",
        "--name",
        name,
        "--vcpus",
        &vcpus,
        "--load",
        "idle",
        "--tick-hz",
        "25",
        "--burst-us",
        "20",
        "--mem-file",
        state,
    ]
    .map(String::from)
    .into();
    sys::spawn(&argv, ChildSetup::default())
}

/// A pid no task has: the highest pids are not handed out this early after boot.
fn unused_pid() -> u32 {
    let max: u32 = read("/proc/sys/kernel/pid_max")
        .trim()
        .parse()
        .unwrap_or(32768);
    (2..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap_or(max - 1)
}

/// The calling thread's effective capabilities without `cap`, via capget/capset.
fn drop_effective_cap(cap: u32) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` structs (version 3) to `data`, reads `hdr`.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
    // SAFETY: capset reads `hdr` and two `Data` structs from `data`.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Entry point of `vmfair-run knobs`.
pub fn main() -> i32 {
    match run() {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            println!("FAIL knobs: {e}");
            1
        }
    }
}

fn run() -> Result<u32, String> {
    let mut t = Tally {
        failed: 0,
        subst: Vec::new(),
    };
    let loaded_here = !Path::new("/sys/module/vmfair").exists();
    if !load() {
        return Err("modprobe vmfair failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let exe = exe.to_string_lossy();
    let state = format!("/tmp/vmfair-knobs.{}.mem", std::process::id());
    let (_f, _mem) = map_state_file(&state, GUEST_MEM_SIZE + STATUS_SIZE, false)
        .map_err(|e| format!("{state}: {e}"))?;
    let mut vmm = idle_vmm(&exe, "knobs", 1, &state).map_err(|e| format!("vmm: {e}"))?;
    let pid = vmm.id();
    let vm_dir = format!("{ROOT}/vm/{pid}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(&vm_dir).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = Path::new(&vm_dir).exists();
    t.check(
        "a running VM gets its directory",
        ready,
        &format!("{vm_dir} missing after 60 s"),
    );
    if ready {
        let nobody = unused_pid();
        t.subst = vec![
            (format!("/vm/{pid}/"), "/vm/<pid>/".into()),
            (format!("\"{pid} "), "\"<pid> ".into()),
            (format!("\"{pid}\""), "\"<pid>\"".into()),
            (format!("\"{nobody} "), "\"<unused pid> ".into()),
        ];
        checks(&mut t, pid, nobody);
    }
    let _ = sys::kill(pid, libc::SIGTERM);
    let _ = vmm.wait();
    let _ = fs::remove_file(&state);
    t.check(
        "the VM's directory goes with the VM",
        {
            let end = Instant::now() + Duration::from_secs(10);
            while Path::new(&vm_dir).exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            !Path::new(&vm_dir).exists()
        },
        &format!("{vm_dir} still there 10 s after the VMM exited"),
    );
    identity::checks(&mut t, &exe);
    topcheck::checks(&mut t, &exe);
    if loaded_here {
        unload();
    }
    Ok(t.failed)
}

fn checks(t: &mut Tally, pid: u32, nobody: u32) {
    let f = |name: &str| format!("{ROOT}/{name}");
    let globals = [
        f("enabled"),
        f("default_weight"),
        f("vm_class_weight"),
        f("vcpu_slice_us"),
        f("share_mode"),
        f("precision"),
    ];
    let weight = format!("{ROOT}/vm/{pid}/weight");
    let vm_weight = f("vm_weight");
    let reservation = format!("{ROOT}/vm/{pid}/reservation");
    let limit = format!("{ROOT}/vm/{pid}/limit");
    let headroom = f("reservation_headroom");
    let mut watch: Vec<&str> = globals.iter().map(String::as_str).collect();
    watch.push(&weight);
    watch.push(&vm_weight);
    watch.push(&reservation);
    watch.push(&limit);
    watch.push(&headroom);
    let watch = &watch[..];

    // Global knobs: out of range, malformed, overflow.
    for (file, bad) in [
        ("enabled", &["2", "-1", "yes", "\n"][..]),
        (
            "default_weight",
            &["0", "10001", "4294967296", "1e3", "12 3"][..],
        ),
        ("vm_class_weight", &["10001", "-5", "x"][..]),
        ("vcpu_slice_us", &["99", "100001", "99999999999"][..]),
        ("share_mode", &["2", "vmx", "\n"][..]),
        ("precision", &["2", "-1", "on", "\n"][..]),
    ] {
        for v in bad {
            rejected(t, &f(file), v, libc::EINVAL, watch);
        }
    }
    // Per-VM weight.
    for v in ["0", "10001", "1 2", "-1", "99999999999", "abc"] {
        rejected(t, &weight, v, libc::EINVAL, watch);
    }
    accepted(t, &weight, "300\n", &weight, "300");
    // vm_weight: PID WEIGHT.
    accepted(t, &vm_weight, &format!("{pid} 250"), &weight, "250");
    let listed = read(&vm_weight);
    t.check(
        "vm_weight lists the VM with its weight",
        listed.lines().any(|l| l.trim() == format!("{pid} 250")),
        &format!("read {listed:?}"),
    );
    rejected(t, &vm_weight, &format!("{nobody} 100"), libc::ESRCH, watch);
    rejected(t, &vm_weight, "1 100", libc::EINVAL, watch);
    for v in [
        format!("{pid}"),
        format!("{pid} 0"),
        format!("{pid} 10001"),
        format!("{pid} 99999999999"),
        format!("{pid} 100 7"),
        "0 100".to_string(),
        "x 100".to_string(),
    ] {
        rejected(t, &vm_weight, &v, libc::EINVAL, watch);
    }
    // Good global values are taken (then put back).
    accepted(t, &f("default_weight"), "200", &f("default_weight"), "200");
    accepted(t, &f("default_weight"), "100", &f("default_weight"), "100");
    accepted(t, &f("share_mode"), "vcpu", &f("share_mode"), "vcpu");
    accepted(t, &f("share_mode"), "vm", &f("share_mode"), "vm");
    accepted(t, &f("precision"), "1", &f("precision"), "1");
    accepted(t, &f("precision"), "0", &f("precision"), "0");

    // Reservation, limit and headroom: CPUs with at most two decimals.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for file in [&reservation, &limit, &headroom] {
        for v in [
            "-1",
            "1.255",
            "1.",
            ".5",
            "abc",
            "1,5",
            "99999999999",
            "10000.01",
        ] {
            rejected(t, file, v, libc::EINVAL, watch);
        }
    }
    accepted(t, &reservation, "0.5\n", &reservation, "0.50");
    // Admission control: the reservations may not exceed the CPUs (minus the headroom).
    rejected(t, &reservation, &format!("{cpus}.01"), libc::ENOSPC, watch);
    accepted(
        t,
        &reservation,
        &format!("{cpus}"),
        &reservation,
        &format!("{cpus}.00"),
    );
    rejected(t, &headroom, "0.01", libc::ENOSPC, watch);
    accepted(t, &reservation, "0.5", &reservation, "0.50");
    accepted(t, &headroom, "0.25", &headroom, "0.25");
    rejected(
        t,
        &reservation,
        &format!("{}.76", cpus - 1),
        libc::ENOSPC,
        watch,
    );
    // A limit below the reservation, or a reservation above the limit: EINVAL.
    rejected(t, &limit, "0.25", libc::EINVAL, watch);
    accepted(t, &limit, "1.5", &limit, "1.50");
    rejected(t, &reservation, "1.75", libc::EINVAL, watch);
    let line = read(&f("vms"));
    t.check(
        "vms shows the VM's reservation and limit",
        line.lines().any(|l| {
            l.split_whitespace().next() == Some(&pid.to_string())
                && l.contains("reservation 0.50 limit 1.50")
        }),
        &format!("read {line:?}"),
    );
    let stats = read(&format!("{ROOT}/vm/{pid}/stats"));
    t.check(
        "stats shows reservation, limit and the load monitor's figures",
        [
            "reservation 0.50",
            "limit 1.50",
            "used_1s ",
            "ready_1s ",
            "ready_pct_1s ",
            "used_10s ",
        ]
        .iter()
        .all(|k| stats.lines().any(|l| l.starts_with(k))),
        &format!("read {stats:?}"),
    );
    accepted(t, &reservation, "0", &reservation, "0.00");
    accepted(t, &limit, "0", &limit, "0.00");
    accepted(t, &headroom, "0", &headroom, "0.00");

    // Without CAP_SYS_NICE every write fails with EPERM, and nothing changes.
    let targets = [
        (weight.clone(), "500".to_string()),
        (vm_weight.clone(), format!("{pid} 500")),
        (f("default_weight"), "500".to_string()),
    ];
    let before: Vec<String> = watch.iter().map(|w| read(w)).collect();
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            // Capabilities are per thread: only this thread loses CAP_SYS_NICE.
            drop_effective_cap(CAP_SYS_NICE).map_err(|e| format!("capset: {e}"))?;
            Ok::<_, String>(
                targets
                    .iter()
                    .map(|(file, v)| (file.clone(), write(file, v).err().unwrap_or(0)))
                    .collect::<Vec<_>>(),
            )
        })
        .join()
        .unwrap_or_else(|_| Err("thread panicked".into()))
    });
    let after: Vec<String> = watch.iter().map(|w| read(w)).collect();
    match results {
        Err(e) => t.check("writes without CAP_SYS_NICE fail with EPERM", false, &e),
        Ok(r) => {
            for (file, errno) in r {
                let short = file.strip_prefix(ROOT).unwrap_or(&file).to_string();
                t.check(
                    &format!("{short} without CAP_SYS_NICE fails with EPERM"),
                    errno == libc::EPERM && before == after,
                    &format!("got {}", errno_name(errno)),
                );
            }
        }
    }
    hostile::checks(t, pid, watch);
}
