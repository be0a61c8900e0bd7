//! A command trainer: every trial runs the user's own program (any language) with the trial's
//! values in its arguments and environment, and reads the loss trace from its stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::{invalid, Checked};
use super::template::check_template;

/// The most a spec may give a program between SIGTERM and SIGKILL.
pub const MAX_STOP_GRACE_MS: u64 = 600_000;
/// Bounds of the trace timeouts: long enough for a test, short enough to be noticed within a day.
pub const MIN_TRACE_TIMEOUT_MS: u64 = 100;
pub const MAX_TRACE_TIMEOUT_MS: u64 = 86_400_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program and arguments; placeholders (`{lr}`, …) are replaced per trial.
    pub command: Vec<String>,
    /// Directory the program starts in, on the worker; relative to the worker's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Extra environment; values may use placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// After SIGTERM the program's process group has this long before SIGKILL.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// A program silent on the trace this long after its last trace line fails the attempt.
    #[serde(default = "default_trace_timeout_ms")]
    pub trace_timeout_ms: u64,
    /// The same before the first trace line: start-up (imports, data loading, compilation) may
    /// take longer than a step.
    #[serde(default = "default_first_trace_timeout_ms")]
    pub first_trace_timeout_ms: u64,
    /// `{seed}`: the same for every trial of a sweep, so that rates are compared on the same
    /// initialisation and data order.
    #[serde(default)]
    pub seed: u64,
}

fn default_stop_grace_ms() -> u64 {
    10_000
}

fn default_trace_timeout_ms() -> u64 {
    600_000
}

fn default_first_trace_timeout_ms() -> u64 {
    1_800_000
}

impl CommandSpec {
    /// A spec running `command` with every other field at its default.
    pub fn new(command: Vec<String>) -> CommandSpec {
        CommandSpec {
            command,
            workdir: None,
            env: BTreeMap::new(),
            stop_grace_ms: default_stop_grace_ms(),
            trace_timeout_ms: default_trace_timeout_ms(),
            first_trace_timeout_ms: default_first_trace_timeout_ms(),
            seed: 0,
        }
    }

    /// Checks values serde cannot; the error names the field (relative to the trainer table).
    pub fn validate(&self) -> Checked {
        match self.command.first() {
            None => {
                return invalid(
                    "command",
                    "must name a program: [\"python3\", \"train.py\"]",
                )
            }
            Some(program) if program.trim().is_empty() => {
                return invalid("command[0]", "must name a program")
            }
            Some(_) => {}
        }
        for (i, arg) in self.command.iter().enumerate() {
            check_template(arg).or_else(|e| invalid(&format!("command[{i}]"), &e))?;
            if arg.contains('\0') {
                return invalid(&format!("command[{i}]"), "contains a NUL byte");
            }
        }
        if self
            .workdir
            .as_ref()
            .is_some_and(|w| w.as_os_str().is_empty())
        {
            return invalid(
                "workdir",
                "must name a directory (leave it out for the worker's)",
            );
        }
        for (key, value) in &self.env {
            let field = format!("env.{key}");
            if key.is_empty() || key.contains(['=', '\0']) {
                return invalid(&field, "is not a valid environment variable name");
            }
            if key.starts_with("LRSWEEP_") {
                return invalid(&field, "LRSWEEP_* variables are set by lrsweep itself");
            }
            check_template(value).or_else(|e| invalid(&field, &e))?;
            if value.contains('\0') {
                return invalid(&field, "contains a NUL byte");
            }
        }
        if self.stop_grace_ms > MAX_STOP_GRACE_MS {
            return invalid(
                "stop_grace_ms",
                &format!("must be at most {MAX_STOP_GRACE_MS} (10 minutes)"),
            );
        }
        for (value, field) in [
            (self.trace_timeout_ms, "trace_timeout_ms"),
            (self.first_trace_timeout_ms, "first_trace_timeout_ms"),
        ] {
            if !(MIN_TRACE_TIMEOUT_MS..=MAX_TRACE_TIMEOUT_MS).contains(&value) {
                return invalid(
                    field,
                    &format!("must lie in {MIN_TRACE_TIMEOUT_MS}..={MAX_TRACE_TIMEOUT_MS}"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(spec: CommandSpec) -> String {
        spec.validate().expect_err("accepted").field
    }

    fn with(f: impl FnOnce(&mut CommandSpec)) -> CommandSpec {
        let mut spec = CommandSpec::new(vec!["python3".into(), "train.py".into()]);
        f(&mut spec);
        spec
    }

    #[test]
    fn defaults_parse_and_are_valid() {
        let spec: CommandSpec = serde_json::from_str(r#"{"command": ["sh", "-c", "x"]}"#).unwrap();
        assert_eq!(
            spec,
            CommandSpec::new(vec!["sh".into(), "-c".into(), "x".into()])
        );
        assert_eq!(
            (
                spec.stop_grace_ms,
                spec.trace_timeout_ms,
                spec.first_trace_timeout_ms
            ),
            (10_000, 600_000, 1_800_000)
        );
        spec.validate().unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<CommandSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn impossible_values_name_their_field() {
        let cases = [
            (CommandSpec::new(vec![]), "command"),
            (with(|s| s.command[0] = " ".into()), "command[0]"),
            (with(|s| s.command.push("--lr={rate}".into())), "command[2]"),
            (with(|s| s.workdir = Some(PathBuf::new())), "workdir"),
            (
                with(|s| drop(s.env.insert("A=B".into(), "1".into()))),
                "env.A=B",
            ),
            (
                with(|s| drop(s.env.insert("LRSWEEP_LR".into(), "1".into()))),
                "env.LRSWEEP_LR",
            ),
            (
                with(|s| drop(s.env.insert("RUN".into(), "{trial_id}".into()))),
                "env.RUN",
            ),
            (with(|s| s.stop_grace_ms = 3_600_000), "stop_grace_ms"),
            (with(|s| s.trace_timeout_ms = 0), "trace_timeout_ms"),
            (
                with(|s| s.first_trace_timeout_ms = u64::MAX),
                "first_trace_timeout_ms",
            ),
        ];
        for (spec, field) in cases {
            assert_eq!(field_of(spec.clone()), field, "{spec:?}");
        }
        let err = with(|s| s.command.push("{rate}".into()))
            .validate()
            .unwrap_err();
        assert!(err.reason.contains("`{rate}`"), "{err}");
        with(|s| {
            s.env.insert("RUN".into(), "run-{trial}-{attempt}".into());
            s.stop_grace_ms = 0;
        })
        .validate()
        .unwrap();
    }
}
