//! The sweep as a state machine: trials, the queue, which worker runs what, and every decision
//! taken on incoming traces. Pure: the gRPC layer feeds it events and carries out the commands
//! it returns, so all of this is tested without a network.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use lrsweep_proto::domain::{
    OptimizerSpec, ScheduleSpec, StopKind, Subset, TracePoint, Trainer, TrainerConfig,
    TrialAssignment, TrialId,
};
use tracing::{info, warn};

use crate::prune::{PruneReason, RungBoard, TraceMonitor};
use crate::search::{
    build_strategy, CurvePoint, Recommendation, RoundPlan, Strategy, TrialResult, TrialStatus,
};
use crate::spec::{RungRule, SweepSpec};
use crate::CoordinatorError;

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

#[derive(Clone, Debug)]
pub struct Trial {
    pub id: TrialId,
    pub round: u32,
    pub lr: f64,
    pub subset: Subset,
    pub budget: u64,
    /// Overrides the trainer's schedule (the range test's ramp).
    pub schedule: Option<ScheduleSpec>,
    /// Overrides the trainer's optimizer (the hypergradient stage).
    pub optimizer: Option<OptimizerSpec>,
    pub status: TrialStatus,
    pub prune_reason: Option<PruneReason>,
    pub attempt: u32,
    /// Training steps the current attempt has reported.
    pub steps: u64,
    /// Steps run by all attempts, including ones lost with their worker.
    pub steps_run: u64,
    /// The worker of the latest attempt.
    pub worker: Option<WorkerId>,
    /// The name of that worker, for people (kept when a restarted coordinator forgets the id).
    pub worker_name: Option<String>,
    pub error: Option<String>,
    monitor: TraceMonitor,
    /// (step, lr, smoothed loss) of the current attempt, for strategies that read the curve.
    curve: Vec<CurvePoint>,
    /// The last smoothed training loss when the trial was stopped or failed: points that arrive
    /// after a stop order count as work but are not judged, so they must not move it.
    settled_loss: Option<f64>,
}

impl Trial {
    /// Smoothed final validation loss for completed trials; last smoothed training loss otherwise.
    pub fn final_loss(&self) -> Option<f64> {
        match self.status {
            TrialStatus::Completed => self.monitor.final_score(),
            TrialStatus::Queued | TrialStatus::Running => self.monitor.smoothed(),
            TrialStatus::Pruned | TrialStatus::Cancelled | TrialStatus::Failed => self.settled_loss,
        }
    }

    pub fn is_terminal(&self) -> bool {
        !matches!(self.status, TrialStatus::Queued | TrialStatus::Running)
    }

    fn result(&self) -> TrialResult {
        TrialResult {
            lr: self.lr,
            replicate: self.subset.replicate,
            status: self.status,
            // A rate cancelled because a smaller one diverged is as unstable: a round whose
            // smallest rate diverged at once has only such rates, and the search must see that
            // the whole round lies past the edge.
            diverged: self.prune_reason.is_some_and(|r| r.shows_instability()),
            score: match self.status {
                TrialStatus::Completed => self.monitor.final_score(),
                _ => None,
            },
            curve: self.curve.clone(),
        }
    }

    /// The trainer this trial runs: the spec's, with the round's schedule and optimizer (which
    /// only the built-in trainer has: the spec refuses strategies that set them for a command).
    pub fn trainer(&self, spec: &Trainer) -> Trainer {
        match spec {
            Trainer::BuiltIn(spec) => Trainer::BuiltIn(TrainerConfig {
                schedule: self
                    .schedule
                    .clone()
                    .unwrap_or_else(|| spec.schedule.clone()),
                optimizer: self
                    .optimizer
                    .clone()
                    .unwrap_or_else(|| spec.optimizer.clone()),
                ..spec.clone()
            }),
            Trainer::Command(_) => spec.clone(),
        }
    }

    /// (step, rate actually used) along the current attempt's trace: how an adaptive optimizer
    /// or a schedule moved the rate.
    pub fn lr_trajectory(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.curve.iter().map(|p| (p.step, p.lr))
    }

