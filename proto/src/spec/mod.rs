//! The search spec: a TOML file with `[search]`, `[pruning]` and `[trainer]` tables, every field
//! optional. The coordinator runs it and the worker's one-trial command reads it, both through
//! this parser. Unknown fields are rejected; every error names the offending field by its
//! dotted path, and a TOML error also gives its line and column.

mod pruning;
mod search;
mod strategy;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::{InvalidField, Trainer};

pub use pruning::{PruningSpec, RungRule};
pub use search::SearchSpec;
pub use strategy::{
    CoarseToFineSpec, EdgeDescentSpec, GridSpec, RandomSpec, RangeTestSpec, StrategySpec,
};

/// Most entries of a count that sizes a round (rounds, candidates, replicates, shards).
const MAX_PER_LIST: u32 = 1_000;
/// The most rates one round may plan.
const MAX_RATES: u32 = 100_000;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSpec {
    pub search: SearchSpec,
    pub pruning: PruningSpec,
    /// The built-in trainer, or with `command` the user's own program.
    pub trainer: Trainer,
}

/// Where in the spec's text an error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}:{}", self.line, self.column),
            None => write!(f, "line {}, column {}", self.line, self.column),
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// A value the search cannot use, or text that is not a spec; `field` is its dotted path
    /// (`spec` when the text is no TOML document at all).
    #[error("spec{}: `{field}` {reason}", at.as_ref().map(|a| format!(" {a}")).unwrap_or_default())]
    Invalid {
        field: String,
        reason: String,
        at: Option<Location>,
    },
    #[error("spec file {path}: {reason}")]
    File { path: String, reason: String },
}

impl SpecError {
    /// The dotted field an `Invalid` error names.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { field, .. } => Some(field),
            SpecError::File { .. } => None,
        }
    }
}

pub(crate) type SpecResult<T = ()> = Result<T, SpecError>;

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
        at: None,
    }
}

pub(crate) fn check(ok: bool, field: &str, reason: &str) -> SpecResult {
    if ok {
        Ok(())
    } else {
        Err(invalid(field, reason))
    }
}

/// The file as written: `[search]` flat, the other tables as their types.
#[derive(Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SpecFile {
    search: search::SearchTable,
    pruning: PruningSpec,
    trainer: Trainer,
}

impl SweepSpec {
    /// Parses and validates a spec.
    pub fn from_toml_str(text: &str) -> Result<SweepSpec, SpecError> {
        parse(text, None)
    }

    /// Reads, parses and validates a spec file; errors name the file.
    pub fn load(path: &Path) -> Result<SweepSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        parse(&text, Some(path.display().to_string()))
    }

    /// The spec as TOML with every field the search reads spelled out; parses back to the same
    /// spec (a resumed sweep compares it with the one it was started with).
    pub fn to_toml(&self) -> String {
        let file = SpecFile {
            search: (&self.search).into(),
            pruning: self.pruning.clone(),
            trainer: self.trainer.clone(),
        };
        toml::to_string(&file).expect("a spec's tables are plain values")
    }

    /// Step budget of round `round` (0-based). The spec must be valid (non-empty lists).
    pub fn round_steps(&self, round: u32) -> u64 {
        self.search.round_steps(round)
    }

    /// Training-split fraction of round `round` (0-based). The spec must be valid.
    pub fn round_fraction(&self, round: u32) -> f64 {
        self.search.round_fraction(round)
    }

    /// Checks what serde cannot; the error names the first offending field.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.search.validate(&self.trainer)?;
        self.pruning.validate()?;
        self.trainer
            .validate()
            .map_err(|e: InvalidField| invalid(format!("trainer.{}", e.field), e.reason))
    }
}

fn parse(text: &str, file: Option<String>) -> Result<SweepSpec, SpecError> {
    let parsed: SpecFile = toml::from_str(text).map_err(|e| toml_error(e, text, file))?;
    let spec = SweepSpec {
        search: parsed.search.into_spec()?,
        pruning: parsed.pruning,
        trainer: parsed.trainer,
    };
    spec.validate()?;
    Ok(spec)
}

/// Maps a TOML/serde error to `Invalid`, naming the dotted field where toml knows it and the
/// line and column where it has a span.
///
/// toml only exposes the key path through its context-free rendering (the `in `a.b`` line it
/// prints when it has no input to quote), so the error is rendered without input and that line is
/// read back. For an unknown field the path is the enclosing table, so the field itself is
/// appended from the message.
fn toml_error(mut err: toml::de::Error, text: &str, file: Option<String>) -> SpecError {
    let reason = err.message().trim().to_string();
    let at = err.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location { file, line, column }
    });
    err.set_input(None);
    let rendered = err.to_string();
    let table = rendered
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .map(str::to_string);
    let unknown = reason
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (table, unknown) {
        (Some(t), Some(u)) => format!("{t}.{u}"),
        (Some(t), None) => t,
        (None, Some(u)) => u.to_string(),
        (None, None) => "spec".to_string(),
    };
    SpecError::Invalid { field, reason, at }
}

#[cfg(test)]
mod tests;
