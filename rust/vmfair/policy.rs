// SPDX-License-Identifier: GPL-2.0

//! vmfair policy: the pure arithmetic behind the module.
//!
//! Nothing here touches the kernel: this file uses `core` only, so that the same code is compiled
//! into the `vmfair` module (and checked there by KUnit) and into the host crate `vmfair-policy`
//! (checked by `cargo test`, and used by the test pipeline to compute the CPU share each VM is
//! entitled to when it judges a scenario).
//!
//! The kernel forbids floating point, so every quantity is an integer: weights are on the cgroup v2
//! `cpu.weight` scale (1..=10000, default 100) and CPU amounts are counted in micro-CPUs
//! ([`UCPU`] of them make one CPU).
//!
//! Test cases live in tables ([`ENTITLEMENT_CASES`], [`WEIGHT_PARSE_CASES`], ...) with one checking
//! function each, so that the host tests and the KUnit suites run the very same cases.

/// Smallest weight a VM can have (cgroup v2 `cpu.weight` scale).
pub const WEIGHT_MIN: u32 = 1;
/// Largest weight a VM can have (cgroup v2 `cpu.weight` scale).
pub const WEIGHT_MAX: u32 = 10000;
/// Weight of a VM nobody configured, and of a nice-0 task on the same scale.
pub const WEIGHT_DEFAULT: u32 = 100;

/// Scheduler load weight of a nice-0 entity (`NICE_0_LOAD` without the fixed-point shift).
pub const NICE_0_SHARES: u64 = 1024;
/// Smallest task group shares the scheduler accepts (`MIN_SHARES`).
pub const MIN_SHARES: u64 = 2;
/// Largest task group shares the scheduler accepts (`MAX_SHARES`).
pub const MAX_SHARES: u64 = 1 << 18;

/// Micro-CPUs per CPU: the fixed-point unit of every CPU amount in this file.
pub const UCPU: u64 = 1_000_000;

/// Largest `vcpu_slice_us` accepted: the kernel clamps a task's slice to 0.1..100 ms.
pub const SLICE_US_MAX: u32 = 100_000;
/// Smallest non-zero `vcpu_slice_us` accepted (0 means "kernel default").
pub const SLICE_US_MIN: u32 = 100;

/// How a VM's weight turns into its share of the CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareMode {
    /// One share per VM, whatever its number of vCPUs (the default).
    PerVm,
    /// A share proportional to the VM's vCPU count (ESXi style): a 4-vCPU VM weighs four times
    /// as much as a 1-vCPU VM of the same weight.
    PerVcpu,
}

impl ShareMode {
    /// The value of the `share_mode` sysctl for this mode.
    pub const fn as_sysctl(self) -> u32 {
        match self {
            ShareMode::PerVm => 0,
            ShareMode::PerVcpu => 1,
        }
    }

    /// The mode for a value of the `share_mode` sysctl, `None` if out of range.
    pub const fn from_sysctl(v: u32) -> Option<ShareMode> {
        match v {
            0 => Some(ShareMode::PerVm),
            1 => Some(ShareMode::PerVcpu),
            _ => None,
        }
    }

    /// The name of the mode, as written to or read from the interface.
    pub const fn name(self) -> &'static str {
        match self {
            ShareMode::PerVm => "vm",
            ShareMode::PerVcpu => "vcpu",
        }
    }
}

/// Why an input was rejected. Every variant maps to `-EINVAL` at the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but white space.
    Empty,
    /// A character that is not a decimal digit (signs included), or junk after the number.
    Malformed,
    /// More digits than a `u32` holds.
    Overflow,
    /// A well-formed number outside the accepted range.
    OutOfRange,
}

const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n')
}

/// Strips leading and trailing blanks (space, tab, newline) as `echo` and `sysctl -w` leave them.
pub fn trim(s: &[u8]) -> &[u8] {
    let mut start = 0;
    let mut end = s.len();
    while start < end && is_space(s[start]) {
        start += 1;
    }
    while end > start && is_space(s[end - 1]) {
        end -= 1;
    }
    &s[start..end]
}

