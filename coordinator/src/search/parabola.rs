//! The pick among noisy full-budget losses: the vertex of a parabola fitted over log lr.
//!
//! One training seed's final validation loss is noisy (split, init and batch order), and near
//! its minimum the expected loss is flat, so the single lowest loss is often a neighbour's luck.
//! Along log lr the expected loss is close to a parabola around its minimum (method.md §7); a
//! least-squares fit over several rates averages their noise, and its vertex is a better
//! estimate of where the expected minimum lies than any one point.

/// Least-squares parabola through `points` (x, y); the x of its vertex, clamped to the points'
/// span, or None with fewer than four points (three would be interpolated, not averaged) or a
/// fit that does not open upwards (no minimum inside the data).
pub fn vertex(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 4 {
        return None;
    }
    // Centre and scale x so the normal equations stay well conditioned.
    let n = points.len() as f64;
    let mean = points.iter().map(|p| p.0).sum::<f64>() / n;
    let scale = points
        .iter()
        .map(|p| (p.0 - mean).abs())
        .fold(0.0, f64::max);
    if scale == 0.0 {
        return None;
    }
    // Sums of u^k (k = 0..4) and of y·u^k (k = 0..2), u = (x - mean) / scale.
    let mut s = [0.0; 5];
    let mut t = [0.0; 3];
    for &(x, y) in points {
        let u = (x - mean) / scale;
        let mut p = 1.0;
        for (k, sk) in s.iter_mut().enumerate() {
            *sk += p;
            if k < 3 {
                t[k] += y * p;
            }
            p *= u;
        }
    }
    // Normal equations for y = c + b·u + a·u², solved by Cramer's rule.
    let m = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]];
    let det = det3(m);
    if det.abs() < 1e-12 {
        return None;
    }
    let with = |col: usize| {
        let mut mc = m;
        for (row, &v) in mc.iter_mut().zip(&t) {
            row[col] = v;
        }
        det3(mc) / det
    };
    let (b, a) = (with(1), with(2));
    if !a.is_finite() || a <= 0.0 || !b.is_finite() {
        return None;
    }
    let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    Some((mean - b / (2.0 * a) * scale).clamp(lo, hi))
}

fn det3(m: [[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_proto::rng::{Rng, Stream};

    #[test]
    fn an_exact_parabola_gives_its_vertex() {
        let points: Vec<(f64, f64)> = [30.0, 34.0, 38.0, 42.0, 46.0]
            .iter()
            .map(|&x| (x, 0.7 + 0.01 * (x - 39.5f64).powi(2)))
            .collect();
        let v = vertex(&points).unwrap();
        assert!((v - 39.5).abs() < 1e-9, "{v}");
    }

    #[test]
    fn noise_on_a_flat_minimum_moves_the_vertex_less_than_the_lowest_point() {
        // Ground truth: minimum at 40; single points carry noise as large as the curvature over
        // four lattice steps, so the lowest point often sits two or more steps off.
        let mut rng = Rng::new(7, Stream::Synthetic, 0);
        let (mut fit_err, mut argmin_err) = (0.0, 0.0);
        for _ in 0..2000 {
            let points: Vec<(f64, f64)> = (0..7)
                .map(|k| {
                    let x = 28.0 + 4.0 * f64::from(k);
                    (x, 1e-3 * (x - 40.0).powi(2) + 0.02 * rng.normal())
                })
                .collect();
            fit_err += (vertex(&points).unwrap_or(40.0) - 40.0).abs();
            let lowest = points.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            argmin_err += (lowest.0 - 40.0).abs();
        }
        assert!(
            fit_err < 0.7 * argmin_err,
            "fit {fit_err} vs lowest point {argmin_err}"
        );
    }

    #[test]
    fn no_minimum_no_vertex() {
        let line = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0)];
        assert_eq!(vertex(&line), None);
        let cap: Vec<(f64, f64)> = (0..5)
            .map(|k| (k as f64, -((k as f64) - 2.0).powi(2)))
            .collect();
        assert_eq!(vertex(&cap), None);
        assert_eq!(vertex(&[(1.0, 1.0), (2.0, 0.5), (3.0, 1.0)]), None);
        assert_eq!(vertex(&[(1.0, 1.0); 5]), None);
    }

    #[test]
    fn a_vertex_outside_the_points_is_clamped_to_them() {
        // A parabola whose minimum lies at 10, sampled on 0..4: the fit says "beyond 4".
        let points: Vec<(f64, f64)> = (0..5)
            .map(|k| (k as f64, (k as f64 - 10.0).powi(2)))
            .collect();
        assert_eq!(vertex(&points), Some(4.0));
    }
}
