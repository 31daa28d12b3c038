// SPDX-License-Identifier: GPL-2.0
//! Thin layer over the raw `/dev/kvm` ioctls (x86-64 layouts of `<linux/kvm.h>`). All of the
//! VMM's `unsafe` is here; the VMM itself (`vmm.rs`) is safe code.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;

const KVMIO: libc::c_ulong = 0xAE;

const fn io_(nr: libc::c_ulong) -> libc::c_ulong {
    (KVMIO << 8) | nr
}
const fn iow(nr: libc::c_ulong, size: usize) -> libc::c_ulong {
    (1 << 30) | ((size as libc::c_ulong) << 16) | (KVMIO << 8) | nr
}
const fn ior(nr: libc::c_ulong, size: usize) -> libc::c_ulong {
    (2 << 30) | ((size as libc::c_ulong) << 16) | (KVMIO << 8) | nr
}

const KVM_GET_API_VERSION: libc::c_ulong = io_(0x00);
const KVM_CREATE_VM: libc::c_ulong = io_(0x01);
const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = io_(0x04);
const KVM_GET_SUPPORTED_CPUID: libc::c_ulong = (3 << 30) | (8 << 16) | (KVMIO << 8) | 0x05;
const KVM_SET_CPUID2: libc::c_ulong = iow(0x90, 8);
/// u32 words per `struct kvm_cpuid_entry2`.
const CPUID_ENTRY_WORDS: usize = 10;
/// Room for this many CPUID entries.
const CPUID_MAX_ENTRIES: usize = 256;
const KVM_CREATE_VCPU: libc::c_ulong = io_(0x41);
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong =
    iow(0x46, std::mem::size_of::<UserMemoryRegion>());
const KVM_SET_TSS_ADDR: libc::c_ulong = io_(0x47);
const KVM_CREATE_IRQCHIP: libc::c_ulong = io_(0x60);
const KVM_CREATE_PIT2: libc::c_ulong = iow(0x77, std::mem::size_of::<PitConfig>());
const KVM_RUN: libc::c_ulong = io_(0x80);
const KVM_GET_TSC_KHZ: libc::c_ulong = io_(0xa3);
const KVM_SET_MP_STATE: libc::c_ulong = iow(0x99, 4);
const KVM_GET_REGS: libc::c_ulong = ior(0x81, std::mem::size_of::<Regs>());
const KVM_SET_REGS: libc::c_ulong = iow(0x82, std::mem::size_of::<Regs>());
const KVM_GET_SREGS: libc::c_ulong = ior(0x83, std::mem::size_of::<Sregs>());
const KVM_SET_SREGS: libc::c_ulong = iow(0x84, std::mem::size_of::<Sregs>());

/// `struct kvm_userspace_memory_region`
#[repr(C)]
struct UserMemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// `struct kvm_pit_config`
#[repr(C)]
struct PitConfig {
    flags: u32,
    pad: [u32; 15],
}

/// `struct kvm_regs`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// `struct kvm_segment`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
    pub unusable: u8,
    pub padding: u8,
}

/// `struct kvm_dtable`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Dtable {
    pub base: u64,
    pub limit: u16,
    pub padding: [u16; 3],
}

/// `struct kvm_sregs`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Sregs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: Dtable,
    pub idt: Dtable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
    pub interrupt_bitmap: [u64; 4],
}

const _: () = assert!(std::mem::size_of::<UserMemoryRegion>() == 32);
const _: () = assert!(std::mem::size_of::<PitConfig>() == 64);
const _: () = assert!(std::mem::size_of::<Regs>() == 144);
const _: () = assert!(std::mem::size_of::<Segment>() == 24);
const _: () = assert!(std::mem::size_of::<Sregs>() == 312);

