// SPDX-License-Identifier: GPL-2.0
//! A VM's `reservation` and `limit`: writing them (before the window and by events) and
//! reading them back.
//!
//! Under vmfair they are `/proc/sys/kernel/vmfair/vm/<pid>/reservation` and `.../limit`,
//! written as two-decimal CPUs (`"1.20"`); under policy cgroup a limit is the `cpu.max` of the
//! VM's cgroup (`"50000 100000"`, see [`limit_cpu_max`]). Every write is read back: a value
//! that reads back different is a problem (the run is invalid).

use super::setup::write_file;
use super::Run;
use std::fs;
use vmfair_scenario::{cpus_hundredths, cpus_rounded, cpus_text, limit_cpu_max, GroupKind};

/// Which of a VM's amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Amount {
    Reservation,
    Limit,
}

impl Amount {
    fn key(self) -> &'static str {
        match self {
            Amount::Reservation => "reservation",
            Amount::Limit => "limit",
        }
    }
}

/// vmfair's file for `amount` of the VM process `pid`.
pub(super) fn vmfair_file(pid: u32, amount: Amount) -> String {
    format!("/proc/sys/kernel/vmfair/vm/{pid}/{}", amount.key())
}

/// The writes that set a new VM's reservation and limit, in order: the reservation first
/// (while no limit is set yet, so it cannot be above one), then the limit (which validation
/// keeps at or above the reservation). Amounts that are 0 (none, as the module starts) are
/// not written.
pub(super) fn setup_writes(reservation: f64, limit: f64) -> Vec<(Amount, f64)> {
    [(Amount::Reservation, reservation), (Amount::Limit, limit)]
        .into_iter()
        .filter(|(_, v)| cpus_hundredths(*v) != 0)
        .collect()
}

/// Where and what to write for `amount` = `cpus` of a VM process `pid`: its cgroup's
/// `cpu.max` for a limit of a VM in a cgroup (policy cgroup: validation allows no other VM in
/// a cgroup a limit), else vmfair's file with [`cpus_text`].
pub(super) fn target(
    cgroup: Option<&str>,
    pid: u32,
    amount: Amount,
    cpus: f64,
) -> (String, String) {
    match (cgroup, amount) {
        (Some(cg), Amount::Limit) => (format!("{cg}/cpu.max"), limit_cpu_max(cpus)),
        _ => (vmfair_file(pid, amount), cpus_text(cpus)),
    }
}

/// Whether `read` (a file's contents) is what writing `written` should read back: the same
/// hundredths of a CPU for vmfair's files (`"1.2"` and `"1.20\n"` agree), the same words for
/// `cpu.max`.
pub(super) fn reads_back(written: &str, read: &str) -> bool {
    let read = read.trim();
    if written.contains(' ') {
        return read.split_whitespace().eq(written.split_whitespace());
    }
    match (written.parse::<f64>(), read.parse::<f64>()) {
        (Ok(w), Ok(r)) => r.is_finite() && cpus_hundredths(w) == cpus_hundredths(r),
        _ => false,
    }
}

impl Run {
    /// Sets `amount` of member `k` to `cpus`: writes it, reads it back. `Ok` names the file
    /// and the value; `Err` if the write failed (`problem` false) or the value read back
    /// differs (`problem` true: that makes the run invalid).
    pub(super) fn set_amount(
        &mut self,
        k: usize,
        amount: Amount,
        cpus: f64,
    ) -> Result<String, (String, bool)> {
        let m = &mut self.members[k];
        let (path, value) = target(m.cgroup.as_deref(), m.pid, amount, cpus);
        write_file(&path, &value).map_err(|e| (e, false))?;
        let read = fs::read_to_string(&path).map_err(|e| (format!("read {path}: {e}"), true))?;
        if !reads_back(&value, &read) {
            return Err((
                format!(
                    "{}: wrote {value:?} to {path}, read back {:?}",
                    m.label,
                    read.trim()
                ),
                true,
            ));
        }
        match amount {
            Amount::Reservation => m.reservation = cpus_rounded(cpus),
            Amount::Limit => m.limit = cpus_rounded(cpus),
        }
        Ok(format!("{path} = {value}"))
    }

