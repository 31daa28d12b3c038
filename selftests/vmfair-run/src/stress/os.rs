// SPDX-License-Identifier: GPL-2.0
//! Thin layer over the system calls `vmfair-run stress` needs beyond `sys.rs`: a no-op signal
//! to kick a vCPU thread out of `KVM_RUN`, `setsid()`, fork storms from a multi-threaded VMM,
//! `exec()` from any thread. Every `unsafe` of the stress code is here.

use std::ffi::CString;
use std::io;

/// The signal that kicks a vCPU thread out of `KVM_RUN` (its handler does nothing).
pub const KICK: libc::c_int = libc::SIGUSR2;

extern "C" fn on_kick(_sig: libc::c_int) {}

/// Installs a handler for [`KICK`] that does nothing, without SA_RESTART: a `KVM_RUN` in the
/// receiving thread returns with EINTR.
pub fn install_kick_handler() -> io::Result<()> {
    crate::sys::on_signal(KICK, on_kick)
}

/// Sends [`KICK`] to one thread of this process.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: callers pass the pthread_t of a JoinHandle that has not been joined yet.
    unsafe { libc::pthread_kill(thread, KICK) };
}

/// `setsid()`: a new session, so a new autogroup.
pub fn setsid() -> io::Result<()> {
    // SAFETY: plain system call without arguments.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Forks `n` children that exit at once and reaps them; returns how many were forked.
///
/// Safe to call from a multi-threaded process: the child only calls `_exit`.
pub fn fork_storm(n: usize) -> usize {
    let mut pids = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: the child calls nothing but _exit, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            break;
        }
        pids.push(pid);
    }
    for &pid in &pids {
        let mut st = 0;
        // SAFETY: waits for our own child, status into a local; retried on EINTR.
        while unsafe { libc::waitpid(pid, &mut st, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
    pids.len()
}

/// Replaces the calling process's image with `argv[0]` (a path), from whichever thread calls
/// it; only returns on error.
pub fn exec(argv: &[String]) -> io::Error {
    let args: Vec<CString> = match argv.iter().map(|a| CString::new(a.as_str())).collect() {
        Ok(a) => a,
        Err(e) => return io::Error::other(e),
    };
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call.
    unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
    io::Error::last_os_error()
}
