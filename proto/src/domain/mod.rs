//! Domain types shared by coordinator and worker: a trial's assignment, its trace points, stop
//! orders, and the trainer configuration (a file per part): the built-in trainer's, or a command
//! trainer's (the user's own program). The trainer configuration is part of the user's search
//! spec (TOML) and travels to workers as JSON, so it carries serde derives.

mod check;
mod command;
mod dataset;
mod model;
mod optimizer;
mod schedule;
mod template;
mod trainer;
mod trainer_table;

pub use check::InvalidField;
pub use command::{CommandSpec, MAX_STOP_GRACE_MS};
pub use dataset::{DatasetSpec, Task, MAX_SYNTHETIC_CELLS};
pub use model::{Activation, ModelSpec};
pub use optimizer::OptimizerSpec;
pub use schedule::{CyclicalMode, Ramp, ScheduleSpec};
pub use template::{check_template, expand, Placeholder};
pub use trainer::TrainerConfig;
pub use trainer_table::Trainer;

pub type TrialId = u64;

/// Everything a worker needs to train one trial.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialAssignment {
    pub trial_id: TrialId,
    /// Starts at 1; a trial handed out again after a worker was lost gets the next number.
    pub attempt: u32,
    /// The search round the trial belongs to (0 first).
    pub round: u32,
    pub lr: f64,
    pub steps: u64,
    /// Validation loss is measured every `eval_every` steps and after the last step.
    pub eval_every: u64,
    pub subset: Subset,
    pub trainer: Trainer,
}

/// Part `replicate` of `replicates` disjoint parts that together make up `fraction` of the
/// training split. Which examples fall in a part depends only on the trainer seed, so every
/// learning rate with the same replicate sees the same data (paired comparison).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subset {
    pub fraction: f64,
    pub replicate: u32,
    pub replicates: u32,
}

/// One training step as streamed from worker to coordinator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// Number of updates done, starting at 1 for the first minibatch.
    pub step: u64,
    /// Minibatch loss at this step, before the update. May be NaN or infinite: that is data.
    pub train_loss: f64,
    /// Learning rate used for this step's update.
    pub lr: f64,
    /// Loss on the whole validation split after this step's update, when measured.
    pub val_loss: Option<f64>,
}

/// Why the coordinator stops a running trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// The trial's own trace condemned it (diverged, NaN, worse than its peers).
    Prune,
    /// Something else made it pointless (a smaller rate diverged, the sweep is ending).
    Cancel,
}
