// SPDX-License-Identifier: GPL-2.0
//! Reads `/dev/kmsg` while the stress runs and counts kernel reports as they come, so that
//! none is lost when the log buffer wraps: lockdep, KFENCE, SLUB debug, debug objects, list
//! debugging, WARN, BUG, Oops, sleeping in atomic context, RCU stalls. Also counts vmfair's
//! own warnings (an event it could not handle, a VM it could not group: expected under
//! injected failures), and notes a debugging facility that switched itself off.

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// First lines of a kernel report (substring match on the message).
const REPORTS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "kernel BUG at",
    "Oops",
    "general protection fault",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "sleeping function called from invalid context",
    "KFENCE: ",
    "KASAN:",
    "UBSAN:",
    "ODEBUG:",
    "list_add corruption",
    "list_del corruption",
    "rcu: INFO:",
    "detected stall",
    "Poison overwritten",
    "Redzone overwritten",
    "Object already free",
];

/// A debugging facility that switched itself off: the run cannot vouch for its absence of
/// reports any more.
const DISABLED: &[&str] = &[
    "turning off the locking correctness validator",
    "kmemleak: Kernel memory leak detector disabled",
    "ODEBUG: Out of memory",
    "debug_objects: Out of memory",
];

/// vmfair's own warnings and the module's life, counted.
const NOTES: &[(&str, &str)] = &[
    ("KVM event not handled", "event_not_handled"),
    ("a KVM VM event is lost", "event_lost"),
    ("cannot group VM", "cannot_group"),
    ("vmfair: loaded", "loaded"),
    ("vmfair: unloaded", "unloaded"),
    (
        "FAULT_INJECTION: forcing a failure",
        "fault_injection_lines",
    ),
];

/// Lines kept after the first line of a report.
const EXCERPT_LINES: usize = 40;
/// Reports kept with an excerpt.
const EXCERPTS: usize = 6;

#[derive(Default)]
struct State {
    excerpts: Vec<Vec<String>>,
    /// Lines still to append to the last excerpt.
    open: usize,
    notes: std::collections::BTreeMap<&'static str, u64>,
    disabled: Vec<String>,
    records: u64,
    overruns: u64,
}

impl State {
    /// Classifies one log message; returns whether it starts a report.
    fn line(&mut self, msg: &str) -> bool {
        self.records += 1;
        for (pat, key) in NOTES {
            if msg.contains(pat) {
                *self.notes.entry(key).or_default() += 1;
            }
        }
        for pat in DISABLED {
            if msg.contains(pat) && self.disabled.len() < 10 {
                self.disabled
                    .push(format!("debugging switched off: {}", msg.trim()));
            }
        }
        let report = REPORTS.iter().any(|p| msg.contains(p)) || is_slub_report(msg);
        if report && self.excerpts.len() < EXCERPTS {
            self.excerpts.push(vec![msg.to_string()]);
            self.open = EXCERPT_LINES;
        } else if self.open > 0 {
            self.open -= 1;
            if let Some(e) = self.excerpts.last_mut() {
                e.push(msg.to_string());
            }
        }
        report
    }
}

/// SLUB debug reports start with `BUG <cache> (<taint>): <what>`.
fn is_slub_report(msg: &str) -> bool {
    msg.strip_prefix("BUG ")
        .is_some_and(|r| r.contains("): ") && !r.starts_with(':'))
}

/// The message of a `/dev/kmsg` record (`prio,seq,ts,flags;message`, continuation lines
/// with ` KEY=value` dropped).
pub fn message(record: &str) -> &str {
    let first = record.lines().next().unwrap_or("");
    first.split_once(';').map_or(first, |(_, m)| m)
}

/// The running reader.
pub struct Reader {
    stop: Arc<AtomicBool>,
    reports: Arc<AtomicU64>,
    state: Arc<Mutex<State>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the reader saw.
pub struct Summary {
    pub reports: u64,
    pub disabled: Vec<String>,
    excerpts: Vec<Vec<String>>,
    notes: std::collections::BTreeMap<&'static str, u64>,
    records: u64,
    overruns: u64,
}

impl Summary {
    pub fn json(&self) -> Value {
        json!({
            "reports": self.reports,
            "records": self.records,
            "overruns": self.overruns,
            "notes": self.notes,
            "disabled": self.disabled,
            "excerpts": self.excerpts,
        })
    }
}

impl Reader {
    /// Opens `/dev/kmsg` at its end and starts reading.
    pub fn start() -> std::io::Result<Reader> {
        let mut f: File = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        f.seek(SeekFrom::End(0))?;
        let stop = Arc::new(AtomicBool::new(false));
        let reports = Arc::new(AtomicU64::new(0));
        let state = Arc::new(Mutex::new(State::default()));
        let (s, r, st) = (stop.clone(), reports.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name("kmsg".into())
            .spawn(move || {
                let mut buf = vec![0u8; 8192];
                loop {
                    match f.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            let rec = String::from_utf8_lossy(&buf[..n]);
                            if st.lock().unwrap().line(message(&rec)) {
                                r.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                            st.lock().unwrap().overruns += 1;
                        }
                        _ => {
                            // Nothing new (EAGAIN): stop once asked, after the last drain.
                            if s.load(Ordering::SeqCst) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Reader {
            stop,
            reports,
            state,
            thread: Some(thread),
        })
    }

    /// Reports so far.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::SeqCst)
    }

    /// Reads what is left and stops.
    pub fn stop(mut self) -> Summary {
        std::thread::sleep(Duration::from_millis(500));
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let st = std::mem::take(&mut *self.state.lock().unwrap());
        Summary {
            reports: self.reports(),
            disabled: st.disabled,
            excerpts: st.excerpts,
            notes: st.notes,
            records: st.records,
            overruns: st.overruns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_classified() {
        let mut s = State::default();
        assert_eq!(
            message("4,120,5000,-;WARNING: CPU: 1 PID: 7 at x.c:1\n SUBSYSTEM=x"),
            "WARNING: CPU: 1 PID: 7 at x.c:1"
        );
        assert!(s.line("WARNING: CPU: 1 PID: 7 at kernel/sched/core.c:10 f+0x1/0x2"));
        assert!(!s.line("Call Trace:"));
        assert!(s.line("BUG kmalloc-64 (Not tainted): Poison overwritten"));
        assert!(s.line("BUG: sleeping function called from invalid context at x.c:3"));
        assert!(s.line("KFENCE: use-after-free read in f+0x1/0x2"));
        assert!(!s.line("vmfair: cannot group VM of process 12: ENOMEM"));
        assert!(!s.line("vmfair: loaded: 0 VM process(es) adopted, default weight 100"));
        assert!(!s.line("BUG something without a cache"));
        assert_eq!(s.excerpts.len(), 4);
        assert_eq!(
            s.excerpts[0].len(),
            2,
            "the trace line joins the first report"
        );
        assert_eq!(s.notes.get("cannot_group"), Some(&1));
        assert_eq!(s.notes.get("loaded"), Some(&1));
        assert!(!s.line("INFO: lockdep is turning off the locking correctness validator."));
        assert_eq!(s.disabled.len(), 1);
    }
}
