//! Loading, splitting and standardising the dataset, and cutting replicate subsets from it.

use lrsweep_proto::domain::{DatasetSpec, Subset, TrainerConfig};
use ndarray::{Array1, Array2, Axis};

use super::rng::{Rng, Stream};
use crate::WorkerError;

const DIGITS_CSV: &str = include_str!("../../data/digits.csv");
const DIGITS_SOURCE: &str = "digits.csv";
const DIGITS_CLASSES: usize = 10;

/// A dataset split into training and validation parts, standardised, shared read-only by all
/// trials on a worker.
#[derive(Debug)]
pub struct PreparedData {
    /// What this was prepared from, so a trial can refuse data prepared for another config.
    dataset: DatasetSpec,
    seed: u64,
    validation_fraction: f64,
    classes: usize,
    /// Training split in file order (row i of `train_x` has label `train_y[i]`).
    train_x: Array2<f64>,
    train_y: Vec<usize>,
    /// Seeded permutation of the training split that replicate subsets are cut from.
    train_order: Vec<usize>,
    val_x: Array2<f64>,
    val_y: Vec<usize>,
}

impl PreparedData {
    /// Loads the dataset, splits off `validation_fraction` for validation by a seeded shuffle
    /// (`seed`), standardises features with mean/std computed on the training split only
    /// (constant columns: std 1), and keeps the training split's shuffled order for subsets.
    pub fn prepare(
        dataset: &DatasetSpec,
        seed: u64,
        validation_fraction: f64,
    ) -> Result<PreparedData, WorkerError> {
        let (table, classes) = match dataset {
            DatasetSpec::Digits => (
                parse_csv(DIGITS_CSV, DIGITS_SOURCE, DIGITS_CLASSES)?,
                DIGITS_CLASSES,
            ),
        };
        let (train_rows, val_rows) = split_rows(table.len(), seed, validation_fraction)?;
        let (mut train_x, train_y) = table.select(&train_rows);
        let (mut val_x, val_y) = table.select(&val_rows);

        // Statistics from the training split only: validation must not leak into training.
        let n = train_x.nrows() as f64;
        let mean = train_x.sum_axis(Axis(0)) / n;
        let std: Array1<f64> = (&train_x - &mean)
            .mapv(|v| v * v)
            .sum_axis(Axis(0))
            .mapv(|ss| {
                let s = (ss / n).sqrt();
                // A constant column carries no information; dividing by ~0 would only amplify
                // noise in the validation split.
                if s > 1e-12 {
                    s
                } else {
                    1.0
                }
            });
        for x in [&mut train_x, &mut val_x] {
            *x -= &mean;
            *x /= &std;
        }

        let mut train_order: Vec<usize> = (0..train_rows.len()).collect();
        Rng::new(seed, Stream::TrainOrder, 0).shuffle(&mut train_order);

        Ok(PreparedData {
            dataset: dataset.clone(),
            seed,
            validation_fraction,
            classes,
            train_x,
            train_y,
            train_order,
            val_x,
            val_y,
        })
    }

    /// Whether this data is what `config` asks for (same dataset, seed and validation split).
    pub fn matches(&self, config: &TrainerConfig) -> bool {
        self.dataset == config.dataset
            && self.seed == config.seed
            && self.validation_fraction == config.validation_fraction
    }

    pub fn train_len(&self) -> usize {
        self.train_y.len()
    }

    pub fn validation_len(&self) -> usize {
        self.val_y.len()
    }

    pub fn features(&self) -> usize {
        self.train_x.ncols()
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Row indices (into the training split) of part `replicate` of `replicates` disjoint parts
    /// that together make up `fraction` of the training split: the first
    /// round(fraction·train_len) rows of the seeded training order, cut into `replicates`
    /// contiguous, disjoint parts whose sizes differ by at most one.
    pub fn subset_indices(&self, subset: &Subset) -> Result<Vec<usize>, WorkerError> {
        let Subset {
            fraction,
            replicate,
            replicates,
        } = *subset;
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(WorkerError::InvalidTrial(format!(
                "subset fraction {fraction} must lie in (0, 1]"
            )));
        }
        if replicate >= replicates {
            return Err(WorkerError::InvalidTrial(format!(
                "replicate {replicate} of {replicates} does not exist"
            )));
        }
        let n = self.train_order.len();
        let m = ((fraction * n as f64).round() as usize).min(n);
        // u128: replicate·m must not overflow whatever the replicate count.
        let bound = |k: u32| (u128::from(k) * m as u128 / u128::from(replicates)) as usize;
        let (start, end) = (bound(replicate), bound(replicate + 1));
        if start == end {
            return Err(WorkerError::InvalidTrial(format!(
                "replicate {replicate} of {replicates} of {fraction} of {n} training rows is empty"
            )));
        }
        Ok(self.train_order[start..end].to_vec())
    }

    pub(crate) fn train_x(&self) -> &Array2<f64> {
        &self.train_x
    }

