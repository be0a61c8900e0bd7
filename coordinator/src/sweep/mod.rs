//! The sweep as a state machine: trials, the queue, which worker runs what, and every decision
//! taken on incoming traces. Pure: the gRPC layer feeds it events and carries out the commands
//! it returns, so all of this is tested without a network.

mod change;
mod pool;
mod resume;
mod trial;

use std::collections::{BTreeMap, VecDeque};

use lrsweep_proto::domain::{StopKind, Subset, TracePoint, TrialAssignment, TrialId};
use lrsweep_proto::spec::{RungRule, SweepSpec};
use tracing::{info, warn};

use crate::prune::{PruneReason, RungBoard, TraceMonitor};
use crate::search::{
    build_strategy, Recommendation, RoundPlan, Strategy, TrialResult, TrialStatus,
};
use crate::CoordinatorError;

pub use change::{AttemptOutcome, Change, SweepStatus};
use pool::WorkerPool;
pub use trial::{Trial, TrialRecord};

pub type WorkerId = String;

/// What the service layer must send, and to whom.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Assign {
        worker: WorkerId,
        /// Boxed: an assignment carries the whole trainer config, a stop order a few ids.
        assignment: Box<TrialAssignment>,
    },
    Stop {
        worker: WorkerId,
        trial: TrialId,
        attempt: u32,
        kind: StopKind,
        reason: PruneReason,
    },
}

#[derive(Debug)]
struct RoundState {
    plan: RoundPlan,
    trials: Vec<TrialId>,
    /// Every trial of `trials` before this index is over (a trial that is over stays over), so
    /// asking whether the round is over costs nothing per event however large the round.
    open_from: usize,
    rungs: RungBoard,
    /// Rung pruning and monotone cancellation apply (not to a range test's shards).
    uses_rungs: bool,
}

