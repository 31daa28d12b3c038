// SPDX-License-Identifier: GPL-2.0
//! Which process a VM is, part of `vmfair-run knobs`: the cases where a VMM's pid and its
//! leader thread part ways, and what unload must undo.
//!
//! - `exec()` from a non-leader thread of a VMM: the thread takes over the pid, the old leader
//!   goes; vmfair must keep following the process (stats, knobs, unload).
//! - A pid reused while the old VM lives on (a child holds its file descriptor): the new
//!   process is not the old VM, and a VM it creates is its own.
//! - A VMM in a pid namespace (as in a container): `vm/<pid>`, `vms` and `vm_weight` all use
//!   its pid in the initial namespace, whoever writes.
//! - `vcpu_slice_us` reaches the vCPU threads, and unload gives them the default slice back.

use crate::knobs::{errno_name, idle_vmm, load, read, unload, write, Tally, ROOT};
use crate::kvm::Kvm;
use crate::layout::{GUEST_MEM_SIZE, STATUS_SIZE};
use crate::procfs;
use crate::status::map_state_file;
use crate::sys::{self, Proc};
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms for up to `secs` seconds.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pipe, both ends.
fn pipe() -> Result<(RawFd, RawFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}

/// Reads one u32 from `fd` (blocking); `None` at EOF or on error.
fn recv(fd: RawFd) -> Option<u32> {
    let mut v = 0u32;
    // SAFETY: reads at most 4 bytes into a u32.
    let n = unsafe { libc::read(fd, (&mut v as *mut u32).cast(), 4) };
    (n == 4).then_some(v)
}

/// Writes one u32 to `fd`.
fn send(fd: RawFd, v: u32) {
    // SAFETY: writes 4 bytes from a u32.
    unsafe { libc::write(fd, (&v as *const u32).cast(), 4) };
}

/// The scheduler group of thread `tid`, as `/sys/kernel/debug/sched/debug` names it.
fn group_of(tid: u32) -> String {
    procfs::sched_groups()
        .ok()
        .and_then(|g| g.of_thread.get(&tid).cloned())
        .unwrap_or_else(|| "<unknown>".into())
}