/// Converts an ioctl return value into a Result.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes ownership of a new fd returned by an ioctl.
fn own_fd(rc: libc::c_int) -> io::Result<File> {
    let fd = check(rc)?;
    // SAFETY: a successful KVM_CREATE_* returns a new fd that nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `/dev/kvm`.
pub struct Kvm {
    fd: File,
}

impl Kvm {
    /// Opens `/dev/kvm` and checks the API version (12).
    pub fn open() -> io::Result<Kvm> {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/kvm: {e}")))?;
        // SAFETY: ioctl without argument on a valid fd.
        let v = check(unsafe { libc::ioctl(fd.as_raw_fd(), KVM_GET_API_VERSION, 0) })?;
        if v != 12 {
            return Err(io::Error::other(format!("KVM API version {v}, want 12")));
        }
        Ok(Kvm { fd })
    }

    /// `KVM_GET_SUPPORTED_CPUID`: a `struct kvm_cpuid2` (as u32 words) to give to vCPUs.
    pub fn supported_cpuid(&self) -> io::Result<Cpuid> {
        let mut buf = vec![0u32; 2 + CPUID_ENTRY_WORDS * CPUID_MAX_ENTRIES];
        buf[0] = CPUID_MAX_ENTRIES as u32;
        // SAFETY: buf is a struct kvm_cpuid2 with room for buf[0] entries; KVM writes at most
        // that many and updates buf[0].
        check(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                KVM_GET_SUPPORTED_CPUID,
                buf.as_mut_ptr(),
            )
        })?;
        Ok(Cpuid(buf))
    }

    /// `KVM_CREATE_VM` (default machine type).
    pub fn create_vm(&self) -> io::Result<Vm> {
        // SAFETY: ioctl with an integer argument on a valid fd; the result is a new fd.
        let vm = own_fd(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_CREATE_VM, 0) })?;
        // SAFETY: ioctl without argument on a valid fd.
        let size = check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_GET_VCPU_MMAP_SIZE, 0) })?;
        Ok(Vm {
            fd: vm,
            run_size: size as usize,
        })
    }
}

/// A `struct kvm_cpuid2` with its entries, as u32 words.
pub struct Cpuid(Vec<u32>);

/// A VM fd.
pub struct Vm {
    fd: File,
    run_size: usize,
}

impl AsRawFd for Vm {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Vm {
    /// `KVM_SET_USER_MEMORY_REGION` for slot 0.
    ///
    /// The caller keeps the `host_addr .. host_addr + size` mapping alive for the life of the
    /// VM (the VMM maps guest RAM once and never unmaps it before exit).
    pub fn set_memory(&self, guest_phys: u64, size: u64, host_addr: u64) -> io::Result<()> {
        let region = UserMemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: guest_phys,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: the argument points to a correctly laid out struct that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_SET_USER_MEMORY_REGION, &region) })?;
        Ok(())
    }

    /// `KVM_SET_TSS_ADDR` (needed on Intel, a no-op on AMD).
    pub fn set_tss_addr(&self, addr: u64) -> io::Result<()> {
        // SAFETY: ioctl with an integer argument on a valid fd.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_SET_TSS_ADDR, addr) })?;
        Ok(())
    }

    /// `KVM_CREATE_IRQCHIP`: in-kernel PIC, IOAPIC and local APICs.
    pub fn create_irqchip(&self) -> io::Result<()> {
        // SAFETY: ioctl without argument on a valid fd.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_CREATE_IRQCHIP, 0) })?;
        Ok(())
    }

    /// `KVM_CREATE_PIT2` with a dummy speaker port.
    pub fn create_pit2(&self) -> io::Result<()> {
        let cfg = PitConfig {
            flags: 1, // KVM_PIT_SPEAKER_DUMMY
            pad: [0; 15],
        };
        // SAFETY: the argument points to a correctly laid out struct that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_CREATE_PIT2, &cfg) })?;
        Ok(())
    }

    /// `KVM_CREATE_VCPU` and the mapping of its `struct kvm_run`.
    pub fn create_vcpu(&self, id: u32) -> io::Result<Vcpu> {
        // SAFETY: ioctl with an integer argument on a valid fd; the result is a new fd.
        let fd = own_fd(unsafe {
            libc::ioctl(self.fd.as_raw_fd(), KVM_CREATE_VCPU, id as libc::c_ulong)
        })?;
        // SAFETY: maps the vCPU's kvm_run area, of the size KVM reported, at a fresh address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.run_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Vcpu {
            fd,
            run: Arc::new(RunArea {
                ptr: ptr.cast(),
                len: self.run_size,
            }),
        })
    }
}

