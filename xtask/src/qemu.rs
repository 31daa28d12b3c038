//! QEMU runner: boots the test kernel with an initramfs and a plan, keeps
//! the console in a log file, reads the results channel (second serial
//! port), enforces a hard timeout and a console-silence watchdog, and
//! carries the guest's own verdict back.

use crate::guest::Spec;
use crate::kbuild::Built;
use crate::util::{self, info, phase, Ctx};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// QEMU's execution mode (see Documentation/vmfair/contract.rst).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// `-accel tcg` (multi-threaded TCG): clean with one guest CPU.
    MultiThread,
    /// `-accel tcg,thread=single`: crash-free with several guest CPUs.
    SingleThread,
}

impl Mode {
    /// The reliable mode for a number of guest CPUs.
    pub fn for_cpus(cpus: u32) -> Mode {
        match std::env::var("VMFAIR_TCG").as_deref() {
            Ok("multi") => return Mode::MultiThread,
            Ok("single") => return Mode::SingleThread,
            _ => {}
        }
        if cpus <= 1 {
            Mode::MultiThread
        } else {
            Mode::SingleThread
        }
    }
}

/// One boot.
pub struct Boot<'a> {
    pub name: String,
    pub built: &'a Built,
    pub base_cpio: &'a Path,
    pub cpus: u32,
    pub mem_mib: u32,
    /// Plan lines (see qemu-test/init).
    pub plan: Vec<String>,
    /// Extra files for the per-run archive: (guest path, host path).
    pub files: Vec<(String, PathBuf)>,
    pub timeout: Duration,
    /// The guest's clocks count instructions (`-icount shift=2,sleep=on`,
    /// single-threaded TCG): 4 ns per instruction while a guest CPU runs,
    /// whatever else the host runs, and real time while all guest CPUs idle.
    /// For tests that hold CPU time against time to a few percent
    /// (contract.rst, "What the test bed does to measurements").
    pub icount: bool,
    /// Longest allowed time with neither the console nor the results
    /// channel growing.
    pub silence: Duration,
}

/// A record from the results channel.
#[derive(Clone, Debug)]
pub struct Block {
    pub kind: String,
    pub name: String,
    pub rc: Option<i32>,
    pub payload: String,
}

/// What came back from a boot.
#[derive(Debug)]
pub struct Outcome {
    pub blocks: Vec<Block>,
    /// `Some(rc)` when the guest reported DONE; `None` means it died.
    pub done: Option<i32>,
    pub console: PathBuf,
    pub console_text: String,
    pub elapsed: Duration,
    /// Why the host stopped the guest, if it did.
    pub killed: Option<String>,
}

impl Outcome {
    pub fn block(&self, kind: &str, name: &str) -> Option<&Block> {
        self.blocks
            .iter()
            .find(|b| b.kind == kind && b.name == name)
    }

    /// Last console lines, for failure messages.
    pub fn console_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console_text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether the plan's `dmesg` step recorded a kernel log without any
    /// [`kernel_warnings`]; the detail names the warnings, or the missing record.
    pub fn dmesg_clean(&self) -> (bool, String) {
        let Some(b) = self.block("dmesg", "all") else {
            return (false, "no dmesg record".into());
        };
        if b.payload.is_empty() {
            return (false, "no dmesg record".into());
        }
        let warns = kernel_warnings(&b.payload);
        (warns.is_empty(), warns.join("\n"))
    }

    /// A guest that ended normally with rc 0.
    pub fn ok(&self) -> bool {
        self.done == Some(0)
    }

    /// One sentence on how the boot ended, with the console tail when it
    /// did not end normally.
    pub fn verdict(&self) -> String {
        match (&self.killed, self.done) {
            (_, Some(0)) => "guest finished its plan (rc=0)".into(),
            (_, Some(rc)) => format!("guest finished its plan with rc={rc}"),
            (Some(why), None) => format!(
                "guest did not finish: {why}\n---- last console lines ({}) ----\n{}",
                self.console.display(),
                self.console_tail(30)
            ),
            (None, None) => {
                let panic = self.console_text.contains("Kernel panic");
                format!(
                    "guest died without an end-of-run marker{}\n---- last console lines ({}) ----\n{}",
                    if panic { " (kernel panic)" } else { "" },
                    self.console.display(),
                    self.console_tail(30)
                )
            }
        }
    }
}