pub struct Sweep {
    spec: SweepSpec,
    search: Box<dyn Strategy>,
    round: RoundState,
    trials: Vec<Trial>,
    queue: VecDeque<TrialId>,
    workers: WorkerPool,
    /// Names of every worker ever connected, kept after they leave for the report.
    names: BTreeMap<WorkerId, String>,
    /// A trial whose attempts failed or were lost this many times is marked failed.
    max_attempts: u32,
    finished: bool,
    interrupted: bool,
    /// What changed since the last `take_changes`, in the order decided, for the durable store.
    changes: Vec<Change>,
}

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl Sweep {
    pub fn new(spec: SweepSpec) -> Sweep {
        let mut search = build_strategy(&spec);
        let plan = search.first_round();
        let (mut trials, mut queue, mut changes) = (Vec::new(), VecDeque::new(), Vec::new());
        let round = Sweep::open_round(
            &spec,
            plan,
            search.uses_rungs(),
            &mut trials,
            &mut queue,
            &mut changes,
        );
        Sweep {
            round,
            spec,
            search,
            trials,
            queue,
            workers: WorkerPool::default(),
            names: BTreeMap::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            finished: false,
            interrupted: false,
            changes,
        }
    }

    /// What changed since the last `take_changes`, in the order decided.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// What changed since the last call, in the order decided, for the durable store to write.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    pub fn set_max_attempts(&mut self, max_attempts: u32) {
        self.max_attempts = max_attempts.max(1);
    }

    pub fn spec(&self) -> &SweepSpec {
        &self.spec
    }

    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn current_round(&self) -> u32 {
        self.round.plan.round
    }

    pub fn recommendation(&self) -> Option<Recommendation> {
        self.search.recommendation()
    }

    /// Training steps actually run, over all trials and attempts.
    pub fn total_steps(&self) -> u64 {
        self.trials.iter().map(|t| t.steps_run).sum()
    }

    fn start_round(&mut self, plan: RoundPlan) {
        self.round = Sweep::open_round(
            &self.spec,
            plan,
            self.search.uses_rungs(),
            &mut self.trials,
            &mut self.queue,
            &mut self.changes,
        );
    }

    /// Queues a trial per rate and replicate of `plan`, and returns the round's state.
    fn open_round(
        spec: &SweepSpec,
        plan: RoundPlan,
        uses_rungs: bool,
        trials: &mut Vec<Trial>,
        queue: &mut VecDeque<TrialId>,
        changes: &mut Vec<Change>,
    ) -> RoundState {
        info!(
            event = "round_started",
            round = plan.round,
            candidates = plan.lrs.len(),
            steps = plan.steps,
            data_fraction = plan.data_fraction,
        );
        let replicates = plan.replicates;
        let mut ids = Vec::new();
        // The dominated rule judges a rate against smaller ones, so they go first (and a
        // divergence then cancels larger rates before they start). The other rules want the
        // largest first: a diverging rate dies within a few steps, so the round quickly gets
        // its good rates' rung values, against which the crawling small rates are cut early.
        let mut lrs = plan.lrs.clone();
        if spec.pruning.rule != RungRule::Dominated {
            lrs.reverse();
        }
        for lr in lrs {
            for replicate in 0..replicates {
                let id = trials.len() as TrialId;
                trials.push(Trial {
                    id,
                    round: plan.round,
                    lr,
                    subset: Subset {
                        fraction: plan.data_fraction,
                        replicate,
                        replicates,
                    },
                    budget: plan.steps,
                    schedule: plan.schedule.clone(),
                    optimizer: plan.optimizer.clone(),
                    status: TrialStatus::Queued,
                    prune_reason: None,
                    attempt: 0,
                    steps: 0,
                    steps_run: 0,
                    worker: None,
                    worker_name: None,
                    error: None,
                    monitor: TraceMonitor::new(&spec.pruning),
                    curve: Vec::new(),
                    validation: Vec::new(),
                    settled_loss: None,
                });
                queue.push_back(id);
                ids.push(id);
            }
        }
        changes.push(Change::RoundStarted {
            round: plan.round,
            trials: ids.clone(),
        });
        RoundState {
            rungs: RungBoard::new(&spec.pruning, plan.steps),
            trials: ids,
            open_from: 0,
            plan,
            uses_rungs,
        }
    }

    pub fn add_worker(&mut self, id: WorkerId, name: String, slots: u32) {
        self.names.insert(id.clone(), name);
        self.workers.add(id, slots);
    }

    /// The worker is gone for good (left, or its lease ran out): each of its running trials goes
    /// back to the front of the queue, or fails once it has used up its attempts.
    pub fn remove_worker(&mut self, id: &str, why: &str) -> Vec<Command> {
        let Some(running) = self.workers.remove(id) else {
            return Vec::new();
        };
        for trial_id in running.into_iter().rev() {
            self.retry_or_fail(
                trial_id,
                AttemptOutcome::Lost,
                &format!("worker {id} {why}"),
                false,
            );
        }
        self.advance()
    }

    /// A worker whose stream broke keeps its trials (it may come back) but gets no new ones.
    pub fn set_available(&mut self, id: &str, available: bool) {
        self.workers.set_available(id, available);
    }

    /// The trials this worker still runs, as the sweep sees them: (trial, attempt, last step).
    pub fn running_on(&self, worker: &str) -> Vec<(TrialId, u32, u64)> {
        self.workers
            .running(worker)
            .map(|id| {
                let t = &self.trials[id as usize];
                (id, t.attempt, t.steps)
            })
            .collect()
    }

    /// A worker came back after a broken stream, still training `reported` (trial, attempt).
    /// Returns what it keeps, with the last step the sweep has of each; the trials the sweep
    /// had on it that it no longer has are handed out again.
    pub fn reattach_worker(
        &mut self,
        id: &str,
        reported: &[(TrialId, u32)],
    ) -> Vec<(TrialId, u32, u64)> {
        let kept: Vec<(TrialId, u32, u64)> = self
            .running_on(id)
            .into_iter()
            .filter(|(trial, attempt, _)| reported.contains(&(*trial, *attempt)))
            .collect();
        let lost: Vec<TrialId> = self
            .running_on(id)
            .into_iter()
            .map(|(trial, _, _)| trial)
            .filter(|trial| !kept.iter().any(|k| k.0 == *trial))
            .collect();
        for trial_id in lost {
            let why = format!("worker {id} came back without it");
            self.retry_or_fail(trial_id, AttemptOutcome::Lost, &why, false);
        }
        // A trial that used up its attempts may have been the round's last.
        self.next_round_if_over();
        kept
    }

    /// Ends the current attempt of a running trial without a verdict on the rate: it runs again,
    /// unless it has used up its attempts or retrying cannot help (`permanent`).
    fn retry_or_fail(
        &mut self,
        trial_id: TrialId,
        outcome: AttemptOutcome,
        error: &str,
        permanent: bool,
    ) {
        self.release(trial_id);
        let trial = &mut self.trials[trial_id as usize];
        if trial.status != TrialStatus::Running {
            return;
        }
        self.changes.push(Change::AttemptEnded {
            trial: trial_id,
            attempt: trial.attempt,
            outcome,
            error: Some(error.to_string()),
        });
        self.changes.push(Change::TrialChanged(trial_id));
        trial.error = Some(error.to_string());
        if permanent || trial.attempt >= self.max_attempts {
            trial.status = TrialStatus::Failed;
            trial.settled_loss = trial.monitor.smoothed();
            warn!(
                event = "trial_failed",
                round = trial.round,
                trial = trial_id,
                lr = trial.lr,
                attempts = trial.attempt,
                error
            );
        } else {
            warn!(
                event = "trial_requeued",
                round = trial.round,
                trial = trial_id,
                lr = trial.lr,
                attempt = trial.attempt,
                error
            );
            trial.status = TrialStatus::Queued;
            trial.reset_trace(&self.spec.pruning);
            self.queue.push_front(trial_id);
        }
    }

    /// Hands queued trials to workers with free slots.
    pub fn dispatch(&mut self) -> Vec<Command> {
        let mut commands = Vec::new();
        if self.finished {
            return commands;
        }
        while let Some(worker) = self.workers.least_loaded_free() {
            let Some(trial_id) = self.next_queued() else {
                break;
            };
            let trial = &mut self.trials[trial_id as usize];
            trial.status = TrialStatus::Running;
            trial.attempt += 1;
            trial.reset_trace(&self.spec.pruning);
            trial.worker_name = self.names.get(&worker).cloned();
            trial.worker = Some(worker.clone());
            self.workers.start(&worker, trial_id);
            self.changes.push(Change::AttemptStarted {
                trial: trial_id,
                attempt: trial.attempt,
                worker: worker.clone(),
            });
            self.changes.push(Change::TrialChanged(trial_id));
            info!(
                event = "trial_dispatched",
                round = trial.round,
                trial = trial_id,
                lr = trial.lr,
                worker = %worker,
                attempt = trial.attempt,
                replicate = trial.subset.replicate,
                steps = trial.budget,
            );
            commands.push(Command::Assign {
                worker,
                assignment: Box::new(TrialAssignment {
                    trial_id,
                    attempt: trial.attempt,
                    round: trial.round,
                    lr: trial.lr,
                    steps: trial.budget,
                    eval_every: self.spec.search.eval_every,
                    subset: trial.subset,
                    trainer: trial.trainer(&self.spec.trainer),
                }),
            });
        }
        commands
    }

    /// The next trial in the queue that is still queued: a trial stopped while queued leaves its
    /// entry behind, dropped here rather than searched for in the queue when it stops.
    fn next_queued(&mut self) -> Option<TrialId> {
        while let Some(id) = self.queue.pop_front() {
            if self.trials[id as usize].status == TrialStatus::Queued {
                return Some(id);
            }
        }
        None
    }

    /// Finds the trial a worker reports on. `Ok(None)`: a message about an attempt that is over
    /// (pruned, cancelled, re-queued) — harmless and dropped.
    fn reported_trial(
        &self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
    ) -> Result<Option<usize>, CoordinatorError> {
        let trial = self
            .trials
            .get(trial_id as usize)
            .ok_or_else(|| CoordinatorError::InvalidRequest(format!("unknown trial {trial_id}")))?;
        if attempt == 0 || attempt > trial.attempt {
            return Err(CoordinatorError::InvalidRequest(format!(
                "trial {trial_id} has no attempt {attempt}"
            )));
        }
        if attempt < trial.attempt || trial.worker.as_deref() != Some(worker) {
            warn!(
                event = "stale_report_dropped",
                trial = trial_id,
                attempt,
                worker
            );
            return Ok(None);
        }
        Ok(Some(trial_id as usize))
    }

    /// The trial a worker reports the end of, while it still runs; `Ok(None)` for an attempt
    /// that is over (a stop order crossed the report).
    fn running_report(
        &self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
    ) -> Result<Option<usize>, CoordinatorError> {
        Ok(self
            .reported_trial(worker, trial_id, attempt)?
            .filter(|&i| self.trials[i].status == TrialStatus::Running))
    }

    /// Judges a batch of a trial's points and records the ones accepted: the tail of the batch
    /// past what the sweep already had (none for a superseded attempt).
    pub fn on_trace(
        &mut self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
        points: &[TracePoint],
    ) -> Result<Vec<Command>, CoordinatorError> {
        let Some(index) = self.reported_trial(worker, trial_id, attempt)? else {
            return Ok(Vec::new());
        };
        let trial = &mut self.trials[index];
        // Within a batch steps must rise; across batches a point at or below the last step is a
        // resend after a reconnect, and is skipped (points are idempotent on trial, attempt, step).
        if let Some(w) = points.windows(2).find(|w| w[1].step <= w[0].step) {
            return Err(CoordinatorError::InvalidRequest(format!(
                "trial {trial_id}: step {} after step {} in one batch",
                w[1].step, w[0].step
            )));
        }
        if let Some(p) = points.iter().find(|p| p.step > trial.budget) {
            return Err(CoordinatorError::InvalidRequest(format!(
                "trial {trial_id}: step {} beyond its budget of {}",
                p.step, trial.budget
            )));
        }
        let fresh = points.partition_point(|p| p.step <= trial.steps);
        let points = &points[fresh..];
        let Some(last) = points.last().map(|p| p.step) else {
            return Ok(Vec::new());
        };
        trial.steps_run += last - trial.steps;
        trial.steps = last;
        self.changes.push(Change::PointsAccepted {
            trial: trial_id,
            attempt,
            points: points.to_vec(),
        });
        self.changes.push(Change::TrialChanged(trial_id));
        // Points that arrive after the stop order still count as work done, but are not judged.
        if trial.status != TrialStatus::Running {
            return Ok(Vec::new());
        }
        let rungs = self.round.uses_rungs.then_some(&mut self.round.rungs);
        let verdicts = trial.judge(points, rungs, self.round.plan.incumbent.as_ref());
        let mut commands = Vec::new();
        for &(id, reason) in &verdicts {
            // A condemned larger rate may have finished meanwhile.
            if self.trials[id as usize].status != TrialStatus::Running {
                continue;
            }
            commands.extend(self.stop(id, TrialStatus::Pruned, StopKind::Prune, reason));
            if id == trial_id && reason.is_divergence() && self.round.uses_rungs {
                commands.extend(self.cancel_larger_rates(trial_id));
            }
        }
        if !verdicts.is_empty() {
            commands.extend(self.advance());
        }
        Ok(commands)
    }

    pub fn on_completed(
        &mut self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
        steps: u64,
    ) -> Result<Vec<Command>, CoordinatorError> {
        let Some(index) = self.running_report(worker, trial_id, attempt)? else {
            return Ok(Vec::new());
        };
        let trial = &mut self.trials[index];
        if steps != trial.steps {
            return Err(CoordinatorError::InvalidRequest(format!(
                "trial {trial_id}: completed at step {steps} but the trace reached {}",
                trial.steps
            )));
        }
        trial.status = TrialStatus::Completed;
        self.changes.push(Change::AttemptEnded {
            trial: trial_id,
            attempt,
            outcome: AttemptOutcome::Completed,
            error: None,
        });
        self.changes.push(Change::TrialChanged(trial_id));
        info!(
            event = "trial_completed",
            round = trial.round,
            trial = trial_id,
            lr = trial.lr,
            worker,
            steps,
            final_loss = trial.monitor.final_score(),
        );
        self.release(trial_id);
        Ok(self.advance())
    }

    /// The worker says the attempt failed; `permanent` when retrying cannot help (a data file
    /// missing, a broken trainer config), so the trial fails at once.
    pub fn on_failed(
        &mut self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
        error: &str,
        permanent: bool,
    ) -> Result<Vec<Command>, CoordinatorError> {
        if self.running_report(worker, trial_id, attempt)?.is_none() {
            return Ok(Vec::new());
        }
        self.retry_or_fail(trial_id, AttemptOutcome::Failed, error, permanent);
        Ok(self.advance())
    }

    fn release(&mut self, trial_id: TrialId) {
        let trial = &self.trials[trial_id as usize];
        if let Some(w) = &trial.worker {
            self.workers.finish(w, trial_id);
        }
    }

    /// Ends a queued or running trial; a running one gets a stop order on its worker's stream.
    fn stop(
        &mut self,
        trial_id: TrialId,
        status: TrialStatus,
        kind: StopKind,
        reason: PruneReason,
    ) -> Option<Command> {
        self.changes.push(Change::TrialChanged(trial_id));
        let trial = &mut self.trials[trial_id as usize];
        let was = trial.status;
        trial.status = status;
        trial.settled_loss = trial.monitor.smoothed();
        trial.prune_reason = Some(reason);
        info!(
            event = if status == TrialStatus::Pruned {
                "trial_pruned"
            } else {
                "trial_cancelled"
            },
            round = trial.round,
            trial = trial_id,
            lr = trial.lr,
            worker = trial.worker.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            steps = trial.steps,
            budget = trial.budget,
        );
        match was {
            TrialStatus::Running => {
                self.changes.push(Change::AttemptEnded {
                    trial: trial_id,
                    attempt: trial.attempt,
                    outcome: if status == TrialStatus::Pruned {
                        AttemptOutcome::Pruned
                    } else {
                        AttemptOutcome::Cancelled
                    },
                    error: None,
                });
                let command = trial.worker.clone().map(|worker| Command::Stop {
                    worker,
                    trial: trial_id,
                    attempt: trial.attempt,
                    kind,
                    reason,
                });
                self.release(trial_id);
                command
            }
            // Its queue entry is dropped when it comes up (`next_queued`).
            _ => None,
        }
    }

    /// Stability is monotone in the rate: once a rate diverges, every rate at or above it in this
    /// round is cancelled, queued or running.
    fn cancel_larger_rates(&mut self, diverged: TrialId) -> Vec<Command> {
        let lr = self.trials[diverged as usize].lr;
        let doomed: Vec<TrialId> = self
            .round
            .trials
            .iter()
            .copied()
            .filter(|&id| {
                let t = &self.trials[id as usize];
                id != diverged && t.lr >= lr && !t.is_terminal()
            })
            .collect();
        doomed
            .into_iter()
            .filter_map(|id| {
                self.stop(
                    id,
                    TrialStatus::Cancelled,
                    StopKind::Cancel,
                    PruneReason::CancelledByMonotonicity,
                )
            })
            .collect()
    }

    /// Moves to the next round once every trial of this one is over, and refills free slots.
    fn advance(&mut self) -> Vec<Command> {
        self.next_round_if_over();
        self.dispatch()
    }

    /// Plans the next round (or ends the search) once every trial of this one is over. Returns
    /// whether a new round started.
    fn next_round_if_over(&mut self) -> bool {
        let round = &mut self.round;
        while round
            .trials
            .get(round.open_from)
            .is_some_and(|&id| self.trials[id as usize].is_terminal())
        {
            round.open_from += 1;
        }
        let round_over = round.open_from == round.trials.len();
        if round_over && !self.finished {
            let results = self.round_results();
            match self.search.next_round(&results) {
                Some(plan) => {
                    self.start_round(plan);
                    return true;
                }
                None => {
                    self.finished = true;
                    let rec = self.search.recommendation();
                    info!(
                        event = "sweep_finished",
                        rounds = self.round.plan.round + 1,
                        total_steps = self.total_steps(),
                        best_lr = rec.as_ref().map(|r| r.best_lr),
                        max_stable_lr = rec.as_ref().map(|r| r.max_stable_lr),
                    );
                }
            }
        }
        false
    }

    /// One result per trial of the current round.
    fn round_results(&self) -> Vec<TrialResult> {
        self.round
            .trials
            .iter()
            .map(|&id| self.trials[id as usize].result())
            .collect()
    }

    /// Strategy-specific content for the report (the range test's curves).
    pub fn search_report(&self) -> serde_json::Value {
        self.search.report()
    }

    /// Shutdown: nothing more is handed out; queued trials stay queued in the report.
    /// Running trials are handed back: they go back to the queue, to be run again when the
    /// sweep resumes.
    pub fn finish_early(&mut self) {
        if !self.finished {
            self.finished = true;
            self.interrupted = true;
            self.requeue_running();
        }
    }

    /// Whether the sweep ended before its search did.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted
    }
}

#[cfg(test)]
mod tests;
