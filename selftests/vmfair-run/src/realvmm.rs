// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run qemu`: vmfair against a real VMM, Debian's `qemu-system-x86_64 -accel kvm`, in
//! the guest (Documentation/vmfair/real-vmm.rst).
//!
//! Starts two QEMUs with vmfair unloaded, each in its own session: one runs a busy payload,
//! one a halting one (a small multiboot image, `/vmfair/realvmm/payload.elf`), both with two
//! vCPUs and a raw drive with `aio=threads` that the test reads through QEMU's monitor (a pair
//! of FIFOs), so that QEMU's thread pool starts worker threads, which exit after 10 s idle.
//! Then, with no configuration at all: `modprobe vmfair` adopts both; `vms` lists each with two
//! vCPUs; every thread of each QEMU (main loop, RCU thread, vCPU threads, workers, KVM's own
//! workers) is in its VM group in several samples, including workers created after adoption;
//! a weight written to `vm/<pid>/weight` reads back and changes the shares in `vms` and
//! `stats`; `stats` shows the busy QEMU's CPU time growing; `rmmod vmfair` puts every thread
//! back in its session's group and removes `kernel/vmfair`; `kill -9` of a QEMU releases its
//! VM. Prints `ok NAME` or `FAIL NAME: detail` per check and `# ...` lines for the log; exits 1
//! if any check failed.

use crate::procfs;
use crate::runner::{modprobe_argv, rmmod_argv, run_tool};
use crate::sys::{self, ChildSetup};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const QEMU: &str = "/usr/bin/qemu-system-x86_64";
const PAYLOAD: &str = "/vmfair/realvmm/payload.elf";
const ROOT: &str = "/proc/sys/kernel/vmfair";
const VCPUS: usize = 2;
/// How long the module may take to adopt or release a VM.
const SETTLE: Duration = Duration::from_secs(10);

struct Tally {
    failed: u32,
}

impl Tally {
    fn check(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            println!("ok {name}");
        } else {
            self.failed += 1;
            // A tab ends the name: names may contain ": ".
            println!("FAIL {name}\t{}", detail.replace(['\n', '\t'], "; "));
        }
    }
}

fn note(msg: &str) {
    println!("# {msg}");
}

/// One QEMU under test.
struct Qemu {
    label: &'static str,
    proc: sys::Proc,
    pid: u32,
    /// The monitor's input FIFO (QEMU reads it) and output FIFO (drained, never blocks).
    mon_in: fs::File,
    mon_out: fs::File,
    /// Everything the monitor said so far.
    said: String,
    files: Vec<String>,
    reaped: bool,
}

