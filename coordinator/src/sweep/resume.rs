//! Rebuilding a sweep from what the durable store kept, after a crash or for a report.

use super::*;

impl Sweep {
    /// Rebuilds a sweep from what the durable store kept: replans every round with the same
    /// strategy, checks each plan against the stored trials, and replays their traces. Trials
    /// that were running when the coordinator died go back to the queue; nothing completed is
    /// run again.
    pub fn resume(spec: SweepSpec, records: Vec<TrialRecord>) -> Result<Sweep, CoordinatorError> {
        // Every replanned round's rows are written again as restored (the same values), which
        // also saves a round that was planned but not yet stored when the coordinator died.
        let mut sweep = Sweep::new(spec);
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
            trial.observe(p, rungs, self.round.plan.incumbent.as_ref());
        }
    }

    /// Trials that were running when the coordinator died lost their worker with it.
    fn requeue_interrupted(mut self) -> Sweep {
        self.requeue_running();
        self
    }

    pub(super) fn requeue_running(&mut self) {
        let running: Vec<TrialId> = self
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Running)
            .map(|t| t.id)
            .collect();
        for id in running.into_iter().rev() {
            self.release(id);
            let trial = &mut self.trials[id as usize];
            self.changes.push(Change::AttemptEnded {
                trial: id,
                attempt: trial.attempt,
                outcome: AttemptOutcome::Interrupted,
                error: None,
            });
            self.changes.push(Change::TrialChanged(id));
            trial.status = TrialStatus::Queued;
            trial.reset_trace(&self.spec.pruning);
            self.queue.push_front(id);
        }
    }
}