/// The mapped `struct kvm_run` of a vCPU.
///
/// # Invariants
/// `ptr` is a live mapping of `len` (>= 4096) bytes until drop.
pub struct RunArea {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the only access from another thread is a single-byte volatile store of
// `immediate_exit`, which KVM documents as the way to kick a vCPU from anywhere.
unsafe impl Send for RunArea {}
// SAFETY: as above.
unsafe impl Sync for RunArea {}

impl RunArea {
    /// Sets `immediate_exit`: the next (or current, once kicked by a signal) `KVM_RUN` returns
    /// EINTR at once.
    pub fn request_immediate_exit(&self) {
        // SAFETY: offset 1 of kvm_run (immediate_exit) is inside the mapping.
        unsafe { std::ptr::write_volatile(self.ptr.add(1), 1u8) };
    }

    /// The little-endian value of `size` (1..=4) bytes at `offset`, if inside the mapping.
    fn read_le(&self, offset: usize, size: usize) -> Option<u32> {
        if size == 0 || size > 4 || offset.checked_add(size)? > self.len {
            return None;
        }
        let mut v = 0u32;
        for k in 0..size {
            // SAFETY: offset + k < len (checked above), inside the mapping.
            let b = unsafe { std::ptr::read_volatile(self.ptr.add(offset + k)) };
            v |= u32::from(b) << (8 * k);
        }
        Some(v)
    }

    /// Copies the fixed part of `struct kvm_run` (header plus exit union, 288 bytes).
    fn snapshot(&self) -> [u8; 288] {
        let mut out = [0u8; 288];
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: 288 <= len (kvm_run is at least one page).
            *b = unsafe { std::ptr::read_volatile(self.ptr.add(i)) };
        }
        out
    }
}

impl Drop for RunArea {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in create_vcpu (type invariant).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A vCPU fd with its run area.
pub struct Vcpu {
    fd: File,
    run: Arc<RunArea>,
}

/// Why `KVM_RUN` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// EINTR, or `KVM_EXIT_INTR`: a signal or `immediate_exit`.
    Interrupted,
    /// `KVM_RUN` failed with another errno.
    Errno(i32),
    /// `KVM_EXIT_IO` for a one-item `out` of 1, 2 or 4 bytes: port, size and the value; the
    /// description is kept for error messages.
    IoOut {
        port: u16,
        size: u8,
        value: u32,
        desc: String,
    },
    /// A real exit, with its `exit_reason` and decoded details.
    Reason(u32, String),
}