impl Qemu {
    fn start(label: &'static str, mode: &str) -> Result<Qemu, String> {
        let base = format!("/tmp/vmfair-qemu-{label}");
        let disk = format!("{base}.img");
        fs::File::create(&disk)
            .and_then(|f| f.set_len(4 << 20))
            .map_err(|e| format!("{disk}: {e}"))?;
        let mut files = vec![disk.clone()];
        for end in ["in", "out"] {
            let p = format!("{base}.mon.{end}");
            let _ = fs::remove_file(&p);
            sys::mkfifo(&p).map_err(|e| format!("mkfifo {p}: {e}"))?;
            files.push(p);
        }
        // O_RDWR: opening a FIFO so never waits for the other end.
        let open = |p: &str, flags| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(flags)
                .open(p)
                .map_err(|e| format!("{p}: {e}"))
        };
        let mon_in = open(&files[1], 0)?;
        let mon_out = open(&files[2], libc::O_NONBLOCK)?;
        let argv: Vec<String> = [
            QEMU,
            "-nodefaults",
            "-no-user-config",
            "-name",
            &format!("{label},debug-threads=on"),
            "-accel",
            "kvm",
            "-M",
            "pc",
            "-m",
            "32",
            "-smp",
            &VCPUS.to_string(),
            "-display",
            "none",
            "-serial",
            "none",
            "-parallel",
            "none",
            "-chardev",
            &format!("pipe,id=mon,path={base}.mon"),
            "-mon",
            "chardev=mon,mode=readline",
            "-drive",
            &format!("file={disk},format=raw,if=none,id=d0,aio=threads"),
            "-kernel",
            PAYLOAD,
            "-append",
            mode,
        ]
        .map(String::from)
        .into();
        let setup = ChildSetup {
            new_session: true,
            ..Default::default()
        };
        let proc = sys::spawn(&argv, setup).map_err(|e| format!("{QEMU}: {e}"))?;
        let pid = proc.id();
        Ok(Qemu {
            label,
            proc,
            pid,
            mon_in,
            mon_out,
            said: String::new(),
            files,
            reaped: false,
        })
    }

    /// Threads of the process: tid to comm (`CPU 0/KVM`, `worker`, ... with debug-threads).
    fn threads(&self) -> BTreeMap<u32, String> {
        let mut out = BTreeMap::new();
        let Ok(rd) = fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return out;
        };
        for e in rd.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.insert(tid, comm.trim().to_string());
        }
        out
    }

    fn vcpu_threads(&self) -> usize {
        self.threads()
            .values()
            .filter(|c| c.starts_with("CPU ") && c.ends_with("/KVM"))
            .count()
    }

    /// vCPUs that have entered `KVM_RUN`: KVM's debugfs `vcpuN/pid` is the thread that last
    /// ran the vCPU, 0 before the first run. QEMU starts its vCPU threads well before it
    /// first runs them (firmware and option ROMs are loaded meanwhile).
    fn vcpus_run(&self) -> usize {
        let prefix = format!("{}-", self.pid);
        let Ok(rd) = fs::read_dir(procfs::KVM_DEBUGFS) else {
            return 0;
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| {
                (0..VCPUS)
                    .filter(|i| {
                        let pid = fs::read_to_string(e.path().join(format!("vcpu{i}/pid")));
                        pid.is_ok_and(|p| p.trim().parse::<u32>().is_ok_and(|p| p != 0))
                    })
                    .count()
            })
            .sum()
    }

    fn command(&mut self, cmds: &str) -> Result<(), String> {
        self.drain();
        self.mon_in
            .write_all(cmds.as_bytes())
            .map_err(|e| format!("{} monitor: {e}", self.label))
    }

    /// Asynchronous reads through QEMU's block layer: each takes a thread-pool worker.
    /// Sixteen at once, so that the pool starts new workers even when some idle (qemu-io
    /// prints its results on QEMU's stdout, not on the monitor).
    fn kick_io(&mut self) -> Result<(), String> {
        let mut cmds = String::new();
        for i in 0..16 {
            cmds.push_str(&format!(
                "qemu-io d0 \"aio_read {} 256k\"\n",
                i * 256 * 1024
            ));
        }
        self.command(&cmds)
    }

    /// Reads what the monitor said into `said`; the FIFO holds 64 KiB, and the readline
    /// monitor echoes each command with a redraw per character, so it is drained often.
    fn drain(&mut self) {
        let mut chunk = [0u8; 16384];
        while let Ok(n) = self.mon_out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            self.said.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The boot CPU's EIP and halted state from `info registers`, if the monitor answers
    /// within 10 s.
    fn registers(&mut self) -> Option<(u32, bool)> {
        self.command("info registers\n").ok()?;
        let mark = self.said.len();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            self.drain();
            let new = &self.said[mark..];
            if let Some(at) = new.find("EIP=") {
                if new[at..].contains("(qemu)") {
                    return parse_registers(&new[at..]);
                }
            }
        }
        None
    }

    fn alive(&mut self) -> bool {
        !self.reaped && matches!(self.proc.try_wait(), Ok(None))
    }

    fn stop(&mut self, signal: i32) {
        if !self.reaped {
            let _ = sys::kill(self.pid, signal);
            let _ = self.proc.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stop(libc::SIGKILL);
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
    }
}

/// `EIP=xxxxxxxx EFL=... HLT=n` of `info registers`.
fn parse_registers(text: &str) -> Option<(u32, bool)> {
    let field = |key: &str| {
        let at = text.find(key)? + key.len();
        text[at..].split_whitespace().next()
    };
    let eip = u32::from_str_radix(field("EIP=")?, 16).ok()?;
    Some((eip, field("HLT=")? == "1"))
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
}

/// The `vms` line of `pid` as key/value pairs (`vcpus`, `weight`, `shares`, `group`).
fn vms_line(pid: u32) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(format!("{ROOT}/vms")).ok()?;
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))?;
    Some(pairs(line.split_whitespace().skip(1)))
}

fn pairs<'a>(words: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    let w: Vec<&str> = words.collect();
    w.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