/// Parses an unsigned decimal number, blanks around it allowed, nothing else.
pub fn parse_u32(s: &[u8]) -> Result<u32, ParseError> {
    let s = trim(s);
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(ParseError::Malformed);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(b - b'0')))
            .ok_or(ParseError::Overflow)?;
    }
    Ok(v)
}

/// Checks a weight against [`WEIGHT_MIN`]..=[`WEIGHT_MAX`].
pub const fn validate_weight(w: u32) -> Result<u32, ParseError> {
    if w < WEIGHT_MIN || w > WEIGHT_MAX {
        Err(ParseError::OutOfRange)
    } else {
        Ok(w)
    }
}

/// Parses a weight as written to a per-VM `weight` file.
pub fn parse_weight(s: &[u8]) -> Result<u32, ParseError> {
    validate_weight(parse_u32(s)?)
}

/// Largest process id the kernel hands out (`PID_MAX_LIMIT` on 64-bit).
pub const PID_MAX: u32 = 4 * 1024 * 1024;

/// Parses `PID WEIGHT` as written to the `vm_weight` file: a process id in 1..=[`PID_MAX`] and
/// a weight (see [`parse_weight`]), separated by blanks, blanks around allowed, nothing else.
pub fn parse_pid_weight(s: &[u8]) -> Result<(u32, u32), ParseError> {
    let s = trim(s);
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let split = s
        .iter()
        .position(|&b| is_space(b))
        .ok_or(ParseError::Malformed)?;
    let (pid, weight) = s.split_at(split);
    let pid = parse_u32(pid)?;
    if pid == 0 || pid > PID_MAX {
        return Err(ParseError::OutOfRange);
    }
    Ok((pid, parse_weight(weight)?))
}

/// Parses a share mode: `vm`/`0` or `vcpu`/`1`.
pub fn parse_share_mode(s: &[u8]) -> Result<ShareMode, ParseError> {
    match trim(s) {
        b"" => Err(ParseError::Empty),
        b"vm" | b"0" => Ok(ShareMode::PerVm),
        b"vcpu" | b"1" => Ok(ShareMode::PerVcpu),
        _ => Err(ParseError::Malformed),
    }
}

/// Checks a `vcpu_slice_us` value: 0 (kernel default) or [`SLICE_US_MIN`]..=[`SLICE_US_MAX`].
pub const fn validate_slice_us(us: u32) -> Result<u32, ParseError> {
    if us == 0 || (us >= SLICE_US_MIN && us <= SLICE_US_MAX) {
        Ok(us)
    } else {
        Err(ParseError::OutOfRange)
    }
}

/// The weight a VM competes with under `mode`: its own weight, times its vCPU count in
/// [`ShareMode::PerVcpu`] mode (at least one vCPU is counted, so a VM whose vCPUs have not run
/// yet still has a weight).
pub fn effective_weight(mode: ShareMode, weight: u32, vcpus: u32) -> u64 {
    match mode {
        ShareMode::PerVm => u64::from(weight),
        ShareMode::PerVcpu => u64::from(weight) * u64::from(vcpus.max(1)),
    }
}

/// Converts a weight on the `cpu.weight` scale to scheduler shares (nice-0 = 1024), rounding to
/// the closest as cgroup v2 does, and clamping to [`MIN_SHARES`]..=[`MAX_SHARES`].
pub fn weight_to_shares(weight: u64) -> u64 {
    let shares = weight.saturating_mul(NICE_0_SHARES).saturating_add(50) / 100;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// The group shares of a VM: [`effective_weight`] turned into [`weight_to_shares`].
pub fn vm_shares(mode: ShareMode, weight: u32, vcpus: u32) -> u64 {
    weight_to_shares(effective_weight(mode, weight, vcpus))
}

/// Storage for the result of [`entitlement_ucpu`]: one micro-CPU amount per VM.
///
/// Implemented for `[u64]`; the host crate implements it for `[f64]` so that its floating point
/// API needs no allocation.
pub trait ShareSlots {
    /// Number of slots.
    fn slots(&self) -> usize;
    /// Reads slot `i`.
    fn load(&self, i: usize) -> u64;
    /// Writes slot `i`.
    fn store(&mut self, i: usize, v: u64);
}

impl ShareSlots for [u64] {
    fn slots(&self) -> usize {
        self.len()
    }
    fn load(&self, i: usize) -> u64 {
        self[i]
    }
    fn store(&mut self, i: usize, v: u64) {
        self[i] = v;
    }
}

/// Marks a slot whose share is not settled yet (exact as a `f64`, far above any real share).
const UNSETTLED: u64 = 1 << 62;

/// `a * b / c` without overflow for the magnitudes met here (`c > 0`).
pub(crate) fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(p) => p / c,
        None => (a / c)
            .saturating_mul(b)
            .saturating_add((a % c).saturating_mul(b) / c),
    }
}

