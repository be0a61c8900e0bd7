//! `lrsweep-worker train`: one trial at a given rate, outside any sweep, for tools that drive the
//! trainer themselves (an Optuna objective, a script) and for trying a command trainer by hand.
//! It reads the `[trainer]` table of a spec file (every other table is ignored, so any sweep spec
//! works), trains on the whole training split (subset fraction 1, replicate 0 of 1: the same
//! data, initialisation and minibatch order as every other rate with that trainer seed) — or runs
//! the command trainer's program as a sweep would (trial 0, attempt 1, round 0, slot 0) — and
//! prints one JSON line to stdout per step that carries a validation loss:
//!
//! ```text
//! {"step":25,"train_loss":1.93,"lr":0.1,"val_loss":1.88}
//! ...
//! {"done":true,"steps":1000,"final_val_loss":0.21,"stopped":false,"diverged":false}
//! ```
//!
//! A step whose training loss is not finite is printed too (with `val_loss` null unless it was
//! an evaluation step) and ends the trial: nothing after a NaN is worth training, and
//! `diverged` says so. Non-finite numbers print as null. The trial also ends early, with
//! `stopped`, on SIGTERM or Ctrl-C (checked before every step) and when stdout is closed (the
//! reader is gone: nothing more is printed). The last line always has `done`; `final_val_loss`
//! is the last validation loss measured (null if none, or if it was not finite).
//!
//! Exit status: 0 when the trial ran, stopped or diverged; 2 for an unreadable or invalid spec;
//! 1 for a trainer error (e.g. a dataset that cannot be read, a program that failed: the message
//! has its exit status and last lines of stderr).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use lrsweep_proto::cli::shutdown_signal;
use lrsweep_proto::domain::{CommandSpec, Subset, TracePoint, Trainer, TrialAssignment};
use lrsweep_proto::spec::SweepSpec;

use crate::command::{self, Placement};
use crate::data_cache::DataCache;
use crate::stop::StopSignal;
use crate::trainer::{run_trial, PreparedData};
use crate::trials::TrialEnd;

/// `lrsweep-worker train`.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainArgs {
    /// Spec file (TOML); only its `[trainer]` table, `[search].steps` and
    /// `[search].eval_every` are read.
    #[arg(long)]
    pub spec: PathBuf,
    /// Learning rate of the trial.
    #[arg(long)]
    pub lr: f64,
    /// Step budget (default: the last entry of `[search].steps`, else 1000).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Trainer seed, overriding `[trainer].seed`: validation split, initialisation, batches.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Validation loss every this many steps and after the last (default:
    /// `[search].eval_every`, else 25).
    #[arg(long)]
    pub eval_every: Option<u64>,
}

/// What one trial trains: the trainer, its budget and its evaluation interval.
#[derive(Clone, Debug, PartialEq)]
pub struct OneTrial {
    pub trainer: Trainer,
    pub steps: u64,
    pub eval_every: u64,
}

impl OneTrial {
    /// Reads the trial from a spec's text, parsed and checked as the coordinator does.
    /// `steps`, `seed` and `eval_every` override the spec.
    pub fn from_spec_text(
        text: &str,
        steps: Option<u64>,
        seed: Option<u64>,
        eval_every: Option<u64>,
    ) -> Result<OneTrial, String> {
        let spec = SweepSpec::from_toml_str(text).map_err(|e| e.to_string())?;
        OneTrial::from_spec(spec, steps, seed, eval_every)
    }

    /// Reads the trial from a spec file; errors name the file (and line and column).
    pub fn load(
        path: &Path,
        steps: Option<u64>,
        seed: Option<u64>,
        eval_every: Option<u64>,
    ) -> Result<OneTrial, String> {
        let spec = SweepSpec::load(path).map_err(|e| e.to_string())?;
        OneTrial::from_spec(spec, steps, seed, eval_every)
    }

    /// The spec's trainer at its last round's budget and evaluation interval.
    fn from_spec(
        spec: SweepSpec,
        steps: Option<u64>,
        seed: Option<u64>,
        eval_every: Option<u64>,
    ) -> Result<OneTrial, String> {
        let mut trainer = spec.trainer;
        if let Some(seed) = seed {
            match &mut trainer {
                Trainer::BuiltIn(config) => config.seed = seed,
                Trainer::Command(command) => command.seed = seed,
            }
        }
        let at_least_one = |v: u64, flag: &str| {
            if v == 0 {
                Err(format!("{flag}: must be at least 1"))
            } else {
                Ok(v)
            }
        };
        let search = &spec.search;
        Ok(OneTrial {
            trainer,
            steps: at_least_one(
                steps.unwrap_or_else(|| search.round_steps(search.last_round())),
                "--steps",
            )?,
            eval_every: at_least_one(eval_every.unwrap_or(search.eval_every), "--eval-every")?,
        })
    }

