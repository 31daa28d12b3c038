// SPDX-License-Identifier: GPL-2.0
//! The terminal in live mode: keys without Enter or echo, the window size, waiting for a key
//! or the next refresh, and a stop flag for SIGINT/SIGTERM/SIGHUP.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop signal arrived.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// SIGINT, SIGTERM and SIGHUP set the stop flag (and interrupt a wait) instead of killing the
/// process, so the terminal is put back.
pub fn catch_stop_signals() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe. No SA_RESTART, so poll(2) returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: libc::c_int) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Standard input in non-canonical mode without echo and without signal keys (Ctrl-C is read
/// as a key); the old settings come back on drop.
pub struct RawInput {
    saved: libc::termios,
}

impl RawInput {
    /// `None` when standard input is not a terminal.
    pub fn new() -> Option<RawInput> {
        if !is_tty(0) {
            return None;
        }
        // SAFETY: tcgetattr fills the zeroed struct; tcsetattr reads our modified copy.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            t.c_cc[libc::VMIN] = 0;
            t.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawInput { saved })
        }
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in new().
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

/// The terminal's (columns, rows): from the window size of standard output, else `$COLUMNS`
/// and `$LINES`, else 80×24.
pub fn size() -> (usize, usize) {
    // SAFETY: TIOCGWINSZ writes a winsize into the zeroed struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(d)
    };
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (usize::from(ws.ws_col), usize::from(ws.ws_row))
    } else {
        (env("COLUMNS", 80), env("LINES", 24))
    }
}

/// Waits up to `timeout` for input on standard input (if `keys`) and returns the bytes read
/// (none on timeout or when a signal interrupted the wait) and whether standard input is still
/// worth waiting on (not at end of file or hung up).
pub fn wait_keys(timeout: Duration, keys: bool) -> (Vec<u8>, bool) {
    let mut fd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads/writes the one pollfd (none when !keys) for at most `ms` ms.
    let n = unsafe { libc::poll(&mut fd, libc::nfds_t::from(keys), ms) };
    if n <= 0 || !keys {
        return (Vec::new(), keys);
    }
    if fd.revents & libc::POLLIN == 0 {
        // POLLHUP, POLLERR, POLLNVAL: nothing more will come.
        return (Vec::new(), false);
    }
    let mut buf = [0u8; 64];
    // SAFETY: reads at most buf.len() bytes into buf.
    let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
    if got <= 0 {
        return (Vec::new(), false);
    }
    (buf[..got as usize].to_vec(), true)
}
