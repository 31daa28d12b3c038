// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run peers --list FILE`: runs the kernel's own selftests (KVM, cgroup cpu
//! controller), one after the other, and reports each one's exit, wall time and output.
//!
//! `make test` runs the same list twice in one boot, once without vmfair and once with it
//! loaded (`xtask/src/peers.rs`, `Documentation/vmfair/peer-suites.rst`). The list has one
//! test a line, `NAME TIMEOUT_S PATH [ARG…]`; `#` starts a comment. For every test this prints
//!
//! ```text
//! out NAME| a line of the test's stdout or stderr (at most MAX_LINES of them)
//! result NAME status=exit:N|signal:N|timeout secs=S vmgroups=G
//! ```
//!
//! `vmgroups` counts the VMM processes that had a directory in `/proc/sys/kernel/vmfair/vm/`
//! while the test ran (so 0 without vmfair): the VMs that vmfair's VM groups held. A test that
//! outlives its timeout is killed with everything it forked. The judging (kselftest: 0 pass,
//! 4 skip, anything else fail) is done by the host. Exits 0 when every test could be run.

use crate::sys::{self, ChildSetup, ProcExit};
use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

pub const OPTIONS: &[&str] = &["list", "log-dir"];

/// Output lines of one test that are reported.
const MAX_LINES: usize = 400;
/// vmfair's per-VM directories.
const VM_DIR: &str = "/proc/sys/kernel/vmfair/vm";
/// How often the test's end and the VM directories are polled.
const POLL: Duration = Duration::from_millis(10);

/// One line of the list.
#[derive(Debug, PartialEq)]
pub struct Test {
    pub name: String,
    pub timeout: Duration,
    pub argv: Vec<String>,
}

/// Parses the list (`NAME TIMEOUT_S PATH [ARG…]` a line).
pub fn parse_list(text: &str) -> Result<Vec<Test>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 3 {
            return Err(format!("line {}: want NAME TIMEOUT_S PATH [ARG…]", n + 1));
        }
        let secs: u64 = w[1]
            .parse()
            .map_err(|_| format!("line {}: bad timeout {:?}", n + 1, w[1]))?;
        if out.iter().any(|t: &Test| t.name == w[0]) {
            return Err(format!("line {}: {} listed twice", n + 1, w[0]));
        }
        out.push(Test {
            name: w[0].to_string(),
            timeout: Duration::from_secs(secs),
            argv: w[2..].iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(out)
}

/// Parent pid of `pid`, from `/proc/PID/stat` (the field after the parenthesised name).
fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every process below it.
fn descendants(root: u32) -> Vec<u32> {
    let pids: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let parents: Vec<(u32, u32)> = pids
        .iter()
        .filter_map(|&p| ppid(p).map(|pp| (p, pp)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The VMM pids that have a vmfair VM directory now.
fn vm_pids() -> Vec<u32> {
    fs::read_dir(VM_DIR)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one test; prints its output and result lines.
fn run_one(t: &Test, log_dir: &str) -> Result<(), String> {
    let log = format!("{log_dir}/{}.log", t.name);
    // The shell only redirects and execs: the pid is the test's.
    let mut argv: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        "log=$1; shift; exec \"$@\" >\"$log\" 2>&1".into(),
        "sh".into(),
        log.clone(),
    ];
    argv.extend(t.argv.iter().cloned());
    let t0 = Instant::now();
    let mut p =
        sys::spawn(&argv, ChildSetup::default()).map_err(|e| format!("{}: {e}", t.argv[0]))?;
    let mut groups = BTreeSet::new();
    let status = loop {
        if let Some(st) = p.try_wait().map_err(|e| format!("waitpid: {e}"))? {
            break match st {
                ProcExit::Code(c) => format!("exit:{c}"),
                ProcExit::Signal(s) => format!("signal:{s}"),
            };
        }
        groups.extend(vm_pids());
        if t0.elapsed() > t.timeout {
            for pid in descendants(p.id()).into_iter().rev() {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            let _ = p.wait();
            break "timeout".to_string();
        }
        std::thread::sleep(POLL);
    };
    let secs = t0.elapsed().as_secs_f64();
    let text = fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for l in lines.iter().take(MAX_LINES) {
        println!("out {}| {l}", t.name);
    }
    if lines.len() > MAX_LINES {
        println!("out {}| [{} more lines]", t.name, lines.len() - MAX_LINES);
    }
    println!(
        "result {} status={status} secs={secs:.3} vmgroups={}",
        t.name,
        groups.len()
    );
    Ok(())
}

pub fn main(opts: &crate::Opts) -> Result<i32, String> {
    let list = opts.get("list").ok_or("peers needs --list FILE")?;
    let log_dir = opts.get("log-dir").unwrap_or("/tmp/peers");
    let text = fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
    let tests = parse_list(&text)?;
    fs::create_dir_all(log_dir).map_err(|e| format!("{log_dir}: {e}"))?;
    let mut code = 0;
    for (i, t) in tests.iter().enumerate() {
        say!("peers [{}/{}] {}", i + 1, tests.len(), t.name);
        if let Err(e) = run_one(t, log_dir) {
            println!("result {} status=error:{e}", t.name);
            code = 1;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines() {
        let l = parse_list("# c\n\nrseq_test 60 /p/rseq_test -u  # x\nt 5 /bin/true\n").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "rseq_test");
        assert_eq!(l[0].timeout, Duration::from_secs(60));
        assert_eq!(l[0].argv, vec!["/p/rseq_test", "-u"]);
        assert!(parse_list("t x /bin/true\n").is_err());
        assert!(parse_list("t 5\n").is_err());
        assert!(parse_list("t 5 /a\nt 6 /b\n").is_err());
    }

    #[test]
    fn runs_kills_and_reports() {
        let dir = std::env::temp_dir().join(format!("peers-test-{}", std::process::id()));
        let dir = dir.to_str().unwrap().to_string();
        fs::create_dir_all(&dir).unwrap();
        let t = Test {
            name: "slow".into(),
            timeout: Duration::from_millis(300),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo hi; sleep 30 & wait".into(),
            ],
        };
        let t0 = Instant::now();
        run_one(&t, &dir).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(
            fs::read_to_string(format!("{dir}/slow.log")).unwrap(),
            "hi\n"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