/// Parse the results channel.
pub fn parse_channel(text: &str) -> (Vec<Block>, Option<i32>) {
    let mut blocks = Vec::new();
    let mut done = None;
    let mut cur: Option<Block> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(rec) = line.strip_prefix("@@VMFAIR ") {
            let w: Vec<&str> = rec.split_whitespace().collect();
            match w.first().copied() {
                Some("BEGIN") if w.len() >= 3 => {
                    cur = Some(Block {
                        kind: w[1].into(),
                        name: w[2].into(),
                        rc: None,
                        payload: String::new(),
                    })
                }
                Some("END") if w.len() >= 4 => {
                    if let Some(mut b) = cur.take() {
                        b.rc = w[3].strip_prefix("rc=").and_then(|v| v.parse().ok());
                        blocks.push(b);
                    }
                }
                Some("DONE") if w.len() >= 2 => {
                    done = w[1].strip_prefix("rc=").and_then(|v| v.parse().ok());
                }
                _ => {}
            }
        } else if let Some(b) = cur.as_mut() {
            b.payload.push_str(line);
            b.payload.push('\n');
        }
    }
    (blocks, done)
}

/// Kernel command line for every boot.
pub fn cmdline() -> String {
    // tsc=reliable clocksource=tsc: otherwise every clock read goes through
    // emulated HPET. panic=-1: reboot at once on panic, and -no-reboot makes
    // QEMU exit, so a panic ends the run instead of hanging it.
    "console=ttyS0 tsc=reliable clocksource=tsc panic=-1 loglevel=6".into()
}

impl Boot<'_> {
    pub fn run(&self, ctx: &Ctx) -> Result<Outcome> {
        self.run_with(ctx, "")
    }

    /// [`Boot::run`] with `extra` appended to the kernel command line.
    pub fn run_with(&self, ctx: &Ctx, extra: &str) -> Result<Outcome> {
        let dir = ctx.cache.join("runs").join(&self.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        // Per-run archive: the plan and the files it needs.
        let mut spec = Spec::new();
        spec.dir("/vmfair").dir("/vmfair/scenarios");
        let plan = dir.join("plan");
        util::write(&plan, self.plan.join("\n") + "\n")?;
        spec.file("/vmfair/plan", &plan, 0o644);
        // Parent directories of the files, each once, before them.
        let mut dirs = std::collections::BTreeSet::new();
        for (g, _) in &self.files {
            let mut d = Path::new(g).parent();
            while let Some(p) =
                d.filter(|p| !matches!(p.to_str(), Some("/" | "/vmfair" | "/vmfair/scenarios")))
            {
                dirs.insert(p.to_string_lossy().into_owned());
                d = p.parent();
            }
        }
        for d in &dirs {
            spec.dir(d);
        }
        for (g, h) in &self.files {
            spec.file(g, h, 0o644);
        }
        let run_cpio = dir.join("run.cpio");
        spec.write(self.built, &dir.join("run.list"), &run_cpio)?;
        let initrd = dir.join("initrd.cpio");
        let mut data = std::fs::read(self.base_cpio)?;
        data.extend(std::fs::read(&run_cpio)?);
        util::write(&initrd, data)?;

        let console = dir.join("console.log");
        let channel = dir.join("results.log");
        // icount needs one TCG thread for all guest CPUs.
        let mode = if self.icount {
            Mode::SingleThread
        } else {
            Mode::for_cpus(self.cpus)
        };
        let accel = match mode {
            Mode::MultiThread => "tcg",
            Mode::SingleThread => "tcg,thread=single",
        };
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-accel", accel, "-cpu", "max"])
        .args(if self.icount {
            &["-icount", "shift=2,sleep=on"][..]
        } else {
            &[]
        })
        .arg("-smp")
        .arg(self.cpus.to_string())
        .arg("-m")
        .arg(self.mem_mib.to_string())
        .arg("-chardev")
        .arg(format!("file,id=con,path={}", console.display()))
        .args(["-serial", "chardev:con"])
        .arg("-chardev")
        .arg(format!("file,id=res,path={}", channel.display()))
        .args(["-serial", "chardev:res"])
        .arg("-kernel")
        .arg(&self.built.bzimage)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("{} {extra}", cmdline()).trim_end())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        util::write(&dir.join("qemu.cmd"), format!("{cmd:?}\n"))?;
        phase(&format!(
            "boot {} (QEMU -accel {accel}{} -smp {}, timeout {}s)",
            self.name,
            if self.icount { " -icount" } else { "" },
            self.cpus,
            self.timeout.as_secs()
        ));
        let start = Instant::now();
        let mut child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
        let mut killed = None;
        let mut last_growth = Instant::now();
        let mut last_sizes = (0u64, 0u64);
        let mut shown = 0usize;
        loop {
            if let Some(st) = child.try_wait()? {
                if !st.success() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    if !err.trim().is_empty() {
                        info(&format!("qemu: {}", err.trim()));
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            let sizes = (
                std::fs::metadata(&console).map(|m| m.len()).unwrap_or(0),
                std::fs::metadata(&channel).map(|m| m.len()).unwrap_or(0),
            );
            if sizes != last_sizes {
                last_sizes = sizes;
                last_growth = Instant::now();
            }
            // Progress: the guest's own lines from the console.
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("vmfair") || l.contains("Kernel panic"))
                .collect();
            for l in lines.iter().skip(shown) {
                info(&format!(
                    "[{:>4}s] {}",
                    start.elapsed().as_secs(),
                    l.trim_end()
                ));
            }
            shown = shown.max(lines.len());
            if start.elapsed() > self.timeout {
                killed = Some(format!("hard timeout of {}s", self.timeout.as_secs()));
            } else if last_growth.elapsed() > self.silence {
                killed = Some(format!(
                    "no console or results output for {}s (watchdog)",
                    self.silence.as_secs()
                ));
            }
            if killed.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
        let console_text =
            String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).replace('\r', "");
        let chan =
            String::from_utf8_lossy(&std::fs::read(&channel).unwrap_or_default()).into_owned();
        let (blocks, done) = parse_channel(&chan);
        let out = Outcome {
            blocks,
            done,
            console,
            console_text,
            elapsed: start.elapsed(),
            killed,
        };
        info(&format!(
            "boot {} ended after {:.1}s: {}",
            self.name,
            out.elapsed.as_secs_f64(),
            out.verdict().lines().next().unwrap_or("")
        ));
        Ok(out)
    }
}