/// Threads of process `pid`.
fn threads(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the process has threads and every one of them is (`inside`) or is not in a VM
/// group.
fn every_thread(pid: u32, inside: bool) -> bool {
    let Ok(g) = procfs::sched_groups() else {
        return false;
    };
    let ts = threads(pid);
    !ts.is_empty()
        && ts.iter().all(|t| {
            g.of_thread
                .get(t)
                .is_some_and(|p| p.starts_with("/vmgroup-") == inside)
        })
}

/// Whether every thread of `pid` is in a VM group.
fn all_in_vm_group(pid: u32) -> bool {
    every_thread(pid, true)
}

/// Whether no thread of `pid` is in a VM group (and the process has threads).
fn none_in_vm_group(pid: u32) -> bool {
    every_thread(pid, false)
}

/// The `vms` line of `pid`.
fn vms_line(pid: u32) -> Option<String> {
    read(&format!("{ROOT}/vms"))
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
        .map(str::to_string)
}

/// A field `key value` of `vm/<pid>/stats`.
fn stat(pid: u32, key: &str) -> Option<u64> {
    read(&format!("{ROOT}/vm/{pid}/stats"))
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// A child that creates a VM and keeps it (fds inherited by its own children stay open), then
/// runs `then` with the VM's fd. The VM is never run: creation alone makes a VMM.
fn vm_child(then: impl FnOnce(RawFd) -> i32) -> std::io::Result<Proc> {
    sys::fork_call(move || {
        let Ok(kvm) = Kvm::open() else { return 10 };
        let Ok(vm) = kvm.create_vm() else { return 11 };
        let fd = vm.as_raw_fd();
        let code = then(fd);
        drop(vm);
        code
    })
}

fn kill_wait(p: &mut Proc) {
    let _ = sys::kill(p.id(), libc::SIGKILL);
    let _ = p.wait();
}

/// Runs every identity check; leaves vmfair unloaded.
pub(crate) fn checks(t: &mut Tally, exe: &str) {
    t.check("identity: vmfair loads", load(), "modprobe failed");
    slices(t, exe);
    if load() {
        exec_from_thread(t);
    }
    if load() {
        pid_reuse(t);
    }
    if load() {
        pid_namespace(t);
    }
    t.check("identity: vmfair unloads", unload(), "rmmod failed");
}

/// `vcpu_slice_us` sets the vCPU threads' slice, and unload restores the default one.
fn slices(t: &mut Tally, exe: &str) {
    let state = format!("/tmp/vmfair-identity.{}.mem", std::process::id());
    let Ok((_f, _mem)) = map_state_file(&state, GUEST_MEM_SIZE + STATUS_SIZE, false) else {
        t.check("slices: state file", false, &state);
        return;
    };
    let mut vmm = match idle_vmm(exe, "slices", 2, &state) {
        Ok(p) => p,
        Err(e) => {
            t.check("slices: VMM starts", false, &e.to_string());
            return;
        }
    };
    let pid = vmm.id();
    let seen = wait_for(60, || {
        vms_line(pid).is_some_and(|l| l.contains(" vcpus 2 ")) && all_in_vm_group(pid)
    });
    t.check(
        "slices: a 2-vCPU VMM is grouped with both vCPUs",
        seen,
        &format!("vms line {:?}", vms_line(pid)),
    );
    let slice_of = |tid: u32| -> Option<u64> {
        read(&format!("/proc/{pid}/task/{tid}/sched"))
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "se.slice").then(|| v.trim().parse().ok())?
            })
    };
    let with_slice = |ns: u64| {
        threads(pid)
            .into_iter()
            .filter(|&tid| slice_of(tid) == Some(ns))
            .count()
    };
    let knob = format!("{ROOT}/vcpu_slice_us");
    let set = write(&knob, "5000");
    let took = wait_for(5, || with_slice(5_000_000) == 2);
    t.check(
        "slices: vcpu_slice_us 5000 gives both vCPU threads a 5 ms slice",
        set.is_ok() && took,
        &format!(
            "write {}, {} threads with 5 ms of {}",
            errno_name(set.err().unwrap_or(0)),
            with_slice(5_000_000),
            threads(pid).len()
        ),
    );
    let base = slice_of(pid);
    let unloaded = unload();
    let restored =
        with_slice(5_000_000) == 0 && threads(pid).iter().all(|&tid| slice_of(tid) == base);
    t.check(
        "slices: unload gives the vCPU threads the default slice back",
        unloaded && restored,
        &format!(
            "rmmod {unloaded}, slices {:?}, default {base:?}",
            threads(pid)
                .iter()
                .map(|&tid| slice_of(tid))
                .collect::<Vec<_>>()
        ),
    );
    let _ = sys::kill(pid, libc::SIGTERM);
    let _ = vmm.wait();
    let _ = fs::remove_file(&state);
}

