//! Loading (bundled digits, CSV, LIBSVM, IDX, synthetic least squares), splitting and
//! standardising the dataset, and cutting replicate subsets from it.
//!
//! Data errors name the file and line. `line` 0 means the file as a whole (unreadable, not
//! UTF-8, a binary header); in IDX files, which have no lines, a label's "line" is its 1-based
//! item number.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use lrsweep_proto::domain::{DatasetSpec, Subset, Task, TrainerConfig};
use lrsweep_proto::rng::{Rng, Stream};
use ndarray::{Array1, Array2, Axis};

use crate::WorkerError;

const DIGITS_CSV: &str = include_str!("../../data/digits.csv");
const DIGITS_SOURCE: &str = "digits.csv";

/// The first bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Most bytes a data file may decompress to: a gzip bomb must be an error, not an abort.
const MAX_FILE_BYTES: u64 = 1 << 31;
/// Most classes a classification dataset may have: more is a regression column or a typo.
const MAX_CLASSES: usize = 10_000;
/// Most values (examples × features) a sparse LIBSVM file may expand to when made dense.
const MAX_DENSE_CELLS: usize = 1 << 27;
/// IDX magic numbers: unsigned bytes (0x08) in 3 dimensions (images) or 1 (labels).
const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// What the label vector holds. Class ids are stored as exact integers in the same f64 vector
/// as regression values, so batches of either kind use one buffer type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Class ids 0..k.
    Classes(usize),
    /// Real-valued regression targets.
    Values,
}

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
            DatasetSpec::Digits => split(parse_csv(
                DIGITS_CSV,
                DIGITS_SOURCE,
                "label",
                Task::Classification,
            )?)?,
            DatasetSpec::Csv { path, label, task } => {
                split(parse_csv(&read_text(path)?, &source(path), label, *task)?)?
            }
            DatasetSpec::Libsvm { path, task } => {
                split(parse_libsvm(&read_text(path)?, &source(path), *task)?)?
            }
            DatasetSpec::Idx { images, labels } => split(parse_idx(
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
                let (train, val) = synthetic_least_squares(
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

fn source(path: &Path) -> String {
    path.display().to_string()
}

fn data_error(source_name: &str, line: usize, reason: impl Into<String>) -> WorkerError {
    WorkerError::Data {
        source_name: source_name.to_string(),
        line,
        reason: reason.into(),
    }
}

/// The file's bytes, decompressed if they start with gzip's magic bytes (whatever the name).
fn read_file(path: &Path) -> Result<Vec<u8>, WorkerError> {
    let name = source(path);
    let bytes =
        std::fs::read(path).map_err(|e| data_error(&name, 0, format!("cannot read: {e}")))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    // MultiGzDecoder: concatenated gzip members (`cat a.gz b.gz`) are one valid file.
    MultiGzDecoder::new(&bytes[..])
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| data_error(&name, 0, format!("cannot decompress gzip: {e}")))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(data_error(
            &name,
            0,
            format!("decompresses to more than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, WorkerError> {
    String::from_utf8(read_file(path)?).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        data_error(&source(path), line, "not UTF-8 text")
    })
}

/// Checks the raw labels `y` (finite numbers) for `task` and turns class labels into class ids
/// by the rule of [`Task::Classification`]: non-negative integers are the ids themselves, and
/// the binary labelling −1/+1 maps −1 → 0, +1 → 1. `line_of(i)` is example i's line.
fn targets_of(
    y: &mut [f64],
    task: Task,
    source_name: &str,
    line_of: impl Fn(usize) -> usize,
) -> Result<Targets, WorkerError> {
    if task == Task::Regression {
        return Ok(Targets::Values);
    }
    let signed = y.contains(&-1.0);
    for (i, &v) in y.iter().enumerate() {
        let reason = if signed {
            if v == -1.0 || v == 1.0 {
                continue;
            }
            format!(
                "label {v} mixes with labels −1: −1 is only allowed in a binary −1/+1 labelling"
            )
        } else {
            if v.fract() == 0.0 && (0.0..MAX_CLASSES as f64).contains(&v) {
                continue;
            }
            format!("label {v} is not a class id (an integer in 0..{MAX_CLASSES}, or ±1)")
        };
        return Err(data_error(source_name, line_of(i), reason));
    }
    if signed {
        for v in y.iter_mut() {
            *v = (*v + 1.0) / 2.0;
        }
    }
    let classes = y.iter().fold(0.0, |m: f64, &v| m.max(v)) as usize + 1;
    Ok(Targets::Classes(classes))
}

fn finite(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses CSV text: a header naming the columns, then rows of finite numbers. Column `label`
/// holds the targets (see [`targets_of`]), every other column is a feature. Plain
/// comma-separated numbers: no quoting. Errors name `source_name` and the 1-based line.
pub(crate) fn parse_csv(
    text: &str,
    source_name: &str,
    label: &str,
    task: Task,
) -> Result<Table, WorkerError> {
    let err = |line: usize, reason: String| data_error(source_name, line, reason);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, header)) = lines.next() else {
        return Err(err(1, "empty file, expected a header".into()));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let label_col = match columns.iter().filter(|&&c| c == label).count() {
        0 => return Err(err(1, format!("no column named `{label}` in the header"))),
        1 => columns.iter().position(|&c| c == label).unwrap_or(0),
        n => return Err(err(1, format!("column `{label}` appears {n} times"))),
    };
    if columns.len() < 2 {
        return Err(err(1, "no feature columns besides the label".into()));
    }

    let (mut x, mut y, mut row_lines) = (Vec::new(), Vec::new(), Vec::new());
    // Blank lines (e.g. trailing ones) are not rows.
    for (line, row) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = row.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(err(
                line,
                format!("expected {} fields, found {}", columns.len(), cells.len()),
            ));
        }
        for (j, (cell, name)) in cells.iter().zip(&columns).enumerate() {
            let value = finite(cell).ok_or_else(|| {
                err(
                    line,
                    format!("column {name}: {cell:?} is not a finite number"),
                )
            })?;
            if j == label_col {
                y.push(value);
            } else {
                x.push(value);
            }
        }
        row_lines.push(line);
    }
    if y.is_empty() {
        return Err(err(1, "no data rows".into()));
    }
    let targets = targets_of(&mut y, task, source_name, |i| row_lines[i])?;
    Ok(Table {
        features: columns.len() - 1,
        x,
        y,
        targets,
    })
}

/// Parses SVMlight / LIBSVM text: `label index:value ...` per line, 1-based strictly increasing
/// indices, absent features 0, `#` to the end of a line a comment. The feature count is the
/// largest index used. Labels follow [`targets_of`].
pub(crate) fn parse_libsvm(
    text: &str,
    source_name: &str,
    task: Task,
) -> Result<Table, WorkerError> {
    let err = |line: usize, reason: String| data_error(source_name, line, reason);
    let (mut entries, mut y, mut row_lines) = (Vec::new(), Vec::new(), Vec::new());
    let (mut features, mut widest_line) = (0, 1);
    for (line, raw) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let content = raw.split('#').next().unwrap_or("");
        let mut tokens = content.split_whitespace();
        let Some(label) = tokens.next() else {
            continue;
        };
        y.push(
            finite(label)
                .ok_or_else(|| err(line, format!("label {label:?} is not a finite number")))?,
        );
        let mut previous = 0;
        for token in tokens {
            let bad = |why: &str| err(line, format!("token {token:?}: {why}"));
            let (index, value) = token
                .split_once(':')
                .ok_or_else(|| bad("expected index:value"))?;
            let index = index
                .parse::<usize>()
                .ok()
                .filter(|&i| i >= 1)
                .ok_or_else(|| bad("the index must be an integer from 1"))?;
            if index <= previous {
                return Err(bad(&format!(
                    "indices must increase, {index} follows {previous}"
                )));
            }
            let value = finite(value).ok_or_else(|| bad("the value is not a finite number"))?;
            previous = index;
            entries.push((y.len() - 1, index - 1, value));
        }
        if previous > features {
            (features, widest_line) = (previous, line);
        }
        row_lines.push(line);
    }
    if y.is_empty() {
        return Err(err(1, "no data rows".into()));
    }
    if features == 0 {
        return Err(err(1, "no features in any row".into()));
    }
    if y.len().saturating_mul(features) > MAX_DENSE_CELLS {
        return Err(err(
            widest_line,
            format!(
                "{} rows × {features} features exceed {MAX_DENSE_CELLS} dense values",
                y.len()
            ),
        ));
    }
    let mut x = vec![0.0; y.len() * features];
    for (row, index, value) in entries {
        x[row * features + index] = value;
    }
    let targets = targets_of(&mut y, task, source_name, |i| row_lines[i])?;
    Ok(Table {
        features,
        x,
        y,
        targets,
    })
}