    /// The assignment a sweep would send for this trial at `lr`, on the whole training split.
    pub fn assignment(&self, lr: f64) -> TrialAssignment {
        TrialAssignment {
            trial_id: 0,
            attempt: 1,
            round: 0,
            lr,
            steps: self.steps,
            eval_every: self.eval_every,
            subset: Subset {
                fraction: 1.0,
                replicate: 0,
                replicates: 1,
            },
            trainer: self.trainer.clone(),
        }
    }
}

/// How [`run`] ended; the content of the final `done` line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub steps: u64,
    /// Last validation loss measured (may be non-finite); None if none was.
    pub final_val_loss: Option<f64>,
    /// Ended early by `should_stop` or by a closed output.
    pub stopped: bool,
    /// Ended by a non-finite training or validation loss.
    pub diverged: bool,
    /// The output could not be written (the reader went away).
    pub output_closed: bool,
}

impl Outcome {
    pub fn done_line(&self) -> String {
        serde_json::json!({
            "done": true,
            "steps": self.steps,
            "final_val_loss": self.final_val_loss,
            "stopped": self.stopped,
            "diverged": self.diverged,
        })
        .to_string()
    }
}

/// One step's line: `{"step", "train_loss", "lr", "val_loss"}`, non-finite numbers as null.
pub fn point_line(point: &TracePoint) -> String {
    serde_json::json!({
        "step": point.step,
        "train_loss": point.train_loss,
        "lr": point.lr,
        "val_loss": point.val_loss,
    })
    .to_string()
}

/// Writes a trial's lines as its points come: every step with a validation loss or a non-finite
/// loss (which ends the trial: `diverged`), then the `done` line.
struct Printer<W: Write> {
    out: W,
    last_val: Option<f64>,
    last_step: u64,
    diverged: bool,
    closed: bool,
}

impl<W: Write> Printer<W> {
    fn new(out: W) -> Printer<W> {
        Printer {
            out,
            last_val: None,
            last_step: 0,
            diverged: false,
            closed: false,
        }
    }

    fn point(&mut self, point: &TracePoint) {
        self.last_step = point.step;
        let bad = !point.train_loss.is_finite() || point.val_loss.is_some_and(|v| !v.is_finite());
        if let Some(v) = point.val_loss {
            self.last_val = Some(v);
        }
        self.diverged |= bad;
        if (bad || point.val_loss.is_some())
            && write_line(&mut self.out, &point_line(point)).is_err()
        {
            self.closed = true;
        }
    }

    /// Nothing after a non-finite loss is worth training, and no one reads a closed output.
    fn wants_stop(&self) -> bool {
        self.diverged || self.closed
    }

    fn finish(mut self, steps: u64, stopped: bool) -> Outcome {
        let outcome = Outcome {
            steps: steps.max(self.last_step),
            final_val_loss: self.last_val,
            stopped: stopped && !self.diverged,
            diverged: self.diverged,
            output_closed: self.closed,
        };
        if !self.closed {
            // A reader that left after the last step is no error either.
            let _ = write_line(&mut self.out, &outcome.done_line());
        }
        outcome
    }
}

/// Trains `trial` at `lr` on `data` with the built-in trainer, writing a line to `out` (flushed)
/// for every step with a validation loss or a non-finite training loss, then the `done` line.
/// Stops before a step when `should_stop()` says so, after the first non-finite loss, and as
/// soon as `out` fails.
pub fn run(
    trial: &OneTrial,
    lr: f64,
    data: Arc<PreparedData>,
    should_stop: &dyn Fn() -> bool,
    out: &mut dyn Write,
) -> Result<Outcome, crate::WorkerError> {
    let assignment = trial.assignment(lr);
    let printer = std::cell::RefCell::new(Printer::new(out));
    let run = run_trial(
        &assignment,
        data,
        &|| should_stop() || printer.borrow().wants_stop(),
        &mut |point| printer.borrow_mut().point(&point),
    )?;
    Ok(printer.into_inner().finish(run.steps, run.stopped))
}