/// Weighted max-min fair entitlement of `cpus_ucpu` micro-CPUs among VMs.
///
/// `vms[i]` is `(weight, busy_threads)`: VM `i` weighs `weight` (already the effective weight,
/// see [`effective_weight`]) and can use at most `busy_threads` CPUs. The result in `out[i]` is the
/// VM's entitlement in micro-CPUs: CPU is handed out in proportion to weight, a VM never gets more
/// than it can use, and what a capped VM cannot use goes to the others, again by weight ("water
/// filling"). A VM with no weight or no busy thread gets nothing. If the caps add up to less than
/// `cpus_ucpu`, every VM gets its cap and the rest stays idle.
///
/// This is [`allocate_ucpu`] without reservations and limits. Rounding is downwards, so the
/// shares add up to at most `cpus_ucpu`. Allocation-free; `O(n^2)` in the worst case. Only the
/// first `min(vms.len(), out.slots())` VMs are considered.
pub fn entitlement_ucpu<S: ShareSlots + ?Sized>(cpus_ucpu: u64, vms: &[(u64, u32)], out: &mut S) {
    let n = vms.len().min(out.slots());
    let _ = allocate_ucpu(
        cpus_ucpu,
        n,
        |i| Claim {
            weight: vms[i].0,
            demand: u64::from(vms[i].1).saturating_mul(UCPU),
            reservation: 0,
            limit: 0,
        },
        out,
    );
}

/// One VM's claim on the CPUs, for [`allocate_ucpu`]. CPU amounts are in micro-CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// Weight it competes with (see [`effective_weight`]); 0 gets only the reservation.
    pub weight: u64,
    /// What it can use: busy threads times [`UCPU`], or its measured demand.
    pub demand: u64,
    /// Guaranteed minimum while it demands that much; 0 for none.
    pub reservation: u64,
    /// Maximum; 0 for none.
    pub limit: u64,
}

impl Claim {
    /// `D = min(demand, limit)`: the most the VM gets; for weight 0, `min(reservation, D)`.
    pub const fn ceiling(&self) -> u64 {
        let d = if self.limit != 0 && self.limit < self.demand {
            self.limit
        } else {
            self.demand
        };
        if self.weight == 0 && self.reservation < d {
            self.reservation
        } else {
            d
        }
    }

    /// `min(reservation, D)`: the least the VM gets (when the reservations fit the CPUs).
    pub const fn floor(&self) -> u64 {
        let d = self.ceiling();
        if self.reservation < d {
            self.reservation
        } else {
            d
        }
    }
}

/// Where [`allocate_ucpu`] settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Every VM got its ceiling: nothing was contended.
    All,
    /// The floors alone filled the CPUs and were scaled down.
    Floors,
    /// The VMs between floor and ceiling got `λ·weight` with `λ = remaining / total`
    /// micro-CPUs per unit of weight.
    At {
        /// Micro-CPUs shared at the level.
        remaining: u64,
        /// Weight that shared them.
        total: u64,
    },
}

