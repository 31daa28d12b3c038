// SPDX-License-Identifier: GPL-2.0
//! Thin layer over the system calls that std does not offer: shared file mappings, signals,
//! nice, sessions, cgroup placement before exec, mount, fork without exec, FIFOs. Every
//! `unsafe` of the program outside `kvm.rs` is here.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
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

    /// An anonymous shared mapping of `len` zeroed bytes: guest RAM that no other process
    /// reads (the short-lived VMs of `vmfair-run overhead`).
    pub fn anonymous(len: usize) -> io::Result<SharedMem> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice; the result
        // is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMem {
            ptr: ptr.cast(),
            len,
            writable: true,
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
        // The handler only does an atomic store, which is async-signal-safe.
        on_signal(sig, on_stop_signal)?;
    }
    Ok(())
}

/// Installs `handler` for `sig`, without SA_RESTART (a blocking call in the receiving thread
/// returns with EINTR) and with an empty mask. `handler` must be async-signal-safe.
pub fn on_signal(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, and the handler is a
    // valid function of the signature sigaction expects.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
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

/// The CPU the calling thread runs on (it may move right after).
pub fn current_cpu() -> i32 {
    // SAFETY: plain library call without arguments (vDSO getcpu or the system call).
    unsafe { libc::sched_getcpu() }
}

/// Sets the nice of the calling thread (new threads inherit it).
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain system call; who = 0 is the calling thread on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts a filesystem of type `fstype` (also used as the source name) at `path`.
pub fn mount(fstype: &str, path: &str) -> io::Result<()> {
    let src = CString::new(fstype).map_err(io::Error::other)?;
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

/// Creates a FIFO (named pipe) at `path` with mode 0600.
pub fn mkfifo(path: &str) -> io::Result<()> {
    let p = CString::new(path).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated string that outlives the call.
    if unsafe { libc::mkfifo(p.as_ptr(), 0o600) } != 0 {
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
    /// Standard output into this file (created or truncated) instead of /dev/null.
    pub stdout: Option<String>,
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcExit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ProcExit {
    /// Exit status 0.
    pub fn success(self) -> bool {
        self == ProcExit::Code(0)
    }
}

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcExit::Code(c) => write!(f, "exit status {c}"),
            ProcExit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// A child process started by [`spawn`]. Not reaped on drop: the runner always waits.
pub struct Proc {
    pid: libc::pid_t,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(io::Error::other)
}

/// Starts `argv[0]` (a path) with `argv`, stdin and stdout on /dev/null (stdout into
/// `setup.stdout` if given), stderr inherited,
/// after applying `setup` in the child (before exec, so before the program creates any thread).
///
/// This is fork + exec by hand because std's `Command` needs `AF_UNIX` sockets, which a
/// minimal guest kernel (no `CONFIG_NET`) lacks. An error in the child before or at exec comes
/// back as the error of this call.
pub fn spawn(argv: &[String], setup: ChildSetup) -> io::Result<Proc> {
    let args: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let devnull = cstr("/dev/null")?;
    let procs = setup.cgroup_procs.as_deref().map(cstr).transpose()?;
    let stdout = setup.stdout.as_deref().map(cstr).transpose()?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [rd, wr] = fds;
    // SAFETY: the child only calls async-signal-safe functions (setsid, open, write, dup2,
    // close, execv, _exit) on data prepared before the fork, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child, see above.
        unsafe {
            let fail = |wr: libc::c_int| -> ! {
                let errno = *libc::__errno_location();
                libc::write(wr, (&errno as *const libc::c_int).cast(), 4);
                libc::_exit(127)
            };
            if setup.new_session && libc::setsid() < 0 {
                fail(wr);
            }
            if let Some(path) = &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    fail(wr);
                }
                libc::close(fd);
            }
            let null = libc::open(devnull.as_ptr(), libc::O_RDWR);
            if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(null, 1) < 0 {
                fail(wr);
            }
            if null > 2 {
                libc::close(null);
            }
            if let Some(path) = &stdout {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                    0o644,
                );
                if fd < 0 || libc::dup2(fd, 1) < 0 {
                    fail(wr);
                }
                if fd > 2 {
                    libc::close(fd);
                }
            }
            libc::execv(ptrs[0], ptrs.as_ptr());
            fail(wr);
        }
    }
    let fork_err = io::Error::last_os_error();
    // SAFETY: closing our copy of the write end, which we own.
    unsafe { libc::close(wr) };
    if pid < 0 {
        // SAFETY: closing the read end, which we own.
        unsafe { libc::close(rd) };
        return Err(fork_err);
    }
    let mut errno: libc::c_int = 0;
    // SAFETY: reads at most 4 bytes into a c_int; EOF (0) means exec succeeded (CLOEXEC).
    let n = loop {
        let n = unsafe { libc::read(rd, (&mut errno as *mut libc::c_int).cast(), 4) };
        if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n;
        }
    };
    // SAFETY: closing the read end, which we own.
    unsafe { libc::close(rd) };
    let mut child = Proc { pid };
    if n == 4 {
        let _ = child.wait();
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(child)
}

