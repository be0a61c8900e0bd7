//! The spectrum of the training split's Gram matrix XᵀX/n, to check the synthetic problem's
//! eigenvalues and to compute a least-squares problem's stability limit 2/λ_max in tests and
//! benchmarks. Not part of training: the worker builds this only for its tests and with the
//! `test-support` feature.

use ndarray::Array2;

use super::PreparedData;

impl PreparedData {
    /// Largest eigenvalue of XᵀX/n over the whole training split as trained on (after
    /// standardisation, without an intercept column): full-batch gradient descent on least
    /// squares diverges above 2/λ_max (method.md §5). Computed on each call, O(n·d² + d³).
    pub fn lambda_max(&self) -> f64 {
        self.gram_eigenvalues().into_iter().fold(f64::NAN, f64::max)
    }

    /// Smallest eigenvalue of XᵀX/n; see [`PreparedData::lambda_max`].
    pub fn lambda_min(&self) -> f64 {
        self.gram_eigenvalues().into_iter().fold(f64::NAN, f64::min)
    }

    fn gram_eigenvalues(&self) -> Vec<f64> {
        let x = &self.train.x;
        symmetric_eigenvalues(x.t().dot(x) / x.nrows() as f64)
    }
}

/// Eigenvalues of the symmetric matrix `a` by cyclic Jacobi rotations: simple and accurate for
/// the small matrices (d × d Gram matrices) this is used on.
fn symmetric_eigenvalues(mut a: Array2<f64>) -> Vec<f64> {
    let d = a.nrows();
    // Rotations shrink the off-diagonal quadratically: a handful of sweeps, 100 is a backstop.
    for _ in 0..100 {
        let mut rotated = false;
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[[p, q]];
                // Below rounding against the diagonal: zeroing it moves no eigenvalue visibly.
                if apq.abs() <= 1e-3 * f64::EPSILON * (a[[p, p]].abs() + a[[q, q]].abs()) {
                    continue;
                }
                rotated = true;
                // The rotation in the (p, q) plane that zeroes a[p][q] (Numerical Recipes §11.1).
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                // Exactly zero, as the rotation makes it up to rounding.
                a[[p, q]] = 0.0;
                a[[q, p]] = 0.0;
            }
        }
        if !rotated {
            break;
        }
    }
    a.diag().to_vec()
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn jacobi_finds_known_eigenvalues() {
        let mut e = symmetric_eigenvalues(array![[2.0, 1.0], [1.0, 2.0]]);
        e.sort_by(f64::total_cmp);
        assert!(
            (e[0] - 1.0).abs() < 1e-12 && (e[1] - 3.0).abs() < 1e-12,
            "{e:?}"
        );
        // Tridiagonal [2, −1] of size 3: eigenvalues 2 − √2, 2, 2 + √2.
        let mut e = symmetric_eigenvalues(array![
            [2.0, -1.0, 0.0],
            [-1.0, 2.0, -1.0],
            [0.0, -1.0, 2.0]
        ]);
        e.sort_by(f64::total_cmp);
        let want = [2.0 - 2f64.sqrt(), 2.0, 2.0 + 2f64.sqrt()];
        for (got, want) in e.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{e:?}");
        }
    }
}