/// Weighted max-min allocation of `cpus_ucpu` micro-CPUs with floors and caps.
///
/// VM `i` (of `n`, described by `claim(i)`) gets `clamp(λ·weight, floor, ceiling)` (see
/// [`Claim::floor`] and [`Claim::ceiling`]), with one `λ` for all, chosen so that the allocations
/// add up to `cpus_ucpu`, or every VM gets its ceiling if the ceilings add up to less. This is the
/// share model of ESXi and Hyper-V (shares, reservation, limit), with the cap at what a VM can
/// use. If the floors alone exceed `cpus_ucpu` (admission control should prevent it), every VM
/// gets its floor scaled down in proportion.
///
/// Found by settling VMs in rounds: at the level `λ` that shares the unsettled CPU by weight,
/// the VMs above their ceiling give back more than those below their floor need, or less. In the
/// first case the true level is higher and the VMs at their ceiling stay there; in the second it
/// is lower and those at their floor stay there. Each round settles at least one VM, so it is
/// `O(n^2)`, allocation-free, and exact up to downward rounding of the last round (the result
/// adds up to at most `cpus_ucpu`). `out` is used as scratch; only `min(n, out.slots())` VMs are
/// considered. Returns where it settled, for [`crate::allocation::allocation_shares`].
pub fn allocate_ucpu<S, F>(cpus_ucpu: u64, n: usize, claim: F, out: &mut S) -> Level
where
    S: ShareSlots + ?Sized,
    F: Fn(usize) -> Claim,
{
    let n = n.min(out.slots());
    let (mut floors, mut ceilings) = (0u64, 0u64);
    for i in 0..n {
        let c = claim(i);
        floors = floors.saturating_add(c.floor());
        ceilings = ceilings.saturating_add(c.ceiling());
    }
    if floors >= cpus_ucpu {
        for i in 0..n {
            let f = claim(i).floor();
            out.store(
                i,
                if floors == 0 {
                    0
                } else {
                    mul_div(f, cpus_ucpu, floors)
                },
            );
        }
        return Level::Floors;
    }
    if ceilings <= cpus_ucpu {
        for i in 0..n {
            out.store(i, claim(i).ceiling());
        }
        return Level::All;
    }
    let mut remaining = cpus_ucpu;
    for i in 0..n {
        let c = claim(i);
        if c.weight == 0 || c.floor() == c.ceiling() {
            out.store(i, c.floor());
            remaining = remaining.saturating_sub(c.floor());
        } else {
            out.store(i, UNSETTLED);
        }
    }
    loop {
        let mut total: u64 = 0;
        for i in 0..n {
            if out.load(i) == UNSETTLED {
                total = total.saturating_add(claim(i).weight);
            }
        }
        if total == 0 {
            // Everyone settled at a floor or a ceiling.
            return Level::All;
        }
        // At the level remaining/total, VM i's share is remaining*w/total. Amounts compared in
        // units of 1/total micro-CPU, so that no division rounds.
        let (r, t) = (u128::from(remaining), u128::from(total));
        let (mut over, mut under) = (0u128, 0u128);
        for i in 0..n {
            if out.load(i) != UNSETTLED {
                continue;
            }
            let c = claim(i);
            let share = r * u128::from(c.weight);
            let (lo, hi) = (u128::from(c.floor()) * t, u128::from(c.ceiling()) * t);
            if share > hi {
                over += share - hi;
            } else if share < lo {
                under += lo - share;
            }
        }
        if over == 0 && under == 0 {
            for i in 0..n {
                if out.load(i) == UNSETTLED {
                    out.store(i, mul_div(remaining, claim(i).weight, total));
                }
            }
            return Level::At { remaining, total };
        }
        let cap = over >= under;
        for i in 0..n {
            if out.load(i) != UNSETTLED {
                continue;
            }
            let c = claim(i);
            let share = r * u128::from(c.weight);
            let settle = if cap {
                (share > u128::from(c.ceiling()) * t).then(|| c.ceiling())
            } else {
                (share < u128::from(c.floor()) * t).then(|| c.floor())
            };
            if let Some(v) = settle {
                out.store(i, v);
                remaining = remaining.saturating_sub(v);
            }
        }
    }
}

