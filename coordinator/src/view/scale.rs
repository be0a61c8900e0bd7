//! Axis ranges and colour scales shared by the plots. Losses can be NaN, infinite or huge
//! (diverged runs): ranges are taken from the finite values a plot is about, and what lies
//! outside is drawn on the edge by `clamp`.

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange, LogCoord, WithKeyPoints};
use plotters::style::RGBColor;

/// A log-axis range around the positive finite `values`, widened by `pad` (a ratio > 1) on
/// both sides; a single value gets a decade around it. None when there is no such value.
pub fn log_range(values: impl IntoIterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = bounds(values.into_iter().filter(|v| v.is_finite() && *v > 0.0))?;
    if hi / lo < 1.01 {
        return Some((lo / 10f64.sqrt(), hi * 10f64.sqrt()));
    }
    Some((lo / pad, hi * pad))
}

/// A linear-axis range around the finite `values`, widened by `pad` × its width on both sides;
/// a single value gets ±10% (±1 at zero). None when no value is finite.
pub fn linear_range(values: impl IntoIterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) = bounds(values.into_iter().filter(|v| v.is_finite()))?;
    let width = hi - lo;
    if width <= f64::EPSILON * hi.abs().max(1.0) {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() / 10.0 };
        return Some((lo - half, hi + half));
    }
    Some((lo - pad * width, hi + pad * width))
}

/// A log axis from `lo` to `hi` with its ticks at `log_ticks` (plotters' own put two ticks on
/// each decade's start when the axis spans one or two decades).
pub fn log_axis((lo, hi): (f64, f64)) -> WithKeyPoints<LogCoord<f64>> {
    (lo..hi).log_scale().with_key_points(log_ticks((lo, hi)))
}

/// Round values inside [lo, hi] for a log axis: 1, 2 and 5 of every decade over up to three
/// decades (every digit when that leaves fewer than three), each decade up to ten decades,
/// every n-th decade beyond.
pub fn log_ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let decades = (hi / lo).log10();
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let ticks = |mantissas: &[f64], every: i32| -> Vec<f64> {
        (first..=last)
            .filter(|k| k.rem_euclid(every) == 0)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    if decades > 3.0 {
        return ticks(&[1.0], (decades / 10.0).ceil() as i32);
    }
    let ticks125 = ticks(&[1.0, 2.0, 5.0], 1);
    if ticks125.len() >= 3 {
        return ticks125;
    }
    ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1)
}

/// Smallest and largest of `values`; None when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
    })
}

/// `v` inside `range`; NaN and +∞ go to the top edge, where diverged values are drawn.
pub fn clamp(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if v.is_nan() {
        hi
    } else {
        v.clamp(lo, hi)
    }
}

/// Where `v` lies between `lo` and `hi` on a log scale, in [0, 1] (0.5 when lo = hi).
pub fn log_position(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if hi <= lo || !v.is_finite() || v <= 0.0 {
        return 0.5;
    }
    ((v.ln() - lo.ln()) / (hi.ln() - lo.ln())).clamp(0.0, 1.0)
}

/// Viridis anchors, stopping before its last yellow, which cannot be seen on white.
const VIRIDIS: [(u8, u8, u8); 5] = [
    (68, 1, 84),
    (59, 82, 139),
    (33, 145, 140),
    (94, 201, 98),
    (170, 220, 50),
];

/// The colour of position `t` ∈ [0, 1] on the (perceptually even) viridis scale.
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Tableau 10: one colour per round, distinct and readable on white.
const ROUNDS: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(89, 161, 79),
    RGBColor(176, 122, 161),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(156, 117, 95),
    RGBColor(237, 201, 72),
    RGBColor(255, 157, 167),
    RGBColor(186, 176, 172),
];

pub fn round_colour(round: u32) -> RGBColor {
    ROUNDS[round as usize % ROUNDS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_range_ignores_what_a_log_axis_cannot_show() {
        let r = log_range([0.1, f64::NAN, 2.0, f64::INFINITY, -1.0, 0.0], 2.0).unwrap();
        assert_eq!(r, (0.05, 4.0));
        assert_eq!(log_range([f64::NAN, 0.0], 2.0), None);
        let (lo, hi) = log_range([1.0], 2.0).unwrap();
        assert!((hi / lo - 10.0).abs() < 1e-9);
    }

    #[test]
    fn linear_range_pads_and_survives_a_single_value() {
        assert_eq!(linear_range([1.0, 3.0, f64::NAN], 0.5), Some((0.0, 4.0)));
        assert_eq!(linear_range([2.0], 0.1), Some((1.8, 2.2)));
        assert_eq!(linear_range([0.0], 0.1), Some((-1.0, 1.0)));
        assert_eq!(linear_range([f64::INFINITY], 0.1), None);
    }

    #[test]
    fn log_ticks_are_round_and_inside_the_axis() {
        let near = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x / y - 1.0).abs() < 1e-9)
        };
        let t = log_ticks((0.06, 3.5));
        assert!(near(&t, &[0.1, 0.2, 0.5, 1.0, 2.0]), "{t:?}");
        let t = log_ticks((6e-8, 16.0));
        assert_eq!(t.len(), 9, "{t:?}");
        assert!((t[0] / 1e-7 - 1.0).abs() < 1e-9 && (t[8] / 10.0 - 1.0).abs() < 1e-9);
        let t = log_ticks((1e-30, 1e10));
        assert!(t.len() <= 11 && t.len() >= 5, "{t:?}");
        let t = log_ticks((0.25, 0.45));
        assert!(near(&t, &[0.3, 0.4]), "{t:?}");
        assert!(log_ticks((1.0, 1.0)).is_empty());
        assert!(log_ticks((0.0, 1.0)).is_empty());
    }

    #[test]
    fn diverged_values_land_on_the_top_edge() {
        let r = (0.1, 3.0);
        assert_eq!(clamp(f64::NAN, r), 3.0);
        assert_eq!(clamp(f64::INFINITY, r), 3.0);
        assert_eq!(clamp(1e9, r), 3.0);
        assert_eq!(clamp(f64::NEG_INFINITY, r), 0.1);
        assert_eq!(clamp(1.0, r), 1.0);
    }

    #[test]
    fn log_position_is_even_in_decades() {
        let r = (1e-4, 1.0);
        assert_eq!(log_position(1e-4, r), 0.0);
        assert!((log_position(1e-2, r) - 0.5).abs() < 1e-12);
        assert_eq!(log_position(1.0, r), 1.0);
        assert_eq!(log_position(10.0, r), 1.0);
        assert_eq!(log_position(1.0, (1.0, 1.0)), 0.5);
    }

    #[test]
    fn viridis_runs_from_its_first_to_its_last_anchor() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(170, 220, 50));
        assert_eq!(viridis(0.5), RGBColor(33, 145, 140));
        assert_eq!(viridis(f64::NAN), viridis(0.5));
    }
}