/// A VMM whose non-leader thread calls `exec()`: the process (same pid, new leader, the VM fd
/// kept across exec) stays the VM.
fn exec_from_thread(t: &mut Tally) {
    let Ok((go_r, go_w)) = pipe() else {
        t.check("exec: pipe", false, "");
        return;
    };
    let child = vm_child(move |fd| {
        // Keep the VM across exec.
        // SAFETY: fcntl on our own fd.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return 12;
        }
        if recv(go_r).is_none() {
            return 13;
        }
        let t = std::thread::spawn(|| {
            let prog = c"/bin/busybox";
            let argv = [
                prog.as_ptr(),
                c"sleep".as_ptr(),
                c"600".as_ptr(),
                std::ptr::null(),
            ];
            // SAFETY: a valid path and NULL-terminated argv of C strings.
            unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
            // SAFETY: ends the process if exec failed.
            unsafe { libc::_exit(14) }
        });
        let _ = t.join();
        15
    });
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            t.check("exec: VMM starts", false, &e.to_string());
            return;
        }
    };
    let pid = child.id();
    let grouped = wait_for(30, || vms_line(pid).is_some() && all_in_vm_group(pid));
    send(go_w, 1);
    let comm = || read(&format!("/proc/{pid}/comm")).trim().to_string();
    let execd = wait_for(30, || comm() == "busybox" && threads(pid).len() == 1);
    t.check(
        "exec: a VMM grouped before exec() from a non-leader thread",
        grouped && execd,
        &format!(
            "grouped {grouped}, comm {:?}, threads {:?}",
            comm(),
            threads(pid)
        ),
    );
    if !(grouped && execd) {
        kill_wait(&mut child);
        return;
    }
    t.check(
        "exec: after exec() the process is still in its VM group",
        all_in_vm_group(pid),
        &format!("group {}", group_of(pid)),
    );
    let threads_stat = stat(pid, "threads ");
    t.check(
        "exec: stats follow the new leader",
        threads_stat == Some(1),
        &format!("threads {threads_stat:?}"),
    );
    let w = write(&format!("{ROOT}/vm/{pid}/weight"), "300");
    t.check(
        "exec: its weight can be set",
        w.is_ok() && vms_line(pid).is_some_and(|l| l.contains("weight 300 shares 3072 ")),
        &format!(
            "write {}, vms {:?}",
            errno_name(w.err().unwrap_or(0)),
            vms_line(pid)
        ),
    );
    let off = write(&format!("{ROOT}/enabled"), "0");
    let left = none_in_vm_group(pid);
    let on = write(&format!("{ROOT}/enabled"), "1");
    let back = all_in_vm_group(pid);
    t.check(
        "exec: enabled 0 and 1 take it out of its VM group and back",
        off.is_ok() && left && on.is_ok() && back,
        &format!("writes {off:?} {on:?}, out {left}, back {back}"),
    );
    let unloaded = unload();
    t.check(
        "exec: unload takes it out of its VM group",
        unloaded && none_in_vm_group(pid),
        &format!("rmmod {unloaded}, group {}", group_of(pid)),
    );
    let loaded = load();
    t.check(
        "exec: load adopts it again",
        loaded && wait_for(10, || all_in_vm_group(pid)) && vms_line(pid).is_some(),
        &format!("modprobe {loaded}, group {}", group_of(pid)),
    );
    kill_wait(&mut child);
    let gone = wait_for(10, || vms_line(pid).is_none());
    t.check(
        "exec: kill releases the VM",
        gone,
        "still listed after 10 s",
    );
    // SAFETY: closing our pipe ends.
    unsafe {
        libc::close(go_r);
        libc::close(go_w);
    }
}

/// Makes the next process get pid `want` (kernel.ns_last_pid), forking `f`; `None` if another
/// fork took the number first three times in a row.
fn fork_as(want: u32, f: impl Fn() -> i32) -> Option<Proc> {
    for _ in 0..3 {
        if write("/proc/sys/kernel/ns_last_pid", &(want - 1).to_string()).is_err() {
            return None;
        }
        let mut p = sys::fork_call(&f).ok()?;
        if p.id() == want {
            return Some(p);
        }
        kill_wait(&mut p);
    }
    None
}