/// Forks a child that runs `f` and ends with `_exit(f())`: no destructors, no atexit
/// handlers, no unwinding into the parent's code. For the benchmarks of `vmfair-run
/// overhead`, which fork plain processes (and VMMs) without exec.
///
/// Call it while the process has a single thread: a child of a multi-threaded process may
/// only use async-signal-safe functions, and `f` may allocate.
pub fn fork_call(f: impl FnOnce() -> i32) -> io::Result<Proc> {
    // SAFETY: fork has no memory-safety preconditions; in the child, `f` runs on a copy of
    // this (single-threaded, see above) process and the child never returns from here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child at once, as documented above.
        unsafe { libc::_exit(code) };
    }
    Ok(Proc { pid })
}

impl Proc {
    /// Process id.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    fn wait_flags(&mut self, flags: libc::c_int) -> io::Result<Option<ProcExit>> {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid on our own child, writing its status into a local.
        let rc = unsafe { libc::waitpid(self.pid, &mut st, flags) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if rc == 0 {
            return Ok(None);
        }
        Ok(Some(if libc::WIFEXITED(st) {
            ProcExit::Code(libc::WEXITSTATUS(st))
        } else {
            ProcExit::Signal(libc::WTERMSIG(st))
        }))
    }

    /// Reaps the child if it has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<ProcExit>> {
        self.wait_flags(libc::WNOHANG)
    }

    /// Waits for the child to end.
    pub fn wait(&mut self) -> io::Result<ProcExit> {
        loop {
            match self.wait_flags(0) {
                Ok(Some(e)) => return Ok(e),
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn spawn_reports_exec_errors_and_exit_status() {
        let e = spawn(&argv(&["/nonexistent/prog"]), ChildSetup::default()).err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        let mut p = spawn(&argv(&["/bin/sh", "-c", "exit 3"]), ChildSetup::default()).unwrap();
        assert_eq!(p.wait().unwrap(), ProcExit::Code(3));
        let mut p = spawn(
            &argv(&["/bin/sh", "-c", "kill -9 $$"]),
            ChildSetup::default(),
        )
        .unwrap();
        assert_eq!(p.wait().unwrap(), ProcExit::Signal(9));
        let mut p = spawn(&argv(&["/bin/sleep", "5"]), ChildSetup::default()).unwrap();
        assert_eq!(p.try_wait().unwrap(), None);
        kill(p.id(), libc::SIGTERM).unwrap();
        assert_eq!(p.wait().unwrap(), ProcExit::Signal(libc::SIGTERM));
    }

    #[test]
    fn spawn_writes_stdout_into_a_file() {
        let path = std::env::temp_dir().join(format!("vmfair-run-stdout-{}", std::process::id()));
        let path = path.to_str().unwrap().to_string();
        std::fs::write(&path, "old contents, longer than the new\n").unwrap();
        let setup = ChildSetup {
            stdout: Some(path.clone()),
            ..Default::default()
        };
        let mut p = spawn(&argv(&["/bin/sh", "-c", "echo one; echo two"]), setup).unwrap();
        assert_eq!(p.wait().unwrap(), ProcExit::Code(0));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        // A file that cannot be created is the error of the call.
        let setup = ChildSetup {
            stdout: Some("/nonexistent/dir/out".into()),
            ..Default::default()
        };
        let e = spawn(&argv(&["/bin/true"]), setup).err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        let _ = std::fs::remove_file(&path);
    }
}