/// Case tables and their checks, walked by the host crate's `cargo test` and by the module's
/// KUnit suites: one set of cases for both.
#[cfg(any(test, CONFIG_KUNIT))]
pub mod cases {
    use super::*;

    /// One entitlement test case: `cpus` CPUs (in micro-CPUs) among `vms`, expected `expect`.
    pub struct EntitlementCase {
        /// What the case shows.
        pub name: &'static str,
        /// CPUs to share, in micro-CPUs.
        pub cpus_ucpu: u64,
        /// `(effective weight, busy threads)` per VM.
        pub vms: &'static [(u64, u32)],
        /// Expected entitlement per VM, in micro-CPUs (exact: the cases avoid rounding).
        pub expect: &'static [u64],
    }

    const U: u64 = UCPU;

    /// Cases shared by the host tests and the KUnit suite. The first ones are the acceptance points
    /// of issue 3 (two guest CPUs).
    pub const ENTITLEMENT_CASES: &[EntitlementCase] = &[
        EntitlementCase {
            name: "1 busy vCPU beside 4 busy vCPUs, equal weights",
            cpus_ucpu: 2 * U,
            vms: &[(100, 1), (100, 4)],
            expect: &[U, U],
        },
        EntitlementCase {
            name: "1, 2, 4 and 8 busy vCPUs, equal weights",
            cpus_ucpu: 2 * U,
            vms: &[(100, 1), (100, 2), (100, 4), (100, 8)],
            expect: &[U / 2, U / 2, U / 2, U / 2],
        },
        EntitlementCase {
            name: "weights 100 and 300, 2 busy vCPUs each",
            cpus_ucpu: 2 * U,
            vms: &[(100, 2), (300, 2)],
            expect: &[U / 2, 3 * U / 2],
        },
        EntitlementCase {
            name: "1 vCPU + 3 I/O threads count as one VM",
            cpus_ucpu: 2 * U,
            vms: &[(100, 4), (100, 1)],
            expect: &[U, U],
        },
        EntitlementCase {
            name: "capped VM leaves its rest to the others by weight",
            cpus_ucpu: 4 * U,
            vms: &[(300, 1), (100, 8), (300, 8)],
            expect: &[U, 3 * U / 4, 9 * U / 4],
        },
        EntitlementCase {
            name: "caps below capacity: everyone gets its cap",
            cpus_ucpu: 8 * U,
            vms: &[(100, 1), (10000, 2)],
            expect: &[U, 2 * U],
        },
        EntitlementCase {
            name: "idle or weightless VMs get nothing",
            cpus_ucpu: 2 * U,
            vms: &[(100, 0), (0, 4), (100, 4)],
            expect: &[0, 0, 2 * U],
        },
        EntitlementCase {
            name: "heavy weight capped at one CPU",
            cpus_ucpu: 2 * U,
            vms: &[(10000, 1), (1, 4)],
            expect: &[U, U],
        },
        EntitlementCase {
            name: "per-vCPU mode weights (100 x 1, 100 x 3)",
            cpus_ucpu: 2 * U,
            vms: &[(100, 1), (300, 3)],
            expect: &[U / 2, 3 * U / 2],
        },
        EntitlementCase {
            name: "no VMs",
            cpus_ucpu: 2 * U,
            vms: &[],
            expect: &[],
        },
    ];

    /// Runs one case; on a mismatch returns the index of the first wrong VM.
    pub fn check_entitlement_case(c: &EntitlementCase) -> Result<(), usize> {
        let mut out = [0u64; 8];
        let out = &mut out[..c.vms.len()];
        entitlement_ucpu(c.cpus_ucpu, c.vms, out);
        let mut sum = 0u64;
        for (i, (&got, &want)) in out.iter().zip(c.expect).enumerate() {
            if got != want {
                return Err(i);
            }
            sum += got;
        }
        if sum > c.cpus_ucpu {
            return Err(c.vms.len());
        }
        Ok(())
    }

