// SPDX-License-Identifier: GPL-2.0
//! `load = "bench"`: a UnixBench-style suite run inside the L2 guest.
//!
//! Each vCPU loops over a *pass* of three sub-tests for as long as the VM runs, so the figures
//! over the measurement window say how much work the VM got done in it (throughput, not a
//! one-shot score):
//!
//! | sub-test | what one operation is | unit of the rate | baseline |
//! | --- | --- | --- | --- |
//! | `arith` | one round of an integer multiply/add/xor/rotate chain (Dhrystone-like ALU work) | loops/s | 10 M loops/s |
//! | `copy` | a 16 KiB `rep movsd` memory copy | KiB/s | 100 MiB/s |
//! | `io` | an `out` to the VMM's bench port: a full exit to user space and back (like UnixBench's syscall/pipe tests, the costliest round trip a VM makes) | round trips/s | 1000 /s |
//!
//! The guest times each sub-test with `rdtsc`, so time a vCPU spends preempted inside a
//! sub-test counts against that sub-test, as wall-clock time does in UnixBench. For the window,
//! sub-test `t` of a VM has the rate `sum over vCPUs of ops(t) / seconds(t)` (UnixBench adds the
//! rates of parallel copies), its score is `rate / baseline`, and the VM's `index` is
//! `10 * geometric mean of the scores`: a VM exactly as fast as the baseline machine scores 10.
//!
//! The baselines are fixed reference constants (UnixBench uses a SPARCstation 20-61); they only
//! set the scale of the index. Comparisons use the index relative to a solo run, which does not
//! depend on them.
//!
//! Exits are kept few (a nested exit costs tens of microseconds here): `IO_PER_PASS` round
//! trips per pass of tens of milliseconds.

use crate::layout::*;
use crate::status::Status;
use vmfair_scenario::BenchScore;

/// Loop rounds of `arith` per pass.
pub const ARITH_PER_PASS: u32 = 1_000_000;
/// Copies of `copy` per pass.
pub const COPY_PER_PASS: u32 = 64;
/// Bytes per copy.
pub const COPY_BYTES: u32 = 16 * 1024;
/// Round trips of `io` per pass.
pub const IO_PER_PASS: u32 = 4;
/// The VMM's bench port (`out dx, eax`, 4 bytes, the vCPU's round-trip sequence number).
pub const BENCH_PORT: u16 = 0x0500;

// Offsets inside a vCPU's bench block (see `layout.rs`); the guest program in `guest.rs` uses
// the same numbers.
/// u32 parameters: arith rounds, copies, io round trips, dwords per copy.
pub const B_ARITH_N: u64 = 0;
/// u32: copies per pass.
pub const B_COPY_N: u64 = 4;
/// u32: io round trips per pass.
pub const B_IO_N: u64 = 8;
/// u32: dwords per copy.
pub const B_COPY_DWORDS: u64 = 12;
/// First record: u64 ops, u64 TSC cycles; one record per sub-test, 16 bytes apart.
pub const B_RECORDS: u64 = 16;
/// u64: guest TSC frequency in kHz (written by the VMM for the runner).
pub const B_TSC_KHZ: u64 = 64;
/// u32: update sequence of the records (odd while the guest updates them). The guest also
/// keeps the arith checksum at 72, the start TSC of the running sub-test at 80 and the last
/// io sequence number sent at 96.
pub const B_SEQ: u64 = 88;

const _: () = assert!(COPY_BYTES as u64 <= BENCH_BUF_SIZE);
const _: () = assert!(B_RECORDS + 16 * 3 == B_TSC_KHZ);
const _: () = assert!(B_SEQ + 8 <= 96 && 96 + 4 <= BENCH_STRIDE);

/// A sub-test: name, unit of its rate, ops-to-unit factor, baseline rate in that unit.
#[derive(Clone, Copy, Debug)]
pub struct SubTest {
    pub name: &'static str,
    pub unit: &'static str,
    pub unit_per_op: f64,
    pub baseline: f64,
}