/// Kernel warnings in a log: lines that a clean run must not have.
/// The `ok NAME` / `FAIL NAME: detail` lines of a guest check program
/// (`vmfair-run knobs`, `vmfair-run qemu`) as checks named `PREFIX: NAME`;
/// the second value is a failure detail when the lines do not account for
/// the exit status `rc` (no line at all, or a non-zero exit without a FAIL).
pub fn check_lines(
    prefix: &str,
    payload: &str,
    rc: Option<i32>,
) -> (Vec<(String, bool, String)>, Option<String>) {
    let mut v = Vec::new();
    let mut failed = 0;
    for line in payload.lines() {
        if let Some(name) = line.strip_prefix("ok ") {
            v.push((format!("{prefix}: {name}"), true, String::new()));
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            // A tab ends the name (names may contain ": "); ": " in older lines.
            let (name, detail) = rest
                .split_once('\t')
                .or_else(|| rest.split_once(": "))
                .unwrap_or((rest, ""));
            v.push((format!("{prefix}: {name}"), false, detail.to_string()));
            failed += 1;
        }
    }
    let ran = if v.is_empty() || (rc != Some(0) && failed == 0) {
        Some(format!("rc={rc:?}, {} checks: {payload}", v.len()))
    } else {
        None
    };
    (v, ran)
}

pub fn kernel_warnings(log: &str) -> Vec<String> {
    const BAD: &[&str] = &[
        "WARNING:",
        "BUG:",
        "Oops",
        "Kernel panic",
        "general protection fault",
        "Call Trace:",
        "UBSAN:",
        "KASAN:",
        "kmemleak:",
        "possible circular locking",
        "suspicious RCU usage",
    ];
    log.lines()
        .filter(|l| BAD.iter().any(|b| l.contains(b)))
        .map(|l| l.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_lines() {
        let (v, ran) = check_lines("qemu", "# note\nok a\nFAIL b: why\n", Some(1));
        assert_eq!(v.len(), 2);
        assert!(v[0].1 && !v[1].1);
        assert_eq!(v[1].2, "why");
        assert!(ran.is_none());
        // A failure the lines do not show, or no lines at all, is a failure of its own.
        assert!(check_lines("qemu", "ok a\n", Some(1)).1.is_some());
        // A name with ": " in it keeps it when a tab ends the name.
        let (v, _) = check_lines("qemu", "FAIL c: d, e\tEIP: 1\n", Some(1));
        assert_eq!(
            v,
            [("qemu: c: d, e".to_string(), false, "EIP: 1".to_string())]
        );
        assert!(check_lines("qemu", "", Some(0)).1.is_some());
    }

    #[test]
    fn channel_blocks_and_done() {
        let t = "noise\r\n@@VMFAIR BEGIN info guest\r\nrelease=7.3.4\r\n@@VMFAIR END info guest rc=0\r\n\
                 @@VMFAIR BEGIN scenario two\r\n{\"a\":1}\r\n@@VMFAIR END scenario two rc=3\r\n@@VMFAIR DONE rc=1\r\n";
        let (b, done) = parse_channel(t);
        assert_eq!(done, Some(1));
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].payload, "release=7.3.4\n");
        assert_eq!(b[1].kind, "scenario");
        assert_eq!(b[1].rc, Some(3));
    }

    #[test]
    fn missing_done_means_died() {
        let (b, done) = parse_channel("@@VMFAIR BEGIN kunit vmfair\nok 1\n");
        assert!(b.is_empty(), "an unterminated block is not a result");
        assert_eq!(done, None);
    }

    #[test]
    fn warnings_are_found() {
        let w = kernel_warnings("[ 1.0] ok\n[ 2.0] WARNING: CPU: 0 PID: 1 at kernel/x.c:1\n");
        assert_eq!(w.len(), 1);
    }
}