    /// Feeds points (in step order) to the trial's monitor, curve and, when given, the round's
    /// rung table, up to the first verdict on this trial. Returns every verdict: on this trial,
    /// and on larger rates of the round its values condemned (the dominated rule).
    fn judge(
        &mut self,
        points: &[TracePoint],
        mut rungs: Option<&mut RungBoard>,
    ) -> Vec<(TrialId, PruneReason)> {
        let mut verdicts = Vec::new();
        for p in points {
            verdicts.extend(self.observe(p, rungs.as_deref_mut()));
            if verdicts.iter().any(|&(id, _)| id == self.id) {
                break;
            }
        }
        verdicts
    }

    /// One point into the monitor, the curve and the rung table. Rungs are judged on validation
    /// loss, what the search ranks by: a large rate may fit its training batches fast and
    /// generalise worse.
    fn observe(
        &mut self,
        p: &TracePoint,
        rungs: Option<&mut RungBoard>,
    ) -> Vec<(TrialId, PruneReason)> {
        if let Some(reason) = self.monitor.observe(p) {
            return vec![(self.id, reason)];
        }
        if let Some(smoothed) = self.monitor.smoothed() {
            self.curve.push(CurvePoint {
                step: p.step,
                lr: p.lr,
                smoothed,
            });
        }
        match (rungs, p.val_loss) {
            (Some(rungs), Some(val_loss)) => {
                rungs.observe(self.id, self.lr, self.subset.replicate, p.step, val_loss)
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the current attempt's trace: the next attempt starts from scratch.
    fn reset_trace(&mut self, pruning: &crate::spec::PruningSpec) {
        self.steps = 0;
        self.monitor = TraceMonitor::new(pruning);
        self.curve.clear();
    }
}

/// A trial as the durable store keeps it, with the points of its latest attempt.
#[derive(Clone, Debug)]
pub struct TrialRecord {
    pub id: TrialId,
    pub round: u32,
    pub lr: f64,
    pub subset: Subset,
    pub status: TrialStatus,
    pub prune_reason: Option<PruneReason>,
    pub attempt: u32,
    pub steps_run: u64,
    pub worker_name: Option<String>,
    pub error: Option<String>,
    /// `Trial::final_loss` as stored, for trials that ended without completing.
    pub settled_loss: Option<f64>,
    pub points: Vec<TracePoint>,
}

#[derive(Debug)]
struct WorkerSlotState {
    slots: u32,
    /// False while its stream is down: it keeps its trials but gets no new ones.
    available: bool,
    running: BTreeSet<TrialId>,
}

#[derive(Debug)]
struct RoundState {
    plan: RoundPlan,
    trials: Vec<TrialId>,
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
    workers: BTreeMap<WorkerId, WorkerSlotState>,
    /// Names of every worker ever connected, kept after they leave for the report.
    names: BTreeMap<WorkerId, String>,
    /// A trial whose attempts failed or were lost this many times is marked failed.
    max_attempts: u32,
    finished: bool,
    interrupted: bool,
    /// Trials changed since the last `take_changed`, for the durable store.
    changed: BTreeSet<TrialId>,
}

pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl Sweep {
    pub fn new(spec: SweepSpec) -> Sweep {
        let mut search = build_strategy(&spec);
        let plan = search.first_round();
        let mut sweep = Sweep {
            round: RoundState {
                rungs: RungBoard::new(&spec.pruning, plan.steps),
                trials: Vec::new(),
                plan: plan.clone(),
                uses_rungs: false,
            },
            spec,
            search,
            trials: Vec::new(),
            queue: VecDeque::new(),
            workers: BTreeMap::new(),
            names: BTreeMap::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            finished: false,
            interrupted: false,
            changed: BTreeSet::new(),
        };
        sweep.start_round(plan);
        sweep
    }

    /// Trials changed since the last call, for the durable store to write.
    pub fn take_changed(&mut self) -> Vec<TrialId> {
        std::mem::take(&mut self.changed).into_iter().collect()
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
        if self.spec.pruning.rule != RungRule::Dominated {
            lrs.reverse();
        }
        for lr in lrs {
            for replicate in 0..replicates {
                let id = self.trials.len() as TrialId;
                self.trials.push(Trial {
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
                    monitor: TraceMonitor::new(&self.spec.pruning),
                    curve: Vec::new(),
                    settled_loss: None,
                });
                self.queue.push_back(id);
                self.changed.insert(id);
                ids.push(id);
            }
        }
        self.round = RoundState {
            rungs: RungBoard::new(&self.spec.pruning, plan.steps),
            trials: ids,
            plan,
            uses_rungs: self.search.uses_rungs(),
        };
    }

    pub fn add_worker(&mut self, id: WorkerId, name: String, slots: u32) {
        self.names.insert(id.clone(), name);
        self.workers.insert(
            id,
            WorkerSlotState {
                slots: slots.max(1),
                available: true,
                running: BTreeSet::new(),
            },
        );
    }

    /// The worker is gone for good (left, or its lease ran out): each of its running trials goes
    /// back to the front of the queue, or fails once it has used up its attempts.
    pub fn remove_worker(&mut self, id: &str, why: &str) -> Vec<Command> {
        let Some(state) = self.workers.remove(id) else {
            return Vec::new();
        };
        for trial_id in state.running.into_iter().rev() {
            self.retry_or_fail(trial_id, &format!("worker {id} {why}"));
        }
        self.advance()
    }

    /// A worker whose stream broke keeps its trials (it may come back) but gets no new ones.
    pub fn set_available(&mut self, id: &str, available: bool) {
        if let Some(w) = self.workers.get_mut(id) {
            w.available = available;
        }
    }

    /// The trials this worker still runs, as the sweep sees them: (trial, attempt, last step).
    pub fn running_on(&self, worker: &str) -> Vec<(TrialId, u32, u64)> {
        self.workers
            .get(worker)
            .map(|w| {
                w.running
                    .iter()
                    .map(|&id| {
                        let t = &self.trials[id as usize];
                        (id, t.attempt, t.steps)
                    })
                    .collect()
            })
            .unwrap_or_default()
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
            self.retry_or_fail(trial_id, &format!("worker {id} came back without it"));
        }
        // A trial that used up its attempts may have been the round's last.
        self.next_round_if_over();
        kept
    }

    /// Ends the current attempt of a running trial without a verdict on the rate.
    fn retry_or_fail(&mut self, trial_id: TrialId, error: &str) {
        self.release(trial_id);
        self.changed.insert(trial_id);
        let trial = &mut self.trials[trial_id as usize];
        if trial.status != TrialStatus::Running {
            return;
        }
        trial.error = Some(error.to_string());
        if trial.attempt >= self.max_attempts {
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

    fn least_loaded_free_worker(&self) -> Option<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, w)| w.available && (w.running.len() as u32) < w.slots)
            .min_by_key(|(_, w)| w.running.len())
            .map(|(id, _)| id.clone())
    }

    /// Hands queued trials to workers with free slots.
    pub fn dispatch(&mut self) -> Vec<Command> {
        let mut commands = Vec::new();
        if self.finished {
            return commands;
        }
        while let Some(worker) = self.least_loaded_free_worker() {
            let Some(trial_id) = self.queue.pop_front() else {
                break;
            };
            let trial = &mut self.trials[trial_id as usize];
            self.changed.insert(trial_id);
            trial.status = TrialStatus::Running;
            trial.attempt += 1;
            trial.reset_trace(&self.spec.pruning);
            trial.worker_name = self.names.get(&worker).cloned();
            trial.worker = Some(worker.clone());
            if let Some(w) = self.workers.get_mut(&worker) {
                w.running.insert(trial_id);
            }
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

    /// Judges a batch of a trial's points. Returns the commands and the points accepted: the
    /// tail of the batch past what the sweep already had (empty for a superseded attempt).
    pub fn on_trace<'p>(
        &mut self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
        points: &'p [TracePoint],
    ) -> Result<(Vec<Command>, &'p [TracePoint]), CoordinatorError> {
        let Some(index) = self.reported_trial(worker, trial_id, attempt)? else {
            return Ok((Vec::new(), &[]));
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
            return Ok((Vec::new(), points));
        };
        trial.steps_run += last - trial.steps;
        trial.steps = last;
        self.changed.insert(trial_id);
        // Points that arrive after the stop order still count as work done, but are not judged.
        if trial.status != TrialStatus::Running {
            return Ok((Vec::new(), points));
        }
        let rungs = self.round.uses_rungs.then_some(&mut self.round.rungs);
        let verdicts = trial.judge(points, rungs);
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
        Ok((commands, points))
    }

    pub fn on_completed(
        &mut self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
        steps: u64,
    ) -> Result<Vec<Command>, CoordinatorError> {
        let Some(index) = self.reported_trial(worker, trial_id, attempt)? else {
            return Ok(Vec::new());
        };
        let trial = &mut self.trials[index];
        if trial.status != TrialStatus::Running {
            return Ok(Vec::new());
        }
        if steps != trial.steps {
            return Err(CoordinatorError::InvalidRequest(format!(
                "trial {trial_id}: completed at step {steps} but the trace reached {}",
                trial.steps
            )));
        }
        trial.status = TrialStatus::Completed;
        self.changed.insert(trial_id);
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

    pub fn on_failed(
        &mut self,
        worker: &str,
        trial_id: TrialId,
        attempt: u32,
        error: &str,
    ) -> Result<Vec<Command>, CoordinatorError> {
        let Some(index) = self.reported_trial(worker, trial_id, attempt)? else {
            return Ok(Vec::new());
        };
        let trial = &mut self.trials[index];
        if trial.status != TrialStatus::Running {
            return Ok(Vec::new());
        }
        self.retry_or_fail(trial_id, error);
        Ok(self.advance())
    }

    fn release(&mut self, trial_id: TrialId) {
        let trial = &self.trials[trial_id as usize];
        if let Some(w) = trial.worker.as_ref().and_then(|w| self.workers.get_mut(w)) {
            w.running.remove(&trial_id);
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
        self.changed.insert(trial_id);
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
            _ => {
                self.queue.retain(|&id| id != trial_id);
                None
            }
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
        let round_over = self
            .round
            .trials
            .iter()
            .all(|&id| self.trials[id as usize].is_terminal());
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

    /// Rebuilds a sweep from what the durable store kept: replans every round with the same
    /// strategy, checks each plan against the stored trials, and replays their traces. Trials
    /// that were running when the coordinator died go back to the queue; nothing completed is
    /// run again.
    pub fn resume(spec: SweepSpec, records: Vec<TrialRecord>) -> Result<Sweep, CoordinatorError> {
        let mut sweep = Sweep::new(spec);
        sweep.changed.clear();
        let mismatch = |why: String| CoordinatorError::Storage(format!("cannot resume: {why}"));
        let mut records = records.into_iter().peekable();
        loop {
            for id in sweep.round.trials.clone() {
                let Some(record) = records.next_if(|r| r.id == id) else {
                    // The round was planned but not yet saved when the coordinator died.
                    return Ok(sweep.requeue_interrupted());
                };
                let planned = &sweep.trials[id as usize];
                if record.round != planned.round
                    || (record.lr / planned.lr - 1.0).abs() > 1e-9
                    || record.subset.replicate != planned.subset.replicate
                {
                    return Err(mismatch(format!(
                        "stored trial {id} (round {}, lr {}) is not what the spec plans (round {}, lr {})",
                        record.round, record.lr, planned.round, planned.lr
                    )));
                }
                sweep.restore_trial(record);
            }
            if !sweep.next_round_if_over() {
                break;
            }
        }
        if let Some(extra) = records.next() {
            return Err(mismatch(format!(
                "stored trial {} lies beyond what the spec plans",
                extra.id
            )));
        }
        Ok(sweep.requeue_interrupted())
    }

    fn restore_trial(&mut self, record: TrialRecord) {
        let id = record.id;
        let uses_rungs = self.round.uses_rungs;
        let trial = &mut self.trials[id as usize];
        trial.status = record.status;
        trial.prune_reason = record.prune_reason;
        trial.attempt = record.attempt;
        trial.steps_run = record.steps_run;
        trial.worker_name = record.worker_name;
        trial.error = record.error;
        trial.settled_loss = record.settled_loss;
        // Replayed for the monitor, the curve and the rung table; the verdicts were taken then.
        trial.steps = record.points.last().map_or(0, |p| p.step);
        for p in &record.points {
            let rungs = uses_rungs.then_some(&mut self.round.rungs);
            trial.observe(p, rungs);
        }
        if trial.status != TrialStatus::Queued {
            self.queue.retain(|&q| q != id);
        }
    }

    /// Trials that were running when the coordinator died lost their worker with it.
    fn requeue_interrupted(mut self) -> Sweep {
        self.requeue_running();
        self
    }

    fn requeue_running(&mut self) {
        let running: Vec<TrialId> = self
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Running)
            .map(|t| t.id)
            .collect();
        for id in running.into_iter().rev() {
            self.release(id);
            let trial = &mut self.trials[id as usize];
            trial.status = TrialStatus::Queued;
            trial.reset_trace(&self.spec.pruning);
            self.queue.push_front(id);
            self.changed.insert(id);
        }
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
mod tests {
    use super::*;

    fn spec(rule: RungRule) -> SweepSpec {
        let mut spec = SweepSpec::default();
        spec.search.min_lr = 1e-3;
        spec.search.max_lr = 1.0;
        spec.search.rounds = 2;
        spec.search.candidates_per_round = 3;
        spec.search.steps = vec![100, 200];
        spec.search.data_fraction = vec![0.5, 1.0];
        spec.search.replicates = 2;
        spec.search.eval_every = 10;
        spec.pruning.rule = rule;
        spec
    }

    fn assignments(commands: &[Command]) -> Vec<(WorkerId, TrialAssignment)> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Assign { worker, assignment } => {
                    Some((worker.clone(), TrialAssignment::clone(assignment)))
                }
                Command::Stop { .. } => None,
            })
            .collect()
    }

    fn stops(commands: &[Command]) -> Vec<(TrialId, StopKind, PruneReason)> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Stop {
                    trial,
                    kind,
                    reason,
                    ..
                } => Some((*trial, *kind, *reason)),
                Command::Assign { .. } => None,
            })
            .collect()
    }