    /// One allocation test case: `cpus_ucpu` among `vms`, expected `expect` (exact).
    pub struct AllocationCase {
        /// What the case shows.
        pub name: &'static str,
        /// CPUs to share, in micro-CPUs.
        pub cpus_ucpu: u64,
        /// The claims.
        pub vms: &'static [Claim],
        /// Expected allocation per VM, in micro-CPUs.
        pub expect: &'static [u64],
    }

    /// A claim of `weight`, `demand` CPUs, `reservation` and `limit` (micro-CPUs).
    const fn c(weight: u64, demand: u64, reservation: u64, limit: u64) -> Claim {
        Claim {
            weight,
            demand,
            reservation,
            limit,
        }
    }

    const BUSY1: Claim = c(100, U, 0, 0);

    /// Reservations, limits and both, with the numbers the design note and the issue use.
    pub const ALLOCATION_CASES: &[AllocationCase] = &[
        AllocationCase {
            name: "reservation 0.8 beside 16 busy VMs on 2 CPUs",
            cpus_ucpu: 2 * U,
            vms: &[
                c(100, U, 800_000, 0),
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
                BUSY1,
            ],
            expect: &[
                800_000, 75_000, 75_000, 75_000, 75_000, 75_000, 75_000, 75_000, 75_000, 75_000,
                75_000, 75_000, 75_000, 75_000, 75_000, 75_000, 75_000,
            ],
        },
        AllocationCase {
            name: "a reservation below the fair share changes nothing",
            cpus_ucpu: 2 * U,
            vms: &[c(100, 2 * U, 500_000, 0), c(100, 2 * U, 0, 0)],
            expect: &[U, U],
        },
        AllocationCase {
            name: "a reservation above the demand is met by the demand",
            cpus_ucpu: 2 * U,
            vms: &[c(100, 500_000, U, 0), c(100, 4 * U, 0, 0)],
            expect: &[500_000, 1_500_000],
        },
        AllocationCase {
            name: "limit 0.3 on a busy 2-vCPU VM beside a busy 1-vCPU VM",
            cpus_ucpu: 2 * U,
            vms: &[c(100, 2 * U, 0, 300_000), BUSY1],
            expect: &[300_000, U],
        },
        AllocationCase {
            name: "limit 0.3 beside three busy VMs: the rest goes to them",
            cpus_ucpu: 2 * U,
            vms: &[c(100, 2 * U, 0, 300_000), BUSY1, BUSY1, BUSY1],
            expect: &[300_000, 566_666, 566_666, 566_666],
        },
        AllocationCase {
            name: "weights 100 and 300, reservation 0.6 on the light one",
            cpus_ucpu: 2 * U,
            vms: &[c(100, 2 * U, 600_000, 0), c(300, 2 * U, 0, 0)],
            expect: &[600_000, 1_400_000],
        },
        AllocationCase {
            name: "reservation, limit and weight together",
            cpus_ucpu: 4 * U,
            vms: &[
                c(100, 4 * U, 1_500_000, 0),
                c(200, 4 * U, 0, 800_000),
                c(100, 4 * U, 0, 0),
                c(100, 4 * U, 0, 0),
            ],
            // Without floor and cap: 0.8, 1.6, 0.8, 0.8. The limit gives back 0.8; the
            // reservation takes 0.7 of it; the two free VMs share 1.7.
            expect: &[1_500_000, 800_000, 850_000, 850_000],
        },
        AllocationCase {
            name: "floors above the CPUs are scaled down",
            cpus_ucpu: 2 * U,
            vms: &[c(100, 2 * U, 1_500_000, 0), c(100, 2 * U, 1_500_000, 0)],
            expect: &[U, U],
        },
        AllocationCase {
            name: "weight 0 gets its reservation only, even with CPU to spare",
            cpus_ucpu: 4 * U,
            vms: &[c(0, 2 * U, 250_000, 0), BUSY1],
            expect: &[250_000, U],
        },
        AllocationCase {
            name: "ceilings below the CPUs: every VM gets its ceiling",
            cpus_ucpu: 4 * U,
            vms: &[c(100, 2 * U, 0, 500_000), c(100, 700_000, 0, 0)],
            expect: &[500_000, 700_000],
        },
    ];

