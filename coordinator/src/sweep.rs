//! The sweep as a state machine: trials, the queue, which worker runs what, and every decision
//! taken on incoming traces. Pure: the gRPC layer feeds it events and carries out the commands
//! it returns, so all of this is tested without a network.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use lrsweep_proto::domain::{StopKind, Subset, TracePoint, TrialAssignment, TrialId};
use tracing::{info, warn};

use crate::prune::{PruneReason, RungBoard, TraceMonitor};
use crate::search::{
    CandidateResult, CoarseToFine, Recommendation, ReplicateOutcome, RoundPlan, TrialStatus,
};
use crate::spec::SweepSpec;
use crate::CoordinatorError;

pub type WorkerId = String;

/// What the service layer must send, and to whom.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Assign {
        worker: WorkerId,
        assignment: TrialAssignment,
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
    pub status: TrialStatus,
    pub prune_reason: Option<PruneReason>,
    pub attempt: u32,
    /// Training steps the current attempt has reported.
    pub steps: u64,
    /// Steps run by all attempts, including ones lost with their worker.
    pub steps_run: u64,
    /// The worker of the latest attempt.
    pub worker: Option<WorkerId>,
    pub error: Option<String>,
    monitor: TraceMonitor,
}

impl Trial {
    /// Smoothed final validation loss for completed trials; last smoothed training loss otherwise.
    pub fn final_loss(&self) -> Option<f64> {
        match self.status {
            TrialStatus::Completed => self.monitor.final_score(),
            _ => self.monitor.smoothed(),
        }
    }

    pub fn is_terminal(&self) -> bool {
        !matches!(self.status, TrialStatus::Queued | TrialStatus::Running)
    }

    fn outcome(&self) -> ReplicateOutcome {
        ReplicateOutcome {
            status: self.status,
            diverged: self.prune_reason.is_some_and(|r| r.is_divergence()),
            score: match self.status {
                TrialStatus::Completed => self.monitor.final_score(),
                _ => None,
            },
        }
    }
}

#[derive(Debug)]
struct WorkerSlotState {
    slots: u32,
    running: BTreeSet<TrialId>,
}

#[derive(Debug)]
struct RoundState {
    plan: RoundPlan,
    trials: Vec<TrialId>,
    rungs: RungBoard,
}

pub struct Sweep {
    spec: SweepSpec,
    search: CoarseToFine,
    round: RoundState,
    trials: Vec<Trial>,
    queue: VecDeque<TrialId>,
    workers: BTreeMap<WorkerId, WorkerSlotState>,
    /// Names of every worker ever connected, kept after they leave for the report.
    names: BTreeMap<WorkerId, String>,
    finished: bool,
}