/// `vm/<pid>/stats` as key/value pairs.
fn stats(pid: u32) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(format!("{ROOT}/vm/{pid}/stats")).ok()?;
    Some(pairs(text.split_whitespace()))
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Threads of every QEMU with their scheduler groups, read so that the group file is newer
/// than the thread lists (a thread missing from it is read again once).
type Sample = Vec<BTreeMap<u32, (String, Option<String>)>>;

fn sample(qemus: &[Qemu]) -> Result<Sample, String> {
    let lists: Vec<BTreeMap<u32, String>> = qemus.iter().map(Qemu::threads).collect();
    let mut g = procfs::sched_groups()?;
    if lists
        .iter()
        .flat_map(|l| l.keys())
        .any(|t| !g.of_thread.contains_key(t))
    {
        g = procfs::sched_groups()?;
    }
    Ok(lists
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(|(tid, comm)| {
                    let path = g.of_thread.get(&tid).cloned();
                    (tid, (comm, path))
                })
                .collect()
        })
        .collect())
}

/// Threads of a sample not in `want` (a thread that exited between the two reads has no
/// path; it is not counted).
fn misplaced(s: &BTreeMap<u32, (String, Option<String>)>, want: &str) -> Vec<String> {
    s.iter()
        .filter_map(|(tid, (comm, path))| match path {
            Some(p) if p != want => Some(format!("{tid} ({comm}) in {p}")),
            _ => None,
        })
        .collect()
}

/// Entry point of `vmfair-run qemu`.
pub fn main() -> i32 {
    match run() {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            println!("FAIL qemu: {e}");
            1
        }
    }
}

fn module_loaded() -> bool {
    Path::new("/sys/module/vmfair").exists()
}