    /// Runs one allocation case; on a mismatch returns the index of the first wrong VM.
    pub fn check_allocation_case(c: &AllocationCase) -> Result<(), usize> {
        let mut out = [0u64; 20];
        let out = &mut out[..c.vms.len()];
        allocate_ucpu(c.cpus_ucpu, c.vms.len(), |i| c.vms[i], out);
        let mut sum = 0u64;
        for (i, (&got, &want)) in out.iter().zip(c.expect).enumerate() {
            if got != want {
                return Err(i);
            }
            sum += got;
        }
        if sum > c.cpus_ucpu || c.expect.len() != c.vms.len() {
            return Err(c.vms.len());
        }
        Ok(())
    }

    /// One parsing test case: `input` to [`parse_weight`] and what it must return.
    pub struct WeightParseCase {
        /// The bytes written to the file.
        pub input: &'static [u8],
        /// The expected outcome.
        pub expect: Result<u32, ParseError>,
    }

    /// Weight parsing cases shared by the host tests and the KUnit suite.
    pub const WEIGHT_PARSE_CASES: &[WeightParseCase] = &[
        WeightParseCase {
            input: b"100",
            expect: Ok(100),
        },
        WeightParseCase {
            input: b"1\n",
            expect: Ok(1),
        },
        WeightParseCase {
            input: b"  10000\n",
            expect: Ok(10000),
        },
        WeightParseCase {
            input: b"0",
            expect: Err(ParseError::OutOfRange),
        },
        WeightParseCase {
            input: b"10001",
            expect: Err(ParseError::OutOfRange),
        },
        WeightParseCase {
            input: b"4294967295",
            expect: Err(ParseError::OutOfRange),
        },
        WeightParseCase {
            input: b"4294967296",
            expect: Err(ParseError::Overflow),
        },
        WeightParseCase {
            input: b"99999999999999999999",
            expect: Err(ParseError::Overflow),
        },
        WeightParseCase {
            input: b"-5",
            expect: Err(ParseError::Malformed),
        },
        WeightParseCase {
            input: b"+5",
            expect: Err(ParseError::Malformed),
        },
        WeightParseCase {
            input: b"12a",
            expect: Err(ParseError::Malformed),
        },
        WeightParseCase {
            input: b"1 2",
            expect: Err(ParseError::Malformed),
        },
        WeightParseCase {
            input: b"0x10",
            expect: Err(ParseError::Malformed),
        },
        WeightParseCase {
            input: b"",
            expect: Err(ParseError::Empty),
        },
        WeightParseCase {
            input: b" \n",
            expect: Err(ParseError::Empty),
        },
    ];

    /// Runs one parsing case.
    pub fn check_weight_parse_case(c: &WeightParseCase) -> bool {
        parse_weight(c.input) == c.expect
    }

    /// One `vm_weight` parsing case: `input` to [`parse_pid_weight`] and what it must return.
    pub struct PidWeightCase {
        /// The bytes written to the file.
        pub input: &'static [u8],
        /// The expected outcome.
        pub expect: Result<(u32, u32), ParseError>,
    }

