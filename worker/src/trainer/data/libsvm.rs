//! SVMlight / LIBSVM sparse text, made dense.

use lrsweep_proto::domain::Task;

use super::targets::targets_of;
use super::{data_error, finite, Table};
use crate::WorkerError;

/// Most values (examples × features) a sparse LIBSVM file may expand to when made dense.
const MAX_DENSE_CELLS: usize = 1 << 27;

/// Parses SVMlight / LIBSVM text: `label index:value ...` per line, 1-based strictly increasing
/// indices, absent features 0, `#` to the end of a line a comment. The feature count is the
/// largest index used. Labels follow [`targets_of`].
pub(super) fn parse_libsvm(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::data::targets::Targets;
    use crate::trainer::data::test_support::data_error_at;

    fn libsvm_line(text: &str) -> usize {
        let (source, line) = data_error_at(parse_libsvm(text, "test.svm", Task::Classification));
        assert_eq!(source, "test.svm");
        line
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
}
