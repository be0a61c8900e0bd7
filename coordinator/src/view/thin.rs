//! Thinning a long trace for plotting: a line needs no more points than its plot has pixels
//! across, and every point more makes the SVG bigger.

/// Points per plotted line at most: about the plot area's width in pixels.
pub const LINE_POINTS: usize = 800;

/// At most `max` of `points` (`max` ≥ 2), evenly strided from the first, always with the last:
/// a pruned trace's marker sits on its last point. The same input always gives the same output.
pub fn thin<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    let max = max.max(2);
    if points.len() <= max {
        return points.to_vec();
    }
    let stride = (points.len() - 1).div_ceil(max - 1);
    let mut kept: Vec<T> = points.iter().step_by(stride).cloned().collect();
    if !(points.len() - 1).is_multiple_of(stride) {
        kept.push(points[points.len() - 1].clone());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_traces_are_kept_whole() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(thin(&v, 10), v);
        assert_eq!(thin(&v, 100), v);
    }

    #[test]
    fn long_traces_keep_at_most_max_points_with_first_and_last() {
        for len in [11usize, 100, 2001, 2002, 10_000, 123_457] {
            let v: Vec<usize> = (0..len).collect();
            for max in [2usize, 3, 10, 2000] {
                let t = thin(&v, max);
                assert!(t.len() <= max, "len {len} max {max}: {}", t.len());
                assert!(
                    t.len() >= max.min(len) / 2,
                    "len {len} max {max}: {}",
                    t.len()
                );
                assert_eq!(t[0], 0);
                assert_eq!(*t.last().unwrap(), len - 1);
                assert!(t.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