    /// `vm_weight` parsing cases shared by the host tests and the KUnit suite.
    pub const PID_WEIGHT_CASES: &[PidWeightCase] = &[
        PidWeightCase {
            input: b"1234 300\n",
            expect: Ok((1234, 300)),
        },
        PidWeightCase {
            input: b"  1\t10000 ",
            expect: Ok((1, 10000)),
        },
        PidWeightCase {
            input: b"4194304 1",
            expect: Ok((PID_MAX, 1)),
        },
        PidWeightCase {
            input: b"4194305 100",
            expect: Err(ParseError::OutOfRange),
        },
        PidWeightCase {
            input: b"0 100",
            expect: Err(ParseError::OutOfRange),
        },
        PidWeightCase {
            input: b"1234 0",
            expect: Err(ParseError::OutOfRange),
        },
        PidWeightCase {
            input: b"1234 10001",
            expect: Err(ParseError::OutOfRange),
        },
        PidWeightCase {
            input: b"99999999999 100",
            expect: Err(ParseError::Overflow),
        },
        PidWeightCase {
            input: b"1234 99999999999",
            expect: Err(ParseError::Overflow),
        },
        PidWeightCase {
            input: b"1234",
            expect: Err(ParseError::Malformed),
        },
        PidWeightCase {
            input: b"1234 300 7",
            expect: Err(ParseError::Malformed),
        },
        PidWeightCase {
            input: b"-1 300",
            expect: Err(ParseError::Malformed),
        },
        PidWeightCase {
            input: b"abc 300",
            expect: Err(ParseError::Malformed),
        },
        PidWeightCase {
            input: b"1234 3x",
            expect: Err(ParseError::Malformed),
        },
        PidWeightCase {
            input: b" \n",
            expect: Err(ParseError::Empty),
        },
    ];

    /// Runs one `vm_weight` parsing case.
    pub fn check_pid_weight_case(c: &PidWeightCase) -> bool {
        parse_pid_weight(c.input) == c.expect
    }

    /// One shares test case: `(mode, weight, vcpus)` and the expected group shares.
    pub struct SharesCase {
        /// Share mode.
        pub mode: ShareMode,
        /// Per-VM weight.
        pub weight: u32,
        /// vCPU count.
        pub vcpus: u32,
        /// Expected shares (nice-0 = 1024).
        pub expect: u64,
    }

    /// Weight-to-shares cases shared by the host tests and the KUnit suite.
    pub const SHARES_CASES: &[SharesCase] = &[
        SharesCase {
            mode: ShareMode::PerVm,
            weight: 100,
            vcpus: 4,
            expect: 1024,
        },
        SharesCase {
            mode: ShareMode::PerVm,
            weight: 300,
            vcpus: 1,
            expect: 3072,
        },
        SharesCase {
            mode: ShareMode::PerVm,
            weight: 1,
            vcpus: 1,
            expect: 10,
        },
        SharesCase {
            mode: ShareMode::PerVm,
            weight: 10000,
            vcpus: 1,
            expect: 102400,
        },
        SharesCase {
            mode: ShareMode::PerVcpu,
            weight: 100,
            vcpus: 4,
            expect: 4096,
        },
        SharesCase {
            mode: ShareMode::PerVcpu,
            weight: 100,
            vcpus: 0,
            expect: 1024,
        },
        SharesCase {
            mode: ShareMode::PerVcpu,
            weight: 10000,
            vcpus: 64,
            expect: MAX_SHARES,
        },
    ];

    /// Runs one shares case.
    pub fn check_shares_case(c: &SharesCase) -> bool {
        vm_shares(c.mode, c.weight, c.vcpus) == c.expect
    }

    /// Checks the share-mode and slice parsers; returns the number of the first failing check.
    pub fn check_misc() -> Result<(), u32> {
        let checks = [
            parse_share_mode(b"vm\n") == Ok(ShareMode::PerVm),
            parse_share_mode(b"1") == Ok(ShareMode::PerVcpu),
            parse_share_mode(b"vcpu") == Ok(ShareMode::PerVcpu),
            parse_share_mode(b"2") == Err(ParseError::Malformed),
            parse_share_mode(b"") == Err(ParseError::Empty),
            ShareMode::from_sysctl(ShareMode::PerVcpu.as_sysctl()) == Some(ShareMode::PerVcpu),
            ShareMode::from_sysctl(7).is_none(),
            validate_slice_us(0) == Ok(0),
            validate_slice_us(99) == Err(ParseError::OutOfRange),
            validate_slice_us(3000) == Ok(3000),
            validate_slice_us(100_001) == Err(ParseError::OutOfRange),
            weight_to_shares(0) == MIN_SHARES,
            weight_to_shares(u64::MAX) == MAX_SHARES,
        ];
        for (i, ok) in checks.iter().enumerate() {
            if !ok {
                return Err(i as u32);
            }
        }
        Ok(())
    }
}
