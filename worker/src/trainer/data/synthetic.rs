//! Generated least-squares problems with a known spectrum.

use lrsweep_proto::rng::{Rng, Stream};
use ndarray::{Array2, Axis};

use super::Split;
use crate::WorkerError;

/// A least-squares problem whose training split has XᵀX/n with eigenvalues exactly
/// λ_j = κ^(−j/(d−1)), from 1 down to 1/κ: X_train = √n·U·diag(√λ)·Vᵀ with U (n × d) and
/// V (d × d) orthonormal (Gram–Schmidt on Gaussian draws). Validation rows are z·diag(√λ)·Vᵀ,
/// z ~ N(0, I): the same covariance in distribution. Targets are X·w* + noise·N(0, 1) with
/// w* ~ N(0, I).
pub(super) fn least_squares(
    n_train: usize,
    n_val: usize,
    d: usize,
    condition_number: f64,
    noise: f64,
    seed: u64,
) -> Result<(Split, Split), WorkerError> {
    if n_train < d {
        return Err(WorkerError::InvalidTrial(format!(
            "synthetic least squares: {n_train} training rows cannot have {d} orthogonal \
             columns; raise n"
        )));
    }
    let mut rng = Rng::new(seed, Stream::Synthetic, 0);
    let mut gaussian = |rows, cols| Array2::from_shape_simple_fn((rows, cols), || rng.normal());
    let mut v = gaussian(d, d);
    orthonormalize_columns(&mut v);
    let mut u = gaussian(n_train, d);
    orthonormalize_columns(&mut u);
    let z = gaussian(n_val, d);
    let w_star = gaussian(d, 1);
    let noise_train = gaussian(n_train, 1);
    let noise_val = gaussian(n_val, 1);

    // mix = diag(√λ)·Vᵀ, so that mixᵀ·mix = V·diag(λ)·Vᵀ.
    let mut mix = v.reversed_axes();
    for (j, mut row) in mix.rows_mut().into_iter().enumerate() {
        let lambda = if d == 1 {
            1.0
        } else {
            condition_number.powf(-(j as f64) / (d - 1) as f64)
        };
        row *= lambda.sqrt();
    }
    let make = |x: Array2<f64>, eps: Array2<f64>| {
        let y = x.dot(&w_star) + noise * eps;
        Split {
            x,
            y: y.into_iter().collect(),
        }
    };
    Ok((
        make(u.dot(&mix) * (n_train as f64).sqrt(), noise_train),
        make(z.dot(&mix), noise_val),
    ))
}

/// Modified Gram–Schmidt on the columns of `a` (independent ones: Gaussian draws are, almost
/// surely), twice per column to restore the orthogonality rounding erodes.
fn orthonormalize_columns(a: &mut Array2<f64>) {
    for j in 0..a.ncols() {
        let (done, mut rest) = a.view_mut().split_at(Axis(1), j);
        let mut col = rest.column_mut(0);
        for _ in 0..2 {
            for q in done.columns() {
                let r = q.dot(&col);
                col.scaled_add(-r, &q);
            }
        }
        let norm = col.dot(&col).sqrt();
        col /= norm;
    }
}

#[cfg(test)]
mod tests {
    use lrsweep_proto::domain::DatasetSpec;

    use crate::trainer::data::targets::Targets;
    use crate::trainer::data::test_support::config;
    use crate::trainer::PreparedData;
    use crate::WorkerError;

    #[test]
    fn synthetic_least_squares_has_the_requested_spectrum() {
        for (n, d, kappa) in [(200, 5, 100.0), (50, 8, 1e4), (30, 1, 1.0)] {
            let mut c = config(
                DatasetSpec::SyntheticLeastSquares {
                    n,
                    d,
                    condition_number: kappa,
                    noise: 0.1,
                },
                3,
            );
            c.standardize = false;
            let data = PreparedData::prepare(&c).unwrap();
            assert_eq!(
                (data.features(), data.targets()),
                (d as usize, Targets::Values)
            );
            let (max, min) = (data.lambda_max(), data.lambda_min());
            assert!((max - 1.0).abs() < 1e-9, "λ_max {max}");
            assert!(
                (max / min / kappa - 1.0).abs() < 1e-9,
                "κ {} for {kappa}",
                max / min
            );
            // The validation split is drawn from the same distribution, not the same matrix.
            assert_eq!(data.validation_len(), (0.2 * n as f64).round() as usize);
            assert!(data.val_y().iter().all(|v| v.is_finite()));
        }
        let mut c = config(
            DatasetSpec::SyntheticLeastSquares {
                n: 10,
                d: 9,
                condition_number: 10.0,
                noise: 0.0,
            },
            0,
        );
        c.standardize = false;
        assert!(matches!(
            PreparedData::prepare(&c),
            Err(WorkerError::InvalidTrial(_))
        ));
    }

    #[test]
    fn synthetic_data_is_seeded() {
        let make = |seed| {
            let mut c = config(
                DatasetSpec::SyntheticLeastSquares {
                    n: 40,
                    d: 3,
                    condition_number: 10.0,
                    noise: 0.5,
                },
                seed,
            );
            c.standardize = false;
            PreparedData::prepare(&c).unwrap()
        };
        let (a, b, c) = (make(1), make(1), make(2));
        assert_eq!((a.train_x(), a.train_y()), (b.train_x(), b.train_y()));
        assert_ne!(a.train_x(), c.train_x());
    }
}
