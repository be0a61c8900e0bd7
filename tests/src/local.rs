//! A whole sweep in one process: the product's own `Sweep` state machine and the worker's real
//! trainer, with the gRPC layer replaced by function calls. Used by the ground-truth tests, which
//! need real training but not a network.
//!
//! The driver plays `workers` simulated workers of one slot each. It keeps every worker's
//! pending assignments, and trains them one at a time (round-robin over the workers) with
//! [`run_trial`], streaming the points to [`Sweep::on_trace`] in the real worker's batches (its
//! `TraceBatcher`) without their time limit: up to 32 points, sent at once when a point carries
//! a validation loss or a non-finite training loss. A stop order for the running trial sets its stop flag, which the
//! trainer checks before every step; a stop order for a trial not started yet drops it. A trial
//! that ran its whole budget is reported with `on_completed`, a trainer error with `on_failed`.
//! New assignments from any answer join their worker's list. The loop ends when the sweep says
//! it is finished, and panics if work runs out before that.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};

use lrsweep_coordinator::report::Report;
use lrsweep_coordinator::sweep::{Command, Sweep, WorkerId};
use lrsweep_proto::domain::{TrialAssignment, TrialId};
use lrsweep_proto::spec::SweepSpec;
use lrsweep_worker::batcher::TraceBatcher;
pub use lrsweep_worker::batcher::BATCH_POINTS;
use lrsweep_worker::data_cache::DataCache;
use lrsweep_worker::trainer::run_trial;

/// Runs `spec` to the end in this process on `workers` simulated workers (one slot each) and
/// returns the finished sweep with its report (sweep id `local`).
///
/// Panics if the sweep rejects a report (a driver or sweep bug) or stalls: not finished, yet no
/// worker has anything left to train.
pub fn run_in_process(spec: &SweepSpec, workers: usize) -> (Sweep, Report) {
    assert!(workers >= 1, "run_in_process needs at least one worker");
    let mut sweep = Sweep::new(spec.clone());
    let ids: Vec<WorkerId> = (0..workers).map(|i| format!("local-{i}")).collect();
    for id in &ids {
        sweep.add_worker(id.clone(), id.clone(), 1);
    }
    let mut driver = Driver {
        pending: ids.iter().map(|id| (id.clone(), VecDeque::new())).collect(),
        stopped: BTreeSet::new(),
        data: DataCache::default(),
    };
    let commands = sweep.dispatch();
    driver.absorb(commands);

    let mut next = 0;
    while !sweep.is_finished() {
        // Round-robin: the first worker at or after `next` with something to train.
        let Some(k) = (0..workers)
            .map(|i| (next + i) % workers)
            .find(|&k| !driver.pending[&ids[k]].is_empty())
        else {
            panic!(
                "in-process sweep stalled in round {}: not finished, but no worker has anything \
                 to train; trials: {:#?}",
                sweep.current_round(),
                sweep
                    .trials()
                    .iter()
                    .map(|t| (t.id, t.round, t.lr, t.status, t.steps, t.budget))
                    .collect::<Vec<_>>()
            );
        };
        next = (k + 1) % workers;
        let worker = ids[k].clone();
        let assignment = driver
            .pending
            .get_mut(&worker)
            .and_then(VecDeque::pop_front)
            .expect("the worker has an assignment");
        driver.train(&mut sweep, &worker, &assignment);
    }
    let report = Report::from_sweep("local", &sweep);
    (sweep, report)
}

struct Driver {
    /// Assignments each worker holds and has not started, in the order they came.
    pending: HashMap<WorkerId, VecDeque<TrialAssignment>>,
    /// (trial, attempt) the sweep ordered stopped.
    stopped: BTreeSet<(TrialId, u32)>,
    data: DataCache,
}

