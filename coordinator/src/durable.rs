//! Keeps the sweep in the SQLite store as it runs, and rebuilds it from there: after a crash
//! (`resume`) or for a report from the database alone. The mapping between the sweep's trials
//! and the store's rows lives here.

use lrsweep_proto::domain::{Subset, TracePoint, TrialId};
use tracing::error;

use crate::prune::PruneReason;
use crate::search::TrialStatus;
use crate::spec::SweepSpec;
use crate::store::{Store, SweepRow, TrialRow};
use crate::sweep::{Command, Sweep, Trial, TrialRecord};
use crate::CoordinatorError;

/// The store of one running sweep. A write that fails is remembered and ends the sweep: a
/// coordinator that cannot record what happens can no longer promise to lose nothing.
pub struct Durable {
    store: Store,
    sweep_id: String,
    failure: Option<String>,
    /// Points accepted since the last `sync`, written with the rows in its transaction.
    points: Vec<(TrialId, u32, Vec<TracePoint>)>,
}

impl Durable {
    pub fn new(store: Store, sweep_id: String) -> Durable {
        Durable {
            store,
            sweep_id,
            failure: None,
            points: Vec::new(),
        }
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn check(&mut self, result: Result<(), CoordinatorError>) {
        if let Err(e) = result {
            error!(event = "storage_failed", error = %e);
            self.failure.get_or_insert(e.to_string());
        }
    }

    /// Keeps accepted points for the next `sync`, which writes them with the trial rows.
    pub fn append_points(&mut self, trial: TrialId, attempt: u32, points: &[TracePoint]) {
        self.points.push((trial, attempt, points.to_vec()));
    }

    /// Writes what changed, points and trial rows in one transaction, before the commands that
    /// follow from it go out.
    pub fn sync(&mut self, sweep: &mut Sweep, commands: &[Command]) {
        let changed = sweep.take_changed();
        let result = (|| {
            for command in commands {
                if let Command::Assign { worker, assignment } = command {
                    self.store.start_attempt(
                        &self.sweep_id,
                        assignment.trial_id,
                        assignment.attempt,
                        worker,
                    )?;
                }
            }
            let trials = sweep.trials();
            let rows: Vec<TrialRow> = changed
                .iter()
                .map(|&id| row(&self.sweep_id, &trials[id as usize]))
                .collect();
            let points = std::mem::take(&mut self.points);
            let batches: Vec<_> = points
                .iter()
                .map(|(trial, attempt, p)| (self.sweep_id.as_str(), *trial, *attempt, p.as_slice()))
                .collect();
            self.store.write(&rows, &batches)?;
            for &id in &changed {
                let t = &trials[id as usize];
                // An attempt ends when its trial is settled, or re-queued after losing it.
                let ended =
                    t.is_terminal() || (t.status == TrialStatus::Queued && t.error.is_some());
                if ended && t.attempt > 0 {
                    self.store.end_attempt(
                        &self.sweep_id,
                        id,
                        t.attempt,
                        t.status.as_str(),
                        t.error.as_deref(),
                    )?;
                }
            }
            Ok(())
        })();
        self.check(result);
    }

    pub fn finish(&mut self, interrupted: bool, report_json: &str) {
        let status = if interrupted {
            "interrupted"
        } else {
            "completed"
        };
        let result = self
            .store
            .set_sweep_status(&self.sweep_id, status)
            .and_then(|()| self.store.put_meta(&self.sweep_id, "report", report_json));
        self.check(result);
    }
}

fn row(sweep_id: &str, t: &Trial) -> TrialRow {
    TrialRow {
        sweep_id: sweep_id.to_string(),
        id: t.id,
        round: t.round,
        lr: t.lr,
        replicate: t.subset.replicate,
        replicates: t.subset.replicates,
        fraction: t.subset.fraction,
        budget: t.budget,
        status: t.status.as_str().to_string(),
        prune_reason: t.prune_reason.map(|r| r.as_str().to_string()),
        attempt: t.attempt,
        steps: t.steps,
        steps_run: t.steps_run,
        worker: t.worker_name.clone(),
        error: t.error.clone(),
        final_loss: t.final_loss(),
    }
}

fn record(store: &Store, row: TrialRow) -> Result<TrialRecord, CoordinatorError> {
    let bad = |what: &str, value: &str| {
        CoordinatorError::Storage(format!("trial {}: unknown {what} `{value}`", row.id))
    };
    let status = TrialStatus::parse(&row.status).ok_or_else(|| bad("status", &row.status))?;
    let prune_reason = match &row.prune_reason {
        Some(r) => Some(PruneReason::parse(r).ok_or_else(|| bad("prune reason", r))?),
        None => None,
    };
    let points = if row.attempt > 0 {
        store.points(&row.sweep_id, row.id, row.attempt)?
    } else {
        Vec::new()
    };
    Ok(TrialRecord {
        id: row.id,
        round: row.round,
        lr: row.lr,
        subset: Subset {
            fraction: row.fraction,
            replicate: row.replicate,
            replicates: row.replicates,
        },
        status,
        prune_reason,
        attempt: row.attempt,
        steps_run: row.steps_run,
        worker_name: row.worker,
        error: row.error,
        settled_loss: row.final_loss,
        points,
    })
}

/// The stored spec of a sweep, parsed.
pub fn stored_spec(sweep: &SweepRow) -> Result<SweepSpec, CoordinatorError> {
    SweepSpec::from_toml_str(&sweep.spec_toml)
}

/// The spec as stored: TOML, so that a person can read it from the database too.
pub fn spec_text(spec: &SweepSpec) -> Result<String, CoordinatorError> {
    toml::to_string(spec).map_err(|e| CoordinatorError::Storage(format!("encoding the spec: {e}")))
}

/// Rebuilds a stored sweep's state machine from its rows and traces.
pub fn load_sweep(store: &Store, sweep: &SweepRow) -> Result<Sweep, CoordinatorError> {
    let records = store
        .trials(&sweep.sweep_id)?
        .into_iter()
        .map(|row| record(store, row))
        .collect::<Result<Vec<_>, _>>()?;
    Sweep::resume(stored_spec(sweep)?, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RungRule;

    fn spec() -> SweepSpec {
        let mut spec = SweepSpec::default();
        spec.search.min_lr = 1e-3;
        spec.search.max_lr = 1.0;
        spec.search.rounds = 2;
        spec.search.candidates_per_round = 3;
        spec.search.steps = vec![50, 100];
        spec.search.data_fraction = vec![0.5, 1.0];
        spec.search.replicates = 1;
        spec.search.eval_every = 10;
        spec.pruning.rule = RungRule::None;
        spec
    }

    fn points(lr: f64, from: u64, to: u64, budget: u64) -> Vec<TracePoint> {
        let level = 0.1 + (lr.log10() + 1.0).powi(2);
        (from..=to)
            .map(|step| TracePoint {
                step,
                train_loss: level + 1.0 / step as f64,
                lr,
                val_loss: (step % 10 == 0 || step == budget).then_some(level),
            })
            .collect()
    }

    /// Runs `sweep` on one worker, saving as the hub does, until `stop_after` trials completed.
    fn play(sweep: &mut Sweep, durable: &mut Durable, stop_after: usize) {
        let mut done = 0;
        let mut commands = sweep.dispatch();
        durable.sync(sweep, &commands);
        while let Some(Command::Assign {
            worker,
            assignment: a,
        }) = commands.pop()
        {
            if done == stop_after {
                // Half a trace, then the coordinator "dies".
                let half = points(a.lr, 1, a.steps / 2, a.steps);
                let (_, fresh) = sweep
                    .on_trace(&worker, a.trial_id, a.attempt, &half)
                    .unwrap();
                durable.append_points(a.trial_id, a.attempt, fresh);
                durable.sync(sweep, &[]);
                return;
            }
            let all = points(a.lr, 1, a.steps, a.steps);
            let (mut next, fresh) = sweep
                .on_trace(&worker, a.trial_id, a.attempt, &all)
                .unwrap();
            durable.append_points(a.trial_id, a.attempt, fresh);
            next.extend(
                sweep
                    .on_completed(&worker, a.trial_id, a.attempt, a.steps)
                    .unwrap(),
            );
            durable.sync(sweep, &next);
            commands.extend(next);
            done += 1;
        }
    }

    fn fresh_store(spec: &SweepSpec) -> Store {
        let mut store = Store::open_in_memory().unwrap();
        store
            .create_sweep(&SweepRow {
                sweep_id: "s".into(),
                spec_toml: spec_text(spec).unwrap(),
                status: "running".into(),
                created_at_ms: 0,
            })
            .unwrap();
        store
    }

    #[test]
    fn a_sweep_resumes_from_the_store_without_rerunning_completed_trials() {
        let spec = spec();
        let mut sweep = Sweep::new(spec.clone());
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let mut durable = Durable::new(fresh_store(&spec), "s".into());
        // Round 0 has 4 rates; die during the 6th trial (in round 1).
        play(&mut sweep, &mut durable, 5);
        assert!(durable.failure().is_none());

        let row = durable.store.sweep("s").unwrap().unwrap();
        let mut resumed = load_sweep(&durable.store, &row).unwrap();
        assert_eq!(resumed.current_round(), 1);
        let before: Vec<(TrialStatus, u32)> = sweep
            .trials()
            .iter()
            .map(|t| (t.status, t.attempt))
            .collect();
        let after: Vec<(TrialStatus, u32)> = resumed
            .trials()
            .iter()
            .map(|t| (t.status, t.attempt))
            .collect();
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            match b.0 {
                // The trial cut off mid-run goes back to the queue, keeping its attempt count.
                TrialStatus::Running => assert_eq!(*a, (TrialStatus::Queued, b.1)),
                _ => assert_eq!(a, b),
            }
        }
        // Completed trials keep their scores (rebuilt from their stored traces).
        for (b, a) in sweep.trials().iter().zip(resumed.trials()) {
            if b.status == TrialStatus::Completed {
                assert_eq!(b.final_loss(), a.final_loss());
            }
        }
        // Finishing the resumed sweep runs only what was left.
        resumed.add_worker("w9".into(), "beta".into(), 1);
        let mut durable = Durable::new(durable.store, "s".into());
        play(&mut resumed, &mut durable, usize::MAX);
        assert!(resumed.is_finished());
        let rerun = resumed.trials().iter().filter(|t| t.attempt > 1).count();
        assert_eq!(rerun, 1);
        assert!(resumed.recommendation().is_some());
    }

    #[test]
    fn a_store_that_disagrees_with_the_spec_is_refused() {
        let spec = spec();
        let mut sweep = Sweep::new(spec.clone());
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let mut durable = Durable::new(fresh_store(&spec), "s".into());
        play(&mut sweep, &mut durable, 2);
        let mut row = durable.store.sweep("s").unwrap().unwrap();
        let mut other = spec.clone();
        other.search.max_lr = 10.0;
        row.spec_toml = spec_text(&other).unwrap();
        let err = load_sweep(&durable.store, &row).err().expect("refused");
        assert!(err.to_string().contains("cannot resume"), "{err}");
    }
}
