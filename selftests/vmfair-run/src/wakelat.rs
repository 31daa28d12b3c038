// SPDX-License-Identifier: GPL-2.0
//! Wake-up latency of ticking guests, from the TSC stamps their tick handlers leave in guest
//! RAM (`guest.rs`, `layout.rs`).
//!
//! What is measured: from the guest timer's expiry to the guest's tick handler running, i.e.
//! the vCPU thread's wake-up, its wait on the run queue and the VM entry (for vCPU 0 also the
//! VM's `kvm-pit` kernel thread, which injects the PIT's interrupt). Each tick's lateness is
//! the TSC interval since the previous tick's stamp minus the nominal tick period, clamped at
//! 0. For the one-shot LAPIC timer (vCPUs 1..), re-armed at handler entry, that is the tick's
//! own lateness (plus the few instructions between the stamp and the re-arm). The periodic
//! PIT (vCPU 0) expires on a grid, `k × period` from some start, whatever the guest does, so
//! tick `k`'s lateness is `(stamp_k − k × period) − min_j (stamp_j − j × period)` over the
//! last [`GRID_TICKS`] ticks `j ≤ k`: the earliest tick of the window stands for the grid.
//! Ticks that KVM's PIT re-injects to catch up count as late as they are. The window keeps
//! a drift between the PIT and the TSC (a period that differs from the nominal one) from
//! adding up: at most `GRID_TICKS` periods' worth of it.

use crate::guest::{BLOCK_PERIOD, BLOCK_TSC_KHZ};
use crate::layout::{counter_gpa, ring_gpa, ticks_gpa, RING_SLOTS};
use crate::status::Status;
use std::collections::VecDeque;

/// Ticks of the periodic PIT's grid window (1 s at 100 Hz).
pub const GRID_TICKS: u64 = 100;

/// Where the reader of one vCPU's ring is.
#[derive(Clone, Debug, Default)]
pub struct Track {
    /// Index of the next tick whose stamp to read.
    next: u64,
    /// Stamp of tick `next - 1`, if it was read.
    prev: Option<u64>,
    /// Ticks without a figure: stamps overwritten before they were read, and stamps earlier
    /// than the one before (seen a few times per 2000 ticks on the nested test bed, probably
    /// the TSC differing between the host CPUs a vCPU thread migrates over).
    pub lost: u64,
    /// A periodic timer (the PIT): lateness against the grid, not the interval.
    pub periodic: bool,
    /// Periodic: `(k, stamp_k − k × period)` of the window's ticks, the minimum first
    /// (a monotonic queue: each entry's value is below every later entry's).
    grid: VecDeque<(u64, i128)>,
}

impl Track {
    /// Reads the stamps of the ticks counted since the last call and appends their lateness
    /// (TSC cycles) to `out`. `before` and `after` are the tick counter read before and
    /// after the stamps (`stamp(slot)` reads ring slot `slot`); `period` is the nominal tick
    /// period in TSC cycles.
    pub fn feed(
        &mut self,
        before: u64,
        stamp: impl Fn(u64) -> u64,
        after: u64,
        period: u64,
        out: &mut Vec<u64>,
    ) {
        if before < self.next {
            // The counter went backwards: a torn read (or a restart). Start over from here.
            self.next = before;
            self.prev = None;
            return;
        }
        if after < before {
            // The second read was torn: try again next time.
            return;
        }
        // Tick k's slot is rewritten by tick k + RING_SLOTS, which may have stored its stamp
        // once the counter reads k + RING_SLOTS: only ticks above after - RING_SLOTS hold.
        let oldest = (after + 1).saturating_sub(RING_SLOTS);
        let first = self.next.max(oldest);
        if first > self.next {
            self.lost += first - self.next;
            self.prev = None;
            self.grid.clear();
        }
        for k in first..before {
            let s = stamp(k % RING_SLOTS);
            if let Some(p) = self.prev {
                if s < p {
                    // Earlier than the previous tick: a stale slot. Neither of its
                    // intervals is known.
                    self.lost += 1;
                    self.prev = None;
                    self.grid.clear();
                    continue;
                }
                if !self.periodic {
                    out.push((s - p).saturating_sub(period));
                }
            }
            if self.periodic {
                let v = i128::from(s) - i128::from(k) * i128::from(period);
                while self.grid.back().is_some_and(|&(_, b)| b >= v) {
                    self.grid.pop_back();
                }
                self.grid.push_back((k, v));
                while self.grid.front().is_some_and(|&(j, _)| j + GRID_TICKS <= k) {
                    self.grid.pop_front();
                }
                // The first tick after a start or a gap only opens the window.
                if self.prev.is_some() {
                    let min = self.grid.front().map_or(v, |&(_, m)| m);
                    out.push(u64::try_from(v - min).unwrap_or(0));
                }
            }
            self.prev = Some(s);
        }
        self.next = before;
    }
}

/// Reads vCPU `i`'s new stamps from a VMM's state (see [`Track::feed`]).
pub fn poll(status: &Status, i: usize, track: &mut Track, out: &mut Vec<u64>) {
    // vCPU 0 ticks from the periodic PIT, the others from a one-shot LAPIC timer (guest.rs).
    track.periodic = i == 0;
    let period = status.guest_u64(counter_gpa(i) + BLOCK_PERIOD);
    let before = status.guest_u64(ticks_gpa(i));
    let ring = ring_gpa(i);
    let stamp = |slot: u64| status.guest_u64(ring + 8 * slot);
    let after = status.guest_u64(ticks_gpa(i));
    track.feed(before, stamp, after, period, out);
}

