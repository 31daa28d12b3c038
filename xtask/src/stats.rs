//! Statistics over the repetitions of a figure, for the reports: the
//! quartiles `make overhead` gives and the mean and range `make bench`
//! gives.

use serde::Serialize;

/// Percentile `p` (0..=100) of ascending, non-empty `s`, linear between
/// the closest ranks.
pub fn percentile(s: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (s.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (rank - lo as f64)
}

/// Median, quartiles and range of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Quartiles {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub q1: f64,
    pub q3: f64,
}

impl Quartiles {
    /// None for an empty sample.
    pub fn of(xs: &[f64]) -> Option<Quartiles> {
        if xs.is_empty() {
            return None;
        }
        let mut s = xs.to_vec();
        s.sort_by(f64::total_cmp);
        Some(Quartiles {
            n: s.len(),
            median: percentile(&s, 50.0),
            min: s[0],
            max: s[s.len() - 1],
            q1: percentile(&s, 25.0),
            q3: percentile(&s, 75.0),
        })
    }
}

/// Mean, minimum and maximum of a sample.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct MeanRange {
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl MeanRange {
    /// None for an empty sample.
    pub fn of(xs: &[f64]) -> Option<MeanRange> {
        if xs.is_empty() {
            return None;
        }
        Some(MeanRange {
            n: xs.len(),
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let s = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 100.0), 8.0);
        // Rank 1.5: halfway between 2 and 4.
        assert_eq!(percentile(&s, 50.0), 3.0);
        // Rank 0.75.
        assert_eq!(percentile(&s, 25.0), 1.75);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn quartiles_of_unsorted_samples() {
        let q = Quartiles::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((q.n, q.median, q.min, q.max), (5, 3.0, 1.0, 5.0));
        assert_eq!((q.q1, q.q3), (2.0, 4.0));
        assert_eq!(Quartiles::of(&[]), None);
        assert_eq!(Quartiles::of(&[2.0, 1.0]).unwrap().median, 1.5);
    }

    #[test]
    fn mean_and_range() {
        let m = MeanRange::of(&[3.0, -1.0, 4.0]).unwrap();
        assert_eq!((m.n, m.mean, m.min, m.max), (3, 2.0, -1.0, 4.0));
        let one = MeanRange::of(&[0.5]).unwrap();
        assert_eq!((one.n, one.mean, one.min, one.max), (1, 0.5, 0.5, 0.5));
        assert_eq!(MeanRange::of(&[]), None);
    }
}
