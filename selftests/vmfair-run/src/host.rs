// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run host`: an ordinary host process with N busy threads counting loop iterations
//! into a shared status file.

use crate::layout::*;
use crate::status::{map_state_file, Status};
use crate::sys;
use crate::vmm::busy_loop;
use crate::Opts;
use std::sync::Arc;

/// Options of `vmfair-run host`.
pub const OPTIONS: &[&str] = &["name", "threads", "nice", "mem-file"];

/// Runs the host process; returns the exit status.
pub fn main(opts: &Opts) -> Result<i32, String> {
    let name = opts.get("name").unwrap_or("host").to_string();
    let threads: usize = opts.num("threads", 1)?;
    let nice: i32 = opts.num("nice", 0)?;
    if threads == 0 || threads > MAX_THREADS {
        return Err(format!("--threads must be 1..={MAX_THREADS}"));
    }
    if nice != 0 {
        sys::set_nice(nice).map_err(|e| format!("setpriority({nice}): {e}"))?;
    }
    sys::install_stop_handlers().map_err(|e| format!("sigaction: {e}"))?;
    let pid = std::process::id();
    let (path, temp) = match opts.get("mem-file") {
        Some(p) => (p.to_string(), false),
        None => (format!("/tmp/vmfair-host-{pid}.mem"), true),
    };
    let (_file, mem) =
        map_state_file(&path, STATUS_SIZE, true).map_err(|e| format!("state file: {e}"))?;
    if temp {
        let _ = std::fs::remove_file(&path);
    }
    let status = Arc::new(Status::new(Arc::new(mem), 0));
    status.init(pid, 0, threads);
    let mut handles = Vec::new();
    for j in 0..threads {
        let st = status.clone();
        let h = std::thread::Builder::new()
            .name(format!("busy{j}"))
            .spawn(move || busy_loop(st.busy_counter(j)))
            .map_err(|e| format!("spawn thread: {e}"))?;
        handles.push(h);
    }
    status.set_state(STATE_RUNNING);
    say!("host {name}: pid {pid}, {threads} busy threads running");
    while !sys::stop_requested() {
        std::thread::sleep(crate::vmm::MAIN_LOOP_PERIOD);
    }
    for h in handles {
        let _ = h.join();
    }
    status.set_state(STATE_STOPPED);
    Ok(0)
}