/// Runs `spec`'s program as one trial of `trial` at `lr`, writing the same lines as [`run`];
/// `stop` ends it early (SIGTERM to the program's group). A failed program is an error with
/// its exit status and last lines of stderr.
pub async fn run_command(
    trial: &OneTrial,
    spec: &CommandSpec,
    lr: f64,
    stop: &StopSignal,
    out: impl Write + Send,
) -> Result<Outcome, String> {
    let assignment = trial.assignment(lr);
    let mut printer = Printer::new(out);
    let mut publish = |points: Vec<TracePoint>| {
        for point in &points {
            printer.point(point);
        }
        if printer.wants_stop() {
            stop.stop();
        }
    };
    let end = command::run(&assignment, spec, Placement::default(), stop, &mut publish).await;
    match end {
        TrialEnd::Completed(steps) => Ok(printer.finish(steps, false)),
        TrialEnd::Stopped => Ok(printer.finish(0, true)),
        TrialEnd::Failed { error, .. } => Err(error),
    }
}

fn write_line(out: &mut impl Write, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The `train` subcommand.
pub fn main(args: TrainArgs) -> ExitCode {
    if !(args.lr.is_finite() && args.lr >= 0.0) {
        eprintln!("error: --lr {} must be finite and non-negative", args.lr);
        return ExitCode::from(2);
    }
    let trial = match OneTrial::load(&args.spec, args.steps, args.seed, args.eval_every) {
        Ok(trial) => trial,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // Ctrl-C or SIGTERM stops the trial: the built-in trainer before its next step, a
        // command's program through its process group.
        let stop = StopSignal::default();
        let signal = shutdown_signal();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                signal.await;
                stop.stop();
            }
        });
        match &trial.trainer {
            Trainer::Command(spec) => {
                let spec = spec.clone();
                run_command(&trial, &spec, args.lr, &stop, std::io::stdout())
                    .await
                    .map(drop)
            }
            Trainer::BuiltIn(config) => {
                let data = DataCache::default()
                    .get(config)
                    .map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(move || {
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    run(&trial, args.lr, data, &|| stop.is_stopped(), &mut out)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| format!("trainer panicked: {e}"))?
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_proto::domain::ModelSpec;

    const SPEC: &str = r#"
        [search]
        strategy = "grid"
        steps = [20, 60]
        eval_every = 20

        [pruning]
        rule = "none"

        [trainer]
        model = { kind = "softmax" }
        batch_size = 16
        seed = 4
    "#;

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn reads_trainer_and_budget_from_the_spec() {
        let trial = OneTrial::from_spec_text(SPEC, None, None, None).unwrap();
        assert_eq!(trial.steps, 60);
        assert_eq!(trial.eval_every, 20);
        let config = trial.trainer.built_in().unwrap();
        assert_eq!(config.batch_size, 16);
        assert_eq!(config.seed, 4);
        assert_eq!(config.model, ModelSpec::Softmax { intercept: true });

        let trial = OneTrial::from_spec_text(SPEC, Some(7), Some(9), Some(3)).unwrap();
        assert_eq!(
            (
                trial.steps,
                trial.trainer.built_in().unwrap().seed,
                trial.eval_every
            ),
            (7, 9, 3)
        );
        let command = "[trainer]\ncommand = [\"python3\", \"t.py\", \"{lr}\"]\nseed = 2";
        let trial = OneTrial::from_spec_text(command, None, Some(5), None).unwrap();
        assert_eq!(trial.trainer.command().unwrap().seed, 5);

        let bare = OneTrial::from_spec_text("", None, None, None).unwrap();
        // The defaults of a spec with no [search]: its last round's budget.
        let defaults = SweepSpec::default().search;
        assert_eq!(bare.steps, *defaults.steps.last().unwrap());
        assert_eq!(bare.eval_every, defaults.eval_every);
        assert_eq!(bare.trainer, Trainer::default());
    }

    #[test]
    fn rejects_bad_specs_by_field() {
        let err = |text: &str| OneTrial::from_spec_text(text, None, None, None).unwrap_err();
        assert!(err("[trainer]\nbatch_size = 0").contains("trainer.batch_size"));
        assert!(err("[trainer]\nbatchsize = 3").contains("batchsize"));
        assert!(err("[trainer]\ncommand = [\"x\", \"{rate}\"]").contains("trainer.command[1]"));
        assert!(
            err("[trainer]\ncommand = [\"x\"]\nmodel = { kind = \"softmax\" }")
                .contains("`trainer.model` cannot be used with `trainer.command`")
        );
        assert!(err("[search]\nsteps = []").contains("search.steps"));
        assert!(err("[search]\nsteps = [0]").contains("search.steps"));
        assert!(err("[search]\neval_every = 0").contains("search.eval_every"));
        assert!(OneTrial::from_spec_text("", Some(0), None, None).is_err());
        assert!(!err("[search").is_empty());
    }

    #[test]
    fn prints_evaluated_steps_then_done() {
        let trial = OneTrial::from_spec_text(SPEC, None, None, None).unwrap();
        let data = Arc::new(PreparedData::prepare(trial.trainer.built_in().unwrap()).unwrap());
        let mut out = Vec::new();
        let outcome = run(&trial, 0.1, data, &|| false, &mut out).unwrap();
        let lines = lines(&out);
        let steps: Vec<u64> = lines[..3]
            .iter()
            .map(|l| l["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [20, 40, 60]);
        assert!(lines[..3].iter().all(|l| l["val_loss"].as_f64().is_some()
            && l["train_loss"].as_f64().is_some()
            && l["lr"] == 0.1));
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["done"], true);
        assert_eq!(lines[3]["steps"], 60);
        assert_eq!(lines[3]["final_val_loss"], lines[2]["val_loss"]);
        assert_eq!((outcome.stopped, outcome.diverged), (false, false));
    }

    #[test]
    fn diverging_rates_end_at_the_first_non_finite_loss() {
        // Full-batch least squares with λ_max = 1 diverges above rate 2, without bound.
        let spec = "[trainer]\n\
            dataset = { kind = \"synthetic-least-squares\", n = 100, d = 5, condition_number = 10.0 }\n\
            model = { kind = \"linear\", intercept = false }\n\
            full_batch = true\nstandardize = false\n";
        // Every step evaluated and printed, so "first" can be checked step by step.
        let trial = OneTrial::from_spec_text(spec, Some(5000), None, Some(1)).unwrap();
        let data = Arc::new(PreparedData::prepare(trial.trainer.built_in().unwrap()).unwrap());
        let mut out = Vec::new();
        let outcome = run(&trial, 10.0, data, &|| false, &mut out).unwrap();
        assert!(outcome.diverged && outcome.steps < 5000, "{outcome:?}");
        let lines = lines(&out);
        let done = lines.last().unwrap();
        assert_eq!(done["diverged"], true);
        assert_eq!(done["steps"], outcome.steps);
        let points = &lines[..lines.len() - 1];
        let steps: Vec<u64> = points.iter().map(|l| l["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, (1..=outcome.steps).collect::<Vec<_>>());
        let finite = |l: &serde_json::Value| {
            ["train_loss", "val_loss"]
                .iter()
                .all(|k| l[k].as_f64().is_some_and(f64::is_finite))
        };
        let (last_point, before) = points.split_last().unwrap();
        assert!(!finite(last_point), "{last_point}");
        // The first non-finite loss ends it: every step before had finite losses.
        assert!(before.iter().all(finite), "{before:?}");
    }

    #[test]
    fn stops_on_request_and_on_a_closed_output() {
        let trial = OneTrial::from_spec_text(SPEC, Some(1000), None, Some(10)).unwrap();
        let data = Arc::new(PreparedData::prepare(trial.trainer.built_in().unwrap()).unwrap());
        let asked = std::cell::Cell::new(0);
        let mut out = Vec::new();
        let outcome = run(
            &trial,
            0.1,
            data.clone(),
            &|| {
                asked.set(asked.get() + 1);
                asked.get() > 25
            },
            &mut out,
        )
        .unwrap();
        assert_eq!((outcome.steps, outcome.stopped), (25, true));
        let lines = lines(&out);
        assert_eq!(lines.last().unwrap()["stopped"], true);
        assert_eq!(lines.len(), 3);

        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let outcome = run(&trial, 0.1, data, &|| false, &mut Closed).unwrap();
        assert!(outcome.output_closed && outcome.stopped, "{outcome:?}");
        assert_eq!(outcome.steps, 10);
    }
}
