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
/// holds the targets (see [`targets_of`]), every other column is a feature. Read as
/// spreadsheets and R write it: fields and header names may be quoted, lines may end in CRLF,
/// a UTF-8 byte-order mark is skipped, blank lines are not rows, and a first column with an
/// empty name holds row names (R's `write.csv`, pandas' `to_csv` index), not a feature. Errors
/// name `source_name` and the 1-based line.
pub(super) fn parse_csv(
    text: &str,
    source_name: &str,
    label: &str,
    task: Task,
) -> Result<Table, WorkerError> {
    let err = |line: u64, reason: String| data_error(source_name, line as usize, reason);
    let body = text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes();
    let at = |position: Option<&::csv::Position>| position.map_or(0, |p| record_line(body, p));
    let csv_error = |e: ::csv::Error| err(at(e.position()), e.to_string());
    // Ragged rows are checked below, so that the error says which line and how many fields.
    let mut reader = ::csv::ReaderBuilder::new()
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(body);
    let header = reader.headers().map_err(csv_error)?.clone();
    let header_line = at(header.position()).max(1);
    if header.is_empty() {
        return Err(err(1, "empty file, expected a header".into()));
    }
    let row_names = usize::from(header.len() > 1 && header[0].is_empty());
    let columns: Vec<&str> = header.iter().skip(row_names).collect();
    let label_col = match columns.iter().filter(|&&c| c == label).count() {
        0 => {
            return Err(err(
                header_line,
                format!("no column named `{label}` in the header"),
            ))
        }
        1 => columns.iter().position(|&c| c == label).unwrap_or(0),
        n => {
            return Err(err(
                header_line,
                format!("column `{label}` appears {n} times"),
            ))
        }
    };
    if columns.len() < 2 {
        return Err(err(
            header_line,
            "no feature columns besides the label".into(),
        ));
    }

    let (mut x, mut y, mut row_lines) = (Vec::new(), Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = at(record.position());
        // A line of blanks is no row (empty lines the reader skips itself).
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != header.len() {
            return Err(err(
                line,
                format!("expected {} fields, found {}", header.len(), record.len()),
            ));
        }
        for (j, (cell, name)) in record.iter().skip(row_names).zip(&columns).enumerate() {
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
        row_lines.push(line as usize);
    }
    if y.is_empty() {
        return Err(err(header_line, "no data rows".into()));
    }
    let targets = targets_of(&mut y, task, source_name, |i| row_lines[i])?;
    Ok(Table {
        features: columns.len() - 1,
        x,
        y,
        targets,
    })
}

/// The line a record starts on. The reader places a record where it began looking for it,
/// before the empty lines it skipped on the way.
fn record_line(body: &[u8], position: &::csv::Position) -> u64 {
    let rest = body.get(position.byte() as usize..).unwrap_or_default();
    let skipped = rest
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .filter(|&&b| b == b'\n')
        .count();
    position.line() + skipped as u64
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

    fn parse(text: &str) -> Table {
        parse_csv(text, "r.csv", "label", Task::Classification).unwrap()
    }

    #[test]
    fn reads_what_r_write_csv_writes() {
        // write.csv(data.frame(label = c(0, 1, 1), x1 = c(1.5, -2, 3e-4), x2 = 10:12),
        //           row.names = FALSE): the header quoted, numbers bare.
        let plain = "\"label\",\"x1\",\"x2\"\n0,1.5,10\n1,-2,11\n1,3e-04,12\n";
        let t = parse(plain);
        assert_eq!(t.features, 2);
        assert_eq!(t.x, [1.5, 10.0, -2.0, 11.0, 3e-4, 12.0]);
        assert_eq!((t.y, t.targets), (vec![0.0, 1.0, 1.0], Targets::Classes(2)));
        // The default row.names = TRUE adds a first column named "" of quoted row names: they
        // are no feature, and the table is the same.
        let named =
            "\"\",\"label\",\"x1\",\"x2\"\n\"1\",0,1.5,10\n\"2\",1,-2,11\n\"3\",1,3e-04,12\n";
        assert_eq!(parse(named).x, parse(plain).x);
        // So does pandas' to_csv with its index.
        let pandas = ",label,x1,x2\n0,0,1.5,10\n1,1,-2,11\n2,1,0.0003,12\n";
        assert_eq!(parse(pandas).x, parse(plain).x);
        // Still one field a row: a row-name column does not excuse a ragged row.
        assert_eq!(csv_line("\"\",\"label\",\"x1\"\n\"1\",0,1.5\n\"2\",1\n"), 3);
    }

    #[test]
    fn quoted_fields_and_header_names() {
        let t = parse("\"x, first\",\"label\"\n\" 2.5 \",\"1\"\n-1,\"0\"\n");
        assert_eq!((t.x, t.y), (vec![2.5, -1.0], vec![1.0, 0.0]));
        // A quoted label still has to be a number, and the error names its line.
        assert_eq!(csv_line("\"x\",\"label\"\n1,0\n2,\"yes\"\n"), 3);
    }

    #[test]
    fn crlf_line_ends_and_a_byte_order_mark() {
        let text = "\u{feff}\"label\",\"x1\"\r\n0,1.5\r\n\r\n1,2.5\r\n";
        let t = parse(text);
        assert_eq!((t.x, t.y), (vec![1.5, 2.5], vec![0.0, 1.0]));
        // Lines are still counted from 1 at the top, the mark and the blank line included.
        assert_eq!(csv_line("\u{feff}label,x1\r\n0,1.5\r\n\r\n1,x\r\n"), 4);
        assert_eq!(csv_line("\u{feff}a,b\r\n1,2\r\n"), 1, "no label column");
    }
}