/// A VM outlives its VMM (a child holds its fd), and a new process gets the VMM's pid.
fn pid_reuse(t: &mut Tally) {
    let Ok((rd, wr)) = pipe() else {
        t.check("pid reuse: pipe", false, "");
        return;
    };
    // A: creates the VM, waits until vmfair knows it, forks C (which keeps the fd and
    // sleeps), reports C's pid, exits.
    let a = vm_child(move |_fd| {
        // SAFETY: plain syscall.
        let me = unsafe { libc::getpid() } as u32;
        if !wait_for(30, || vms_line(me).is_some()) {
            return 18;
        }
        match sys::fork_call(|| {
            // SAFETY: plain syscall.
            unsafe { libc::pause() };
            0
        }) {
            Ok(c) => {
                send(wr, c.id());
                0
            }
            Err(_) => 16,
        }
    });
    // The children have their copy: EOF on `rd` if they die early.
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(wr) };
    let Ok(mut a) = a else {
        t.check("pid reuse: VMM starts", false, "fork failed");
        return;
    };
    let pid = a.id();
    let holder = recv(rd);
    let a_exit = a.wait();
    let vm_dir = format!("{ROOT}/vm/{pid}");
    let ok = holder.is_some() && a_exit.as_ref().is_ok_and(|e| e.success());
    t.check(
        "pid reuse: a VM outlives its VMM (a child holds it)",
        ok && Path::new(&vm_dir).exists(),
        &format!(
            "holder {holder:?}, VMM {a_exit:?}, {vm_dir} exists {}",
            Path::new(&vm_dir).exists()
        ),
    );
    // B: a plain process that gets A's pid, then creates a VM when told to.
    let (go_r, go_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            t.check("pid reuse: pipe", false, &e);
            return;
        }
    };
    let b = fork_as(pid, || {
        if recv(go_r).is_none() {
            return 17;
        }
        let Ok(kvm) = Kvm::open() else { return 10 };
        let Ok(_vm) = kvm.create_vm() else { return 11 };
        // SAFETY: plain syscall.
        unsafe { libc::pause() };
        0
    });
    let Some(mut b) = b else {
        t.check(
            "pid reuse: a new process gets the old VMM's pid",
            false,
            "ns_last_pid did not work",
        );
        if let Some(h) = holder {
            let _ = sys::kill(h, libc::SIGKILL);
        }
        return;
    };
    let vm_weight = format!("{ROOT}/vm_weight");
    let r1 = write(&vm_weight, &format!("{pid} 300")).err().unwrap_or(0);
    let r2 = write(&format!("{vm_dir}/weight"), "300").err().unwrap_or(0);
    t.check(
        "pid reuse: vm_weight of the new process fails with EINVAL (it runs no VM)",
        r1 == libc::EINVAL,
        &format!("got {}", errno_name(r1)),
    );
    t.check(
        "pid reuse: the old VM's weight file no longer answers to the number",
        r2 != 0,
        &format!("got {}", errno_name(r2)),
    );
    t.check(
        "pid reuse: the old VM is not listed under the number",
        vms_line(pid).is_none(),
        &format!("vms {:?}", vms_line(pid)),
    );
    send(go_w, 1);
    let grouped = wait_for(30, || vms_line(pid).is_some() && all_in_vm_group(pid));
    t.check(
        "pid reuse: a VM of the new process is its own, grouped",
        grouped,
        &format!("vms {:?}, group {}", vms_line(pid), group_of(pid)),
    );
    let w = write(&format!("{vm_dir}/weight"), "300");
    t.check(
        "pid reuse: vm/<pid>/weight names the new VM",
        w.is_ok() && vms_line(pid).is_some_and(|l| l.contains("weight 300 shares 3072 ")),
        &format!(
            "write {}, vms {:?}",
            errno_name(w.err().unwrap_or(0)),
            vms_line(pid)
        ),
    );
    kill_wait(&mut b);
    if let Some(h) = holder {
        let _ = sys::kill(h, libc::SIGKILL);
    }
    let gone = wait_for(10, || {
        vms_line(pid).is_none() && !Path::new(&vm_dir).exists()
    });
    t.check(
        "pid reuse: both VMs released",
        gone,
        &format!("vms {:?}", vms_line(pid)),
    );
    // SAFETY: closing our pipe ends.
    unsafe {
        libc::close(rd);
        libc::close(go_r);
        libc::close(go_w);
    }
}

