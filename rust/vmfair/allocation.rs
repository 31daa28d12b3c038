// SPDX-License-Identifier: GPL-2.0

//! Reservations, limits and the load monitor: the arithmetic behind them.
//!
//! Like [`crate::policy`], this file uses `core` only and is compiled both into the module and
//! into the host crate `vmfair-policy`, so `cargo test` and KUnit check the same code.
//!
//! - CPU amounts of the interface (`vm/<pid>/reservation`, `vm/<pid>/limit`,
//!   `reservation_headroom`) are hundredths of a CPU ([`Centi`]), written and read with at most
//!   two decimals.
//! - Admission control: the reservations of all VMs together may not exceed the online CPUs
//!   minus the headroom ([`admit`]).
//! - A limit becomes a CFS bandwidth quota per [`LIMIT_PERIOD_US`] ([`limit_quota_us`]).
//! - The load monitor keeps, per VM, CPU used and ready time (runnable, not running) over a
//!   short and a long window ([`Load`]); used plus ready is the VM's demand.
//! - [`allocation_shares`] turns the allocation of [`crate::policy::allocate_ucpu`] into group
//!   shares, so that the fair scheduler hands each VM its allocation.

use crate::policy::{
    mul_div, parse_u32, trim, Claim, Level, ParseError, MAX_SHARES, MIN_SHARES, UCPU,
};
use core::fmt;

/// Hundredths of a CPU in a CPU.
pub const CENTI: u32 = 100;
/// Largest amount the interface takes: 10000 CPUs.
pub const CENTI_MAX: u32 = 10_000 * CENTI;

/// A CPU amount in hundredths of a CPU; shown with two decimals (`1.25`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Centi(pub u32);

impl Centi {
    /// The amount in micro-CPUs.
    pub const fn ucpu(self) -> u64 {
        self.0 as u64 * (UCPU / CENTI as u64)
    }
}

impl fmt::Display for Centi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / CENTI, self.0 % CENTI)
    }
}

/// Parses a CPU amount: digits, optionally a point and one or two more digits (`2`, `0.5`,
/// `1.25`), blanks around allowed, at most [`CENTI_MAX`]. Signs, a bare point, a third decimal
/// and anything else are refused.
pub fn parse_centi(s: &[u8]) -> Result<Centi, ParseError> {
    let s = trim(s);
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &b""[..]),
    };
    let has_point = int.len() != s.len();
    if int.is_empty() || (has_point && frac.is_empty()) || frac.len() > 2 {
        return Err(ParseError::Malformed);
    }
    // Digits only: parse_u32() would also take blanks around them (`1 .5`).
    if !int.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Malformed);
    }
    let v = parse_u32(int)?;
    let mut hundredths = 0;
    for (i, &b) in frac.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(ParseError::Malformed);
        }
        hundredths += u32::from(b - b'0') * if i == 0 { 10 } else { 1 };
    }
    let c = v
        .checked_mul(CENTI)
        .and_then(|v| v.checked_add(hundredths))
        .ok_or(ParseError::Overflow)?;
    if c > CENTI_MAX {
        return Err(ParseError::OutOfRange);
    }
    Ok(Centi(c))
}

/// Why a reservation or limit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmitError {
    /// The reservations would exceed what may be reserved (`-ENOSPC`).
    NoRoom,
    /// A reservation above the VM's own limit (`-EINVAL`).
    AboveLimit,
}

/// What may be reserved in all: `cpus` online CPUs minus `headroom`, never below 0.
pub const fn capacity(cpus: u32, headroom: Centi) -> Centi {
    Centi((cpus.saturating_mul(CENTI)).saturating_sub(headroom.0))
}

