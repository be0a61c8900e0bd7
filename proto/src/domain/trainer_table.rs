//! The `[trainer]` table: the built-in trainer (the default), or the user's own program when the
//! table has `command`. One table for both, so a spec switches by adding `command`; fields of
//! the other kind beside it are refused by name rather than silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

use super::check::Checked;
use super::{CommandSpec, DatasetSpec, ModelSpec, OptimizerSpec, ScheduleSpec, TrainerConfig};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "Table")]
pub enum Trainer {
    BuiltIn(TrainerConfig),
    Command(CommandSpec),
}

impl Default for Trainer {
    fn default() -> Self {
        Trainer::BuiltIn(TrainerConfig::default())
    }
}

impl From<TrainerConfig> for Trainer {
    fn from(config: TrainerConfig) -> Self {
        Trainer::BuiltIn(config)
    }
}

impl From<CommandSpec> for Trainer {
    fn from(spec: CommandSpec) -> Self {
        Trainer::Command(spec)
    }
}

impl Trainer {
    pub fn built_in(&self) -> Option<&TrainerConfig> {
        match self {
            Trainer::BuiltIn(config) => Some(config),
            Trainer::Command(_) => None,
        }
    }

    pub fn built_in_mut(&mut self) -> Option<&mut TrainerConfig> {
        match self {
            Trainer::BuiltIn(config) => Some(config),
            Trainer::Command(_) => None,
        }
    }

    pub fn command(&self) -> Option<&CommandSpec> {
        match self {
            Trainer::BuiltIn(_) => None,
            Trainer::Command(spec) => Some(spec),
        }
    }

    /// Checks values serde cannot; the error names the field relative to the trainer table.
    pub fn validate(&self) -> Checked {
        match self {
            Trainer::BuiltIn(config) => config.validate(),
            Trainer::Command(spec) => spec.validate(),
        }
    }
}

/// Written as the table of its kind: the built-in trainer's JSON is what it always was.
impl Serialize for Trainer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Trainer::BuiltIn(config) => config.serialize(serializer),
            Trainer::Command(spec) => spec.serialize(serializer),
        }
    }
}

/// Every field either kind may have; which kind it is follows from `command`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    dataset: Option<DatasetSpec>,
    model: Option<ModelSpec>,
    optimizer: Option<OptimizerSpec>,
    schedule: Option<ScheduleSpec>,
    batch_size: Option<u32>,
    full_batch: Option<bool>,
    standardize: Option<bool>,
    validation_fraction: Option<f64>,
    seed: Option<u64>,
    command: Option<Vec<String>>,
    workdir: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
    stop_grace_ms: Option<u64>,
    trace_timeout_ms: Option<u64>,
    first_trace_timeout_ms: Option<u64>,
}

impl TryFrom<Table> for Trainer {
    type Error = String;