    pub(crate) fn train_y(&self) -> &[usize] {
        &self.train_y
    }

    pub(crate) fn val_x(&self) -> &Array2<f64> {
        &self.val_x
    }

    pub(crate) fn val_y(&self) -> &[usize] {
        &self.val_y
    }
}

/// A parsed labelled table, features row-major.
#[derive(Debug)]
pub(crate) struct Table {
    features: usize,
    x: Vec<f64>,
    labels: Vec<usize>,
}

impl Table {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn select(&self, rows: &[usize]) -> (Array2<f64>, Vec<usize>) {
        let d = self.features;
        let x = Array2::from_shape_fn((rows.len(), d), |(i, j)| self.x[rows[i] * d + j]);
        (x, rows.iter().map(|&r| self.labels[r]).collect())
    }
}

/// Parses CSV text whose header names the feature columns followed by `label`, and whose rows
/// hold finite numbers and an integer label in `0..classes`. Errors name `source_name` and the
/// 1-based line.
pub(crate) fn parse_csv(
    text: &str,
    source_name: &str,
    classes: usize,
) -> Result<Table, WorkerError> {
    let err = |line: usize, reason: String| WorkerError::Data {
        source_name: source_name.to_string(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, header)) = lines.next() else {
        return Err(err(1, "empty file, expected a header".into()));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns.len() < 2 || columns.last() != Some(&"label") {
        return Err(err(
            1,
            "header must name the feature columns, then `label`".into(),
        ));
    }
    let features = columns.len() - 1;

    let mut x = Vec::new();
    let mut labels = Vec::new();
    // Blank lines (e.g. trailing ones) are not rows.
    for (line, row) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = row.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(err(
                line,
                format!("expected {} fields, found {}", columns.len(), cells.len()),
            ));
        }
        for (cell, name) in cells.iter().zip(&columns).take(features) {
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => x.push(v),
                _ => {
                    return Err(err(
                        line,
                        format!("column {name}: {cell:?} is not a finite number"),
                    ))
                }
            }
        }
        let label = cells[features];
        match label.parse::<usize>() {
            Ok(l) if l < classes => labels.push(l),
            _ => {
                return Err(err(
                    line,
                    format!("label {label:?} is not a class in 0..{classes}"),
                ))
            }
        }
    }
    if labels.is_empty() {
        return Err(err(1, "no data rows".into()));
    }
    Ok(Table {
        features,
        x,
        labels,
    })
}

