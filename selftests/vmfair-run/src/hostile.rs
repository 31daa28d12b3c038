// SPDX-License-Identifier: GPL-2.0
//! Hostile input and privilege, part of `vmfair-run knobs`.
//!
//! Every writable file of vmfair is fed white space, nothing, huge input, a write at an offset
//! and concurrent writers; each must fail with a clear error (or, for concurrent good values,
//! end in one of them) and leave every file as it was. Writers that are not root, or root of a
//! user namespace (which has no `CAP_SYS_NICE` in the initial one), change nothing.

use crate::knobs::{errno_name, read, write, Tally, ROOT};
use crate::sys;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// A write of `value` at file offset `offset` (pwrite); the errno on failure.
fn pwrite(path: &str, value: &str, offset: u64) -> Result<(), i32> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    f.write_at(value.as_bytes(), offset)
        .map(|_| ())
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// Runs `f` in a forked child and returns its exit status as an errno (0: success). Call while
/// the process has one thread.
fn in_child(f: impl FnOnce() -> i32) -> Result<i32, String> {
    let mut p = sys::fork_call(f).map_err(|e| format!("fork: {e}"))?;
    match p.wait().map_err(|e| format!("wait: {e}"))? {
        sys::ProcExit::Code(c) => Ok(c),
        other => Err(format!("child ended by {other}")),
    }
}

/// The errno of writing `value` to `path` as the child's exit status (0: it succeeded, 255: the
/// setup before it failed).
fn child_write(path: &str, value: &str) -> i32 {
    match write(path, value) {
        Ok(()) => 0,
        Err(e) => e.clamp(1, 254),
    }
}

/// Writes `/proc/self/<file>`; for the user namespace set-up.
fn write_self(file: &str, text: &str) -> bool {
    write(&format!("/proc/self/{file}"), text).is_ok()
}

/// The hostile-input and privilege checks against the VM of process `pid`. `watch` lists every
/// file whose content must not change on a failed write.
pub(crate) fn checks(t: &mut Tally, pid: u32, watch: &[&str]) {
    let f = |name: &str| format!("{ROOT}/{name}");
    let weight = format!("{ROOT}/vm/{pid}/weight");
    let writable = [
        f("enabled"),
        f("default_weight"),
        f("vm_class_weight"),
        f("vcpu_slice_us"),
        f("share_mode"),
        f("vm_weight"),
        f("precision"),
        f("reservation_headroom"),
        weight.clone(),
        format!("{ROOT}/vm/{pid}/reservation"),
        format!("{ROOT}/vm/{pid}/limit"),
    ];
    let snapshot = || watch.iter().map(|w| read(w)).collect::<Vec<_>>();
    let huge = "1".repeat(64 * 1024);
    let good = |file: &str| {
        if file.ends_with("vm_weight") {
            format!("{pid} 100")
        } else if file.ends_with("share_mode") {
            "vm".to_string()
        } else if file.ends_with("enabled") || file.ends_with("precision") {
            "1".to_string()
        } else if [
            "vm_class_weight",
            "vcpu_slice_us",
            "headroom",
            "reservation",
            "limit",
        ]
        .iter()
        .any(|k| file.ends_with(k))
        {
            "0".to_string()
        } else {
            "100".to_string()
        }
    };

    for file in &writable {
        let short = file.strip_prefix(ROOT).unwrap_or(file);
        // White space only, and huge input: EINVAL, nothing changed.
        for (what, value) in [
            ("white space", "  \t \n"),
            ("a NUL byte", "\0"),
            ("64 KiB of digits", huge.as_str()),
        ] {
            let before = snapshot();
            let got = write(file, value).err().unwrap_or(0);
            let after = snapshot();
            t.check(
                &format!("{short} <- {what} fails with EINVAL"),
                got == libc::EINVAL && before == after,
                &format!("got {}, unchanged {}", errno_name(got), before == after),
            );
        }
        // An empty write changes nothing (the kernel may not even call the handler).
        let before = snapshot();
        let got = write(file, "").err().unwrap_or(0);
        let after = snapshot();
        t.check(
            &format!("{short} <- an empty write changes nothing"),
            before == after,
            &format!("write: {}, files changed", errno_name(got)),
        );
        // A write that does not start at offset 0 (the second half of a split write, or a
        // pwrite) is refused even with a good value.
        let before = snapshot();
        let got = pwrite(file, &good(file), 1).err().unwrap_or(0);
        let after = snapshot();
        t.check(
            &format!("{short} <- pwrite at offset 1 fails with EINVAL"),
            got == libc::EINVAL && before == after,
            &format!("got {}, unchanged {}", errno_name(got), before == after),
        );
    }

    concurrent_writers(t, pid, &weight);
    unprivileged(t, pid, &writable, watch);
}