/// The suite, in the order of the records in the bench block.
pub const SUITE: [SubTest; 3] = [
    SubTest {
        name: "arith",
        unit: "loops/s",
        unit_per_op: 1.0,
        baseline: 10.0e6,
    },
    SubTest {
        name: "copy",
        unit: "KiB/s",
        unit_per_op: COPY_BYTES as f64 / 1024.0,
        baseline: 100.0 * 1024.0,
    },
    SubTest {
        name: "io",
        unit: "round trips/s",
        unit_per_op: 1.0,
        baseline: 1000.0,
    },
];

/// Ops and TSC cycles of one sub-test of one vCPU, as accumulated by the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub ops: u64,
    pub cycles: u64,
}

/// One vCPU's records and TSC frequency at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub records: [Record; 3],
    pub tsc_khz: u64,
}

/// Writes vCPU `i`'s bench parameters (VMM side, before the vCPU runs).
pub fn set_params(mem: &crate::sys::SharedMem, i: usize, tsc_khz: u64) {
    let b = bench_gpa(i) as usize;
    let w32 = |off: u64, v: u32| mem.write_bytes(b + off as usize, &v.to_le_bytes());
    w32(B_ARITH_N, ARITH_PER_PASS);
    w32(B_COPY_N, COPY_PER_PASS);
    w32(B_IO_N, IO_PER_PASS);
    w32(B_COPY_DWORDS, COPY_BYTES / 4);
    mem.write_bytes(b + B_TSC_KHZ as usize, &tsc_khz.to_le_bytes());
    // Something other than zeros to copy.
    let src: Vec<u8> = (0..BENCH_BUF_SIZE as usize)
        .map(|k| (k * 7 + 3) as u8)
        .collect();
    mem.write_bytes(BENCH_SRC_GPA as usize, &src);
}