/// Checks that one VM may have `reservation` and `limit` (0: none) while the other VMs reserve
/// `others` in all and `capacity` may be reserved.
pub const fn admit(
    reservation: Centi,
    limit: Centi,
    others: u64,
    capacity: Centi,
) -> Result<(), AdmitError> {
    if limit.0 != 0 && reservation.0 > limit.0 {
        return Err(AdmitError::AboveLimit);
    }
    if reservation.0 != 0 && others + reservation.0 as u64 > capacity.0 as u64 {
        return Err(AdmitError::NoRoom);
    }
    Ok(())
}

/// Period of the CFS bandwidth that enforces limits, in microseconds (cgroup v2's default).
pub const LIMIT_PERIOD_US: u64 = 100_000;

/// The bandwidth quota of a limit per [`LIMIT_PERIOD_US`], in microseconds; 0 for none.
pub const fn limit_quota_us(limit: Centi) -> u64 {
    limit.0 as u64 * (LIMIT_PERIOD_US / CENTI as u64)
}

/// Length of the monitor's short window, in nanoseconds.
pub const SHORT_WINDOW_NS: u64 = 1_000_000_000;
/// Length of the monitor's long window, in nanoseconds.
pub const LONG_WINDOW_NS: u64 = 10_000_000_000;
/// Length of the window the precision loop reads what a VM used over, in nanoseconds: two
/// monitor passes, so that a correction shows within a pass or two instead of the second the
/// short window takes (a correction integrated from a lagging average overshoots).
pub const FAST_WINDOW_NS: u64 = 200_000_000;

/// One reading of a VM's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// When, in nanoseconds of a monotonic clock.
    pub t_ns: u64,
    /// CPU time of all its threads so far.
    pub cpu_ns: u64,
    /// Run-queue wait of its live threads so far.
    pub wait_ns: u64,
}

/// A VM's load over the two windows, in micro-CPUs: exponentially weighted moving averages
/// of the CPU it used and of its ready time (runnable but waiting), fed by [`Load::update`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    last: Option<Reading>,
    /// CPU used, short window.
    pub used_short: u64,
    /// Ready time, short window.
    pub ready_short: u64,
    /// CPU used, long window.
    pub used_long: u64,
    /// Ready time, long window.
    pub ready_long: u64,
    /// CPU used over [`FAST_WINDOW_NS`], restarted with the short window.
    pub used_fast: u64,
    /// Readings averaged so far.
    pub samples: u64,
    /// The next interval is left out of the short window, which then starts again
    /// ([`Load::restart_short`]).
    restart: bool,
    /// Nanoseconds the short window has averaged since it (re)started, at most
    /// [`SHORT_WINDOW_NS`]: until it spans the window, it is the plain mean of its intervals.
    span: u64,
}

/// `avg` moved towards `x` by `dt / window` (all of the way for `dt >= window`).
fn ewma(avg: u64, x: u64, dt: u64, window: u64) -> u64 {
    if dt >= window {
        return x;
    }
    // No 128-bit division: the module cannot link it.
    if x >= avg {
        avg + mul_div(x - avg, dt, window)
    } else {
        avg - mul_div(avg - x, dt, window)
    }
}

impl Load {
    /// Takes a new reading. The first only sets the base; so does one whose clock did not
    /// advance. Counters that went backwards (a thread's wait leaves with the thread) count as
    /// no change for that interval. The first interval sets the averages outright; the short
    /// window then averages its intervals alike until it spans [`SHORT_WINDOW_NS`], and moves
    /// as an exponential average from then on; the fast one does the same with
    /// [`FAST_WINDOW_NS`].
    pub fn update(&mut self, r: Reading) {
        let Some(last) = self.last.replace(r) else {
            return;
        };
        let dt = r.t_ns.saturating_sub(last.t_ns);
        if dt == 0 {
            self.last = Some(last);
            return;
        }
        let rate = |now: u64, then: u64| mul_div(now.saturating_sub(then), UCPU, dt);
        let used = rate(r.cpu_ns, last.cpu_ns);
        let ready = rate(r.wait_ns, last.wait_ns);
        if self.samples == 0 {
            (self.used_short, self.ready_short) = (used, ready);
            (self.used_long, self.ready_long) = (used, ready);
            self.used_fast = used;
            self.span = dt.min(SHORT_WINDOW_NS);
        } else {
            if self.restart {
                // The interval the change fell in: neither the old regime nor the new one.
                self.restart = false;
                self.span = 0;
            } else {
                // With `span` the window so far, `ewma` is the running mean of its intervals.
                self.span = (self.span + dt).min(SHORT_WINDOW_NS);
                self.used_short = ewma(self.used_short, used, dt, self.span);
                self.ready_short = ewma(self.ready_short, ready, dt, self.span);
                let fast = self.span.min(FAST_WINDOW_NS);
                self.used_fast = ewma(self.used_fast, used, dt, fast);
            }
            self.used_long = ewma(self.used_long, used, dt, LONG_WINDOW_NS);
            self.ready_long = ewma(self.ready_long, ready, dt, LONG_WINDOW_NS);
        }
        self.samples += 1;
    }