/// Two threads write two weights to the same VM, through both files, 300 times each: every
/// write succeeds, and at the end the weight is one of the two and the shares follow it.
fn concurrent_writers(t: &mut Tally, pid: u32, weight: &str) {
    let vm_weight = format!("{ROOT}/vm_weight");
    let errors = std::thread::scope(|s| {
        let w = |value: u32| {
            let (weight, vm_weight) = (weight.to_string(), vm_weight.clone());
            s.spawn(move || {
                let mut errors = 0;
                for i in 0..300 {
                    let r = if i % 2 == 0 {
                        write(&weight, &value.to_string())
                    } else {
                        write(&vm_weight, &format!("{pid} {value}"))
                    };
                    errors += u32::from(r.is_err());
                }
                errors
            })
        };
        let (a, b) = (w(200), w(700));
        a.join().unwrap_or(300) + b.join().unwrap_or(300)
    });
    let now = read(weight).trim().to_string();
    let vms = read(&format!("{ROOT}/vms"));
    let line = vms
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
        .unwrap_or("")
        .to_string();
    let shares_ok = match now.as_str() {
        "200" => line.contains("weight 200 shares 2048 "),
        "700" => line.contains("weight 700 shares 7168 "),
        _ => false,
    };
    t.check(
        "concurrent writers: every write taken, one weight wins, shares follow it",
        errors == 0 && shares_ok,
        &format!("{errors} failed writes, weight {now:?}, vms line {line:?}"),
    );
    let _ = write(weight, "100");
}

/// A user other than root, and root of a new user namespace, cannot change anything.
fn unprivileged(t: &mut Tally, pid: u32, writable: &[String], watch: &[&str]) {
    for file in writable {
        let short = file.strip_prefix(ROOT).unwrap_or(file);
        let value = if file.ends_with("vm_weight") {
            format!("{pid} 500")
        } else if file.ends_with("share_mode") {
            "vcpu".to_string()
        } else if file.ends_with("enabled") {
            "0".to_string()
        } else {
            "500".to_string()
        };

        // nobody: the file's mode (0644, root's) refuses the open.
        let before: Vec<String> = watch.iter().map(|w| read(w)).collect();
        let r = in_child(|| {
            // SAFETY: plain syscalls in a single-threaded child.
            let ok = unsafe { libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0 };
            if !ok {
                return 255;
            }
            child_write(file, &value)
        });
        let after: Vec<String> = watch.iter().map(|w| read(w)).collect();
        t.check(
            &format!("{short}: user nobody cannot write (EACCES)"),
            r == Ok(libc::EACCES) && before == after,
            &format!("got {r:?}, unchanged {}", before == after),
        );

        // Root of a user namespace: the open succeeds (uid 0 maps to 0), vmfair refuses
        // the write because the writer lacks CAP_SYS_NICE in the initial namespace.
        let before: Vec<String> = watch.iter().map(|w| read(w)).collect();
        let r = in_child(|| {
            // SAFETY: plain syscall in a single-threaded child.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                return 255;
            }
            if !(write_self("setgroups", "deny")
                && write_self("uid_map", "0 0 1")
                && write_self("gid_map", "0 0 1"))
            {
                return 255;
            }
            child_write(file, &value)
        });
        let after: Vec<String> = watch.iter().map(|w| read(w)).collect();
        t.check(
            &format!("{short}: root of a user namespace cannot write (EPERM)"),
            r == Ok(libc::EPERM) && before == after,
            &format!("got {r:?}, unchanged {}", before == after),
        );
    }
}
