//! The time budget of an experiment (`max_minutes`): a boot starts only
//! with as many scenarios as are expected to end within it, so that the
//! budget bounds the whole run, not only the start of its last boot.
//!
//! A scenario's cost is predicted from its shape (warm-up and window, plus
//! the start and stop of its VMs, which take longer the more VMs share the
//! CPUs) and scaled by what the boots so far took against their prediction.

/// Seconds a boot costs besides its scenarios (kernel boot, `info`, `dmesg`).
pub const BOOT_S: f64 = 15.0;

/// Seconds per VM for starting, warming and stopping it (measured: a
/// scenario with 17 VMs takes about 12 s longer than one with 1).
const PER_VM_S: f64 = 0.75;

/// Ratio of measured to predicted time before any boot has finished.
const FIRST_RATIO: f64 = 1.2;

/// The predicted seconds of one scenario of `seconds` (warm-up and window)
/// with `vms` VMs.
pub fn cost(seconds: f64, vms: u32) -> f64 {
    seconds + PER_VM_S * f64::from(vms)
}

/// What the boots so far took against their prediction.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    predicted_s: f64,
    took_s: f64,
}

impl Budget {
    /// Measured over predicted scenario time, within 0.5..=3.
    pub fn ratio(&self) -> f64 {
        if self.predicted_s <= 0.0 {
            return FIRST_RATIO;
        }
        (self.took_s / self.predicted_s).clamp(0.5, 3.0)
    }

    /// Records a boot that ran its whole plan: the predicted cost of its
    /// scenarios and its wall time.
    pub fn record(&mut self, predicted_s: f64, took_s: f64) {
        self.predicted_s += predicted_s;
        self.took_s += (took_s - BOOT_S).max(0.0);
    }

    /// How many of the scenarios of `costs`, taken in order, one boot can
    /// run and still end within `limit_s` when `elapsed_s` are spent.
    pub fn fit(&self, limit_s: f64, elapsed_s: f64, costs: &[f64]) -> usize {
        let mut t = elapsed_s + BOOT_S;
        let r = self.ratio();
        let mut n = 0;
        for c in costs {
            t += r * c;
            if t > limit_s {
                break;
            }
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_what_ends_within_the_budget() {
        let mut b = Budget::default();
        assert_eq!(b.ratio(), FIRST_RATIO);
        assert_eq!(cost(8.0, 17), 8.0 + 12.75);
        // 15 s of boot, then 12 s each (10 s x 1.2): 100 s hold 7.
        assert_eq!(b.fit(100.0, 0.0, &[10.0; 20]), 7);
        assert_eq!(b.fit(100.0, 80.0, &[10.0; 20]), 0);
        // In order: a long scenario first blocks the short ones behind it.
        assert_eq!(b.fit(100.0, 0.0, &[90.0, 1.0]), 0);
        // A boot of 215 s for 100 s predicted: twice as slow as predicted.
        b.record(100.0, 215.0);
        assert!((b.ratio() - 2.0).abs() < 1e-12);
        assert_eq!(b.fit(100.0, 0.0, &[10.0; 20]), 4);
        // Clamped: one odd boot does not make the budget absurd.
        let mut fast = Budget::default();
        fast.record(100.0, 16.0);
        assert_eq!(fast.ratio(), 0.5);
    }
}