    /// Makes the short window start again after the next interval, forgetting what came
    /// before, so that it shows a change within a few intervals instead of over a second (the
    /// long window goes on). The next interval, in which the change happened, is left out; the
    /// short averages keep their old values until the interval after it.
    pub fn restart_short(&mut self) {
        self.restart = true;
    }

    /// What the VM would use, in micro-CPUs: used plus ready over the short window, or
    /// `fallback` before the first interval.
    pub fn demand(&self, fallback: u64) -> u64 {
        if self.samples == 0 {
            fallback
        } else {
            self.used_short + self.ready_short
        }
    }
}

/// Group shares that make the fair scheduler hand out `alloc` (from
/// [`crate::policy::allocate_ucpu`] with the same `claim`s and its [`Level`]).
///
/// `base[i]` is VM `i`'s shares from its weight alone. A VM whose allocation is at or below the
/// level `λ·weight` (at the level, or capped by its demand or limit) keeps its base shares:
/// the VMs at the level then split what is left in proportion to weight, and a capped VM does
/// not use more than it needs. A VM raised above the level by its reservation gets its base
/// shares times `alloc / (λ·weight)`, which is what makes its share of the contended CPUs its
/// allocation. When every VM gets its ceiling nobody needs more than base shares; when the
/// floors fill the CPUs, shares follow the allocation. Results are clamped to the scheduler's
/// range. `out[i]` receives VM `i`'s shares for `i < min(n, out.len())`.
pub fn allocation_shares<F, A, B>(
    n: usize,
    level: Level,
    claim: F,
    alloc: A,
    base: B,
    out: &mut [u64],
) where
    F: Fn(usize) -> Claim,
    A: Fn(usize) -> u64,
    B: Fn(usize) -> u64,
{
    let n = n.min(out.len());
    let (sum_base, sum_alloc) = (0..n).fold((0u64, 0u64), |(b, a), i| {
        (b.saturating_add(base(i)), a.saturating_add(alloc(i)))
    });
    for (i, slot) in out.iter_mut().enumerate().take(n) {
        let b = base(i);
        // 128-bit products only compare; divisions stay 64-bit (the module cannot link 128-bit
        // division).
        let s = match level {
            Level::All => b,
            Level::Floors if sum_alloc == 0 => b,
            Level::Floors => mul_div(alloc(i), sum_base, sum_alloc),
            Level::At { remaining, total } => {
                let w = claim(i).weight;
                // λ·w = remaining·w/total; alloc > λ·w  <=>  alloc·total > remaining·w.
                let a = alloc(i);
                let above =
                    u128::from(a) * u128::from(total) > u128::from(remaining) * u128::from(w);
                if w == 0 || remaining == 0 || !above {
                    b
                } else {
                    mul_div(b.saturating_mul(a), total, remaining.saturating_mul(w))
                }
            }
        };
        *slot = s.clamp(MIN_SHARES, MAX_SHARES);
    }
}