/// Name of a `KVM_EXIT_*` code.
pub fn exit_name(reason: u32) -> &'static str {
    match reason {
        0 => "UNKNOWN",
        1 => "EXCEPTION",
        2 => "IO",
        3 => "HYPERCALL",
        4 => "DEBUG",
        5 => "HLT",
        6 => "MMIO",
        7 => "IRQ_WINDOW_OPEN",
        8 => "SHUTDOWN",
        9 => "FAIL_ENTRY",
        10 => "INTR",
        11 => "SET_TPR",
        12 => "TPR_ACCESS",
        16 => "NMI",
        17 => "INTERNAL_ERROR",
        24 => "SYSTEM_EVENT",
        _ => "OTHER",
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Decodes the exit union (at offset 32 of kvm_run) for a human.
fn describe_exit(reason: u32, b: &[u8; 288]) -> String {
    let name = exit_name(reason);
    match reason {
        1 => format!(
            "{name} vector {} error code {:#x}",
            u32_at(b, 32),
            u32_at(b, 36)
        ),
        2 => format!(
            "{name} {} port {:#x} size {} count {}",
            if b[32] == 0 { "in" } else { "out" },
            u16_at(b, 34),
            b[33],
            u32_at(b, 36)
        ),
        6 => format!(
            "{name} {} gpa {:#x} len {}",
            if b[52] != 0 { "write" } else { "read" },
            u64_at(b, 32),
            u32_at(b, 48)
        ),
        9 => format!(
            "{name} hardware_entry_failure_reason {:#x} cpu {}",
            u64_at(b, 32),
            u32_at(b, 40)
        ),
        17 => {
            let ndata = u32_at(b, 36).min(4) as usize;
            let data: Vec<String> = (0..ndata)
                .map(|i| format!("{:#x}", u64_at(b, 40 + 8 * i)))
                .collect();
            format!(
                "{name} suberror {} data [{}]",
                u32_at(b, 32),
                data.join(", ")
            )
        }
        24 => format!("{name} type {}", u32_at(b, 32)),
        0 => format!("{name} hardware_exit_reason {:#x}", u64_at(b, 32)),
        _ => format!("{name} ({reason})"),
    }
}

impl Vcpu {
    /// A handle to kick this vCPU from another thread.
    pub fn run_area(&self) -> Arc<RunArea> {
        self.run.clone()
    }

    /// `KVM_SET_MP_STATE` to RUNNABLE: with an in-kernel irqchip, vCPUs other than 0 start
    /// waiting for INIT/SIPI; this starts them directly at the registers set.
    pub fn set_runnable(&self) -> io::Result<()> {
        let state: u32 = 0; // KVM_MP_STATE_RUNNABLE
                            // SAFETY: the argument points to a u32 (struct kvm_mp_state) that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_SET_MP_STATE, &state) })?;
        Ok(())
    }

    /// `KVM_SET_CPUID2`: without it KVM treats every CPUID-dependent bit as reserved (some
    /// kernels then refuse CR4.PAE, so long mode) and offers no periodic LAPIC timer.
    pub fn set_cpuid(&self, cpuid: &Cpuid) -> io::Result<()> {
        assert!(cpuid.0.len() >= 2 + CPUID_ENTRY_WORDS * cpuid.0[0] as usize);
        // SAFETY: the argument is a struct kvm_cpuid2 whose nent entries are all in the buffer
        // (checked above), alive for the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_SET_CPUID2, cpuid.0.as_ptr()) })?;
        Ok(())
    }

    /// `KVM_GET_TSC_KHZ`: the guest TSC frequency.
    pub fn tsc_khz(&self) -> io::Result<u64> {
        // SAFETY: ioctl without argument on a valid fd.
        let khz = check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_GET_TSC_KHZ, 0) })?;
        Ok(khz as u64)
    }

    /// `KVM_GET_REGS`
    pub fn regs(&self) -> io::Result<Regs> {
        let mut r = Regs::default();
        // SAFETY: the argument points to a correctly laid out struct that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_GET_REGS, &mut r) })?;
        Ok(r)
    }

    /// `KVM_SET_REGS`
    pub fn set_regs(&self, r: &Regs) -> io::Result<()> {
        // SAFETY: the argument points to a correctly laid out struct that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_SET_REGS, r) })?;
        Ok(())
    }

    /// `KVM_GET_SREGS`
    pub fn sregs(&self) -> io::Result<Sregs> {
        let mut s = Sregs::default();
        // SAFETY: the argument points to a correctly laid out struct that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_GET_SREGS, &mut s) })?;
        Ok(s)
    }

    /// `KVM_SET_SREGS`
    pub fn set_sregs(&self, s: &Sregs) -> io::Result<()> {
        // SAFETY: the argument points to a correctly laid out struct that outlives the call.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_SET_SREGS, s) })?;
        Ok(())
    }

    /// `KVM_RUN` once.
    pub fn run(&self) -> Exit {
        // SAFETY: KVM_RUN takes no argument; the vCPU's state lives in the kernel and in the
        // run area, which stays mapped while `self` exists.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_RUN, 0) };
        if rc < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return if errno == libc::EINTR {
                Exit::Interrupted
            } else {
                Exit::Errno(errno)
            };
        }
        let b = self.run.snapshot();
        let reason = u32_at(&b, 8);
        if reason == 10 {
            return Exit::Interrupted;
        }
        let desc = describe_exit(reason, &b);
        // struct kvm_run.io: direction u8, size u8, port u16, count u32, data_offset u64.
        if reason == 2 && b[32] == 1 && u32_at(&b, 36) == 1 {
            let size = b[33];
            if let Some(value) = self.run.read_le(u64_at(&b, 40) as usize, size as usize) {
                return Exit::IoOut {
                    port: u16_at(&b, 34),
                    size,
                    value,
                    desc,
                };
            }
        }
        Exit::Reason(reason, desc)
    }
}