/// A VMM in a pid namespace is named by its pid in the initial namespace, from inside too.
fn pid_namespace(t: &mut Tally) {
    let Ok((r, w)) = pipe() else {
        t.check("pid namespace: pipe", false, "");
        return;
    };
    let me = std::process::id();
    let vm_weight = format!("{ROOT}/vm_weight");
    // P unshares a pid namespace; its child Q is pid 1 there and runs the VM.
    let inside = vm_weight.clone();
    let p = sys::fork_call(move || {
        // SAFETY: plain syscall in a single-threaded child.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 20;
        }
        let q = sys::fork_call(move || {
            // /proc is the initial namespace's: /proc/self is Q's pid there.
            let global: u32 = fs::read_link("/proc/self")
                .ok()
                .and_then(|l| l.to_str()?.parse().ok())
                .unwrap_or(0);
            // SAFETY: plain syscall.
            let local = unsafe { libc::getpid() } as u32;
            let Ok(kvm) = Kvm::open() else { return 10 };
            let Ok(_vm) = kvm.create_vm() else { return 11 };
            if !wait_for(30, || vms_line(global).is_some()) {
                return 21;
            }
            let err = |v: String| write(&inside, &v).err().unwrap_or(0) as u32;
            send(w, global);
            send(w, local);
            // By its global pid: taken.
            send(w, err(format!("{global} 400")));
            // A pid of the initial namespace that is not a VMM and that Q cannot see.
            send(w, err(format!("{me} 500")));
            // SAFETY: plain syscall.
            unsafe { libc::pause() };
            0
        });
        match q {
            Ok(mut q) => match q.wait() {
                Ok(sys::ProcExit::Code(c)) => c,
                _ => 22,
            },
            Err(_) => 23,
        }
    });
    // SAFETY: closing our copy of the write end: EOF on `r` if the children die early.
    unsafe { libc::close(w) };
    let Ok(mut p) = p else {
        t.check("pid namespace: VMM starts", false, "fork failed");
        return;
    };
    let got: Vec<Option<u32>> = (0..4).map(|_| recv(r)).collect();
    let (Some(global), Some(local), Some(own), Some(other)) = (got[0], got[1], got[2], got[3])
    else {
        let _ = sys::kill(p.id(), libc::SIGKILL);
        let st = p.wait();
        t.check(
            "pid namespace: a VMM runs in a pid namespace",
            false,
            &format!("{got:?}, {st:?}"),
        );
        return;
    };
    t.check(
        "pid namespace: the VMM is pid 1 inside, listed by its initial pid",
        local == 1
            && vms_line(global).is_some()
            && Path::new(&format!("{ROOT}/vm/{global}")).exists(),
        &format!("local pid {local}, vms {:?}", vms_line(global)),
    );
    let weight = read(&format!("{ROOT}/vm/{global}/weight"));
    t.check(
        "pid namespace: vm_weight from inside, by the initial pid, sets vm/<pid>/weight",
        own == 0 && weight.trim() == "400",
        &format!("write {}, weight {weight:?}", errno_name(own as i32)),
    );
    t.check(
        "pid namespace: from inside, a pid of the initial namespace that is no VMM is EINVAL",
        other == libc::EINVAL as u32,
        &format!("got {}", errno_name(other as i32)),
    );
    let w2 = write(&vm_weight, &format!("{global} 300"));
    let weight = read(&format!("{ROOT}/vm/{global}/weight"));
    t.check(
        "pid namespace: vm_weight from outside sets the same file",
        w2.is_ok() && weight.trim() == "300",
        &format!("write {w2:?}, weight {weight:?}"),
    );
    // Killing P's namespace init (Q) ends the namespace.
    let _ = sys::kill(global, libc::SIGKILL);
    let _ = p.wait();
    let gone = wait_for(10, || vms_line(global).is_none());
    t.check(
        "pid namespace: kill releases the VM",
        gone,
        "still listed after 10 s",
    );
    // SAFETY: closing our pipe end.
    unsafe { libc::close(r) };
}