/// vCPU `i`'s TSC kHz as its VMM wrote it (0 if it did not).
pub fn tsc_khz(status: &Status, i: usize) -> u64 {
    status.guest_u64(counter_gpa(i) + BLOCK_TSC_KHZ)
}

/// TSC cycles at `khz` in microseconds.
pub fn cycles_us(cycles: u64, khz: u64) -> f64 {
    cycles as f64 * 1000.0 / khz as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 10_000;

    /// A ring holding the stamps of ticks `0..n` as the guest would leave it.
    fn ring(stamps: &[u64]) -> Vec<u64> {
        let mut r = vec![0; RING_SLOTS as usize];
        for (k, s) in stamps.iter().enumerate() {
            r[k % RING_SLOTS as usize] = *s;
        }
        r
    }

    fn feed(t: &mut Track, stamps: &[u64], before: u64, after: u64) -> Vec<u64> {
        let r = ring(stamps);
        let mut out = Vec::new();
        t.feed(before, |slot| r[slot as usize], after, P, &mut out);
        out
    }

    #[test]
    fn on_time_and_one_late_tick() {
        let mut t = Track::default();
        // On time (a little jitter both ways), then tick 4 is 3000 cycles late, tick 5 on
        // time again (short interval: clamped at 0).
        let s = [1000, 11_000, 21_005, 30_995, 44_000, 51_000, 61_000];
        assert_eq!(feed(&mut t, &s, 7, 7), vec![0, 5, 0, 3005, 0, 0]);
        assert_eq!(t.lost, 0);
        // Later calls continue from the last stamp: no tick counted twice.
        let mut s2 = s.to_vec();
        s2.extend([71_000, 81_500]);
        assert_eq!(feed(&mut t, &s2, 9, 9), vec![0, 500]);
        assert_eq!(feed(&mut t, &s2, 9, 9), Vec::<u64>::new());
    }

    #[test]
    fn ring_wraps() {
        let n = RING_SLOTS + 50;
        let s: Vec<u64> = (0..n)
            .map(|k| k * P + if k == n - 1 { 77 } else { 0 })
            .collect();
        let mut t = Track::default();
        // Read up to tick 90, then the guest wraps the ring: ticks 90..n are still there.
        let first = feed(&mut t, &s[..90], 90, 90);
        assert_eq!(first.len(), 89);
        let out = feed(&mut t, &s, n, n);
        assert_eq!(out.len() as u64, n - 90);
        assert_eq!(*out.last().unwrap(), 77);
        assert!(out[..out.len() - 1].iter().all(|&l| l == 0));
        assert_eq!(t.lost, 0);
    }

    #[test]
    fn overrun_ring_loses_ticks() {
        let n = 3 * RING_SLOTS;
        let s: Vec<u64> = (0..n).map(|k| k * P).collect();
        let mut t = Track::default();
        let out = feed(&mut t, &s, n, n);
        // Only the newest RING_SLOTS - 1 stamps are certain; the first gives no interval.
        assert_eq!(t.lost, n - (RING_SLOTS - 1));
        assert_eq!(out.len() as u64, RING_SLOTS - 2);
        // Ticks counted while the stamps were read push the oldest certain stamp up.
        let mut t = Track::default();
        feed(&mut t, &s, n - 1, n + 1);
        assert_eq!(t.lost, n + 2 - RING_SLOTS);
    }

    #[test]
    fn torn_or_skipped_counter() {
        let s: Vec<u64> = (0..20).map(|k| k * P).collect();
        let mut t = Track::default();
        assert_eq!(feed(&mut t, &s, 10, 10).len(), 9);
        // A torn 64-bit read (low half wrapped, high half not yet carried) reads backwards:
        // nothing is taken, the reader restarts at the value read.
        assert!(feed(&mut t, &s, 3, 3).is_empty());
        // Counter read torn between the two reads of one call: skipped.
        assert!(feed(&mut t, &s, 12, 5).is_empty());
        // From the restart, ticks 3..20 again: 16 intervals (the first has no predecessor).
        assert_eq!(feed(&mut t, &s, 20, 20).len(), 16);
        // A stamp older than its predecessor (a stale slot) is no interval.
        let mut bad = s.clone();
        bad[15] = 5;
        let mut t = Track::default();
        let out = feed(&mut t, &bad, 20, 20);
        assert_eq!(out.len(), 17);
        assert_eq!(t.lost, 1);
    }

    #[test]
    fn periodic_grid() {
        let mut t = Track {
            periodic: true,
            ..Track::default()
        };
        // The first tick is 500 cycles late, tick 3 is 2.5 periods late and ticks 4 and 5
        // (re-injected right after it) come 2 and 1 period late; the interval method would
        // read 0 for both.
        let s = [500, 10_000, 20_000, 55_000, 56_000, 57_000, 60_000, 70_010];
        assert_eq!(
            feed(&mut t, &s, 8, 8),
            vec![0, 0, 25_000, 16_000, 7_000, 0, 10]
        );
        // The minimum leaves the window: a grid that drifts late by 1 cycle a tick reads
        // at most GRID_TICKS cycles late.
        let mut t = Track {
            periodic: true,
            ..Track::default()
        };
        let n = 400;
        let s: Vec<u64> = (0..n).map(|k| k * (P + 1)).collect();
        let out = feed(&mut t, &s, n, n);
        assert_eq!(out.len() as u64, n - 1);
        assert!(out.iter().all(|&l| l < GRID_TICKS));
        assert_eq!(*out.last().unwrap(), GRID_TICKS - 1);
    }

    #[test]
    fn microseconds() {
        assert_eq!(cycles_us(2_000_000, 2_000_000), 1000.0);
        assert_eq!(cycles_us(3000, 3_000_000), 1.0);
    }
}
