//! The rate lattices the strategies plan on: decades, log-spaced grids and spans. Pure
//! arithmetic on rates, with the rounding care that keeps rates printing as the user expects.

/// One rate per decade from `min_lr`: `min_lr·10^k` for every k with `min_lr·10^k ≤ max_lr`,
/// ascending. When `min_lr` is a power of ten the values are exact powers of ten (1e-7, 1e-6, …,
/// 1 for the default range), so they print as the user expects. `max_lr` is included only when it
/// lies a whole number of decades above `min_lr`: anchoring at `min_lr` keeps the grid uniform in
/// log space, which the bracketing relies on. A range narrower than one decade gives
/// `[min_lr, max_lr]` so round 0 still compares two rates. Expects `0 < min_lr < max_lr`.
pub fn decade_grid(min_lr: f64, max_lr: f64) -> Vec<f64> {
    // The tolerance absorbs rounding in the ratio (1.0 / 1e-7 is not exactly 1e7).
    let decades = ((max_lr / min_lr).log10() + 1e-9).floor() as i32;
    if decades < 1 {
        return vec![min_lr, max_lr];
    }
    let exponent = min_lr.log10();
    let power_of_ten = (exponent - exponent.round()).abs() < 1e-9;
    (0..=decades)
        .map(|k| {
            let lr = if power_of_ten {
                pow10(exponent.round() as i32 + k)
            } else {
                min_lr * pow10(k)
            };
            lr.min(max_lr)
        })
        .collect()
}

/// 10^e, correctly rounded for |e| ≤ 22 (powers of ten up to 1e22 are exact doubles, and one
/// division of exact values rounds once), unlike `10f64.powf(e)`.
pub(crate) fn pow10(e: i32) -> f64 {
    if e >= 0 {
        10f64.powi(e)
    } else {
        1.0 / 10f64.powi(-e)
    }
}

/// `n` log-spaced points strictly inside (lo, hi): lo·(hi/lo)^(j/(n+1)), j = 1..=n.
pub(crate) fn log_grid(lo: f64, hi: f64, n: u32) -> Vec<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    (1..=n)
        .map(|j| (a + (b - a) * j as f64 / (n + 1) as f64).exp())
        .collect()
}

/// `n ≥ 2` log-spaced points from `lo` to `hi`, both exactly included.
pub(crate) fn log_span(lo: f64, hi: f64, n: u32) -> Vec<f64> {
    (0..n).map(|j| span_point(lo, hi, n, j)).collect()
}

/// Point `j` of `log_span(lo, hi, n)`.
pub(crate) fn span_point(lo: f64, hi: f64, n: u32, j: u32) -> f64 {
    match j {
        0 => lo,
        j if j == n - 1 => hi,
        j => (lo.ln() + (hi.ln() - lo.ln()) * j as f64 / (n - 1) as f64).exp(),
    }
}

/// Points of the log-spaced grid from `lo` to `hi` (both included) whose neighbours are at most
/// `ratio` apart: ⌈ln(hi/lo)/ln(ratio)⌉ + 1. Expects `0 < lo < hi`, `ratio > 1`.
pub(crate) fn grid_len(lo: f64, hi: f64, ratio: f64) -> u32 {
    // The tolerance keeps an exact power (hi/lo = ratio^k) at k + 1 points despite rounding.
    ((hi / lo).ln() / ratio.ln() - 1e-9).ceil().max(1.0) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::close;

    #[test]
    fn decade_grid_default_range_is_eight_exact_powers() {
        let grid = decade_grid(1e-7, 1.0);
        assert_eq!(grid, vec![1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
    }

    #[test]
    fn decade_grid_anchors_at_min_when_not_a_power_of_ten() {
        let grid = decade_grid(3e-5, 0.5);
        assert_eq!(grid.len(), 5);
        assert!(close(grid[0], 3e-5) && close(grid[4], 0.3), "{grid:?}");
        assert!(grid.windows(2).all(|w| close(w[1] / w[0], 10.0)));
        // An exact whole number of decades includes max, never beyond it.
        let grid = decade_grid(3e-5, 0.3);
        assert_eq!(grid.len(), 5);
        assert!(*grid.last().unwrap() <= 0.3);
        // Narrower than a decade: both ends.
        assert_eq!(decade_grid(0.2, 0.5), vec![0.2, 0.5]);
    }
}
