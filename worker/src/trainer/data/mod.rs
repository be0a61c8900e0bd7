//! The dataset a worker trains on: loaded (a file per format), split into training and
//! validation parts, standardised, and cut into replicate subsets.
//!
//! Data errors name the file and line. `line` 0 means the file as a whole (unreadable, not
//! UTF-8, a binary header); in IDX files, which have no lines, a label's "line" is its 1-based
//! item number.

mod csv;
mod file;
mod idx;
mod libsvm;
#[cfg(any(test, feature = "test-support"))]
mod spectrum;
mod synthetic;
mod targets;
#[cfg(test)]
mod test_support;

use std::path::Path;

use lrsweep_proto::domain::{DatasetSpec, Subset, TrainerConfig};
use lrsweep_proto::rng::{Rng, Stream};
use ndarray::{Array1, Array2, Axis};

use crate::WorkerError;
use file::{contents, read_raw, source, text};
pub(crate) use targets::Targets;

/// A dataset split into training and validation parts, optionally standardised, shared
/// read-only by all trials on a worker.
#[derive(Debug)]
pub struct PreparedData {
    /// What this was prepared from, so a trial can refuse data prepared for another config.
    dataset: DatasetSpec,
    seed: u64,
    validation_fraction: f64,
    standardize: bool,
    targets: Targets,
    /// Training split in file order (row i of `train.x` has target `train.y[i]`).
    train: Split,
    /// Seeded permutation of the training split that replicate subsets are cut from.
    train_order: Vec<usize>,
    val: Split,
}

/// Examples as rows of `x` with their targets `y`.
#[derive(Debug)]
struct Split {
    x: Array2<f64>,
    y: Vec<f64>,
}

impl PreparedData {
    /// Loads `config.dataset`, splits off `validation_fraction` for validation by a seeded
    /// shuffle (`seed`), standardises features (if `standardize`) with mean/std computed on the
    /// training split only (constant columns: std 1), and keeps the training split's shuffled
    /// order for subsets.
    pub fn prepare(config: &TrainerConfig) -> Result<PreparedData, WorkerError> {
        Self::prepare_with(config, read_raw)
    }

    /// [`prepare`](Self::prepare) with the data files' stored bytes taken from `read` rather
    /// than the file system: the entry the fuzz targets (fuzz/) feed arbitrary bytes through.
    pub fn prepare_with(
        config: &TrainerConfig,
        read: impl Fn(&Path) -> Result<Vec<u8>, WorkerError>,
    ) -> Result<PreparedData, WorkerError> {
        let read_file = |path: &Path| contents(read(path)?, &source(path));
        let read_text = |path: &Path| text(read_file(path)?, &source(path));
        let (seed, validation_fraction) = (config.seed, config.validation_fraction);
        let split = |table: Table| -> Result<_, WorkerError> {
            let (train_rows, val_rows) = split_rows(table.len(), seed, validation_fraction)?;
            Ok((
                table.select(&train_rows),
                table.select(&val_rows),
                table.targets,
            ))
        };
        let (mut train, mut val, targets) = match &config.dataset {
            DatasetSpec::Digits => split(csv::digits()?)?,
            DatasetSpec::Csv { path, label, task } => split(csv::parse_csv(
                &read_text(path)?,
                &source(path),
                label,
                *task,
            )?)?,
            DatasetSpec::Libsvm { path, task } => split(libsvm::parse_libsvm(
                &read_text(path)?,
                &source(path),
                *task,
            )?)?,
            DatasetSpec::Idx { images, labels } => split(idx::parse_idx(
                &read_file(images)?,
                &source(images),
                &read_file(labels)?,
                &source(labels),
            )?)?,
            &DatasetSpec::SyntheticLeastSquares {
                n,
                d,
                condition_number,
                noise,
            } => {
                let n = n as usize;
                let n_val = validation_rows(n, validation_fraction)?;
                let (train, val) = synthetic::least_squares(
                    n - n_val,
                    n_val,
                    d as usize,
                    condition_number,
                    noise,
                    seed,
                )?;
                (train, val, Targets::Values)
            }
        };

        if config.standardize {
            // Statistics from the training split only: validation must not leak into training.
            let n = train.x.nrows() as f64;
            let mean = train.x.sum_axis(Axis(0)) / n;
            let std: Array1<f64> =
                (&train.x - &mean)
                    .mapv(|v| v * v)
                    .sum_axis(Axis(0))
                    .mapv(|ss| {
                        let s = (ss / n).sqrt();
                        // A constant column carries no information; dividing by ~0 would only
                        // amplify noise in the validation split.
                        if s > 1e-12 {
                            s
                        } else {
                            1.0
                        }
                    });
            for x in [&mut train.x, &mut val.x] {
                *x -= &mean;
                *x /= &std;
            }
        }

        let mut train_order: Vec<usize> = (0..train.y.len()).collect();
        Rng::new(seed, Stream::TrainOrder, 0).shuffle(&mut train_order);

        Ok(PreparedData {
            dataset: config.dataset.clone(),
            seed,
            validation_fraction,
            standardize: config.standardize,
            targets,
            train,
            train_order,
            val,
        })
    }