/// Splits rows `0..n` into (training, validation) by a seeded shuffle, both sorted: order within
/// a split carries no information (the training order is drawn separately).
pub(crate) fn split_rows(
    n: usize,
    seed: u64,
    validation_fraction: f64,
) -> Result<(Vec<usize>, Vec<usize>), WorkerError> {
    if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
        return Err(WorkerError::InvalidTrial(format!(
            "validation fraction {validation_fraction} must lie in (0, 1)"
        )));
    }
    let n_val = (validation_fraction * n as f64).round() as usize;
    if n_val == 0 || n_val >= n {
        return Err(WorkerError::InvalidTrial(format!(
            "validation fraction {validation_fraction} of {n} rows leaves a split empty"
        )));
    }
    let mut rows: Vec<usize> = (0..n).collect();
    Rng::new(seed, Stream::Split, 0).shuffle(&mut rows);
    let mut val = rows[..n_val].to_vec();
    let mut train = rows[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn digits(seed: u64) -> PreparedData {
        PreparedData::prepare(&DatasetSpec::Digits, seed, 0.2).unwrap()
    }

    fn subset(fraction: f64, replicate: u32, replicates: u32) -> Subset {
        Subset {
            fraction,
            replicate,
            replicates,
        }
    }

    fn data_error_line(result: Result<Table, WorkerError>) -> usize {
        match result {
            Err(WorkerError::Data {
                source_name, line, ..
            }) => {
                assert_eq!(source_name, "test.csv");
                line
            }
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    #[test]
    fn bundled_digits_parse() {
        let t = parse_csv(DIGITS_CSV, DIGITS_SOURCE, DIGITS_CLASSES).unwrap();
        assert_eq!((t.len(), t.features, t.x.len()), (1797, 64, 1797 * 64));
        assert!(t.x.iter().all(|&v| (0.0..=16.0).contains(&v)));
        let classes: HashSet<usize> = t.labels.iter().copied().collect();
        assert_eq!(classes.len(), 10);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let header = "a,b,label\n";
        let ragged = format!("{header}1,2,0\n3,4\n");
        assert_eq!(data_error_line(parse_csv(&ragged, "test.csv", 10)), 3);
        let too_long = format!("{header}1,2,0\n1,2,0\n1,2,3,4\n");
        assert_eq!(data_error_line(parse_csv(&too_long, "test.csv", 10)), 4);
        let non_numeric = format!("{header}1,x,0\n");
        assert_eq!(data_error_line(parse_csv(&non_numeric, "test.csv", 10)), 2);
        let non_finite = format!("{header}1,2,0\n\n1,inf,0\n");
        assert_eq!(data_error_line(parse_csv(&non_finite, "test.csv", 10)), 4);
        let bad_label = format!("{header}1,2,10\n");
        assert_eq!(data_error_line(parse_csv(&bad_label, "test.csv", 10)), 2);
        let fractional_label = format!("{header}1,2,0.5\n");
        assert_eq!(
            data_error_line(parse_csv(&fractional_label, "test.csv", 10)),
            2
        );
        assert_eq!(data_error_line(parse_csv("a,b\n1,2\n", "test.csv", 10)), 1);
        assert_eq!(data_error_line(parse_csv("", "test.csv", 10)), 1);
        assert_eq!(data_error_line(parse_csv(header, "test.csv", 10)), 1);

        let ok = parse_csv(&format!("{header}1, 2.5,3\r\n4,5,6\n\n"), "test.csv", 10).unwrap();
        assert_eq!((ok.x, ok.labels), (vec![1.0, 2.5, 4.0, 5.0], vec![3, 6]));
    }

    #[test]
    fn validation_split_never_overlaps_training() {
        for seed in [0, 1, 42] {
            let (train, val) = split_rows(1797, seed, 0.2).unwrap();
            assert_eq!((train.len(), val.len()), (1438, 359));
            let all: HashSet<usize> = train.iter().chain(&val).copied().collect();
            assert_eq!(all.len(), 1797, "splits overlap");
            assert!(all.iter().all(|&r| r < 1797));
            let data = digits(seed);
            assert_eq!((data.train_len(), data.validation_len()), (1438, 359));
        }
        assert_ne!(
            split_rows(1797, 0, 0.2).unwrap(),
            split_rows(1797, 1, 0.2).unwrap()
        );
        assert!(split_rows(10, 0, 0.01).is_err());
        assert!(split_rows(10, 0, 0.99).is_err());
        assert!(split_rows(10, 0, 1.0).is_err());
    }

    #[test]
    fn standardised_with_training_statistics() {
        let data = digits(5);
        assert_eq!((data.features(), data.classes()), (64, 10));
        let n = data.train_len() as f64;
        for col in data.train_x().columns() {
            let mean = col.sum() / n;
            let var = col.mapv(|v| (v - mean).powi(2)).sum() / n;
            assert!(mean.abs() < 1e-9, "mean {mean}");
            // Constant columns are centred to all zeros; the others have unit variance.
            assert!(var < 1e-12 || (var - 1.0).abs() < 1e-9, "variance {var}");
        }
        assert!(data.val_x().iter().all(|v| v.is_finite()));
        assert_eq!(data.val_x().nrows(), data.val_y().len());
    }

    #[test]
    fn subsets_are_disjoint_near_equal_and_seeded() {
        let data = digits(7);
        let (train_rows, _) = split_rows(1797, 7, 0.2).unwrap();
        // round(0.5 · 1438) = 719 rows in 3 parts.
        let parts: Vec<Vec<usize>> = (0..3)
            .map(|r| data.subset_indices(&subset(0.5, r, 3)).unwrap())
            .collect();
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, [239, 240, 240]);
        let union: HashSet<usize> = parts.iter().flatten().copied().collect();
        assert_eq!(union.len(), 719, "parts overlap");
        assert!(union.iter().all(|&i| i < data.train_len()));

        let whole = data.subset_indices(&subset(1.0, 0, 1)).unwrap();
        assert_eq!(whole.len(), data.train_len());
        assert_eq!(whole[..239], parts[0][..], "parts are cut from one order");

        let again = digits(7);
        assert_eq!(again.subset_indices(&subset(0.5, 1, 3)).unwrap(), parts[1]);

        // A different seed picks different examples (compared as dataset rows, since the
        // training split itself differs too).
        let other = digits(8);
        let (other_rows, _) = split_rows(1797, 8, 0.2).unwrap();
        let rows = |idx: &[usize], map: &[usize]| idx.iter().map(|&i| map[i]).collect::<Vec<_>>();
        let other_part = other.subset_indices(&subset(0.5, 1, 3)).unwrap();
        assert_ne!(rows(&parts[1], &train_rows), rows(&other_part, &other_rows));
    }

    #[test]
    fn impossible_subsets_are_rejected() {
        let data = digits(0);
        for bad in [
            subset(0.0003, 0, 1), // rounds to zero rows
            subset(0.01, 0, 100), // 14 rows in 100 parts: part 0 is empty
            subset(0.5, 3, 3),
            subset(0.0, 0, 1),
            subset(1.5, 0, 1),
            subset(f64::NAN, 0, 1),
            subset(0.5, 0, 0),
        ] {
            assert!(
                matches!(data.subset_indices(&bad), Err(WorkerError::InvalidTrial(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn prepared_data_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PreparedData>();
    }
}