fn run() -> Result<u32, String> {
    let mut t = Tally { failed: 0 };
    for need in [QEMU, PAYLOAD, "/dev/kvm"] {
        if !Path::new(need).exists() {
            return Err(format!("{need} is missing"));
        }
    }
    let was_loaded = module_loaded();
    if was_loaded {
        run_tool(&rmmod_argv())?;
    }
    let mut qemus = vec![Qemu::start("busy", "busy")?, Qemu::start("halt", "halt")?];
    let t0 = Instant::now();
    let up = wait_for(Duration::from_secs(90), || {
        qemus
            .iter()
            .all(|q| q.vcpu_threads() == VCPUS && q.vcpus_run() == VCPUS)
    });
    let running: Vec<bool> = qemus.iter_mut().map(Qemu::alive).collect();
    t.check(
        "QEMU runs with -accel kvm and its vCPU threads",
        up.is_some() && running.iter().all(|r| *r),
        &format!(
            "after {:.1} s: vCPU threads {:?}, vCPUs that ran {:?}, running {running:?} \
             (QEMU's stderr is on the console)",
            t0.elapsed().as_secs_f64(),
            qemus.iter().map(Qemu::vcpu_threads).collect::<Vec<_>>(),
            qemus.iter().map(Qemu::vcpus_run).collect::<Vec<_>>()
        ),
    );
    if up.is_none() {
        return Ok(t.failed);
    }
    note(&format!(
        "both QEMUs up, every vCPU run, after {:.2} s",
        t0.elapsed().as_secs_f64()
    ));
    // The payload (loaded at 1 MiB) runs: firmware under nested virtualization takes a while.
    let mut regs = vec![None; qemus.len()];
    let in_payload = wait_for(Duration::from_secs(90), || {
        for (q, r) in qemus.iter_mut().zip(regs.iter_mut()) {
            *r = q.registers();
        }
        matches!(regs[0], Some((eip, false)) if (0x10_0000..0x10_1000).contains(&eip))
            && matches!(regs[1], Some((eip, true)) if (0x10_0000..0x10_1000).contains(&eip))
    });
    t.check(
        "the payload runs in L2: busy computes, halt halts",
        in_payload.is_some(),
        &format!("(EIP, halted) of the boot CPUs: {regs:?}"),
    );
    note(&format!(
        "payload running after {:.2} s: (EIP, halted) {regs:?}",
        t0.elapsed().as_secs_f64()
    ));
    // Workers before the module comes: adoption must take them too.
    for q in &mut qemus {
        q.kick_io()?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = sample(&qemus)?;
    let mut home = Vec::new();
    for (q, s) in qemus.iter().zip(&before) {
        let main = s
            .get(&q.pid)
            .and_then(|(_, p)| p.clone())
            .unwrap_or_default();
        note(&format!(
            "{} pid {} without vmfair, {} threads: {}",
            q.label,
            q.pid,
            s.len(),
            s.iter()
                .map(|(tid, (c, p))| format!("{tid} {c:?} {}", p.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let bad = misplaced(s, &main);
        t.check(
            &format!(
                "{}: without vmfair every thread is in its session's group",
                q.label
            ),
            main.starts_with("/autogroup-") && bad.is_empty(),
            &format!("main thread in {main:?}, others: {bad:?}"),
        );
        home.push(main);
    }
    // Workers that exist before the module is loaded: adoption must move them.
    let early_workers: Vec<BTreeSet<u32>> = before
        .iter()
        .map(|m| {
            m.iter()
                .filter(|(_, (c, _))| c == "worker")
                .map(|(t, _)| *t)
                .collect()
        })
        .collect();
    let vm_dir = |q: &Qemu| format!("{ROOT}/vm/{}", q.pid);
    t.check(
        "no kernel/vmfair sysctls while the module is unloaded",
        !Path::new(ROOT).exists(),
        &format!("{ROOT} exists"),
    );

    // 5: modprobe adopts the running QEMUs.
    run_tool(&modprobe_argv())?;
    let adopted = wait_for(SETTLE, || {
        qemus.iter().all(|q| Path::new(&vm_dir(q)).exists())
    });
    t.check(
        "modprobe vmfair adopts running QEMUs (vm/<pid> appears)",
        adopted.is_some(),
        &format!("{ROOT}/vms: {:?}", read(&format!("{ROOT}/vms"))),
    );
    note(&format!(
        "vms after modprobe: {:?}",
        read(&format!("{ROOT}/vms"))
    ));
    let mut groups = Vec::new();
    for q in &qemus {
        let line = vms_line(q.pid);
        let vcpus = line.as_ref().and_then(|l| l.get("vcpus").cloned());
        let st_vcpus = stats(q.pid).and_then(|s| s.get("vcpus").cloned());
        // 1: recognised, with the right vCPU count.
        t.check(
            &format!(
                "{}: vms lists QEMU with {VCPUS} vCPUs, as does stats",
                q.label
            ),
            vcpus.as_deref() == Some(&VCPUS.to_string())
                && st_vcpus.as_deref() == Some(&VCPUS.to_string()),
            &format!("vms line {line:?}, stats vcpus {st_vcpus:?}"),
        );
        groups.push(
            line.and_then(|l| l.get("group").cloned())
                .map(|g| format!("/vmgroup-{g}"))
                .unwrap_or_default(),
        );
    }
    t.check(
        "each QEMU has a VM group of its own",
        groups.iter().all(|g| !g.is_empty())
            && groups.iter().collect::<BTreeSet<_>>().len() == groups.len(),
        &format!("{groups:?}"),
    );

    // 2: every thread in its VM group, sampled while workers come (and, later, go).
    let mut seen: Vec<BTreeMap<u32, String>> = vec![BTreeMap::new(); qemus.len()];
    let mut bad: Vec<Vec<String>> = vec![Vec::new(); qemus.len()];
    let mut samples = 0;
    let mut take = |qemus: &[Qemu], seen: &mut Vec<BTreeMap<u32, String>>| -> Result<(), String> {
        let s = sample(qemus)?;
        samples += 1;
        for (i, s) in s.iter().enumerate() {
            for (tid, (comm, _)) in s {
                seen[i].insert(*tid, comm.clone());
            }
            bad[i].extend(misplaced(s, &groups[i]));
        }
        Ok(())
    };
    for round in 0..4 {
        if round % 2 == 0 {
            for q in &mut qemus {
                q.kick_io()?;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        take(&qemus, &mut seen)?;
    }

    // 3: weights and stats (while the early workers idle out).
    let busy = qemus[0].pid;
    // Shares from the weight alone: the precision loop would correct the busy VM's.
    let precision = format!("{ROOT}/precision");
    let _ = fs::write(&precision, "0");
    let shares0 = vms_line(busy).and_then(|l| l.get("shares").and_then(|s| s.parse::<u64>().ok()));
    let wfile = format!("{ROOT}/vm/{busy}/weight");
    let wr = fs::write(&wfile, "300");
    let back = read(&wfile);
    let line = vms_line(busy);
    let st = stats(busy);
    let shares1 = line
        .as_ref()
        .and_then(|l| l.get("shares").and_then(|s| s.parse::<u64>().ok()));
    t.check(
        "busy: vm/<pid>/weight <- 300 reads back",
        wr.is_ok() && back.trim() == "300",
        &format!("write {wr:?}, read back {back:?}"),
    );
    t.check(
        "busy: weight 300 shows in vms and stats with three times the shares",
        line.as_ref()
            .and_then(|l| l.get("weight"))
            .map(String::as_str)
            == Some("300")
            && st
                .as_ref()
                .and_then(|s| s.get("weight"))
                .map(String::as_str)
                == Some("300")
            && st.as_ref().and_then(|s| s.get("shares").cloned()) == shares1.map(|s| s.to_string())
            && matches!((shares0, shares1), (Some(a), Some(b)) if a > 0 && b.abs_diff(3 * a) <= 1),
        &format!("shares {shares0:?} -> {shares1:?}, vms {line:?}, stats {st:?}"),
    );
    let _ = fs::write(&precision, "1");
    let cpu = |pid| stats(pid).and_then(|s| s.get("cpu_ns").and_then(|v| v.parse::<u64>().ok()));
    let per_thread0: Vec<_> = qemus.iter().map(|q| procfs::tasks(Some(q.pid))).collect();
    let (b0, h0, w0) = (cpu(busy), cpu(qemus[1].pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (b1, h1, wall) = (cpu(busy), cpu(qemus[1].pid), w0.elapsed());
    for (q, start) in qemus.iter().zip(&per_thread0) {
        let names = q.threads();
        let end = procfs::tasks(Some(q.pid));
        let mut v: Vec<String> = end
            .iter()
            .map(|(tid, e)| {
                let ran = e.run_ns - start.get(tid).map_or(0, |s| s.run_ns.min(e.run_ns));
                let name = names.get(tid).map_or("?", String::as_str);
                format!("{tid} {name:?} {:.3}", ran as f64 / wall.as_nanos() as f64)
            })
            .collect();
        v.sort();
        note(&format!("{} CPU per thread: {}", q.label, v.join(", ")));
    }
    let grow = |a: Option<u64>, b: Option<u64>| b.zip(a).map(|(b, a)| b.saturating_sub(a));
    let (db, dh) = (grow(b0, b1), grow(h0, h1));
    note(&format!(
        "stats cpu_ns over {:.2} s: busy +{db:?}, halt +{dh:?}",
        wall.as_secs_f64()
    ));
    t.check(
        "busy: stats cpu_ns grows by at least 0.25 CPU",
        db.is_some_and(|d| d as f64 >= 0.25 * wall.as_nanos() as f64),
        &format!("{b0:?} -> {b1:?} in {wall:?}"),
    );

    // More reads: the pool starts further workers, inside the VM group. It starts one only
    // when no worker idles at the moment of a request, and a worker that idles for 10 s
    // exits. So first let the workers from before modprobe idle out (sampling meanwhile, at
    // most 15 s), then read until every QEMU has shown a worker that did not exist before
    // modprobe (at most 12 rounds).
    let new_worker = |seen: &[BTreeMap<u32, String>]| {
        seen.iter()
            .zip(&early_workers)
            .all(|(m, early)| m.iter().any(|(t, c)| c == "worker" && !early.contains(t)))
    };
    let idled_out = |qemus: &[Qemu]| {
        qemus
            .iter()
            .zip(&early_workers)
            .all(|(q, early)| q.threads().keys().all(|t| !early.contains(t)))
    };
    let t_idle = Instant::now();
    while !new_worker(&seen) && !idled_out(&qemus) && t_idle.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(500));
        take(&qemus, &mut seen)?;
    }
    note(&format!(
        "early workers idled out: {} after {:.1} s",
        idled_out(&qemus),
        t_idle.elapsed().as_secs_f64()
    ));
    for round in 0..12 {
        if round >= 4 && new_worker(&seen) {
            break;
        }
        if round % 2 == 0 {
            for q in &mut qemus {
                q.kick_io()?;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        take(&qemus, &mut seen)?;
    }
    for (i, q) in qemus.iter_mut().enumerate() {
        q.drain();
        let workers: BTreeSet<u32> = seen[i]
            .iter()
            .filter(|(_, c)| *c == "worker")
            .map(|(t, _)| *t)
            .collect();
        let late: Vec<&u32> = workers.difference(&early_workers[i]).collect();
        let now = q.threads();
        let exited: Vec<&u32> = seen[i].keys().filter(|t| !now.contains_key(t)).collect();
        let kinds: BTreeSet<&str> = seen[i].values().map(String::as_str).collect();
        note(&format!(
            "{} pid {}: {} threads seen in {samples} samples, names {kinds:?}; workers {workers:?} \
             ({} first seen after adoption); exited by now: {exited:?}; monitor said {} bytes",
            q.label,
            q.pid,
            seen[i].len(),
            late.len(),
            q.said.len()
        ));
        t.check(
            &format!(
                "{}: every QEMU thread is in its VM group in every sample",
                q.label
            ),
            bad[i].is_empty() && seen[i].len() > VCPUS + 1,
            &format!("{} threads seen, misplaced: {:?}", seen[i].len(), bad[i]),
        );
        t.check(
            &format!(
                "{}: thread-pool workers from before and after adoption are in the VM group",
                q.label
            ),
            !early_workers[i].is_empty() && !late.is_empty() && bad[i].is_empty(),
            &format!(
                "workers before modprobe {:?}, new ones after {late:?}, misplaced {:?}",
                early_workers[i], bad[i]
            ),
        );
    }

    // 6: rmmod puts every thread back in its session's group.
    run_tool(&rmmod_argv())?;
    let after = sample(&qemus)?;
    let left: Vec<String> = procfs::sched_groups()?
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/vmgroup-"))
        .map(String::from)
        .collect();
    for (i, q) in qemus.iter().enumerate() {
        let bad = misplaced(&after[i], &home[i]);
        t.check(
            &format!(
                "{}: rmmod vmfair puts every thread back in its session's group",
                q.label
            ),
            bad.is_empty() && after[i].len() > VCPUS,
            &format!(
                "want {}, {} threads, misplaced {bad:?}",
                home[i],
                after[i].len()
            ),
        );
    }
    t.check(
        "rmmod vmfair leaves no VM group and no kernel/vmfair sysctls",
        left.is_empty() && !Path::new(ROOT).exists(),
        &format!(
            "VM groups {left:?}, {ROOT} exists: {}",
            Path::new(ROOT).exists()
        ),
    );

    // 4: kill -9 releases the VM (adopted again first).
    run_tool(&modprobe_argv())?;
    let again = wait_for(SETTLE, || qemus.iter().all(|q| vms_line(q.pid).is_some()));
    t.check(
        "a second modprobe adopts the QEMUs again",
        again.is_some(),
        &format!("vms {:?}", read(&format!("{ROOT}/vms"))),
    );
    let victim = qemus[0].pid;
    let _ = sys::kill(victim, libc::SIGKILL);
    let released = wait_for(SETTLE, || {
        vms_line(victim).is_none() && !Path::new(&vm_dir(&qemus[0])).exists()
    });
    qemus[0].stop(libc::SIGKILL);
    note(&format!(
        "kill -9 of pid {victim}: released after {released:?}"
    ));
    t.check(
        "kill -9 of QEMU removes its vm/<pid> and vms line within 10 s",
        released.is_some(),
        &format!("vms {:?}", read(&format!("{ROOT}/vms"))),
    );
    let other = qemus[1].pid;
    t.check(
        "the other QEMU stays listed",
        vms_line(other).is_some() && qemus[1].alive(),
        &format!("vms {:?}", read(&format!("{ROOT}/vms"))),
    );
    qemus[1].stop(libc::SIGTERM);
    t.check(
        "SIGTERM of the other QEMU releases its VM too",
        wait_for(SETTLE, || vms_line(other).is_none()).is_some(),
        &format!("vms {:?}", read(&format!("{ROOT}/vms"))),
    );
    drop(qemus);
    if !was_loaded {
        run_tool(&rmmod_argv())?;
    }
    Ok(t.failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_registers() {
        let text = "EAX=2badb000 EBX=00009500\r\nEIP=00100060 EFL=00000046 [---Z-P-] CPL=0 \
                    II=0 A20=1 SMM=0 HLT=1\r\nES =0010";
        assert_eq!(parse_registers(text), Some((0x10_0060, true)));
        assert_eq!(
            parse_registers("EIP=0010002a EFL=2 HLT=0"),
            Some((0x10_002a, false))
        );
        assert_eq!(parse_registers("EIP=zz HLT=0"), None);
    }

    #[test]
    fn kv_pairs() {
        let m = pairs("vcpus 2 weight 300 shares 3072 group 4".split_whitespace());
        assert_eq!(m["vcpus"], "2");
        assert_eq!(m["group"], "4");
        assert_eq!(m.len(), 4);
    }
}