/// The precision loop's correction of a VM's shares, in units of 1/`CORRECTION_ONE`.
pub const CORRECTION_ONE: u64 = 1024;
/// The smallest correction: an eighth of the shares.
pub const CORRECTION_MIN: u64 = CORRECTION_ONE / 8;
/// The largest correction: eight times the shares.
pub const CORRECTION_MAX: u64 = CORRECTION_ONE * 8;
/// In a settled regime, the correction moves per monitor pass by 1/`CORRECTION_GAIN_DIV` of
/// the relative error: with passes every 100 ms and the 200 ms fast window, an error is worked
/// off over about a second, and what one pass mismeasures moves the shares by little.
pub const CORRECTION_GAIN_DIV: u64 = 8;
/// Passes at the start of a regime in which the precision loop takes larger steps
/// ([`correction_gain_div`]).
pub const CORRECTION_BOOST: u32 = 10;

/// The divisor of the relative error for the precision loop's pass `step` of a regime (0 for
/// the first pass after [`CORRECTION_HOLD`]): 2, 3, then 4 until [`CORRECTION_BOOST`] passes
/// have gone, [`CORRECTION_GAIN_DIV`] from then on. A new regime starts from a correction of
/// one, which can be tens of percent off where more entities than CPUs share them; at an
/// eighth a pass that takes a second or two to work off, at these steps some half a second. A
/// share grows less than in proportion to the shares that give it, so the larger steps still
/// approach from one side; after them, the small gain keeps the shares steady.
pub const fn correction_gain_div(step: u32) -> u64 {
    if step >= CORRECTION_BOOST {
        CORRECTION_GAIN_DIV
    } else if step < 2 {
        step as u64 + 2
    } else {
        4
    }
}

/// One step of the precision loop (an integral controller) for a VM that the allocation gives
/// `alloc` and that used `used` (micro-CPUs, the monitor's fast window): the correction `c`
/// times `1 + (alloc - used) / (alloc * gain_div)`, the relative error taken as at most 1
/// either way, the result clamped to `CORRECTION_MIN..=CORRECTION_MAX`. A VM that is given
/// nothing keeps its correction; a `gain_div` of 0 counts as 1.
pub const fn correction_step(c: u64, alloc: u64, used: u64, gain_div: u64) -> u64 {
    if alloc == 0 {
        return c;
    }
    let c = clamp_correction(c);
    let div = alloc * if gain_div == 0 { 1 } else { gain_div };
    let next = if used <= alloc {
        c + c * (alloc - used) / div
    } else {
        let over = if used - alloc < alloc {
            used - alloc
        } else {
            alloc
        };
        c - c * over / div
    };
    clamp_correction(next)
}

/// Correction `c` of one of `n` corrected VMs whose corrections add up to `sum`, scaled so
/// that their mean is `CORRECTION_ONE` (only the ratios of shares matter; this keeps them
/// from drifting to a bound together), and clamped.
pub const fn normalised_correction(c: u64, sum: u64, n: u64) -> u64 {
    if sum == 0 || n == 0 {
        return CORRECTION_ONE;
    }
    clamp_correction(c * n * CORRECTION_ONE / sum)
}

const fn clamp_correction(c: u64) -> u64 {
    if c < CORRECTION_MIN {
        CORRECTION_MIN
    } else if c > CORRECTION_MAX {
        CORRECTION_MAX
    } else {
        c
    }
}

/// Monitor passes for which the precision loop leaves a VM alone after its allocation
/// changed: the short window restarts without the interval the change fell in, and the first
/// step reads the two intervals of the new regime after it (the fast window).
pub const CORRECTION_HOLD: u32 = 2;

/// Whether a VM's allocation moved from `prev` to `now` by more than 1/16: a new regime (a
/// weight, reservation or limit written, a VM come or gone) in which the correction learnt so
/// far no longer holds.
pub const fn regime_changed(prev: u64, now: u64) -> bool {
    prev.abs_diff(now) > prev / 16
}