impl Sweep {
    pub fn new(spec: SweepSpec) -> Sweep {
        let mut search = CoarseToFine::new(&spec);
        let plan = search.first_round();
        let mut sweep = Sweep {
            round: RoundState {
                rungs: RungBoard::new(&spec.pruning, plan.steps),
                trials: Vec::new(),
                plan: plan.clone(),
            },
            spec,
            search,
            trials: Vec::new(),
            queue: VecDeque::new(),
            workers: BTreeMap::new(),
            names: BTreeMap::new(),
            finished: false,
        };
        sweep.start_round(plan);
        sweep
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
        let replicates = self.spec.search.replicates;
        let mut ids = Vec::new();
        // Largest rate first: a diverging rate dies within a few steps, so the round quickly gets
        // its good rates' rung values, against which the crawling small rates are cut early.
        for &lr in plan.lrs.iter().rev() {
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
                    status: TrialStatus::Queued,
                    prune_reason: None,
                    attempt: 0,
                    steps: 0,
                    steps_run: 0,
                    worker: None,
                    error: None,
                    monitor: TraceMonitor::new(&self.spec.pruning),
                });
                self.queue.push_back(id);
                ids.push(id);
            }
        }
        self.round = RoundState {
            rungs: RungBoard::new(&self.spec.pruning, plan.steps),
            trials: ids,
            plan,
        };
    }

    pub fn add_worker(&mut self, id: WorkerId, name: String, slots: u32) {
        self.names.insert(id.clone(), name);
        self.workers.insert(
            id,
            WorkerSlotState {
                slots: slots.max(1),
                running: BTreeSet::new(),
            },
        );
    }

    pub fn worker_name(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    /// The worker is gone: its running trials go back to the front of the queue.
    pub fn remove_worker(&mut self, id: &str) {
        let Some(state) = self.workers.remove(id) else {
            return;
        };
        for trial_id in state.running.into_iter().rev() {
            let trial = &mut self.trials[trial_id as usize];
            if trial.status == TrialStatus::Running {
                warn!(
                    event = "trial_requeued",
                    trial = trial_id,
                    lr = trial.lr,
                    worker = id,
                    attempt = trial.attempt
                );
                trial.status = TrialStatus::Queued;
                trial.steps = 0;
                trial.monitor = TraceMonitor::new(&self.spec.pruning);
                self.queue.push_front(trial_id);
            }
        }
    }

    fn least_loaded_free_worker(&self) -> Option<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, w)| (w.running.len() as u32) < w.slots)
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
            trial.status = TrialStatus::Running;
            trial.attempt += 1;
            trial.steps = 0;
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
                assignment: TrialAssignment {
                    trial_id,
                    attempt: trial.attempt,
                    lr: trial.lr,
                    steps: trial.budget,
                    eval_every: self.spec.search.eval_every,
                    subset: trial.subset,
                    trainer: self.spec.trainer.clone(),
                },
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
        let mut last = trial.steps;
        for p in points {
            if p.step <= last {
                return Err(CoordinatorError::InvalidRequest(format!(
                    "trial {trial_id}: step {} after step {last}",
                    p.step
                )));
            }
            if p.step > trial.budget {
                return Err(CoordinatorError::InvalidRequest(format!(
                    "trial {trial_id}: step {} beyond its budget of {}",
                    p.step, trial.budget
                )));
            }
            last = p.step;
        }
        trial.steps_run += last - trial.steps;
        trial.steps = last;
        // Points that arrive after the stop order still count as work done, but are not judged.
        if trial.status != TrialStatus::Running {
            return Ok(Vec::new());
        }
        let mut verdict = None;
        for p in points {
            verdict = trial.monitor.observe(p);
            if verdict.is_none() {
                if let Some(s) = trial.monitor.smoothed() {
                    verdict = self
                        .round
                        .rungs
                        .observe(trial_id, trial.subset.replicate, p.step, s);
                }
            }
            if verdict.is_some() {
                break;
            }
        }
        let mut commands = Vec::new();
        if let Some(reason) = verdict {
            commands.extend(self.stop(trial_id, TrialStatus::Pruned, StopKind::Prune, reason));
            if reason.is_divergence() {
                commands.extend(self.cancel_larger_rates(trial_id));
            }
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
        trial.status = TrialStatus::Failed;
        trial.error = Some(error.to_string());
        warn!(
            event = "trial_failed",
            round = trial.round,
            trial = trial_id,
            lr = trial.lr,
            worker,
            error
        );
        self.release(trial_id);
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
        let trial = &mut self.trials[trial_id as usize];
        let was = trial.status;
        trial.status = status;
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
        let round_over = self
            .round
            .trials
            .iter()
            .all(|&id| self.trials[id as usize].is_terminal());
        if round_over && !self.finished {
            let results = self.round_results();
            match self.search.next_round(&results) {
                Some(plan) => self.start_round(plan),
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
        self.dispatch()
    }

    /// One result per rate of the current round, ascending.
    fn round_results(&self) -> Vec<CandidateResult> {
        self.round
            .plan
            .lrs
            .iter()
            .map(|&lr| {
                let outcomes: Vec<ReplicateOutcome> = self
                    .round
                    .trials
                    .iter()
                    .map(|&id| &self.trials[id as usize])
                    .filter(|t| t.lr == lr)
                    .map(Trial::outcome)
                    .collect();
                CandidateResult::from_replicates(lr, &outcomes)
            })
            .collect()
    }

    /// Shutdown: nothing more is handed out; queued trials stay queued in the report.
    pub fn finish_early(&mut self) {
        self.finished = true;
    }
}
