// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run vmm`: a tiny KVM VMM. One memory slot, K vCPUs each in its own thread, 32-bit
//! guest code that counts loop iterations into a per-vCPU counter in guest RAM. Guest RAM is a
//! shared file so the runner reads the counters directly. The guest programs are in `guest.rs`.
//!
//! Every return from `KVM_RUN` is checked: for a `busy` guest the only acceptable one is
//! EINTR/`KVM_EXIT_INTR` (the VMM kicks its vCPUs that way to stop). Anything else is reported
//! on stderr and in the status area, the vCPU stops, and the VMM exits with status 3.

use crate::bench;
use crate::desktop::{self, Desktop};
use crate::guest;
use crate::kvm::{Exit, Kvm, Regs, Segment, Sregs, Vcpu};
use crate::layout::*;
use crate::status::{map_state_file, Status};
use crate::sys;
use crate::Opts;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Guest load of a VMM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestLoad {
    Busy,
    /// HLT between PIT ticks, `burst_us` of work per tick (idle and bursty).
    Ticking,
    /// The benchmark suite of `bench.rs`: round trips to the VMM on the bench port.
    Bench,
}

/// How often the VMM's (and host process's) main thread checks for a stop signal.
pub const MAIN_LOOP_PERIOD: Duration = Duration::from_millis(250);

/// Exit status when a vCPU saw a bad exit.
pub const EXIT_BAD_EXIT: i32 = 3;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;

