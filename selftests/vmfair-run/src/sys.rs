// SPDX-License-Identifier: GPL-2.0
//! Thin layer over the system calls that std does not offer: shared file mappings, signals,
//! nice, sessions, cgroup placement before exec, mount. Every `unsafe` of the program outside
//! `kvm.rs` is here.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A `MAP_SHARED` mapping of a whole file (guest RAM plus status area), shared between the VMM,
/// its vCPU threads, the guest and the runner.
///
/// # Invariants
/// `ptr` is a live mapping of `len` bytes, page aligned, until drop.
pub struct SharedMem {
    ptr: *mut u8,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory; all accesses through this type are either atomic
// (`atomic_u64`) or volatile byte copies, so concurrent use from several threads is sound.
unsafe impl Send for SharedMem {}
// SAFETY: as above.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    /// Maps the first `len` bytes of `file`, read-write or read-only.
    pub fn map(file: &File, len: usize, writable: bool) -> io::Result<SharedMem> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping at an address of the kernel's choice; the fd is valid for the
        // call, and the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMem {
            ptr: ptr.cast(),
            len,
            writable,
        })
    }

    /// Host virtual address of the mapping (for `KVM_SET_USER_MEMORY_REGION`).
    pub fn host_addr(&self) -> u64 {
        self.ptr as u64
    }

    /// The 8-byte aligned word at `offset` as an atomic. Panics if out of range or unaligned.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "bad offset {offset}"
        );
        // SAFETY: in range and aligned (checked above), and the mapping lives as long as
        // `self`. AtomicU64 has the layout of u64; other writers (guest, other processes) only
        // do aligned 8-byte stores, which are atomic on x86-64. Stores through a read-only
        // mapping would fault, so callers of a read-only map only load.
        unsafe { &*(self.ptr.add(offset) as *const AtomicU64) }
    }

    /// Copies `data` into the mapping at `offset`. Panics if out of range or read-only.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        assert!(self.writable && offset + data.len() <= self.len);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in range (checked above), writable mapping.
            unsafe { std::ptr::write_volatile(self.ptr.add(offset + i), *b) };
        }
    }

    /// Copies `len` bytes out of the mapping at `offset`. Panics if out of range.
    pub fn read_bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset + len <= self.len);
        // SAFETY: in range (checked above).
        (0..len)
            .map(|i| unsafe { std::ptr::read_volatile(self.ptr.add(offset + i)) })
            .collect()
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map` (type invariant).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs a handler for SIGTERM, SIGINT and SIGUSR1 that sets the stop flag. No SA_RESTART,
/// so a blocking `KVM_RUN` or sleep in the receiving thread returns with EINTR.
pub fn install_stop_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
        // does an atomic store, which is async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether a stop signal arrived (or [`request_stop`] was called).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sends SIGUSR1 to one thread of this process, to kick it out of `KVM_RUN`.
pub fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: `thread` comes from a JoinHandle that has not been joined yet, so it is valid.
    unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call with integer arguments.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kernel thread id of the calling thread.
pub fn gettid() -> u32 {
    // SAFETY: plain system call without arguments.
    unsafe { libc::gettid() as u32 }
}

/// Sets the nice of the calling thread (new threads inherit it).
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain system call; who = 0 is the calling thread on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts cgroup v2 at `path`.
pub fn mount_cgroup2(path: &str) -> io::Result<()> {
    let src = CString::new("cgroup2").unwrap();
    let target = CString::new(path).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a child does between fork and exec.
#[derive(Default)]
pub struct ChildSetup {
    /// Call setsid(), so the child gets its own session (and autogroup).
    pub new_session: bool,
    /// Write "0" to this `cgroup.procs` file, moving the child into that cgroup.
    pub cgroup_procs: Option<String>,
}

/// Spawns `cmd` after applying `setup` in the child, before exec (so before the program
/// creates any thread).
pub fn spawn(cmd: &mut Command, setup: ChildSetup) -> io::Result<Child> {
    let procs = match setup.cgroup_procs {
        Some(p) => Some(CString::new(p).map_err(io::Error::other)?),
        None => None,
    };
    let new_session = setup.new_session;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (setsid, open, write, close) on data allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if new_session && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(path) = &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            Ok(())
        })
    };
    cmd.spawn()
}