    /// The `reservation` and `limit` of every VM, after the VMs run (so vmfair knows them)
    /// and before the window. A missing interface, a failed write or a wrong read-back is a
    /// problem.
    pub(super) fn apply_allocations(&mut self) {
        for k in 0..self.members.len() {
            let m = &self.members[k];
            if m.kind != GroupKind::Vm {
                continue;
            }
            for (amount, cpus) in setup_writes(m.reservation, m.limit) {
                let m = &self.members[k];
                let (path, _) = target(m.cgroup.as_deref(), m.pid, amount, cpus);
                if !std::path::Path::new(&path).exists() {
                    let p = format!(
                        "{}: {} interface missing ({path}); {} not applied",
                        m.label,
                        amount.key(),
                        cpus_text(cpus)
                    );
                    self.problems.push(p);
                    continue;
                }
                match self.set_amount(k, amount, cpus) {
                    Ok(done) => super::log(&format!("{}: {done}", self.members[k].label)),
                    Err((e, true)) => self.problems.push(e),
                    Err((e, false)) => {
                        let p = format!("{}: {e}", self.members[k].label);
                        self.problems.push(p);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_writes_reservation_then_limit() {
        assert_eq!(
            setup_writes(1.2, 1.5),
            [(Amount::Reservation, 1.2), (Amount::Limit, 1.5)]
        );
        assert_eq!(setup_writes(0.0, 0.5), [(Amount::Limit, 0.5)]);
        assert_eq!(setup_writes(1.0, 0.0), [(Amount::Reservation, 1.0)]);
        // Nothing to write: the module's defaults (none) stay, an older module is fine.
        assert!(setup_writes(0.0, 0.0).is_empty());
        assert!(setup_writes(0.004, 0.0).is_empty());
    }

    #[test]
    fn the_strings_and_files_written() {
        assert_eq!(
            target(None, 42, Amount::Reservation, 1.2),
            (
                "/proc/sys/kernel/vmfair/vm/42/reservation".to_string(),
                "1.20".to_string()
            )
        );
        assert_eq!(
            target(None, 42, Amount::Limit, 0.5),
            (
                "/proc/sys/kernel/vmfair/vm/42/limit".to_string(),
                "0.50".to_string()
            )
        );
        assert_eq!(target(None, 7, Amount::Limit, 1.234).1, "1.23");
        assert_eq!(target(None, 7, Amount::Reservation, 0.0).1, "0.00");
        let cg = Some("/sys/fs/cgroup/vmfair-a-0");
        assert_eq!(
            target(cg, 42, Amount::Limit, 0.5),
            (
                "/sys/fs/cgroup/vmfair-a-0/cpu.max".to_string(),
                "50000 100000".to_string()
            )
        );
        assert_eq!(target(cg, 42, Amount::Limit, 0.0).1, "max 100000");
        // A reservation is never a cgroup's (validation allows none there).
        assert_eq!(
            target(cg, 42, Amount::Reservation, 1.0).0,
            "/proc/sys/kernel/vmfair/vm/42/reservation"
        );
    }

    #[test]
    fn read_back_compared() {
        assert!(reads_back("1.25", "1.25\n"));
        assert!(reads_back("1.20", "1.2\n"));
        assert!(reads_back("0.00", "0\n"));
        assert!(!reads_back("1.25", "1.24\n"));
        assert!(!reads_back("0.50", "0\n"));
        assert!(!reads_back("0.50", ""));
        assert!(!reads_back("0.50", "nan\n"));
        assert!(reads_back("50000 100000", "50000 100000\n"));
        assert!(reads_back("max 100000", "max 100000\n"));
        assert!(!reads_back("50000 100000", "max 100000\n"));
    }
}
