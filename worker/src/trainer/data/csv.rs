//! CSV with a header: the bundled digits and user files.

use lrsweep_proto::domain::Task;

use super::targets::targets_of;
use super::{data_error, finite, Table};
use crate::WorkerError;

const DIGITS_CSV: &str = include_str!("../../../data/digits.csv");
const DIGITS_SOURCE: &str = "digits.csv";

/// The bundled 8×8 digits.
pub(super) fn digits() -> Result<Table, WorkerError> {
    parse_csv(DIGITS_CSV, DIGITS_SOURCE, "label", Task::Classification)
}

/// Parses CSV text: a header naming the columns, then rows of finite numbers. Column `label`
/// holds the targets (see [`targets_of`]), every other column is a feature. Plain
/// comma-separated numbers: no quoting. Errors name `source_name` and the 1-based line.
pub(super) fn parse_csv(
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::trainer::data::targets::Targets;
    use crate::trainer::data::test_support::data_error_at;

    fn csv_line(text: &str) -> usize {
        let (source, line) =
            data_error_at(parse_csv(text, "test.csv", "label", Task::Classification));
        assert_eq!(source, "test.csv");
        line
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
}