impl Driver {
    /// Files the sweep's commands: assignments to their worker's list, stop orders by trial.
    fn absorb(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Assign { worker, assignment } => self
                    .pending
                    .get_mut(&worker)
                    .unwrap_or_else(|| panic!("assignment for unknown worker {worker}"))
                    .push_back(*assignment),
                Command::Stop { trial, attempt, .. } => {
                    self.stopped.insert((trial, attempt));
                }
            }
        }
    }

    /// Trains one assignment on `worker` until its budget or its stop order.
    fn train(&mut self, sweep: &mut Sweep, worker: &str, a: &TrialAssignment) {
        let key = (a.trial_id, a.attempt);
        if self.stopped.contains(&key) {
            // Stopped before it started: a real worker drops it without a word.
            return;
        }
        let Some(config) = a.trainer.built_in() else {
            return self.fail(
                sweep,
                worker,
                a,
                "in-process sweeps run the built-in trainer only",
            );
        };
        let data = match self.data.get(config) {
            Ok(data) => data,
            Err(error) => return self.fail(sweep, worker, a, &error.to_string()),
        };
        let stop = Cell::new(false);
        let sweep = RefCell::new(sweep);
        let commands = RefCell::new(Vec::new());
        // Batches close by count and urgency only, so in-process runs are deterministic.
        let mut batcher = TraceBatcher::with_max_age(None);
        let send = |batch: Vec<_>| {
            let answer = sweep
                .borrow_mut()
                .on_trace(worker, a.trial_id, a.attempt, &batch)
                .unwrap_or_else(|e| {
                    panic!(
                        "trial {} attempt {}: trace rejected: {e}",
                        a.trial_id, a.attempt
                    )
                });
            for command in &answer {
                if let Command::Stop { trial, attempt, .. } = command {
                    if (*trial, *attempt) == key {
                        stop.set(true);
                    }
                }
            }
            commands.borrow_mut().extend(answer);
        };
        let run = run_trial(a, data, &|| stop.get(), &mut |point| {
            if let Some(batch) = batcher.push(point) {
                send(batch);
            }
        });
        if let Some(batch) = batcher.take() {
            send(batch);
        }
        let sweep = sweep.into_inner();
        self.absorb(commands.into_inner());
        match run {
            Ok(run) if run.stopped => {}
            Ok(run) => {
                // The last batch may have brought the stop order: then there is nothing to say.
                if self.stopped.contains(&key) {
                    return;
                }
                let answer = sweep
                    .on_completed(worker, a.trial_id, a.attempt, run.steps)
                    .unwrap_or_else(|e| {
                        panic!(
                            "trial {} attempt {}: completion rejected: {e}",
                            a.trial_id, a.attempt
                        )
                    });
                self.absorb(answer);
            }
            Err(error) => self.fail(sweep, worker, a, &error.to_string()),
        }
    }

    fn fail(&mut self, sweep: &mut Sweep, worker: &str, a: &TrialAssignment, error: &str) {
        let answer = sweep
            .on_failed(worker, a.trial_id, a.attempt, error, false)
            .unwrap_or_else(|e| {
                panic!(
                    "trial {} attempt {}: failure rejected: {e}",
                    a.trial_id, a.attempt
                )
            });
        self.absorb(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_coordinator::search::TrialStatus;

    fn least_squares(search: &str) -> SweepSpec {
        SweepSpec::from_toml_str(&format!(
            "[search]\n{search}\n\n[trainer]\n\
             dataset = {{ kind = \"synthetic-least-squares\", n = 200, d = 5, \
             condition_number = 10.0, noise = 0.1 }}\n\
             model = {{ kind = \"linear\", intercept = false }}\n\
             full_batch = true\nstandardize = false\n"
        ))
        .expect("a valid spec")
    }

    #[test]
    fn runs_every_round_and_stops_diverging_trials_at_their_batch() {
        let spec = least_squares(
            "strategy = \"coarse-to-fine\"\nmin_lr = 1e-3\nmax_lr = 10.0\nrounds = 2\nsteps = [100]\n\
             data_fraction = [1.0]\nreplicates = 2\neval_every = 50",
        );
        let (sweep, report) = run_in_process(&spec, 3);
        assert!(
            sweep.is_finished()
                && report.outcome == lrsweep_coordinator::sweep::SweepStatus::Completed
        );
        assert_eq!(report.rounds, 2);
        assert!(sweep
            .trials()
            .iter()
            .all(|t| t.is_terminal() && t.attempt <= 1));
        // λ_max = 1: rate 10 diverges within its first batch of 32 points and is stopped there,
        // not trained to its budget of 100; its other replicate, dispatched to another worker
        // but not started yet, is cancelled by monotonicity and never trains.
        let big: Vec<_> = sweep.trials().iter().filter(|t| t.lr == 10.0).collect();
        assert_eq!(big.len(), 2);
        assert_eq!(big[0].status, TrialStatus::Pruned, "{:?}", big[0]);
        assert!(big[0].steps_run <= BATCH_POINTS as u64, "{:?}", big[0]);
        assert_eq!(big[1].status, TrialStatus::Cancelled, "{:?}", big[1]);
        assert_eq!(big[1].steps_run, 0, "{:?}", big[1]);
        let completed = sweep
            .trials()
            .iter()
            .filter(|t| t.status == TrialStatus::Completed);
        assert!(completed.clone().count() > 0);
        assert!(completed.clone().all(|t| t.steps_run == t.budget));
        assert_eq!(
            report.total_steps,
            sweep.trials().iter().map(|t| t.steps_run).sum::<u64>()
        );
    }

    #[test]
    fn trainer_errors_are_reported_as_failures_and_retried() {
        let mut spec =
            least_squares("strategy = \"coarse-to-fine\"\nmin_lr = 0.01\nmax_lr = 1.0\nrounds = 1\nsteps = [10]\ndata_fraction = [1.0]\nreplicates = 1");
        spec.trainer.built_in_mut().unwrap().dataset = lrsweep_proto::domain::DatasetSpec::Csv {
            path: "/nonexistent/lrsweep/data.csv".into(),
            label: "y".into(),
            task: Default::default(),
        };
        let (sweep, report) = run_in_process(&spec, 2);
        assert!(sweep.is_finished());
        for t in sweep.trials() {
            assert_eq!(t.status, TrialStatus::Failed, "{t:?}");
            assert_eq!(t.attempt, lrsweep_coordinator::sweep::DEFAULT_MAX_ATTEMPTS);
            assert!(
                t.error.as_deref().unwrap_or("").contains("nonexistent"),
                "{t:?}"
            );
        }
        assert!(report.recommendation.is_none());
    }
}
