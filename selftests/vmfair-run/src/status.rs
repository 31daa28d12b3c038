// SPDX-License-Identifier: GPL-2.0
//! Typed access to the status area of a shared state file (see `layout.rs`), for the process
//! that writes it and for the runner that reads it.

use crate::layout::*;
use crate::sys::SharedMem;
use std::fs::{File, OpenOptions};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The status area of a mapped state file.
pub struct Status {
    mem: Arc<SharedMem>,
    base: usize,
    msg_lock: Mutex<()>,
}

/// Creates (or reuses) the state file at `path` with `len` bytes and maps it.
pub fn map_state_file(path: &str, len: usize, writable: bool) -> io::Result<(File, SharedMem)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    if file.metadata()?.len() != len as u64 {
        file.set_len(len as u64)?;
    }
    let mem = SharedMem::map(&file, len, writable)?;
    Ok((file, mem))
}

impl Status {
    /// The status area at `base` of `mem`.
    pub fn new(mem: Arc<SharedMem>, base: usize) -> Status {
        Status {
            mem,
            base,
            msg_lock: Mutex::new(()),
        }
    }

    fn get(&self, off: usize) -> u64 {
        self.mem.atomic_u64(self.base + off).load(Ordering::Acquire)
    }

    fn set(&self, off: usize, v: u64) {
        self.mem
            .atomic_u64(self.base + off)
            .store(v, Ordering::Release)
    }

    /// Writer: resets the area and publishes the header.
    pub fn init(&self, pid: u32, vcpus: usize, busy: usize) {
        for off in (0..ST_MSG).step_by(8) {
            self.set(off, 0);
        }
        self.set(ST_PID, u64::from(pid));
        self.set(ST_VCPUS, vcpus as u64);
        self.set(ST_BUSY, busy as u64);
        self.set(ST_STATE, STATE_INIT);
        self.set(ST_MAGIC, MAGIC);
    }

    /// Writer: sets the process state.
    pub fn set_state(&self, s: u64) {
        self.set(ST_STATE, s)
    }

    /// Writer: sets a vCPU slot field (0 tid, 1 state, 2 exits).
    pub fn set_vcpu(&self, i: usize, field: usize, v: u64) {
        self.set(vcpu_field(i, field), v)
    }

    /// Writer: the counter word of busy thread `j`.
    pub fn busy_counter(&self, j: usize) -> &std::sync::atomic::AtomicU64 {
        self.mem.atomic_u64(self.base + busy_counter(j))
    }

    /// Writer: records a bad exit / error with its message (also printed on stderr, prefixed
    /// with `who`).
    pub fn report_error(&self, who: &str, msg: &str) {
        say!("{who}: {msg}");
        let _guard = self.msg_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.set(ST_BAD_EXITS, self.get(ST_BAD_EXITS) + 1);
        let len = self.get(ST_MSG_LEN) as usize;
        let mut line = msg.as_bytes().to_vec();
        line.push(b'\n');
        if len + line.len() <= ST_MSG_MAX {
            self.mem.write_bytes(self.base + ST_MSG + len, &line);
            self.set(ST_MSG_LEN, (len + line.len()) as u64);
        }
    }

    /// Reader: whether the writer initialised the area.
    pub fn ready_magic(&self) -> bool {
        self.get(ST_MAGIC) == MAGIC
    }

    /// Reader: the process state.
    pub fn state(&self) -> u64 {
        self.get(ST_STATE)
    }

    /// Reader: a vCPU slot field.
    pub fn vcpu(&self, i: usize, field: usize) -> u64 {
        self.get(vcpu_field(i, field))
    }

    /// Reader: bad exits / errors recorded.
    pub fn bad_exits(&self) -> u64 {
        self.get(ST_BAD_EXITS)
    }

    /// Reader: busy thread `j`'s counter.
    pub fn busy(&self, j: usize) -> u64 {
        self.busy_counter(j).load(Ordering::Relaxed)
    }

    /// Reader: the recorded error messages, one per line.
    pub fn messages(&self) -> Vec<String> {
        let len = (self.get(ST_MSG_LEN) as usize).min(ST_MSG_MAX);
        let bytes = self.mem.read_bytes(self.base + ST_MSG, len);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Reader: guest word at guest-physical `gpa` (only for VMM files, where guest RAM is at
    /// offset 0).
    pub fn guest_u64(&self, gpa: u64) -> u64 {
        self.mem.atomic_u64(gpa as usize).load(Ordering::Relaxed)
    }
}
