//! How the sweep's values are kept in SQLite columns: floats exactly (NaN included), and every
//! status and reason as its name, checked against the enum both ways.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::ToSql;

use super::workers::WorkerState;
use crate::prune::PruneReason;
use crate::search::TrialStatus;
use crate::sweep::{AttemptOutcome, SweepStatus};

/// An f64 stored exactly: a REAL, except NaN, which SQLite would silently turn into NULL
/// (indistinguishable from "no value") and is therefore the text `'NaN'` in the same column.
/// ±inf are valid REALs and stay numbers, so ORDER BY and comparisons in SQL still work. The
/// columns have no declared type because REAL affinity stores integral values as integers and so
/// reads −0.0 back as +0.0; without affinity every REAL keeps its 8 bytes bit for bit.
pub(super) struct Real(pub(super) f64);

impl ToSql for Real {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(if self.0.is_nan() {
            ToSqlOutput::Borrowed(ValueRef::Text(b"NaN"))
        } else {
            ToSqlOutput::from(self.0)
        })
    }
}

impl FromSql for Real {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Real(x) => Ok(Real(x)),
            ValueRef::Text(b"NaN") => Ok(Real(f64::NAN)),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// A column holding one of an enum's names. The schema's CHECK constraints are built from
/// `NAMES`, so the database refuses any other text, and reading one back is an error, not a
/// guess.
pub(super) trait Named: Sized + Copy + 'static {
    const NAMES: &'static [&'static str];
    fn name(&self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

/// `column IN ('a', 'b', …)` for a CHECK constraint.
pub(super) fn one_of<T: Named>(column: &str) -> String {
    let names: Vec<String> = T::NAMES.iter().map(|n| format!("'{n}'")).collect();
    format!("{column} IN ({})", names.join(", "))
}

macro_rules! named_column {
    ($type:ty, $all:expr) => {
        impl Named for $type {
            const NAMES: &'static [&'static str] = &{
                let all = $all;
                let mut names = [""; $all.len()];
                let mut i = 0;
                while i < all.len() {
                    names[i] = all[i].as_str();
                    i += 1;
                }
                names
            };
            fn name(&self) -> &'static str {
                self.as_str()
            }
            fn from_name(name: &str) -> Option<Self> {
                Self::parse(name)
            }
        }

        impl ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(
                    self.name().as_bytes(),
                )))
            }
        }

        impl FromSql for $type {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::from_name(text).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} `{text}`", stringify!($type)).into())
                })
            }
        }
    };
}

named_column!(TrialStatus, TrialStatus::ALL);
named_column!(PruneReason, PruneReason::ALL);
named_column!(AttemptOutcome, AttemptOutcome::ALL);
named_column!(SweepStatus, SweepStatus::ALL);
named_column!(WorkerState, WorkerState::ALL);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Named + ToSql + FromSql + PartialEq + std::fmt::Debug>() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for name in T::NAMES {
            let value = T::from_name(name).unwrap();
            let back: T = conn.query_row("SELECT ?1", [&value], |r| r.get(0)).unwrap();
            assert_eq!(back, value);
        }
        let unknown: rusqlite::Result<T> = conn.query_row("SELECT 'bogus'", [], |r| r.get(0));
        assert!(unknown.is_err());
    }

    #[test]
    fn every_name_round_trips_and_others_are_refused() {
        round_trips::<TrialStatus>();
        round_trips::<PruneReason>();
        round_trips::<AttemptOutcome>();
        round_trips::<SweepStatus>();
        round_trips::<WorkerState>();
        assert_eq!(
            one_of::<SweepStatus>("status"),
            "status IN ('running', 'completed', 'interrupted')"
        );
    }
}