/// `shares` corrected by `c`, within the scheduler's range.
pub fn corrected_shares(shares: u64, c: u64) -> u64 {
    mul_div(shares, c, CORRECTION_ONE).clamp(MIN_SHARES, MAX_SHARES)
}

/// Case tables shared by the host tests and the KUnit suites.
#[cfg(any(test, CONFIG_KUNIT))]
pub mod cases {
    use super::*;
    use crate::policy::allocate_ucpu;

    /// One CPU-amount parsing case.
    pub struct CentiCase {
        /// The bytes written.
        pub input: &'static [u8],
        /// What [`parse_centi`] must return.
        pub expect: Result<u32, ParseError>,
    }

    /// Parsing cases.
    pub const CENTI_CASES: &[CentiCase] = &[
        CentiCase {
            input: b"1.25\n",
            expect: Ok(125),
        },
        CentiCase {
            input: b" 2 ",
            expect: Ok(200),
        },
        CentiCase {
            input: b"0.5",
            expect: Ok(50),
        },
        CentiCase {
            input: b"0",
            expect: Ok(0),
        },
        CentiCase {
            input: b"0.00",
            expect: Ok(0),
        },
        CentiCase {
            input: b"10000",
            expect: Ok(CENTI_MAX),
        },
        CentiCase {
            input: b"10000.01",
            expect: Err(ParseError::OutOfRange),
        },
        CentiCase {
            input: b"1.255",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"1.",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b".5",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"-1",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"+1",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"1.2.3",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"1,5",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"1 .5",
            expect: Err(ParseError::Malformed),
        },
        CentiCase {
            input: b"99999999999",
            expect: Err(ParseError::Overflow),
        },
        CentiCase {
            input: b"\n",
            expect: Err(ParseError::Empty),
        },
    ];

    /// Runs one parsing case, and checks that what parses shows as it would be written.
    pub fn check_centi_case(c: &CentiCase) -> bool {
        let got = parse_centi(c.input).map(|v| v.0);
        if got != c.expect {
            return false;
        }
        match got {
            // Display round trip: 125 -> "1.25" -> 125.
            Ok(v) => {
                let mut buf = [0u8; 16];
                let mut w = Buf(&mut buf, 0);
                fmt::write(&mut w, format_args!("{}", Centi(v))).is_ok()
                    && parse_centi(&w.0[..w.1]) == Ok(Centi(v))
            }
            Err(_) => true,
        }
    }