    fn try_from(t: Table) -> Result<Self, Self::Error> {
        let built_in_fields = [
            ("dataset", t.dataset.is_some()),
            ("model", t.model.is_some()),
            ("optimizer", t.optimizer.is_some()),
            ("schedule", t.schedule.is_some()),
            ("batch_size", t.batch_size.is_some()),
            ("full_batch", t.full_batch.is_some()),
            ("standardize", t.standardize.is_some()),
            ("validation_fraction", t.validation_fraction.is_some()),
        ];
        let command_fields = [
            ("workdir", t.workdir.is_some()),
            ("env", t.env.is_some()),
            ("stop_grace_ms", t.stop_grace_ms.is_some()),
            ("trace_timeout_ms", t.trace_timeout_ms.is_some()),
            ("first_trace_timeout_ms", t.first_trace_timeout_ms.is_some()),
        ];
        let first_set = |fields: &[(&'static str, bool)]| {
            fields.iter().find(|(_, set)| *set).map(|(name, _)| *name)
        };
        match t.command {
            Some(command) => {
                if let Some(field) = first_set(&built_in_fields) {
                    return Err(format!(
                        "`trainer.{field}` cannot be used with `trainer.command`: the program \
                         trains its own model on its own data; remove `{field}` (or `command` \
                         for the built-in trainer)"
                    ));
                }
                let mut spec = CommandSpec::new(command);
                spec.workdir = t.workdir;
                spec.env = t.env.unwrap_or_default();
                spec.stop_grace_ms = t.stop_grace_ms.unwrap_or(spec.stop_grace_ms);
                spec.trace_timeout_ms = t.trace_timeout_ms.unwrap_or(spec.trace_timeout_ms);
                spec.first_trace_timeout_ms = t
                    .first_trace_timeout_ms
                    .unwrap_or(spec.first_trace_timeout_ms);
                spec.seed = t.seed.unwrap_or_default();
                Ok(Trainer::Command(spec))
            }
            None => {
                if let Some(field) = first_set(&command_fields) {
                    return Err(format!(
                        "`trainer.{field}` belongs to a command trainer: add `trainer.command` \
                         (the program to run) or remove `{field}`"
                    ));
                }
                let d = TrainerConfig::default();
                Ok(Trainer::BuiltIn(TrainerConfig {
                    dataset: t.dataset.unwrap_or(d.dataset),
                    model: t.model.unwrap_or(d.model),
                    optimizer: t.optimizer.unwrap_or(d.optimizer),
                    schedule: t.schedule.unwrap_or(d.schedule),
                    batch_size: t.batch_size.unwrap_or(d.batch_size),
                    full_batch: t.full_batch.unwrap_or(d.full_batch),
                    standardize: t.standardize.unwrap_or(d.standardize),
                    seed: t.seed.unwrap_or(d.seed),
                    validation_fraction: t.validation_fraction.unwrap_or(d.validation_fraction),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Trainer, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn without_command_it_is_the_built_in_trainer_with_the_same_json() {
        assert_eq!(parse("{}").unwrap(), Trainer::default());
        let config = TrainerConfig {
            model: ModelSpec::Softmax { intercept: false },
            batch_size: 7,
            seed: 3,
            ..TrainerConfig::default()
        };
        let json = serde_json::to_string(&Trainer::from(config.clone())).unwrap();
        assert_eq!(json, serde_json::to_string(&config).unwrap());
        assert_eq!(parse(&json).unwrap(), Trainer::BuiltIn(config));
    }

    #[test]
    fn with_command_it_is_a_command_trainer() {
        let trainer = parse(
            r#"{"command": ["python3", "train.py", "--lr", "{lr}"], "seed": 5,
                "env": {"DATA": "/data"}, "stop_grace_ms": 200}"#,
        )
        .unwrap();
        let spec = trainer.command().unwrap();
        assert_eq!(spec.command[3], "{lr}");
        assert_eq!((spec.seed, spec.stop_grace_ms), (5, 200));
        assert_eq!(spec.env["DATA"], "/data");
        let json = serde_json::to_string(&trainer).unwrap();
        assert_eq!(parse(&json).unwrap(), trainer);
    }

    #[test]
    fn fields_of_the_other_kind_are_refused_by_name() {
        let err = parse(r#"{"command": ["x"], "model": {"kind": "softmax"}}"#).unwrap_err();
        assert!(
            err.contains("`trainer.model` cannot be used with `trainer.command`"),
            "{err}"
        );
        let err = parse(r#"{"command": ["x"], "batch_size": 3}"#).unwrap_err();
        assert!(err.contains("`trainer.batch_size`"), "{err}");
        let err = parse(r#"{"stop_grace_ms": 3}"#).unwrap_err();
        assert!(
            err.contains("`trainer.stop_grace_ms` belongs to a command trainer"),
            "{err}"
        );
        let err = parse(r#"{"command": ["x"], "comand": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `comand`"), "{err}");
    }
}