    /// A full trace for `a` whose losses depend only on the distance of lr from 0.1 (decades).
    fn trace(a: &TrialAssignment, from: u64, to: u64) -> Vec<TracePoint> {
        let level = 0.1 + (a.lr.log10() + 1.0).powi(2);
        (from..=to)
            .map(|step| TracePoint {
                step,
                train_loss: level + 1.0 / step as f64,
                lr: a.lr,
                val_loss: (step % a.eval_every == 0 || step == a.steps).then_some(level),
            })
            .collect()
    }

    #[test]
    fn dispatch_fills_free_slots_largest_rate_first() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        assert!(
            sweep.dispatch().is_empty(),
            "no workers, nothing dispatched"
        );
        sweep.add_worker("w1".into(), "alpha".into(), 2);
        let given = assignments(&sweep.dispatch());
        assert_eq!(given.len(), 2);
        for (i, (worker, a)) in given.iter().enumerate() {
            assert_eq!(worker, "w1");
            assert_eq!(a.lr, 1.0);
            assert_eq!(a.attempt, 1);
            assert_eq!(a.steps, 100);
            assert_eq!(a.subset.replicate, i as u32);
            assert_eq!(a.subset.fraction, 0.5);
        }
        assert!(sweep.dispatch().is_empty(), "both slots are busy");
        // The report names the worker each trial ran on.
        let dispatched = &sweep.trials()[given[0].1.trial_id as usize];
        assert_eq!(dispatched.worker_name.as_deref(), Some("alpha"));
    }

    #[test]
    fn divergence_prunes_and_cancels_every_rate_at_or_above_it() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        sweep.add_worker("w1".into(), "a".into(), 3);
        let given = assignments(&sweep.dispatch());
        // Running: lr 1 (both replicates) and lr 0.1 replicate 0; lr 0.1 replicate 1 is queued.
        let (_, small) = given.iter().find(|(_, a)| a.lr == 0.1).unwrap().clone();
        let mut bad = trace(&small, 1, 3);
        bad[2].train_loss = f64::NAN;
        let (commands, _) = sweep
            .on_trace("w1", small.trial_id, 1, &bad)
            .expect("valid trace");
        let stopped = stops(&commands);
        assert!(stopped.contains(&(small.trial_id, StopKind::Prune, PruneReason::Nan)));
        let cancelled: Vec<_> = stopped.iter().filter(|s| s.1 == StopKind::Cancel).collect();
        assert_eq!(cancelled.len(), 2, "both replicates of lr 1: {stopped:?}");
        let t = |lr: f64, rep: u32| {
            sweep
                .trials()
                .iter()
                .find(|t| t.lr == lr && t.subset.replicate == rep)
                .unwrap()
                .clone()
        };
        assert_eq!(t(0.1, 1).status, TrialStatus::Cancelled);
        assert_eq!(
            t(0.1, 1).prune_reason,
            Some(PruneReason::CancelledByMonotonicity)
        );
        assert_eq!(t(0.1, 0).steps, 3);
        // The search sees the cancelled rates as unstable as the one that diverged.
        assert!([t(0.1, 0), t(0.1, 1), t(1.0, 0), t(1.0, 1)]
            .iter()
            .all(|t| t.result().diverged));
        // The freed slots go to the smaller rates.
        let next = assignments(&commands);
        assert_eq!(next.len(), 3);
        assert!(next.iter().all(|(_, a)| a.lr < 0.1));
    }

    #[test]
    fn a_lost_worker_hands_its_trials_back_under_a_new_attempt() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        sweep.add_worker("w1".into(), "a".into(), 1);
        let (_, first) = assignments(&sweep.dispatch()).remove(0);
        sweep
            .on_trace("w1", first.trial_id, 1, &trace(&first, 1, 5))
            .unwrap();
        assert!(sweep.remove_worker("w1", "vanished").is_empty());
        sweep.add_worker("w2".into(), "b".into(), 1);
        let (worker, again) = assignments(&sweep.dispatch()).remove(0);
        assert_eq!((worker.as_str(), again.trial_id), ("w2", first.trial_id));
        assert_eq!(again.attempt, 2);
        // The lost attempt's late points are dropped, not mixed into the new attempt's trace.
        let late = trace(&first, 6, 8);
        let (commands, accepted) = sweep.on_trace("w1", first.trial_id, 1, &late).unwrap();
        assert!(commands.is_empty() && accepted.is_empty());
        let trial = &sweep.trials()[first.trial_id as usize];
        assert_eq!((trial.steps, trial.steps_run), (0, 5));
        sweep
            .on_trace("w2", again.trial_id, 2, &trace(&again, 1, 4))
            .unwrap();
        assert_eq!(sweep.total_steps(), 9);
    }

    #[test]
    fn a_trial_lost_or_failed_max_attempts_times_is_failed_with_the_last_error() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        sweep.set_max_attempts(2);
        sweep.add_worker("w1".into(), "a".into(), 1);
        let (_, a) = assignments(&sweep.dispatch()).remove(0);
        let next = sweep
            .on_failed("w1", a.trial_id, 1, "out of memory")
            .unwrap();
        let (_, again) = assignments(&next).remove(0);
        assert_eq!((again.trial_id, again.attempt), (a.trial_id, 2));
        sweep.remove_worker("w1", "lease expired");
        let trial = &sweep.trials()[a.trial_id as usize];
        assert_eq!(trial.status, TrialStatus::Failed);
        assert_eq!(trial.error.as_deref(), Some("worker w1 lease expired"));
    }

    #[test]
    fn a_reconnecting_worker_keeps_what_it_still_runs_and_resends_idempotently() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        sweep.add_worker("w1".into(), "a".into(), 2);
        let given = assignments(&sweep.dispatch());
        let (a, b) = (given[0].1.clone(), given[1].1.clone());
        sweep
            .on_trace("w1", a.trial_id, 1, &trace(&a, 1, 10))
            .unwrap();
        // Back with only `a`: it resumes after step 10; `b` goes back to the queue.
        let kept = sweep.reattach_worker("w1", &[(a.trial_id, 1)]);
        assert_eq!(kept, vec![(a.trial_id, 1, 10)]);
        assert_eq!(
            sweep.trials()[b.trial_id as usize].status,
            TrialStatus::Queued
        );
        // Resent points overlap what arrived before: counted once.
        sweep
            .on_trace("w1", a.trial_id, 1, &trace(&a, 5, 12))
            .unwrap();
        let trial = &sweep.trials()[a.trial_id as usize];
        assert_eq!((trial.steps, trial.steps_run), (12, 12));
    }

    #[test]
    fn impossible_reports_are_rejected() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        sweep.add_worker("w1".into(), "a".into(), 1);
        let (_, a) = assignments(&sweep.dispatch()).remove(0);
        fn invalid<T>(r: Result<T, CoordinatorError>) -> bool {
            matches!(r, Err(CoordinatorError::InvalidRequest(_)))
        }
        assert!(invalid(sweep.on_trace("w1", 999, 1, &trace(&a, 1, 2))));
        assert!(invalid(sweep.on_trace(
            "w1",
            a.trial_id,
            2,
            &trace(&a, 1, 2)
        )));
        assert!(invalid(sweep.on_trace(
            "w1",
            a.trial_id,
            0,
            &trace(&a, 1, 2)
        )));
        assert!(invalid(sweep.on_trace(
            "w1",
            a.trial_id,
            1,
            &trace(&a, 1, 101)
        )));
        sweep
            .on_trace("w1", a.trial_id, 1, &trace(&a, 1, 5))
            .unwrap();
        let mut backwards = trace(&a, 6, 8);
        backwards.swap(0, 2);
        assert!(invalid(sweep.on_trace("w1", a.trial_id, 1, &backwards)));
        assert!(invalid(sweep.on_completed("w1", a.trial_id, 1, 100)));
        // Another worker's word on this trial is stale, not valid.
        assert!(sweep
            .on_completed("w9", a.trial_id, 1, 5)
            .unwrap()
            .is_empty());
        assert_eq!(
            sweep.trials()[a.trial_id as usize].status,
            TrialStatus::Running
        );
    }

    /// Plays every assignment to completion on two workers until the sweep ends.
    fn run_to_end(sweep: &mut Sweep) -> usize {
        sweep.add_worker("w1".into(), "a".into(), 1);
        sweep.add_worker("w2".into(), "b".into(), 1);
        let mut pending = assignments(&sweep.dispatch());
        let mut trials_run = 0;
        while let Some((worker, a)) = pending.pop() {
            trials_run += 1;
            // Stream in batches of 10 points, as a worker would, until the trial is stopped.
            let mut commands = Vec::new();
            let mut from = 1;
            while from <= a.steps
                && sweep.trials()[a.trial_id as usize].status == TrialStatus::Running
            {
                let to = (from + 9).min(a.steps);
                let points = trace(&a, from, to);
                commands.extend(
                    sweep
                        .on_trace(&worker, a.trial_id, a.attempt, &points)
                        .unwrap()
                        .0,
                );
                from = to + 1;
            }
            if sweep.trials()[a.trial_id as usize].status == TrialStatus::Running {
                commands.extend(
                    sweep
                        .on_completed(&worker, a.trial_id, a.attempt, a.steps)
                        .unwrap(),
                );
            }
            pending.extend(assignments(&commands));
        }
        trials_run
    }

    #[test]
    fn rounds_advance_until_the_search_ends_with_a_recommendation() {
        let mut sweep = Sweep::new(spec(RungRule::None));
        let trials_run = run_to_end(&mut sweep);
        assert!(sweep.is_finished());
        assert_eq!(sweep.current_round(), 1);
        // Round 0: 4 decades, round 1 (the last): the 1.25 lattice from 3 below 0.1 to 1 above;
        // 2 replicates each.
        assert_eq!(trials_run, (4 + 5) * 2);
        assert!(sweep
            .trials()
            .iter()
            .all(|t| t.status == TrialStatus::Completed));
        let rec = sweep.recommendation().expect("a recommendation");
        // The traces are best at 0.1, which lies between two lattice points.
        assert!(
            (rec.best_lr / 0.1).ln().abs() < 1.25f64.ln(),
            "{}",
            rec.best_lr
        );
        assert_eq!(rec.max_stable_lr, 1.0);
        assert_eq!(sweep.total_steps(), 4 * 2 * 100 + 5 * 2 * 200);
        let round1: Vec<f64> = sweep
            .trials()
            .iter()
            .filter(|t| t.round == 1)
            .map(|t| t.lr)
            .collect();
        assert!(round1.iter().all(|&lr| lr > 0.01 && lr < 1.0), "{round1:?}");
    }

    #[test]
    fn rung_rule_stops_trials_far_behind_their_peers() {
        let mut sweep = Sweep::new(spec(RungRule::Asha));
        run_to_end(&mut sweep);
        assert!(sweep.is_finished());
        let rung_pruned: Vec<&Trial> = sweep
            .trials()
            .iter()
            .filter(|t| t.prune_reason == Some(PruneReason::Rung))
            .collect();
        assert!(!rung_pruned.is_empty());
        // Only rates far from the optimum are cut, and before their budget.
        assert!(rung_pruned
            .iter()
            .all(|t| t.lr != 0.1 && t.steps < t.budget));
        assert!(sweep.total_steps() < 4 * 2 * 100 + 3 * 2 * 200);
    }
}
