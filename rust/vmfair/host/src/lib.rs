// SPDX-License-Identifier: GPL-2.0

//! Host build of vmfair's policy code.
//!
//! The kernel module `vmfair` and this crate compile the same file, `rust/vmfair/policy.rs`: the
//! module to turn weights into scheduler shares, this crate so that host tools (the test pipeline)
//! can compute what each VM is entitled to and judge scenario results against it, and so that
//! `cargo test` checks the policy without booting a kernel.
//!
//! The kernel cannot use floating point, so the shared code counts CPU in micro-CPUs;
//! [`entitlement`] and [`allocation`] are the floating point front ends for host code.

#[path = "../../policy.rs"]
mod policy;

#[path = "../../allocation.rs"]
pub mod allocation;

pub use policy::{
    allocate_ucpu, effective_weight, entitlement_ucpu, parse_pid_weight, parse_share_mode,
    parse_u32, parse_weight, validate_slice_us, validate_weight, vm_shares, weight_to_shares,
    Claim, Level, ParseError, ShareMode, ShareSlots, MAX_SHARES, MIN_SHARES, NICE_0_SHARES,
    PID_MAX, SLICE_US_MAX, SLICE_US_MIN, UCPU, WEIGHT_DEFAULT, WEIGHT_MAX, WEIGHT_MIN,
};

/// Test case tables shared with the module's KUnit suites.
#[cfg(test)]
pub mod cases {
    pub use super::allocation::cases::{
        check_admission_and_load, check_centi_case, check_correction_case,
        check_shares_from_allocation_case, CENTI_CASES, CORRECTION_CASES,
        SHARES_FROM_ALLOCATION_CASES,
    };
    pub use super::policy::cases::{
        check_allocation_case, check_entitlement_case, check_misc, check_pid_weight_case,
        check_shares_case, check_weight_parse_case, AllocationCase, EntitlementCase, PidWeightCase,
        SharesCase, WeightParseCase, ALLOCATION_CASES, ENTITLEMENT_CASES, PID_WEIGHT_CASES,
        SHARES_CASES, WEIGHT_PARSE_CASES,
    };
}

/// `[f64]` storage for [`entitlement_ucpu`]: micro-CPU amounts are integers below 2^63 and the
/// ones met here are far below 2^53, so they survive the round trip through `f64` exactly.
struct F64Slots<'a>(&'a mut [f64]);

impl ShareSlots for F64Slots<'_> {
    fn slots(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize) -> u64 {
        self.0[i] as u64
    }
    fn store(&mut self, i: usize, v: u64) {
        self.0[i] = v as f64;
    }
}

/// Weighted max-min fair entitlement of `cpus` CPUs among VMs, in CPUs.
///
/// `vms[i]` is `(weight, busy_threads)` for VM `i`: `weight` is the weight it competes with
/// (the per-VM weight, or [`effective_weight`] of it under [`ShareMode::PerVcpu`]), and
/// `busy_threads` the number of its threads that would run all the time (vCPUs and I/O threads
/// alike), which caps the VM at that many CPUs. `out[i]` receives VM `i`'s entitlement: CPU is
/// shared in proportion to weight, no VM gets more than its cap, and what a capped VM cannot
/// use goes to the others by weight. VMs with weight 0 or no busy thread get 0.
///
/// Only `min(vms.len(), out.len())` VMs are considered. Resolution is one micro-CPU; negative or
/// non-finite `cpus` count as 0. The water filling is the module's own ([`entitlement_ucpu`]).
///
/// ```
/// let mut out = [0.0; 2];
/// vmfair_policy::entitlement(2.0, &[(100, 1), (100, 4)], &mut out);
/// assert_eq!(out, [1.0, 1.0]);
/// ```
pub fn entitlement(cpus: f64, vms: &[(u32, u32)], out: &mut [f64]) {
    let n = vms.len().min(out.len());
    // The shared code takes 64-bit weights.
    let wide: Vec<(u64, u32)> = vms[..n].iter().map(|&(w, b)| (u64::from(w), b)).collect();
    entitlement_ucpu(to_ucpu(cpus), &wide, &mut F64Slots(&mut out[..n]));
    for v in &mut out[..n] {
        *v /= UCPU as f64;
    }
}

