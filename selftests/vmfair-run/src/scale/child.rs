// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run scale --child I --dir D --vms N`: one VM (see `scale.rs`).

use super::*;
use crate::kvm::{Exit, Kvm};
use crate::status::map_state_file;
use std::fs::File;
use std::io::Read;

// The status fields end before the guest's counter, the code fits in the page.
const _: () = assert!(S_ERRNO + 8 <= COUNTER && CODE + GUEST_CODE.len() <= SLOT);

/// Entry point of a child.
pub(super) fn main(opts: &Opts) -> Result<i32, String> {
    let i: usize = opts.num("child", 0)?;
    let n: usize = opts.num("vms", 0)?;
    let dir = opts.get("dir").ok_or("--child needs --dir")?;
    let timeout = Duration::from_secs_f64(opts.num("group-timeout", 10.0)?);
    if i >= n {
        return Err(format!("--child {i} is not below --vms {n}"));
    }
    let path = format!("{dir}/slots");
    let (_file, mem) =
        map_state_file(&path, n * SLOT, true).map_err(|e| format!("slots file: {e}"))?;
    let slot = Slot {
        mem: &mem,
        base: i * SLOT,
    };
    let pid = std::process::id();
    slot.set(S_PID, u64::from(pid));
    slot.set(S_START, now_ns());
    match vm(&slot, pid, dir, timeout) {
        Ok(()) => Ok(0),
        Err((step, err)) => {
            slot.set(S_ERR_STEP, step as u64 + 1);
            slot.set(S_ERRNO, err.raw_os_error().unwrap_or(0) as u64);
            slot.set(S_STATE, ST_FAILED);
            say!("scale vm {i} (pid {pid}): {}: {err}", STEPS[step]);
            Ok(1)
        }
    }
}

/// A child's failure: the index in `STEPS` and the error.
type StepError = (usize, std::io::Error);

fn bad_exit(step: usize, exit: Exit) -> StepError {
    (
        step,
        std::io::Error::other(format!("unexpected exit {exit:?}")),
    )
}

fn vm(slot: &Slot<'_>, pid: u32, dir: &str, timeout: Duration) -> Result<(), StepError> {
    slot.mem.write_bytes(slot.base + CODE, &GUEST_CODE);
    let kvm = Kvm::open().map_err(|e| (0, e))?;
    slot.set(S_CREATE0, now_ns());
    let vm = kvm.create_vm().map_err(|e| (1, e))?;
    slot.set(S_CREATE1, now_ns());
    // With the module loaded the VM is grouped when its directory exists. Look once at once
    // (an attach done inside KVM_CREATE_VM shows here), then again once the vCPU halted.
    let group_dir = format!("{VMFAIR_DIR}/vm/{pid}");
    if Path::new(&group_dir).exists() {
        slot.set(S_GROUPED, now_ns());
        slot.set(S_AT_CREATE, 1);
    }
    let _ = vm.set_tss_addr(0xfffb_d000);
    let host = slot.mem.host_addr() + slot.base as u64;
    vm.set_memory(GUEST_GPA, SLOT as u64, host)
        .map_err(|e| (2, e))?;
    let vcpu = vm.create_vcpu(0).map_err(|e| (3, e))?;
    drop(vm);
    match vcpu.run() {
        Exit::Reason(5, _) => {} // KVM_EXIT_HLT
        other => return Err(bad_exit(4, other)),
    }
    slot.set(S_HALTED, now_ns());
    if slot.get(S_GROUPED) == 0 {
        let t = Instant::now();
        while !Path::new(&group_dir).exists() && t.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(1));
        }
        if Path::new(&group_dir).exists() {
            slot.set(S_GROUPED, now_ns());
        }
    }
    slot.set(S_STATE, ST_READY);
    // Halted: sleep until the parent says what to do (or goes away: end of file).
    let mut ctl = File::open(format!("{dir}/ctl")).map_err(|e| (5, e))?;
    let mut b = [0u8; 1];
    loop {
        match ctl.read(&mut b) {
            Ok(1) if b[0] == b'B' => break,
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((5, e)),
        }
    }
    drop(ctl);
    slot.set(S_STATE, ST_BUSY);
    loop {
        match vcpu.run() {
            Exit::Interrupted => continue,
            other => return Err(bad_exit(6, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_code_layout() {
        // hlt at the reset vector, then a loop that jumps back to its own start.
        assert_eq!(GUEST_CODE[0], 0xf4);
        let jmp_end = 0xfff0 + GUEST_CODE.len() as i32;
        assert_eq!(jmp_end + i32::from(GUEST_CODE[8] as i8), 0xfff1);
        // The counter's CS offset 0xf800 is page offset COUNTER.
        assert_eq!(
            u16::from_le_bytes([GUEST_CODE[5], GUEST_CODE[6]]) as usize & 0xfff,
            COUNTER
        );
    }
}