/// Reads vCPU `i`'s records consistently (runner side): the guest brackets every update with
/// two increments of the sequence word, so a read between two equal even sequence values is
/// whole. `None` if the guest stayed inside an update for all the tries (a vCPU preempted
/// there for long, or a guest that stopped there).
pub fn snapshot(status: &Status, i: usize) -> Option<Snapshot> {
    let b = bench_gpa(i);
    for attempt in 0..2000 {
        let seq0 = status.guest_u64(b + B_SEQ) as u32;
        if seq0.is_multiple_of(2) {
            let mut records = [Record::default(); 3];
            for (k, r) in records.iter_mut().enumerate() {
                let at = b + B_RECORDS + 16 * k as u64;
                r.ops = status.guest_u64(at);
                r.cycles = status.guest_u64(at + 8);
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            if status.guest_u64(b + B_SEQ) as u32 == seq0 {
                return Some(Snapshot {
                    records,
                    tsc_khz: status.guest_u64(b + B_TSC_KHZ),
                });
            }
        }
        if attempt > 20 {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }
    None
}

/// The index of a set of scores: 10 × geometric mean; 0 if any score is 0 (a sub-test that did
/// nothing), `None` without scores or with a negative or non-finite one.
pub fn index(scores: &[f64]) -> Option<f64> {
    if scores.is_empty() || scores.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return None;
    }
    if scores.contains(&0.0) {
        return Some(0.0);
    }
    let mean_log = scores.iter().map(|s| s.ln()).sum::<f64>() / scores.len() as f64;
    Some(10.0 * mean_log.exp())
}

/// Sub-test scores of a VM over a window from its vCPUs' snapshots at the start and at the end
/// (same order). The rate of a sub-test is the sum over vCPUs of `ops / seconds`, where a vCPU
/// that finished no run of the sub-test in the window adds nothing. Err if a counter went
/// backwards or a TSC frequency is missing.
pub fn scores(start: &[Snapshot], end: &[Snapshot]) -> Result<Vec<BenchScore>, String> {
    if start.len() != end.len() {
        return Err("snapshots of different vCPU counts".into());
    }
    let mut out = Vec::new();
    for (k, t) in SUITE.iter().enumerate() {
        let mut ops = 0u64;
        let mut seconds = 0.0;
        let mut rate = 0.0;
        for (v, (s, e)) in start.iter().zip(end).enumerate() {
            let (s, e) = (s.records[k], e.records[k]);
            if e.ops < s.ops || e.cycles < s.cycles {
                return Err(format!(
                    "vcpu {v}: bench {} counters went backwards ({:?} -> {:?})",
                    t.name, s, e
                ));
            }
            if end[v].tsc_khz == 0 {
                return Err(format!("vcpu {v}: no TSC frequency"));
            }
            let d_ops = e.ops - s.ops;
            let d_s = (e.cycles - s.cycles) as f64 / (end[v].tsc_khz as f64 * 1000.0);
            ops += d_ops;
            seconds += d_s;
            if d_s > 0.0 {
                rate += d_ops as f64 * t.unit_per_op / d_s;
            }
        }
        out.push(BenchScore {
            test: t.name.to_string(),
            unit: t.unit.to_string(),
            ops,
            seconds,
            rate,
            baseline: t.baseline,
            score: rate / t.baseline,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn index_is_ten_times_the_geometric_mean() {
        assert!(close(index(&[1.0, 1.0, 1.0]).unwrap(), 10.0));
        assert!(close(index(&[2.0, 8.0]).unwrap(), 40.0));
        assert!(close(index(&[1.0, 10.0, 100.0]).unwrap(), 100.0));
        // Halving every score halves the index.
        let a = index(&[3.0, 0.7, 12.0]).unwrap();
        let b = index(&[1.5, 0.35, 6.0]).unwrap();
        assert!(close(a, 2.0 * b));
        assert_eq!(index(&[5.0, 0.0]), Some(0.0));
        assert_eq!(index(&[]), None);
        assert_eq!(index(&[1.0, -1.0]), None);
        assert_eq!(index(&[f64::NAN]), None);
    }

    fn snap(recs: [(u64, u64); 3], khz: u64) -> Snapshot {
        Snapshot {
            records: recs.map(|(ops, cycles)| Record { ops, cycles }),
            tsc_khz: khz,
        }
    }

    #[test]
    fn scores_from_snapshots() {
        // 1 GHz TSC: 1e9 cycles = 1 s.
        let s = [snap([(0, 0), (0, 0), (0, 0)], 1_000_000)];
        let e = [snap(
            [
                (20_000_000, 1_000_000_000),
                (6400, 500_000_000),
                (500, 250_000_000),
            ],
            1_000_000,
        )];
        let sc = scores(&s, &e).unwrap();
        assert_eq!(sc.len(), 3);
        assert!(close(sc[0].rate, 20e6) && close(sc[0].score, 2.0));
        // 6400 copies of 16 KiB in 0.5 s = 204800 KiB/s = 2 × baseline.
        assert!(close(sc[1].rate, 204_800.0) && close(sc[1].score, 2.0));
        assert!(close(sc[2].rate, 2000.0) && close(sc[2].score, 2.0));
        assert!(close(sc[2].seconds, 0.25));
        let idx = index(&sc.iter().map(|x| x.score).collect::<Vec<_>>()).unwrap();
        assert!(close(idx, 20.0));
    }

    #[test]
    fn rates_of_vcpus_add_up() {
        let s = [snap([(0, 0); 3], 1_000_000), snap([(0, 0); 3], 1_000_000)];
        let one = (10_000_000, 1_000_000_000);
        let e = [
            snap([one, (100, 1_000_000_000), (10, 1_000_000_000)], 1_000_000),
            // The second vCPU finished no run of `io` in the window: it adds no rate.
            snap([one, (100, 1_000_000_000), (0, 0)], 1_000_000),
        ];
        let sc = scores(&s, &e).unwrap();
        assert!(close(sc[0].rate, 20e6));
        assert!(close(sc[1].rate, 2.0 * 100.0 * 16.0));
        assert!(close(sc[2].rate, 10.0));
        assert_eq!(sc[2].ops, 10);
    }

    #[test]
    fn bad_snapshots_are_errors() {
        let s = [snap([(10, 10); 3], 1_000_000)];
        let back = [snap([(5, 20), (10, 10), (10, 10)], 1_000_000)];
        assert!(scores(&s, &back).unwrap_err().contains("backwards"));
        let nokhz = [snap([(20, 20); 3], 0)];
        assert!(scores(&s, &nokhz).is_err());
        assert!(scores(&s, &[]).is_err());
    }
}