/// CPUs as micro-CPUs, rounded; negative or non-finite amounts count as 0.
fn to_ucpu(cpus: f64) -> u64 {
    if cpus.is_finite() && cpus > 0.0 {
        (cpus * UCPU as f64).round() as u64
    } else {
        0
    }
}

/// One VM's claim in CPUs, for [`allocation`]: the floating point form of [`Claim`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuClaim {
    /// Weight it competes with (see [`effective_weight`]).
    pub weight: u64,
    /// What it can use, in CPUs (its busy threads).
    pub demand: f64,
    /// Guaranteed minimum in CPUs; 0 for none.
    pub reservation: f64,
    /// Maximum in CPUs; 0 for none.
    pub limit: f64,
}

impl CpuClaim {
    /// The claim in micro-CPUs (each amount rounded to one micro-CPU).
    pub fn to_ucpu(&self) -> Claim {
        Claim {
            weight: self.weight,
            demand: to_ucpu(self.demand),
            reservation: to_ucpu(self.reservation),
            limit: to_ucpu(self.limit),
        }
    }
}

/// Allocation of `cpus` CPUs among VMs with reservations and limits, in CPUs.
///
/// VM `i` gets `clamp(λ·weight, min(reservation, D), D)` with `D = min(demand, limit)` (0 = none
/// for both) and one `λ` for all that fills the CPUs, or its `D` if the `D`s add up to less:
/// the module's own [`allocate_ucpu`], at one micro-CPU resolution. Without reservations and
/// limits it is [`entitlement`]. Only `min(vms.len(), out.len())` VMs are considered; negative
/// or non-finite amounts count as 0.
///
/// ```
/// use vmfair_policy::CpuClaim;
/// let a = CpuClaim { weight: 100, demand: 2.0, reservation: 1.2, limit: 0.0 };
/// let b = CpuClaim { weight: 100, demand: 1.0, ..Default::default() };
/// let mut out = [0.0; 2];
/// vmfair_policy::allocation(2.0, &[a, b], &mut out);
/// assert_eq!(out, [1.2, 0.8]);
/// ```
pub fn allocation(cpus: f64, vms: &[CpuClaim], out: &mut [f64]) {
    let n = vms.len().min(out.len());
    allocate_ucpu(
        to_ucpu(cpus),
        n,
        |i| vms[i].to_ucpu(),
        &mut F64Slots(&mut out[..n]),
    );
    for v in &mut out[..n] {
        *v /= UCPU as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::cases::*;
    use super::*;

    #[test]
    fn entitlement_cases() {
        for c in ENTITLEMENT_CASES {
            assert_eq!(check_entitlement_case(c), Ok(()), "case: {}", c.name);
        }
    }

    #[test]
    fn weight_parse_cases() {
        for c in WEIGHT_PARSE_CASES {
            assert!(
                check_weight_parse_case(c),
                "input {:?}: got {:?}, want {:?}",
                String::from_utf8_lossy(c.input),
                parse_weight(c.input),
                c.expect
            );
        }
    }

    #[test]
    fn pid_weight_cases() {
        for c in PID_WEIGHT_CASES {
            assert!(
                check_pid_weight_case(c),
                "input {:?}: got {:?}, want {:?}",
                String::from_utf8_lossy(c.input),
                parse_pid_weight(c.input),
                c.expect
            );
        }
    }

    #[test]
    fn shares_cases() {
        for c in SHARES_CASES {
            assert!(
                check_shares_case(c),
                "{:?} w={} v={}",
                c.mode,
                c.weight,
                c.vcpus
            );
        }
    }

    #[test]
    fn misc_checks() {
        assert_eq!(check_misc(), Ok(()));
    }

    #[test]
    fn float_front_end_matches_table() {
        for c in ENTITLEMENT_CASES {
            let vms: Vec<(u32, u32)> = c.vms.iter().map(|&(w, b)| (w as u32, b)).collect();
            let mut out = vec![0.0; vms.len()];
            entitlement(c.cpus_ucpu as f64 / UCPU as f64, &vms, &mut out);
            for (got, want) in out.iter().zip(c.expect) {
                assert!(
                    (got - *want as f64 / UCPU as f64).abs() < 1e-9,
                    "case {}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn many_vms_are_max_min_fair() {
        // 100 VMs, weights cycling over 1..301, caps 1..3 busy threads: all CPU is handed out,
        // no VM gets more than its cap, and the VMs below their cap get the same CPU per weight,
        // at least as much as a capped VM got per weight.
        let vms: Vec<(u32, u32)> = (0..100).map(|i| (1 + (i % 7) * 50, 1 + i % 3)).collect();
        let mut out = vec![0.0; vms.len()];
        entitlement(16.0, &vms, &mut out);
        let sum: f64 = out.iter().sum();
        assert!(sum <= 16.0 + 1e-9 && sum > 16.0 - 1e-3, "sum {sum}");
        let per_weight: Vec<f64> = out
            .iter()
            .zip(&vms)
            .filter(|(o, v)| {
                assert!(**o <= f64::from(v.1) + 1e-12);
                **o < f64::from(v.1) - 1e-6
            })
            .map(|(o, v)| o / f64::from(v.0))
            .collect();
        assert!(!per_weight.is_empty());
        let (lo, hi) = per_weight
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        assert!(
            hi - lo < 1e-5,
            "uncapped VMs differ per weight: {lo} .. {hi}"
        );
        for (o, v) in out.iter().zip(&vms) {
            if *o >= f64::from(v.1) - 1e-6 {
                assert!(o / f64::from(v.0) <= hi + 1e-5);
            }
        }
    }

    #[test]
    fn allocation_cases() {
        for c in ALLOCATION_CASES {
            assert_eq!(check_allocation_case(c), Ok(()), "case: {}", c.name);
        }
    }

    /// `Σ clamp(λ·w, floor, ceiling)` for one level `λ`.
    fn filled(lambda: f64, claims: &[Claim]) -> f64 {
        claims
            .iter()
            .map(|c| (lambda * c.weight as f64).clamp(c.floor() as f64, c.ceiling() as f64))
            .sum()
    }

    #[test]
    fn allocation_is_the_clamped_water_level() {
        // Pseudo-random claims (a fixed linear congruential sequence): the result must be
        // clamp(λ·w, floor, ceiling) for the one λ that fills the CPUs, found here
        // independently by bisection in floating point.
        let mut x: u64 = 12345;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for round in 0..300 {
            let n = 1 + next(24) as usize;
            let cpus = (1 + next(8)) * UCPU;
            let claims: Vec<Claim> = (0..n)
                .map(|_| Claim {
                    weight: 1 + next(1000),
                    demand: next(4 * UCPU),
                    reservation: if next(3) == 0 { next(UCPU) } else { 0 },
                    limit: if next(3) == 0 { 1 + next(2 * UCPU) } else { 0 },
                })
                .collect();
            let mut out = vec![0u64; n];
            allocate_ucpu(cpus, n, |i| claims[i], &mut out[..]);
            let sum: u64 = out.iter().sum();
            assert!(sum <= cpus, "round {round}: {sum} > {cpus}");
            let floors: u64 = claims.iter().map(Claim::floor).sum();
            let ceilings: u64 = claims.iter().map(Claim::ceiling).sum();
            if floors >= cpus || ceilings <= cpus {
                continue;
            }
            let (mut lo, mut hi) = (0.0f64, 1e7);
            for _ in 0..200 {
                let mid = (lo + hi) / 2.0;
                if filled(mid, &claims) < cpus as f64 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            for (i, c) in claims.iter().enumerate() {
                let want = (lo * c.weight as f64).clamp(c.floor() as f64, c.ceiling() as f64);
                assert!(
                    (out[i] as f64 - want).abs() <= 2.0,
                    "round {round}, VM {i} {c:?}: got {}, want {want}",
                    out[i]
                );
            }
            // Within rounding, everything is handed out.
            assert!(sum + n as u64 >= cpus, "round {round}: {sum} of {cpus}");
        }
    }

    #[test]
    fn float_allocation_matches_table() {
        for c in ALLOCATION_CASES {
            let claims: Vec<CpuClaim> = c
                .vms
                .iter()
                .map(|v| CpuClaim {
                    weight: v.weight,
                    demand: v.demand as f64 / UCPU as f64,
                    reservation: v.reservation as f64 / UCPU as f64,
                    limit: v.limit as f64 / UCPU as f64,
                })
                .collect();
            let mut out = vec![0.0; claims.len()];
            allocation(c.cpus_ucpu as f64 / UCPU as f64, &claims, &mut out);
            for (i, (got, want)) in out.iter().zip(c.expect).enumerate() {
                assert!(
                    (got - *want as f64 / UCPU as f64).abs() < 1e-9,
                    "case {}, VM {i}: {got} vs {want} ucpu",
                    c.name
                );
            }
        }
    }

    #[test]
    fn allocation_without_reservations_is_the_entitlement() {
        let vms = [(100, 1), (300, 2), (50, 4), (100, 1)];
        for cpus in [0.5, 1.0, 2.0, 3.0, 7.5, 10.0] {
            let mut want = vec![0.0; vms.len()];
            entitlement(cpus, &vms, &mut want);
            let claims: Vec<CpuClaim> = vms
                .iter()
                .map(|&(w, b)| CpuClaim {
                    weight: u64::from(w),
                    demand: f64::from(b),
                    ..Default::default()
                })
                .collect();
            let mut got = vec![0.0; vms.len()];
            allocation(cpus, &claims, &mut got);
            assert_eq!(got, want, "{cpus} CPUs");
        }
    }

    #[test]
    fn allocation_with_reservation_and_limit() {
        let busy = |demand: f64| CpuClaim {
            weight: 100,
            demand,
            ..Default::default()
        };
        // 2 CPUs: a 2-vCPU VM reserving 1.2 beside three 1-vCPU VMs.
        let reserved = CpuClaim {
            reservation: 1.2,
            ..busy(2.0)
        };
        let mut out = [0.0; 4];
        allocation(2.0, &[reserved, busy(1.0), busy(1.0), busy(1.0)], &mut out);
        assert!((out[0] - 1.2).abs() < 1e-6, "{out:?}");
        for o in &out[1..] {
            assert!((o - 0.8 / 3.0).abs() < 1e-5, "{out:?}");
        }
        // A limit of 0.5 on a 2-vCPU VM beside a busy 1-vCPU VM: both at their ceiling.
        let limited = CpuClaim {
            limit: 0.5,
            ..busy(2.0)
        };
        let mut out = [0.0; 2];
        allocation(2.0, &[limited, busy(1.0)], &mut out);
        assert_eq!(out, [0.5, 1.0]);
        // Degenerate amounts count as 0.
        let mut out = [7.0; 1];
        allocation(f64::NAN, &[busy(1.0)], &mut out);
        assert_eq!(out, [0.0]);
    }

    #[test]
    fn degenerate_inputs() {
        let mut out = [7.0; 2];
        entitlement(f64::NAN, &[(100, 1), (100, 1)], &mut out);
        assert_eq!(out, [0.0, 0.0]);
        let mut out = [7.0; 1];
        entitlement(2.0, &[(100, 1), (100, 1)], &mut out);
        assert_eq!(out, [1.0]);
        assert_eq!(effective_weight(ShareMode::PerVcpu, 100, 3), 300);
    }

    #[test]
    fn centi_cases() {
        for c in CENTI_CASES {
            assert!(
                check_centi_case(c),
                "input {:?}: got {:?}, want {:?}",
                String::from_utf8_lossy(c.input),
                crate::allocation::parse_centi(c.input),
                c.expect
            );
        }
    }

    #[test]
    fn admission_and_load() {
        assert_eq!(check_admission_and_load(), Ok(()));
    }

    #[test]
    fn shares_from_allocation_cases() {
        for c in SHARES_FROM_ALLOCATION_CASES {
            assert_eq!(
                check_shares_from_allocation_case(c),
                Ok(()),
                "case: {}",
                c.name
            );
        }
    }

    #[test]
    fn correction_cases() {
        for c in CORRECTION_CASES {
            assert_eq!(check_correction_case(c), Ok(()), "case: {}", c.name);
        }
    }
}