/// The dimension sizes and data of an IDX file of unsigned bytes whose magic number must be
/// `magic` (0x0000_08NN: unsigned bytes in NN dimensions, sizes as big-endian u32).
fn idx_body<'a>(
    bytes: &'a [u8],
    magic: u32,
    source_name: &str,
) -> Result<(Vec<usize>, &'a [u8]), WorkerError> {
    let err = |reason: String| data_error(source_name, 0, reason);
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let found = word(0).ok_or_else(|| err("too short for an IDX header".into()))?;
    if found != magic {
        return Err(err(format!(
            "IDX magic number {found:#010x}, expected {magic:#010x}"
        )));
    }
    let dims = (magic & 0xff) as usize;
    let sizes = (1..=dims)
        .map(|i| word(i).map(|s| s as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| err("IDX header cut short".into()))?;
    let data = &bytes[4 * (dims + 1)..];
    let expected = sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s));
    if expected != Some(data.len()) {
        return Err(err(format!(
            "{} data bytes, but the header's sizes {sizes:?} need {}",
            data.len(),
            sizes.iter().map(|&s| s as u128).product::<u128>()
        )));
    }
    Ok((sizes, data))
}

/// Parses an IDX image file (n × rows × cols unsigned bytes, used as they are) and its label
/// file (n unsigned bytes, class ids).
pub(crate) fn parse_idx(
    images: &[u8],
    images_name: &str,
    labels: &[u8],
    labels_name: &str,
) -> Result<Table, WorkerError> {
    let (sizes, pixels) = idx_body(images, IDX_IMAGES_MAGIC, images_name)?;
    let (label_sizes, label_bytes) = idx_body(labels, IDX_LABELS_MAGIC, labels_name)?;
    if sizes[0] == 0 {
        return Err(data_error(images_name, 0, "no images"));
    }
    if label_sizes[0] != sizes[0] {
        return Err(data_error(
            labels_name,
            0,
            format!(
                "{} labels for {} images in {images_name}",
                label_sizes[0], sizes[0]
            ),
        ));
    }
    let mut y: Vec<f64> = label_bytes.iter().map(|&l| f64::from(l)).collect();
    let targets = targets_of(&mut y, Task::Classification, labels_name, |i| i + 1)?;
    Ok(Table {
        features: sizes[1] * sizes[2],
        x: pixels.iter().map(|&p| f64::from(p)).collect(),
        y,
        targets,
    })
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

/// A least-squares problem whose training split has XᵀX/n with eigenvalues exactly
/// λ_j = κ^(−j/(d−1)), from 1 down to 1/κ: X_train = √n·U·diag(√λ)·Vᵀ with U (n × d) and
/// V (d × d) orthonormal (Gram–Schmidt on Gaussian draws). Validation rows are z·diag(√λ)·Vᵀ,
/// z ~ N(0, I): the same covariance in distribution. Targets are X·w* + noise·N(0, 1) with
/// w* ~ N(0, I).
fn synthetic_least_squares(
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
    use super::*;
    use lrsweep_proto::domain::ModelSpec;
    use ndarray::array;
    use std::collections::HashSet;
    use std::io::Write;
    use std::path::PathBuf;

    fn config(dataset: DatasetSpec, seed: u64) -> TrainerConfig {
        TrainerConfig {
            dataset,
            seed,
            ..TrainerConfig::default()
        }
    }

    fn digits(seed: u64) -> PreparedData {
        PreparedData::prepare(&config(DatasetSpec::Digits, seed)).unwrap()
    }

    fn subset(fraction: f64, replicate: u32, replicates: u32) -> Subset {
        Subset {
            fraction,
            replicate,
            replicates,
        }
    }

    /// A directory of its own under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("lrsweep-worker-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The (source, line) of a data error.
    fn data_error_at<T: std::fmt::Debug>(result: Result<T, WorkerError>) -> (String, usize) {
        match result {
            Err(WorkerError::Data {
                source_name, line, ..
            }) => (source_name, line),
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    fn csv_line(text: &str) -> usize {
        let (source, line) =
            data_error_at(parse_csv(text, "test.csv", "label", Task::Classification));
        assert_eq!(source, "test.csv");
        line
    }

    fn libsvm_line(text: &str) -> usize {
        let (source, line) = data_error_at(parse_libsvm(text, "test.svm", Task::Classification));
        assert_eq!(source, "test.svm");
        line
    }

    /// An IDX file of unsigned bytes with the given magic, sizes and data.
    fn idx(magic: u32, sizes: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for s in sizes {
            out.extend(s.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn bundled_digits_parse() {
        let t = parse_csv(DIGITS_CSV, DIGITS_SOURCE, "label", Task::Classification).unwrap();
        assert_eq!((t.len(), t.features, t.x.len()), (1797, 64, 1797 * 64));
        assert!(t.x.iter().all(|&v| (0.0..=16.0).contains(&v)));
        assert_eq!(t.targets, Targets::Classes(10));
        let classes: HashSet<u64> = t.y.iter().map(|&c| c as u64).collect();
        assert_eq!(classes.len(), 10);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let header = "a,b,label\n";
        assert_eq!(csv_line(&format!("{header}1,2,0\n3,4\n")), 3, "ragged");
        assert_eq!(csv_line(&format!("{header}1,2,0\n1,2,0\n1,2,3,4\n")), 4);
        assert_eq!(csv_line(&format!("{header}1,x,0\n")), 2, "non-numeric");
        assert_eq!(csv_line(&format!("{header}1,,0\n")), 2, "empty cell");
        assert_eq!(csv_line(&format!("{header}1,2,0\n\n1,inf,0\n")), 4);
        assert_eq!(csv_line(&format!("{header}1,2,-2\n")), 2, "negative label");
        assert_eq!(
            csv_line(&format!("{header}1,2,0.5\n")),
            2,
            "fractional label"
        );
        assert_eq!(
            csv_line(&format!("{header}1,2,10000\n")),
            2,
            "too many classes"
        );
        assert_eq!(
            csv_line(&format!("{header}1,2,1\n1,2,-1\n1,2,0\n")),
            4,
            "−1 with 0"
        );
        assert_eq!(csv_line("a,b\n1,2\n"), 1, "no label column");
        assert_eq!(csv_line("a,label,label\n1,2,3\n"), 1, "two label columns");
        assert_eq!(csv_line("label\n1\n"), 1, "no features");
        assert_eq!(csv_line(""), 1);
        assert_eq!(csv_line(header), 1, "no rows");

        let ok = parse_csv(
            &format!("{header}1, 2.5,3\r\n4,5,6\n\n"),
            "test.csv",
            "label",
            Task::Classification,
        )
        .unwrap();
        assert_eq!((ok.x, ok.y), (vec![1.0, 2.5, 4.0, 5.0], vec![3.0, 6.0]));
        assert_eq!(ok.targets, Targets::Classes(7));
    }

    #[test]
    fn csv_label_column_may_be_anywhere_and_real_valued() {
        let text = "y,a,b\n0.5,1,2\n-3.25,3,4\n";
        let t = parse_csv(text, "test.csv", "y", Task::Regression).unwrap();
        assert_eq!(
            (t.x, t.y, t.targets),
            (vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -3.25], Targets::Values)
        );
        // The same file is no classification data.
        assert_eq!(
            data_error_at(parse_csv(text, "test.csv", "y", Task::Classification)),
            ("test.csv".into(), 2)
        );
        // −1/+1 becomes 0/1.
        let signed = parse_csv(
            "a,y\n1,-1\n2,+1\n3,-1\n",
            "s.csv",
            "y",
            Task::Classification,
        )
        .unwrap();
        assert_eq!(
            (signed.y, signed.targets),
            (vec![0.0, 1.0, 0.0], Targets::Classes(2))
        );
    }

    #[test]
    fn libsvm_parses_sparse_rows() {
        let text = "# a comment line\n+1 1:0.5 3:2 # trailing comment\n\n-1 2:-1\n";
        let t = parse_libsvm(text, "test.svm", Task::Classification).unwrap();
        assert_eq!(t.features, 3);
        assert_eq!(t.x, vec![0.5, 0.0, 2.0, 0.0, -1.0, 0.0]);
        assert_eq!((t.y, t.targets), (vec![1.0, 0.0], Targets::Classes(2)));
        let r = parse_libsvm("2.5 1:1\n-0.5 2:1\n", "r.svm", Task::Regression).unwrap();
        assert_eq!((r.y, r.targets), (vec![2.5, -0.5], Targets::Values));
        let multi = parse_libsvm("1 1:1\n3 1:2\n", "m.svm", Task::Classification).unwrap();
        assert_eq!(multi.targets, Targets::Classes(4));
    }

    #[test]
    fn libsvm_errors_name_the_line() {
        assert_eq!(libsvm_line("1 1:1\n0 2:abc\n"), 2, "bad value");
        assert_eq!(libsvm_line("1 1:1\n0 x:1\n"), 2, "bad index");
        assert_eq!(libsvm_line("1 0:1\n"), 1, "index 0");
        assert_eq!(libsvm_line("1 1:1\n\n0 3:1 2:1\n"), 3, "decreasing indices");
        assert_eq!(libsvm_line("1 1:1 1:2\n"), 1, "repeated index");
        assert_eq!(libsvm_line("1 1:1\n0 2\n"), 2, "no colon");
        assert_eq!(libsvm_line("1 qid:3 1:1\n"), 1, "qid is not supported");
        assert_eq!(libsvm_line("one 1:1\n"), 1, "bad label");
        assert_eq!(libsvm_line("1 1:1\n2 1:1\n-1 1:1\n"), 2, "−1 with 2");
        assert_eq!(libsvm_line("1.5 1:1\n"), 1, "fractional class");
        assert_eq!(libsvm_line("# nothing\n"), 1, "no rows");
        assert_eq!(libsvm_line("1\n0\n"), 1, "no features");
        assert_eq!(
            libsvm_line("1 1:1\n0 200000000:1\n"),
            2,
            "too wide to densify"
        );
    }

    #[test]
    fn idx_parses_and_checks_its_headers() {
        let images = idx(
            IDX_IMAGES_MAGIC,
            &[2, 2, 3],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255],
        );
        let labels = idx(IDX_LABELS_MAGIC, &[2], &[3, 7]);
        let t = parse_idx(&images, "img", &labels, "lbl").unwrap();
        assert_eq!(
            (t.features, t.len(), t.targets),
            (6, 2, Targets::Classes(8))
        );
        assert_eq!(t.x[11], 255.0);
        assert_eq!(t.y, vec![3.0, 7.0]);

        let error =
            |images: &[u8], labels: &[u8]| data_error_at(parse_idx(images, "img", labels, "lbl"));
        assert_eq!(
            error(&labels, &labels),
            ("img".into(), 0),
            "labels as images"
        );
        assert_eq!(
            error(&images, &images),
            ("lbl".into(), 0),
            "images as labels"
        );
        let short = idx(IDX_IMAGES_MAGIC, &[2, 2, 3], &[0; 11]);
        assert_eq!(error(&short, &labels), ("img".into(), 0), "truncated data");
        let long = idx(IDX_LABELS_MAGIC, &[2], &[1, 2, 3]);
        assert_eq!(error(&images, &long), ("lbl".into(), 0), "trailing data");
        let three = idx(IDX_LABELS_MAGIC, &[3], &[1, 2, 3]);
        assert_eq!(error(&images, &three), ("lbl".into(), 0), "count mismatch");
        assert_eq!(
            error(&images[..10], &labels),
            ("img".into(), 0),
            "cut header"
        );
        assert_eq!(error(&[0, 0], &labels), ("img".into(), 0), "no header");
        let huge = idx(IDX_IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert_eq!(error(&huge, &labels), ("img".into(), 0), "absurd sizes");
        let empty = idx(IDX_IMAGES_MAGIC, &[0, 2, 3], &[]);
        let no_labels = idx(IDX_LABELS_MAGIC, &[0], &[]);
        assert_eq!(error(&empty, &no_labels), ("img".into(), 0), "no images");
    }

    #[test]
    fn idx_gzip_round_trip_through_files() {
        let dir = TempDir::new("idx");
        // 10 images of 2×2 pixels, image i all i; labels i mod 3.
        let pixels: Vec<u8> = (0..10u8).flat_map(|i| [i; 4]).collect();
        let labels: Vec<u8> = (0..10u8).map(|i| i % 3).collect();
        let images = dir.write(
            "images.gz",
            &gzip(&idx(IDX_IMAGES_MAGIC, &[10, 2, 2], &pixels)),
        );
        // Plain and compressed files are told apart by content, not by name.
        let labels = dir.write("labels.idx", &idx(IDX_LABELS_MAGIC, &[10], &labels));
        let mut c = config(DatasetSpec::Idx { images, labels }, 1);
        c.standardize = false;
        let data = PreparedData::prepare(&c).unwrap();
        assert_eq!((data.features(), data.targets()), (4, Targets::Classes(3)));
        assert_eq!((data.train_len(), data.validation_len()), (8, 2));
        for (row, &y) in data.train_x().rows().into_iter().zip(data.train_y()) {
            assert!(row.iter().all(|&p| p == row[0]));
            assert_eq!(row[0] as u32 % 3, y as u32, "labels stay with their images");
        }

        let corrupt = dir.write("corrupt.gz", &gzip(b"x")[..8]);
        assert_eq!(data_error_at(read_file(&corrupt)).1, 0);
    }

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

        let missing = dir.0.join("missing.csv");
        let error = PreparedData::prepare(&config(
            DatasetSpec::Csv {
                path: missing.clone(),
                label: "y".into(),
                task: Task::Classification,
            },
            0,
        ));
        assert_eq!(data_error_at(error), (missing.display().to_string(), 0));

        let latin1 = dir.write("l.csv", b"a,label\n1,0\n\xe9,1\n");
        let error = read_text(&latin1);
        assert_eq!(data_error_at(error), (latin1.display().to_string(), 3));
    }

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