    struct Buf<'a>(&'a mut [u8], usize);

    impl fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.1 + s.len();
            if end > self.0.len() {
                return Err(fmt::Error);
            }
            self.0[self.1..end].copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }

    /// Admission, quota and load-monitor checks; returns the number of the first failing one.
    pub fn check_admission_and_load() -> Result<(), u32> {
        let c = |v| Centi(v);
        let mut load = Load::default();
        let mut readings = [true; 10];
        // 0.5 CPU used, 0.25 CPU ready per interval of 100 ms.
        for k in 0..=20u64 {
            load.update(Reading {
                t_ns: k * 100_000_000,
                cpu_ns: k * 50_000_000,
                wait_ns: k * 25_000_000,
            });
        }
        readings[0] = load.used_short == UCPU / 2 && load.ready_short == UCPU / 4;
        readings[1] = load.demand(7) == 3 * UCPU / 4 && Load::default().demand(7) == 7;
        // The load stops: the short average falls faster than the long one.
        for k in 21..=30u64 {
            load.update(Reading {
                t_ns: k * 100_000_000,
                cpu_ns: 20 * 50_000_000,
                wait_ns: 20 * 25_000_000,
            });
        }
        readings[2] = load.used_short < load.used_long && load.used_long < UCPU / 2;
        // A counter that goes backwards counts as no change, not as a huge one.
        let before = load.used_short;
        load.update(Reading {
            t_ns: 31 * 100_000_000,
            cpu_ns: 0,
            wait_ns: 0,
        });
        readings[3] = load.used_short <= before;
        // A reading at the same instant changes nothing.
        let same = load;
        load.update(Reading {
            t_ns: 31 * 100_000_000,
            cpu_ns: u64::MAX / 2,
            wait_ns: 0,
        });
        readings[4] = load == same;
        readings[5] = load.samples == 31;
        // A restart: the next interval (0.8 CPU, counted from the reading at 3.1 s), in which
        // the change happened, is left out of the short window; the long one goes on. The
        // intervals after it are averaged alike: 0.4 CPU, then 0.2 (a mean of 0.3), then 0.3.
        let (short, long) = (load.used_short, load.used_long);
        load.restart_short();
        load.update(Reading {
            t_ns: 32 * 100_000_000,
            cpu_ns: 80_000_000,
            wait_ns: 0,
        });
        readings[6] = load.used_short == short && load.used_long > long;
        let mut cpu = 80_000_000;
        let mut means = [0u64; 3];
        let mut fast = [0u64; 3];
        for (k, step) in [40_000_000u64, 20_000_000, 30_000_000]
            .into_iter()
            .enumerate()
        {
            cpu += step;
            load.update(Reading {
                t_ns: (33 + k as u64) * 100_000_000,
                cpu_ns: cpu,
                wait_ns: 0,
            });
            means[k] = load.used_short;
            fast[k] = load.used_fast;
        }
        readings[7] = means == [2 * UCPU / 5, 3 * UCPU / 10, 3 * UCPU / 10] && fast == means;
        // Seven intervals of 1 CPU fill the window (a mean of 0.79); from then on the average
        // is exponential again: three more leave it at 0.847, with the old 0.3 not all gone.
        for k in 0..10u64 {
            cpu += 100_000_000;
            load.update(Reading {
                t_ns: (36 + k) * 100_000_000,
                cpu_ns: cpu,
                wait_ns: 0,
            });
        }
        readings[8] = load.used_short > 84 * UCPU / 100 && load.used_short < 85 * UCPU / 100;
        // The fast window spans two intervals: ten halvings leave 1/1024 of the 0.7 it was
        // short of 1 CPU.
        readings[9] = load.used_fast > 999 * UCPU / 1000 && load.used_fast < UCPU;
        let checks = [
            admit(c(100), c(0), 0, capacity(2, c(0))) == Ok(()),
            admit(c(100), c(0), 100, capacity(2, c(0))) == Ok(()),
            admit(c(101), c(0), 100, capacity(2, c(0))) == Err(AdmitError::NoRoom),
            admit(c(100), c(0), 100, capacity(2, c(1))) == Err(AdmitError::NoRoom),
            admit(c(0), c(0), 1000, capacity(2, c(0))) == Ok(()),
            admit(c(150), c(100), 0, capacity(4, c(0))) == Err(AdmitError::AboveLimit),
            admit(c(100), c(100), 0, capacity(4, c(0))) == Ok(()),
            capacity(2, c(300)) == c(0),
            limit_quota_us(c(150)) == 150_000,
            limit_quota_us(c(1)) == 1_000,
            limit_quota_us(c(0)) == 0,
            c(125).ucpu() == 1_250_000,
        ];
        for (i, ok) in checks.iter().chain(readings.iter()).enumerate() {
            if !ok {
                return Err(i as u32);
            }
        }
        Ok(())
    }

    /// One shares case: VMs `(weight, demand, reservation, limit)` in CPUs·100 on `cpus` CPUs,
    /// base shares `weight * 1024 / 100`, and the shares expected.
    pub struct SharesFromAllocationCase {
        /// What the case shows.
        pub name: &'static str,
        /// CPUs.
        pub cpus: u64,
        /// `(weight, demand, reservation, limit)`, amounts in hundredths of a CPU.
        pub vms: &'static [(u64, u64, u64, u64)],
        /// Expected shares.
        pub expect: &'static [u64],
    }

    /// Shares cases.
    pub const SHARES_FROM_ALLOCATION_CASES: &[SharesFromAllocationCase] = &[
        SharesFromAllocationCase {
            name: "no reservation: base shares",
            cpus: 2,
            vms: &[(100, 200, 0, 0), (100, 100, 0, 0), (300, 100, 0, 0)],
            expect: &[1024, 1024, 3072],
        },
        SharesFromAllocationCase {
            // 1.2 to A, 0.2 to each of four: A's shares 6 times the others'.
            name: "reservation 1.2 beside four busy VMs on 2 CPUs",
            cpus: 2,
            vms: &[
                (100, 200, 120, 0),
                (100, 100, 0, 0),
                (100, 100, 0, 0),
                (100, 100, 0, 0),
                (100, 100, 0, 0),
            ],
            expect: &[6144, 1024, 1024, 1024, 1024],
        },
        SharesFromAllocationCase {
            name: "a reservation below the level changes nothing",
            cpus: 2,
            vms: &[(100, 200, 50, 0), (100, 200, 0, 0)],
            expect: &[1024, 1024],
        },
        SharesFromAllocationCase {
            name: "demand below the level keeps base shares",
            cpus: 2,
            // 0.1 to the first, 1.5 to the reserved one, 0.4 (the level) to the last.
            vms: &[(100, 10, 0, 0), (100, 200, 150, 0), (100, 200, 0, 0)],
            expect: &[1024, 3840, 1024],
        },
        SharesFromAllocationCase {
            name: "everyone met: base shares",
            cpus: 4,
            vms: &[(100, 100, 100, 0), (200, 100, 0, 0)],
            expect: &[1024, 2048],
        },
        SharesFromAllocationCase {
            name: "floors fill the CPUs: shares follow the allocation",
            cpus: 2,
            vms: &[(100, 200, 150, 0), (100, 200, 50, 0), (100, 100, 0, 0)],
            expect: &[2304, 768, MIN_SHARES],
        },
    ];

    /// Runs one shares case; on a mismatch returns the index of the first wrong VM.
    pub fn check_shares_from_allocation_case(c: &SharesFromAllocationCase) -> Result<(), usize> {
        let n = c.vms.len();
        let claim = |i: usize| {
            let (w, d, r, l) = c.vms[i];
            Claim {
                weight: w,
                demand: d * (UCPU / 100),
                reservation: r * (UCPU / 100),
                limit: l * (UCPU / 100),
            }
        };
        let mut alloc = [0u64; 8];
        let level = allocate_ucpu(c.cpus * UCPU, n, claim, &mut alloc[..n]);
        let mut out = [0u64; 8];
        allocation_shares(
            n,
            level,
            claim,
            |i| alloc[i],
            |i| c.vms[i].0 * 1024 / 100,
            &mut out[..n],
        );
        match (0..n).find(|&i| out[i] != c.expect[i]) {
            Some(i) => Err(i),
            None => Ok(()),
        }
    }

    /// One precision-loop case: the correction after `steps` passes of a VM given `alloc`
    /// that uses `used` (micro-CPUs) from a correction of `from`, the first of them pass
    /// `first` of its regime.
    pub struct CorrectionCase {
        /// What the case shows.
        pub name: &'static str,
        /// Correction before the first pass.
        pub from: u64,
        /// Allocation, micro-CPUs.
        pub alloc: u64,
        /// CPU used, micro-CPUs.
        pub used: u64,
        /// The regime's pass the first step is ([`correction_gain_div`]).
        pub first: u32,
        /// Passes.
        pub steps: u32,
        /// Expected correction after them.
        pub expect: u64,
    }

    /// The precision loop's cases.
    pub const CORRECTION_CASES: &[CorrectionCase] = &[
        CorrectionCase {
            name: "on target: unchanged",
            from: CORRECTION_ONE,
            alloc: 600_000,
            used: 600_000,
            first: CORRECTION_BOOST,
            steps: 5,
            expect: CORRECTION_ONE,
        },
        CorrectionCase {
            name: "8% short: up by 1% a pass",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 460_000,
            first: CORRECTION_BOOST,
            steps: 1,
            expect: CORRECTION_ONE + 10,
        },
        CorrectionCase {
            name: "8% over: down by 1% a pass",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 540_000,
            first: CORRECTION_BOOST,
            steps: 1,
            expect: CORRECTION_ONE - 10,
        },
        CorrectionCase {
            name: "starved: up by an eighth a pass, to the bound",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 0,
            first: CORRECTION_BOOST,
            steps: 40,
            expect: CORRECTION_MAX,
        },
        CorrectionCase {
            name: "three times over counts as once: down by an eighth a pass, to the bound",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 1_500_000,
            first: CORRECTION_BOOST,
            steps: 40,
            expect: CORRECTION_MIN,
        },
        CorrectionCase {
            name: "nothing allocated: unchanged, even out of bounds",
            from: 7,
            alloc: 0,
            used: 100,
            first: CORRECTION_BOOST,
            steps: 3,
            expect: 7,
        },
        CorrectionCase {
            name: "out of bounds: clamped first",
            from: 100 * CORRECTION_ONE,
            alloc: 500_000,
            used: 500_000,
            first: CORRECTION_BOOST,
            steps: 1,
            expect: CORRECTION_MAX,
        },
        CorrectionCase {
            name: "new regime, 8% over: down by 4% at once",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 540_000,
            first: 0,
            steps: 1,
            expect: CORRECTION_ONE - 40,
        },
        CorrectionCase {
            name: "new regime, 8% short: up by a half, a third and a quarter of 8%",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 460_000,
            first: 0,
            steps: 3,
            expect: 1113,
        },
        CorrectionCase {
            name: "the boost's last pass a quarter, the next an eighth",
            from: CORRECTION_ONE,
            alloc: 500_000,
            used: 540_000,
            first: CORRECTION_BOOST - 1,
            steps: 2,
            expect: 1024 - 20 - 10,
        },
    ];

    /// Runs case `c` and the normalisation and shares checks: `Err(0)` if the case's
    /// correction is not the expected one, `Err(k)` if check `k - 1` of the others fails.
    pub fn check_correction_case(c: &CorrectionCase) -> Result<(), u32> {
        let mut v = c.from;
        for k in 0..c.steps {
            let div = correction_gain_div(c.first.saturating_add(k));
            v = correction_step(v, c.alloc, c.used, div);
        }
        let norm = [
            normalised_correction(1536, 3072, 2) == 1024,
            normalised_correction(512, 1536, 3) == 1024,
            normalised_correction(2048, 2048, 2) == 2048,
            normalised_correction(100_000, 1, 1) == CORRECTION_MAX,
            normalised_correction(5, 0, 0) == CORRECTION_ONE,
            corrected_shares(1024, 1536) == 1536,
            corrected_shares(MAX_SHARES, CORRECTION_MAX) == MAX_SHARES,
            corrected_shares(MIN_SHARES, CORRECTION_MIN) == MIN_SHARES,
            !regime_changed(600_000, 637_500),
            regime_changed(600_000, 637_501),
            regime_changed(600_000, 562_499),
            regime_changed(0, 1),
            !regime_changed(0, 0),
            correction_gain_div(0) == 2,
            correction_gain_div(1) == 3,
            correction_gain_div(2) == 4,
            correction_gain_div(CORRECTION_BOOST - 1) == 4,
            correction_gain_div(CORRECTION_BOOST) == CORRECTION_GAIN_DIV,
            correction_gain_div(u32::MAX) == CORRECTION_GAIN_DIV,
            correction_step(1024, 500_000, 400_000, 0) == 1228,
        ];
        if v != c.expect {
            return Err(0);
        }
        match norm.iter().position(|&ok| !ok) {
            Some(k) => Err(k as u32 + 1),
            None => Ok(()),
        }
    }
}