    /// Whether this data is what `config` asks for (same dataset, seed, validation split and
    /// standardisation).
    pub fn matches(&self, config: &TrainerConfig) -> bool {
        self.dataset == config.dataset
            && self.seed == config.seed
            && self.validation_fraction == config.validation_fraction
            && self.standardize == config.standardize
    }

    pub fn train_len(&self) -> usize {
        self.train.y.len()
    }

    pub fn validation_len(&self) -> usize {
        self.val.y.len()
    }

    pub fn features(&self) -> usize {
        self.train.x.ncols()
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

    pub(crate) fn targets(&self) -> Targets {
        self.targets
    }

    pub(crate) fn train_x(&self) -> &Array2<f64> {
        &self.train.x
    }

    pub(crate) fn train_y(&self) -> &[f64] {
        &self.train.y
    }

    pub(crate) fn val_x(&self) -> &Array2<f64> {
        &self.val.x
    }

    pub(crate) fn val_y(&self) -> &[f64] {
        &self.val.y
    }
}

/// A parsed labelled table, features row-major.
#[derive(Debug)]
pub(crate) struct Table {
    features: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    targets: Targets,
}

impl Table {
    fn len(&self) -> usize {
        self.y.len()
    }

    fn select(&self, rows: &[usize]) -> Split {
        let d = self.features;
        let mut x = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            x.extend_from_slice(&self.x[r * d..(r + 1) * d]);
        }
        Split {
            x: Array2::from_shape_vec((rows.len(), d), x).expect("rows·d values were copied"),
            y: rows.iter().map(|&r| self.y[r]).collect(),
        }
    }
}

/// An error in `source_name` at `line` (0: the file as a whole).
fn data_error(source_name: &str, line: usize, reason: impl Into<String>) -> WorkerError {
    WorkerError::Data {
        source_name: source_name.to_string(),
        line,
        reason: reason.into(),
    }
}

/// A cell's value, if it is a finite number.
fn finite(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// How many of `n` rows the validation split gets.
fn validation_rows(n: usize, validation_fraction: f64) -> Result<usize, WorkerError> {
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
    Ok(n_val)
}

/// Splits rows `0..n` into (training, validation) by a seeded shuffle, both sorted: order within
/// a split carries no information (the training order is drawn separately).
pub(crate) fn split_rows(
    n: usize,
    seed: u64,
    validation_fraction: f64,
) -> Result<(Vec<usize>, Vec<usize>), WorkerError> {
    let n_val = validation_rows(n, validation_fraction)?;
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
    use std::collections::HashSet;

    use lrsweep_proto::domain::{ModelSpec, Task};

    use super::*;
    use test_support::{config, digits, gzip, subset, TempDir};

    #[test]
    fn files_load_through_prepare_and_errors_name_them() {
        let dir = TempDir::new("files");
        let csv = dir.write(
            "d.csv",
            b"a,b,y\n1,0,0.5\n2,0,1.5\n3,0,2.5\n4,0,3.5\n5,0,4.5\n",
        );
        let dataset = DatasetSpec::Csv {
            path: csv.clone(),
            label: "y".into(),
            task: Task::Regression,
        };
        let mut c = config(dataset, 0);
        c.model = ModelSpec::Linear { intercept: true };
        let data = PreparedData::prepare(&c).unwrap();
        assert_eq!(
            (data.features(), data.train_len(), data.targets()),
            (2, 4, Targets::Values)
        );
        assert!(data.matches(&c));
        c.standardize = false;
        assert!(!data.matches(&c), "standardisation is part of the data");

        let svm = dir.write("d.svm", &gzip(b"1 1:1\n0 2:1\n1 1:2\n0 2:2\n1 1:3\n"));
        let data = PreparedData::prepare(&config(
            DatasetSpec::Libsvm {
                path: svm,
                task: Task::Classification,
            },
            0,
        ))
        .unwrap();
        assert_eq!((data.features(), data.targets()), (2, Targets::Classes(2)));

        let missing = dir.path().join("missing.csv");
        let error = PreparedData::prepare(&config(
            DatasetSpec::Csv {
                path: missing.clone(),
                label: "y".into(),
                task: Task::Classification,
            },
            0,
        ));
        let error = error.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&missing.display().to_string()),
            "{error}"
        );
        assert!(error.is_permanent(), "no other attempt will find it");
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
        assert_eq!(
            (data.features(), data.targets()),
            (64, Targets::Classes(10))
        );
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

        let mut raw = config(DatasetSpec::Digits, 5);
        raw.standardize = false;
        let raw = PreparedData::prepare(&raw).unwrap();
        assert!(raw
            .train_x()
            .iter()
            .all(|&v| v.fract() == 0.0 && (0.0..=16.0).contains(&v)));
        assert_eq!(raw.train_y(), data.train_y());
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
