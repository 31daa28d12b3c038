// SPDX-License-Identifier: GPL-2.0
//! Wake-up latency figures of ticking VMs: percentiles of one instance's ticks, and the
//! histogram a result carries so that the instances of a VM entry can be pooled.
//!
//! The histogram's buckets are exact microseconds below [`EXACT_US`], then 16 per power of
//! two (a bucket is at most 1/16 of its lower bound wide, so a pooled percentile read from it
//! is within 6.25 % below the true one).

/// Latenesses below this many microseconds have a bucket each.
pub const EXACT_US: u64 = 64;

/// Lower bound (µs) of the histogram bucket of a lateness of `us` microseconds.
pub fn bucket_low(us: u64) -> u64 {
    if us < EXACT_US {
        return us;
    }
    let shift = 63 - us.leading_zeros() - 4;
    (us >> shift) << shift
}

/// Nearest-rank percentile (`q` in 0..=1) of sorted values; `None` if there are none.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// The histogram of latenesses in µs: `[bucket lower bound µs, count]`, ascending, only
/// non-empty buckets.
pub fn histogram(lateness_us: &[f64]) -> Vec<[u64; 2]> {
    let mut map = std::collections::BTreeMap::new();
    for &v in lateness_us {
        *map.entry(bucket_low(v.max(0.0) as u64)).or_insert(0u64) += 1;
    }
    map.into_iter().map(|(b, n)| [b, n]).collect()
}

/// Several histograms pooled into one.
pub fn pool<'a>(hists: impl IntoIterator<Item = &'a [[u64; 2]]>) -> Vec<[u64; 2]> {
    let mut map = std::collections::BTreeMap::new();
    for h in hists {
        for &[b, n] in h {
            *map.entry(b).or_insert(0u64) += n;
        }
    }
    map.into_iter().map(|(b, n)| [b, n]).collect()
}

/// Nearest-rank percentile of a histogram: the lower bound (µs) of the bucket holding it.
pub fn hist_percentile(hist: &[[u64; 2]], q: f64) -> Option<u64> {
    let n: u64 = hist.iter().map(|b| b[1]).sum();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    hist.iter().find_map(|&[b, c]| {
        seen += c;
        (seen >= rank).then_some(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket_low(0), 0);
        assert_eq!(bucket_low(63), 63);
        assert_eq!(bucket_low(64), 64);
        // 64..128: 4 µs wide; 1024..2048: 64 µs wide.
        assert_eq!(bucket_low(67), 64);
        assert_eq!(bucket_low(68), 68);
        assert_eq!(bucket_low(1100), 1088);
        assert_eq!(bucket_low(2047), 1984);
        for v in [64u64, 100, 999, 12345, 1 << 40] {
            let b = bucket_low(v);
            assert!(b <= v && (v - b) * 16 <= b, "{v} -> {b}");
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        // 99 on-time ticks and one late one: p99 is still on time, max is not.
        let mut w = vec![2.0; 99];
        w.push(5000.0);
        assert_eq!(percentile(&w, 0.99), Some(2.0));
        assert_eq!(percentile(&w, 1.0), Some(5000.0));
    }

    #[test]
    fn histograms_pool() {
        let a = histogram(&[1.0, 1.5, 3.0, 100.0]);
        assert_eq!(a, vec![[1, 2], [3, 1], [100, 1]]);
        let b = histogram(&[3.2, 2000.0]);
        let p = pool([a.as_slice(), b.as_slice()]);
        assert_eq!(p, vec![[1, 2], [3, 2], [100, 1], [1984, 1]]);
        assert_eq!(hist_percentile(&p, 0.5), Some(3));
        assert_eq!(hist_percentile(&p, 0.99), Some(1984));
        assert_eq!(hist_percentile(&p, 0.0), Some(1));
        assert_eq!(hist_percentile(&[], 0.5), None);
        // Pooling is not averaging: one VM all late, three on time -> p50 on time.
        let late = histogram(&[500.0; 10]);
        let ok = histogram(&[2.0; 10]);
        let p = pool([late.as_slice(), ok.as_slice(), ok.as_slice(), ok.as_slice()]);
        assert_eq!(hist_percentile(&p, 0.5), Some(2));
        assert_eq!(hist_percentile(&p, 0.99), Some(496));
    }
}