/// Flat 32-bit protected mode without paging, GDT and IDT from `guest.rs`.
pub(crate) fn protected_mode_sregs(mut s: Sregs, idt_limit: u16) -> Sregs {
    let code = Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 8,
        type_: 11,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = Segment {
        selector: 16,
        type_: 3,
        ..code
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = Segment {
        limit: 0x67,
        selector: 0x18,
        type_: 11,
        s: 0,
        db: 0,
        g: 0,
        ..code
    };
    s.gdt.base = GDT_GPA;
    s.gdt.limit = 8 * 4 - 1;
    s.idt.base = IDT_GPA;
    s.idt.limit = idt_limit;
    s.cr0 = CR0_PE | CR0_ET | CR0_NE;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
    s
}

fn vcpu_loop(vcpu: Vcpu, i: usize, name: &str, status: &Status, load: GuestLoad) {
    status.set_vcpu(i, 0, u64::from(sys::gettid()));
    status.set_vcpu(i, 1, STATE_RUNNING);
    let mut exits = 0u64;
    // bench: the sequence number the guest sends next on the bench port.
    let mut io_seq = 1u32;
    while !sys::stop_requested() {
        let exit = vcpu.run();
        exits += 1;
        status.set_vcpu(i, 2, exits);
        let what = match exit {
            Exit::Interrupted => continue,
            Exit::IoOut {
                port: bench::BENCH_PORT,
                size: 4,
                value,
                ..
            } if load == GuestLoad::Bench && value == io_seq => {
                io_seq = io_seq.wrapping_add(1);
                continue;
            }
            Exit::IoOut {
                port: bench::BENCH_PORT,
                size: 4,
                value,
                desc,
            } if load == GuestLoad::Bench => {
                format!("{desc}: bench round trip {value}, expected {io_seq}")
            }
            Exit::Errno(e) => format!("KVM_RUN failed: {}", std::io::Error::from_raw_os_error(e)),
            Exit::IoOut { desc, .. } | Exit::Reason(_, desc) => desc,
        };
        let rip = vcpu
            .regs()
            .map(|r| format!("{:#x}", r.rip))
            .unwrap_or_else(|e| format!("? ({e})"));
        status.set_vcpu(i, 1, STATE_FAILED);
        status.report_error(
            &format!("vm {name}"),
            &format!("vcpu {i}: bad exit {what} at rip {rip}"),
        );
        return;
    }
    status.set_vcpu(i, 1, STATE_STOPPED);
    match (vcpu.regs(), vcpu.sregs()) {
        (Ok(r), Ok(s)) => say!(
            "vm {name} vcpu {i}: stopped after {exits} KVM_RUN returns at rip \
             {:#x} rbx {:#x} rflags {:#x} cr0 {:#x} efer {:#x}",
            r.rip,
            r.rbx,
            r.rflags,
            s.cr0,
            s.efer
        ),
        (Err(e), _) | (_, Err(e)) => say!("vm {name} vcpu {i}: stopped ({e})"),
    }
}

/// Spins, publishing the iteration count every 4096 iterations, until stopped.
pub fn busy_loop(counter: &std::sync::atomic::AtomicU64) {
    let mut n = counter.load(Ordering::Relaxed);
    while !sys::stop_requested() {
        for _ in 0..4096 {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        counter.store(n, Ordering::Relaxed);
    }
}

/// Options of `vmfair-run vmm`.
pub const OPTIONS: &[&str] = &[
    "name",
    "vcpus",
    "load",
    "io-threads",
    "nice",
    "mem-file",
    "tick-hz",
    "burst-us",
    // --load desktop only (desktop::OPTIONS)
    "io-hz",
    "io-us",
    "refresh-hz",
    "refresh-us",
];

/// Runs the VMM; returns the exit status.
pub fn main(opts: &Opts) -> Result<i32, String> {
    let name = opts.get("name").unwrap_or("vm").to_string();
    let vcpus: usize = opts.num("vcpus", 1)?;
    let io_threads: usize = opts.num("io-threads", 0)?;
    let nice: i32 = opts.num("nice", 0)?;
    if vcpus == 0 || vcpus > MAX_THREADS || io_threads > MAX_THREADS {
        return Err(format!(
            "--vcpus must be 1..={MAX_THREADS}, --io-threads 0..={MAX_THREADS}"
        ));
    }
    let load_name = opts.get("load").unwrap_or("busy");
    let load = match load_name {
        "busy" => GuestLoad::Busy,
        "idle" | "bursty" | "desktop" => GuestLoad::Ticking,
        "bench" => GuestLoad::Bench,
        other => return Err(format!("unknown load {other:?}")),
    };
    let tick = if load == GuestLoad::Ticking {
        let hz: u32 = opts.num("tick-hz", 250)?;
        let burst: u32 = opts.num("burst-us", 50)?;
        if !(19..=10000).contains(&hz) || u64::from(hz) * u64::from(burst) >= 1_000_000 {
            return Err("--tick-hz must be 19..=10000 and --burst-us shorter than a tick".into());
        }
        Some((hz, burst))
    } else {
        None
    };
    // desktop: an idle vCPU plus an I/O and a display-refresh thread doing a little work.
    let desk = match load_name {
        "desktop" => Some(Desktop::from_opts(opts)?),
        _ => match desktop::OPTIONS.iter().find(|o| opts.get(o).is_some()) {
            Some(o) => return Err(format!("--{o} needs --load desktop")),
            None => None,
        },
    };
    let periodic = desk.map_or(0, |_| desktop::THREADS);
    if io_threads + periodic > MAX_THREADS {
        return Err(format!(
            "--io-threads {io_threads} leaves no room for the {periodic} desktop threads"
        ));
    }

    // Before any thread exists, so every thread inherits it.
    if nice != 0 {
        sys::set_nice(nice).map_err(|e| format!("setpriority({nice}): {e}"))?;
    }
    sys::install_stop_handlers().map_err(|e| format!("sigaction: {e}"))?;

    let pid = std::process::id();
    let (path, temp) = match opts.get("mem-file") {
        Some(p) => (p.to_string(), false),
        None => (format!("/tmp/vmfair-vmm-{pid}.mem"), true),
    };
    let (_file, mem) = map_state_file(&path, GUEST_MEM_SIZE + STATUS_SIZE, true)
        .map_err(|e| format!("state file: {e}"))?;
    if temp {
        let _ = std::fs::remove_file(&path);
    }
    let mem = Arc::new(mem);
    let status = Arc::new(Status::new(mem.clone(), GUEST_MEM_SIZE));
    status.init(pid, vcpus, io_threads + periodic);

    let setup = || -> Result<Vec<Vcpu>, String> {
        mem.write_bytes(0, &vec![0u8; GUEST_MEM_SIZE]);
        guest::build(
            &mem,
            match load {
                GuestLoad::Busy => guest::Kind::Busy,
                GuestLoad::Ticking => guest::Kind::Ticking,
                GuestLoad::Bench => guest::Kind::Bench,
            },
        );
        let kvm = Kvm::open().map_err(|e| e.to_string())?;
        let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
        let _ = vm.set_tss_addr(0xfffb_d000);
        vm.set_memory(0, GUEST_MEM_SIZE as u64, mem.host_addr())
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
        if load == GuestLoad::Ticking {
            vm.create_irqchip()
                .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
            vm.create_pit2()
                .map_err(|e| format!("KVM_CREATE_PIT2: {e}"))?;
        }
        let idt_limit = guest::idt_limit(load == GuestLoad::Ticking);
        let cpuid = kvm
            .supported_cpuid()
            .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
        let mut out = Vec::new();
        for i in 0..vcpus {
            let v = vm
                .create_vcpu(i as u32)
                .map_err(|e| format!("KVM_CREATE_VCPU {i}: {e}"))?;
            v.set_cpuid(&cpuid)
                .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
            let s = v.sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
            v.set_sregs(&protected_mode_sregs(s, idt_limit))
                .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
            let regs = Regs {
                rip: CODE_GPA,
                rflags: 2,
                rbx: counter_gpa(i),
                rdi: i as u64,
                rsp: STACKS_GPA + STACK_SIZE * (i as u64 + 1),
                ..Regs::default()
            };
            if let Some((hz, burst_us)) = tick {
                let khz = v.tsc_khz().map_err(|e| format!("KVM_GET_TSC_KHZ: {e}"))?;
                guest::set_tick(&mem, i, hz, burst_us, khz);
                if i > 0 {
                    v.set_runnable()
                        .map_err(|e| format!("KVM_SET_MP_STATE: {e}"))?;
                }
            }
            if load == GuestLoad::Bench {
                let khz = v.tsc_khz().map_err(|e| format!("KVM_GET_TSC_KHZ: {e}"))?;
                bench::set_params(&mem, i, khz);
            }
            v.set_regs(&regs)
                .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
            out.push(v);
        }
        // The VM fd may close now: each vCPU fd holds a reference to the VM.
        drop(vm);
        Ok(out)
    };
    let vcpu_fds = match setup() {
        Ok(v) => v,
        Err(e) => {
            status.set_state(STATE_FAILED);
            status.report_error(&format!("vm {name}"), &format!("setup failed: {e}"));
            return Ok(1);
        }
    };

    let mut vcpu_threads = Vec::new();
    for (i, vcpu) in vcpu_fds.into_iter().enumerate() {
        let run = vcpu.run_area();
        let st = status.clone();
        let n = name.clone();
        let h = std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || vcpu_loop(vcpu, i, &n, &st, load))
            .map_err(|e| format!("spawn vcpu thread: {e}"))?;
        vcpu_threads.push((h, run));
    }
    let mut io = Vec::new();
    for j in 0..io_threads {
        let st = status.clone();
        let h = std::thread::Builder::new()
            .name(format!("io{j}"))
            .spawn(move || busy_loop(st.busy_counter(j)))
            .map_err(|e| format!("spawn io thread: {e}"))?;
        io.push(h);
    }
    for (k, p) in desk.iter().flat_map(Desktop::threads).enumerate() {
        let st = status.clone();
        let h = std::thread::Builder::new()
            .name(p.name.to_string())
            .spawn(move || desktop::run(p, st.busy_counter(io_threads + k)))
            .map_err(|e| format!("spawn {} thread: {e}", p.name))?;
        io.push(h);
    }
    status.set_state(STATE_RUNNING);
    say!(
        "vm {name}: pid {pid}, {vcpus} vCPUs, {io_threads} io threads, {periodic} desktop \
         threads running"
    );

    // The main thread only waits for a stop signal. Its wake-ups compete with every vCPU on
    // the host like any other (a real VMM's main loop also sleeps most of the time), so it
    // wakes rarely: at 50 Hz, 16 idle VMMs' main threads made ~700 of their ~1100 wake-ups a
    // second.
    while !sys::stop_requested() {
        std::thread::sleep(MAIN_LOOP_PERIOD);
    }
    for (h, run) in &vcpu_threads {
        run.request_immediate_exit();
        sys::kick_thread(h.as_pthread_t());
    }
    for (h, _) in vcpu_threads {
        let _ = h.join();
    }
    for h in io {
        let _ = h.join();
    }
    if status.bad_exits() > 0 {
        status.set_state(STATE_FAILED);
        Ok(EXIT_BAD_EXIT)
    } else {
        status.set_state(STATE_STOPPED);
        Ok(0)
    }
}
